"""Which API-key scope each endpoint needs, and the check.

A key carries scopes (``ingest``, ``serve``, ``read``, ``admin``; ``admin`` implies the rest).
The rule is derived from the route, so a new endpoint is covered without a table to update:
ingestion needs ``ingest``, serving needs ``serve``, ``/me`` any key, any other GET
``read``, anything else (writes, warehouse SQL, key management) needs ``admin``, and so does
everything under an organization (members, invites), reads included. A handler may override it
with
``opt={"scope": ...}``. User access tokens carry every scope (roles are not modelled yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from levered.errors import PermissionDenied

SCOPES: Final = ("ingest", "serve", "read", "admin")
ALL_SCOPES: Final = frozenset(SCOPES)
ANY_SCOPE: Final = "any"
"""What ``GET /api/v2/me`` needs: any valid key. It tells the caller only its own organization
and its own scopes, which a back end checking its key (``levered whoami``) must be able to
learn whatever the key may do."""


def normalize_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """Deduplicated, in canonical order (the schema already refused unknown names)."""
    return tuple(scope for scope in SCOPES if scope in scopes)


def required_scope(method: str, path: str, declared: str | None = None) -> str:
    if declared is not None:
        return declared
    if path == "/api/v2/me":
        return ANY_SCOPE
    if path.startswith("/api/v2/ingest/"):
        return "ingest"
    if path.endswith("/serve") or path.endswith("/best-variant"):
        return "serve"
    if path.startswith("/api/v2/organizations/"):
        return "admin"  # members and invites, even to read: they list people's emails
    if method in ("GET", "HEAD"):
        return "read"
    return "admin"


def check_scope(scopes: frozenset[str], needed: str) -> None:
    if needed == ANY_SCOPE or "admin" in scopes or needed in scopes:
        return
    raise PermissionDenied(
        f"this API key lacks the '{needed}' scope this endpoint needs "
        f"(it has: {', '.join(s for s in SCOPES if s in scopes)})",
        details={"missing_scope": needed},
    )
