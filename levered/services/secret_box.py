"""Encryption at rest of connected-warehouse passwords (Fernet: AES-128-CBC + HMAC-SHA256).

The key is kept *outside* the database, so a dump or a copy of the database alone does not
reveal any password: ``LEVERED_SECRET_KEY`` when set (any string; the Fernet key is its
SHA-256), else ``secret.key`` in the data directory, created on first use with mode 0600.
Every server process of one installation must see the same key (the same data directory or
the same variable); losing it means reconnecting the warehouses, nothing else is lost.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from pathlib import Path
from typing import Final

from cryptography.fernet import Fernet, InvalidToken

from levered.errors import Conflict

KEY_FILE: Final = "secret.key"


class SecretBox:
    """Encrypts and decrypts the secrets of one installation."""

    def __init__(self, secret: str) -> None:
        digest = hashlib.sha256(secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(bytes(token)).decode()
        except InvalidToken as exc:
            raise Conflict(
                "the stored warehouse password cannot be decrypted with this server's secret "
                "key (LEVERED_SECRET_KEY or secret.key in the data directory changed); "
                "connect the warehouse again with PUT /api/v2/warehouse",
                code="warehouse_secret_unreadable",
            ) from exc


def load_secret_box(secret: str | None, data_dir: Path) -> SecretBox:
    """The box of ``secret`` when given, else of ``data_dir/secret.key`` (created if absent)."""
    if secret:
        return SecretBox(secret)
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(100):  # another process may have created it and not written it yet
            if key := path.read_text().strip():
                return SecretBox(key)
            time.sleep(0.05)
        raise Conflict(f"{path} is empty: delete it, or set LEVERED_SECRET_KEY") from None
    with os.fdopen(fd, "w") as out:  # the first process to start creates it; others read it
        out.write(secrets.token_urlsafe(32) + "\n")
    return SecretBox(path.read_text().strip())
