"""Which member role each endpoint needs, and the check — the user-side twin of
:mod:`levered.services.scopes`.

A user acts for one organization at a time (the one their login or ``orgs switch`` chose) with
their role in it: ``viewer`` < ``member`` < ``admin``. As with scopes, the rule is derived from
the route so a new endpoint is covered without a table to update:

* API keys, members and invites (``/api/v2/api-keys``, ``/api/v2/organizations/{id}/…``) and
  every warehouse write (``PUT /api/v2/warehouse``, ``POST /api/v2/warehouse/query``: arbitrary
  SQL over every row) need ``admin``;
* any other ``GET`` needs ``viewer`` (results, dashboard data, catalogs);
* any other method — optimizations, metrics, models, training, and serving (it records
  exposures) — needs ``member``.

A handler may override it with ``opt={"role": ...}``; ``server_admin`` marks what only a
server administrator may do (create organizations), whatever their role. API keys are governed
by their scopes alone, except that a key is never a server administrator.
"""

from __future__ import annotations

from typing import Final

from levered.errors import PermissionDenied
from levered.services.auth import Principal

ROLES: Final = ("viewer", "member", "admin")
RANK: Final = {role: rank for rank, role in enumerate(ROLES)}
SERVER_ADMIN: Final = "server_admin"


def required_role(method: str, path: str, declared: str | None = None) -> str:
    if declared is not None:
        return declared
    if path.startswith("/api/v2/api-keys") or path.startswith("/api/v2/organizations/"):
        return "admin"
    if path.startswith("/api/v2/warehouse") and method not in ("GET", "HEAD"):
        return "admin"
    if method in ("GET", "HEAD"):
        return "viewer"
    return "member"


def check_role(principal: Principal, needed: str) -> None:
    if needed == SERVER_ADMIN:
        if not principal.server_admin:
            raise PermissionDenied(
                "only a server administrator may do this"
                + (" (an API key never is one)" if principal.kind == "api_key" else ""),
                details={"required_role": SERVER_ADMIN},
            )
        return
    if principal.kind != "user":
        return  # API keys: their scopes decide (levered.services.scopes)
    role = principal.role or "viewer"
    if RANK[role] >= RANK[needed]:
        return
    raise PermissionDenied(
        f"your role in this organization is '{role}'; this endpoint needs '{needed}'"
        + ("" if needed == "admin" else " or higher")
        + " (an organization admin can change it: `levered users role`)",
        details={"role": role, "required_role": needed},
    )
