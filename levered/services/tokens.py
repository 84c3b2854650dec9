"""Opaque secrets (API keys, OAuth tokens and codes): generation and hashing.

These secrets carry 240+ bits of randomness, so a single SHA-256 is the right storage hash
(a slow KDF buys nothing against brute force of a random 40-character secret and would cost
every request). Lookups go by the visible prefix or the hash; the final comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX = "lvk_"
PREFIX_CHARS = 8
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def _random(n: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def new_api_key() -> tuple[str, str]:
    """Return ``(secret, prefix)``; the secret looks like ``lvk_ab12cd34_<40 chars>``."""
    prefix = API_KEY_PREFIX + _random(PREFIX_CHARS)
    return f"{prefix}_{secrets.token_urlsafe(30)}", prefix


def api_key_prefix(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, else None (cheap rejection of garbage)."""
    if not secret.startswith(API_KEY_PREFIX):
        return None
    prefix = secret[: len(API_KEY_PREFIX) + PREFIX_CHARS]
    if len(secret) <= len(prefix) + 1 or secret[len(prefix)] != "_":
        return None
    return prefix


def new_token(kind: str) -> str:
    """An OAuth token or code, e.g. ``lvat_…`` (access) or ``lvrt_…`` (refresh)."""
    return f"{kind}_{secrets.token_urlsafe(32)}"


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def same_digest(stored: bytes, secret: str) -> bool:
    return hmac.compare_digest(stored, digest(secret))
