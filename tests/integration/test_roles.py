"""Roles from the attacker's side: every API route × admin, member and viewer.

The route list is read from the app itself (as the scope matrix does), so a new endpoint cannot
escape: each protected route is called with a user token of each role. The expectation is
written here independently of :func:`levered.services.roles.required_role` — a viewer is refused
every write, a member is refused API keys, members, invites and warehouse administration, an
admin is never refused for its role — so a wrong derivation fails the test rather than being
restated by it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from litestar.testing import AsyncTestClient

from levered.services.passwords import hash_password
from levered.services.tokens import digest, new_token
from tests.conftest import Org, make_metric

Client = AsyncTestClient[Any]
PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
ROLES = ("admin", "member", "viewer")
PUBLIC_WRITES = {("POST", "/api/v2/invites/accept")}  # the invite token is the credential
ANY_MEMBER_WRITES = {("POST", "/api/v2/organizations/{organization_id:uuid}/switch")}


@dataclass(frozen=True)
class User:
    """A user of an organization with a role, and a live access token acting for it."""

    id: UUID
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def token_for(conn: asyncpg.Connection, user_id: UUID, organization_id: UUID) -> str:
    """An access token as the login flow stores it (the flow is tested in test_oauth)."""
    token = new_token("lvat")
    await conn.execute(
        "INSERT INTO oauth_tokens (token_hash, kind, family_id, user_id, organization_id, "
        "client_id, expires_at) VALUES ($1, 'access', $2, $3, $4, 'levered-cli', "
        "now() + interval '1 hour')",
        digest(token),
        uuid.uuid4(),
        user_id,
        organization_id,
    )
    return token


async def user_with_role(
    conn: asyncpg.Connection, org: Org, role: str, *, name: str | None = None
) -> User:
    email = f"{name or role}-{uuid.uuid4().hex[:6]}@{org.email.split('@')[0]}.test"
    password = f"pw-{role}-secret"
    user_id = await conn.fetchval(
        "INSERT INTO users (organization_id, email, name, password_hash) "
        "VALUES ($1, $2, $3, $4) RETURNING id",
        org.id,
        email,
        role,
        hash_password(password),
    )
    await conn.execute(
        "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, $3)",
        org.id,
        user_id,
        role,
    )
    return User(user_id, email, password, await token_for(conn, user_id, org.id))


def _concrete(path: str, org: Org) -> str:
    def value(match: re.Match[str]) -> str:
        if match.group(1) == "organization_id":
            return str(org.id)  # the caller's own organization: only the role can refuse
        return str(uuid.uuid4()) if match.group(2) == "uuid" else "x"

    return PARAM.sub(value, path)


def _routes(client: Client) -> list[tuple[str, str]]:
    out = set()
    for route in client.app.routes:
        for method in getattr(route, "methods", ()):
            if method in ("OPTIONS", "HEAD") or not route.path.startswith("/api/v2/"):
                continue
            out.add((method, route.path))
    return sorted(out)


def expected_role(method: str, path: str) -> str:
    """The product's rule, stated for the test (docs/teams.md's table)."""
    if (method, path) in ANY_MEMBER_WRITES:
        return "viewer"
    if path.startswith(("/api/v2/api-keys", "/api/v2/organizations/")):
        return "admin"
    if path.startswith("/api/v2/warehouse") and method != "GET":
        return "admin"
    return "viewer" if method == "GET" else "member"


async def _call(client: Client, method: str, path: str, user: User | None) -> Any:
    headers = user.headers if user else {}
    body: Any = None if method in ("GET", "DELETE") else {}
    if path.endswith("/best-variant"):  # serving decodes its body before it reads the token
        body = {"optimization_id": str(uuid.uuid4())}
    return await client.request(method, path, json=body, headers=headers)


async def test_every_route_refuses_a_role_below_the_one_it_needs(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    users = {role: await user_with_role(conn, org, role) for role in ROLES}
    rank = {role: i for i, role in enumerate(("viewer", "member", "admin"))}
    routes = _routes(client)
    assert ("GET", "/api/v2/organizations/{organization_id:uuid}/members") in routes
    checked = refused = 0
    for method, template in routes:
        if (method, template) in PUBLIC_WRITES or template.startswith("/api/v2/ingest/"):
            continue  # no user credentials involved (ingestion takes API keys only)
        if method == "POST" and template == "/api/v2/organizations":
            continue  # server administrators only: test_members
        path = _concrete(template, org)
        needed = expected_role(method, template)
        for role, user in users.items():
            response = await _call(client, method, path, user)
            if rank[role] >= rank[needed]:
                assert response.status_code != 403 or "required_role" not in response.text, (
                    method,
                    template,
                    role,
                    response.text,
                )
            else:
                assert response.status_code == 403, (method, template, role, response.text)
                error = response.json()["error"]
                assert error["code"] == "forbidden"
                assert error["details"] == {"role": role, "required_role": needed}
                assert f"'{needed}'" in error["message"]
                refused += 1
            checked += 1
    assert checked > 100 and refused > 25, (checked, refused)


async def test_a_viewer_is_refused_every_write(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    viewer = await user_with_role(conn, org, "viewer")
    writes = [
        (m, p)
        for m, p in _routes(client)
        if m != "GET"
        and (m, p) not in PUBLIC_WRITES | ANY_MEMBER_WRITES
        and not p.startswith("/api/v2/ingest/")
    ]
    assert len(writes) > 15
    for method, template in writes:
        response = await _call(client, method, _concrete(template, org), viewer)
        assert response.status_code == 403, (method, template, response.text)
    # …and reads what a dashboard needs.
    for path in ("/api/v2/optimizations", "/api/v2/models", "/api/v2/metrics", "/api/v2/me"):
        assert (await client.get(path, headers=viewer.headers)).status_code == 200, path
    assert (await client.get("/api/v2/me", headers=viewer.headers)).json()["role"] == "viewer"


async def test_a_member_manages_optimizations_but_not_keys_members_or_the_warehouse(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    member = await user_with_role(conn, org, "member")
    created = await client.post(
        "/api/v2/optimizations",
        json={
            "name": "Hero",
            "design_factors": [{"name": "headline", "dtype": "str", "levels": ["a", "b"]}],
            "reward_metric_id": str(await make_metric(conn, org)),
        },
        headers=member.headers,
    )
    assert created.status_code == 201, created.text
    members_path = f"/api/v2/organizations/{org.id}/members"
    for method, path, body in [
        ("GET", "/api/v2/api-keys", None),
        ("POST", "/api/v2/api-keys", {"label": "escalate", "scopes": ["admin"]}),
        ("DELETE", f"/api/v2/api-keys/{org.api_key_id}", None),
        ("GET", members_path, None),
        ("POST", members_path, {"email": "x@y.test", "password": "long-enough", "role": "admin"}),
        ("PATCH", f"{members_path}/{member.id}", {"role": "admin"}),
        ("PUT", "/api/v2/warehouse", {"provider": "managed"}),
        ("POST", "/api/v2/warehouse/query", {"sql": "SELECT 1"}),
    ]:
        response = await client.request(method, path, json=body, headers=member.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["details"]["required_role"] == "admin"
    # Nothing was done: the key still works, the member is still a member.
    assert (await client.get("/api/v2/me", headers=org.headers)).status_code == 200
    role = await conn.fetchval(
        "SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2",
        org.id,
        member.id,
    )
    assert role == "member"


async def test_a_role_change_or_removal_applies_on_the_next_request(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    user = await user_with_role(conn, org, "viewer")
    admin = await user_with_role(conn, org, "admin")
    write = {"name": "Hero", "design_factors": [{"name": "h", "dtype": "bool", "levels": []}]}
    assert (
        await client.post("/api/v2/optimizations", json=write, headers=user.headers)
    ).status_code == 403
    changed = await client.patch(
        f"/api/v2/organizations/{org.id}/members/{user.id}",
        json={"role": "member"},
        headers=admin.headers,
    )
    assert changed.status_code == 200 and changed.json()["role"] == "member"
    again = await client.post("/api/v2/optimizations", json=write, headers=user.headers)
    assert again.status_code != 403, again.text
    removed = await client.delete(
        f"/api/v2/organizations/{org.id}/members/{user.id}", headers=admin.headers
    )
    assert removed.status_code == 200, removed.text
    gone = await client.get("/api/v2/me", headers=user.headers)
    assert gone.status_code == 401


async def test_api_keys_are_governed_by_scopes_not_roles(client: Client, org: Org) -> None:
    """An admin-scoped key manages members (it acts as the organization); it never creates
    organizations (keys are never server administrators)."""
    listed = await client.get(f"/api/v2/organizations/{org.id}/members", headers=org.headers)
    assert listed.status_code == 200, listed.text
    assert [m["email"] for m in listed.json()["members"]] == [org.email]
    created = await client.post("/api/v2/organizations", json={"name": "X"}, headers=org.headers)
    assert created.status_code == 403
    assert created.json()["error"]["details"] == {"required_role": "server_admin"}
