"""Organizations, members and invites: the rules, and no path from one organization to
another's members or keys (tested as an admin of organization A attacking B)."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
from litestar.testing import AsyncTestClient

from levered.services.passwords import verify_password
from tests.conftest import Org
from tests.integration.test_oauth import bearer, exchange, log_in, pkce, tokens_for
from tests.integration.test_roles import User, token_for, user_with_role

Client = AsyncTestClient[Any]


def members_url(org: Org) -> str:
    return f"/api/v2/organizations/{org.id}/members"


async def role_of(conn: asyncpg.Connection, org: Org, user_id: Any) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT role FROM memberships WHERE organization_id = $1 AND user_id = $2",
        org.id,
        user_id,
    )
    return value


async def make_server_admin(conn: asyncpg.Connection, org: Org) -> User:
    await conn.execute("UPDATE users SET is_server_admin = true WHERE id = $1", org.user_id)
    token = await token_for(conn, org.user_id, org.id)
    return User(org.user_id, org.email, org.password, token)


async def test_admin_adds_lists_changes_and_removes_members(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    admin = await user_with_role(conn, org, "admin")
    added = await client.post(
        members_url(org),
        json={"email": "Ann@Example.test", "password": "initial-pass", "role": "viewer"},
        headers=admin.headers,
    )
    assert added.status_code == 201, added.text
    ann = added.json()
    assert ann["role"] == "viewer" and ann["email"] == "Ann@Example.test"
    assert ann["created_at"] == ann["updated_at"]
    # She can log in with the initial password, as a viewer of this organization.
    ann_org = Org(org.id, org.api_key, org.api_key_id, ann["user_id"], "ann@example.test", "")
    tokens = await tokens_for(client, Org(**{**ann_org.__dict__, "password": "initial-pass"}))
    me = (await client.get("/api/v2/me", headers=bearer(tokens["access_token"]))).json()
    assert me["role"] == "viewer" and me["organization"]["id"] == str(org.id)

    listed = (await client.get(members_url(org), headers=admin.headers)).json()["members"]
    assert {m["email"]: m["role"] for m in listed} == {
        org.email: "admin",
        admin.email: "admin",
        "Ann@Example.test": "viewer",
    }
    changed = await client.patch(
        f"{members_url(org)}/{ann['user_id']}", json={"role": "member"}, headers=admin.headers
    )
    assert changed.status_code == 200 and changed.json()["role"] == "member"
    assert changed.json()["updated_at"] > ann["updated_at"]
    removed = await client.delete(f"{members_url(org)}/{ann['user_id']}", headers=admin.headers)
    assert removed.status_code == 200
    assert (
        await client.get("/api/v2/me", headers=bearer(tokens["access_token"]))
    ).status_code == 401
    refreshed = await client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert refreshed.status_code == 400  # revoked with the membership
    # In no organization any more, the account is gone and its email can be used again.
    assert await conn.fetchval("SELECT count(*) FROM users WHERE id = $1", ann["user_id"]) == 0


async def test_bad_member_input_is_400_naming_the_field(client: Client, org: Org) -> None:
    for body, field in [
        ({"email": "nope", "password": "long-enough"}, "$.email"),
        ({"email": "a@b.test", "password": "short"}, "$.password"),
        ({"email": "a@b.test", "password": "long-enough", "role": "owner"}, "$.role"),
        ({"email": "a@b.test", "password": "long-enough", "extra": 1}, "extra"),
    ]:
        response = await client.post(members_url(org), json=body, headers=org.headers)
        assert response.status_code == 400, (body, response.text)
        assert field in response.text, (body, response.text)
    bad_role = await client.patch(
        f"{members_url(org)}/{org.user_id}", json={"role": "root"}, headers=org.headers
    )
    assert bad_role.status_code == 400 and "$.role" in bad_role.text


async def test_the_last_admin_can_be_neither_demoted_nor_removed(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    me = await token_for(conn, org.user_id, org.id)
    url = f"{members_url(org)}/{org.user_id}"
    demoted = await client.patch(url, json={"role": "member"}, headers=bearer(me))
    assert demoted.status_code == 409, demoted.text
    assert demoted.json()["error"]["code"] == "last_admin"
    assert "last admin" in demoted.json()["error"]["message"]
    removed = await client.delete(url, headers=bearer(me))
    assert removed.status_code == 409 and removed.json()["error"]["code"] == "last_admin"
    assert await role_of(conn, org, org.user_id) == "admin"
    # With a second admin, either can step down, but not both.
    other = await user_with_role(conn, org, "admin")
    assert (await client.patch(url, json={"role": "viewer"}, headers=bearer(me))).status_code == 200
    last = await client.delete(f"{members_url(org)}/{other.id}", headers=other.headers)
    assert last.status_code == 409


async def test_concurrent_demotions_of_the_two_admins_leave_one(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    other = await user_with_role(conn, org, "admin")
    statuses: list[int] = []

    async def demote(user_id: Any) -> None:
        response = await client.patch(
            f"{members_url(org)}/{user_id}", json={"role": "viewer"}, headers=org.headers
        )
        statuses.append(response.status_code)

    async with anyio.create_task_group() as group:
        group.start_soon(demote, org.user_id)
        group.start_soon(demote, other.id)
    assert sorted(statuses) == [200, 409]
    admins = await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE organization_id = $1 AND role = 'admin'", org.id
    )
    assert admins == 1


async def test_an_admin_of_a_cannot_touch_b(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    attacker = await user_with_role(conn, org, "admin")
    victim = await user_with_role(conn, other_org, "member")
    b_members = members_url(other_org)
    attempts = [
        ("GET", b_members, None),
        ("POST", b_members, {"email": "mole@a.test", "password": "long-enough", "role": "admin"}),
        ("PATCH", f"{b_members}/{victim.id}", {"role": "admin"}),
        ("PATCH", f"{b_members}/{attacker.id}", {"role": "admin"}),
        ("DELETE", f"{b_members}/{victim.id}", None),
        ("GET", f"/api/v2/organizations/{other_org.id}/invites", None),
        ("POST", f"/api/v2/organizations/{other_org.id}/invites", {"email": "m@a.test"}),
        # B's user through A's own path: not a member of A, so not found.
        ("PATCH", f"{members_url(org)}/{victim.id}", {"role": "viewer"}),
        ("DELETE", f"{members_url(org)}/{victim.id}", None),
        ("DELETE", f"/api/v2/api-keys/{other_org.api_key_id}", None),
        ("POST", f"/api/v2/organizations/{other_org.id}/switch", None),
    ]
    for credentials in (attacker.headers, org.headers):  # a user token and an admin API key
        for method, path, body in attempts:
            response = await client.request(method, path, json=body, headers=credentials)
            assert response.status_code in (403, 404), (method, path, response.text)
            assert other_org.email not in response.text and victim.email not in response.text
    # Nothing changed in B, and A's key list shows none of B's keys.
    assert await role_of(conn, other_org, victim.id) == "member"
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM memberships WHERE organization_id = $1", other_org.id
        )
        == 2
    )
    assert (
        await conn.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", other_org.api_key_id)
        is None
    )
    keys = (await client.get("/api/v2/api-keys", headers=attacker.headers)).json()["api_keys"]
    assert [k["id"] for k in keys] == [str(org.api_key_id)]
    orgs = (await client.get("/api/v2/organizations", headers=attacker.headers)).json()
    assert [o["id"] for o in orgs["organizations"]] == [str(org.id)]


async def test_server_admin_creates_organizations_and_switches_between_them(
    client: Client, org: Org, conn: asyncpg.Connection
) -> None:
    plain_admin = await user_with_role(conn, org, "admin")
    refused = await client.post(
        "/api/v2/organizations", json={"name": "Nope"}, headers=plain_admin.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["details"] == {"required_role": "server_admin"}
    root = await make_server_admin(conn, org)
    created = await client.post(
        "/api/v2/organizations", json={"name": "Initech"}, headers=root.headers
    )
    assert created.status_code == 201, created.text
    initech = created.json()
    assert initech["role"] == "admin" and initech["current"] is False
    listed = (await client.get("/api/v2/organizations", headers=root.headers)).json()
    assert [(o["name"], o["role"], o["current"]) for o in listed["organizations"]] == [
        ("Acme", "admin", True),
        ("Initech", "admin", False),
    ]
    switched = await client.post(
        f"/api/v2/organizations/{initech['id']}/switch", headers=root.headers
    )
    assert switched.status_code == 200, switched.text
    body = switched.json()
    assert body["organization"]["id"] == initech["id"] and body["organization"]["current"]
    me_response = await client.get("/api/v2/me", headers=bearer(body["access_token"]))
    assert me_response.status_code == 200, me_response.text
    me = me_response.json()
    assert me["organization"]["name"] == "Initech" and me["server_admin"] is True
    # The new token sees Initech's (empty) world, the old one still Acme's.
    keys = await client.get("/api/v2/api-keys", headers=bearer(body["access_token"]))
    assert keys.json()["api_keys"] == []
    old = (await client.get("/api/v2/me", headers=root.headers)).json()
    assert old["organization"]["id"] == str(org.id)
    # An API key cannot switch, even into its own organization.
    by_key = await client.post(f"/api/v2/organizations/{org.id}/switch", headers=org.headers)
    assert by_key.status_code == 403


async def test_login_picks_the_organization(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, 'viewer')",
        other_org.id,
        org.user_id,
    )
    for wanted, expected in [(None, org), ("Globex", other_org), (str(other_org.id), other_org)]:
        verifier, challenge = pkce()
        extra = {} if wanted is None else {"organization": wanted}
        code = await log_in(client, org, challenge, **extra)
        tokens = (await exchange(client, code, verifier)).json()
        me = (await client.get("/api/v2/me", headers=bearer(tokens["access_token"]))).json()
        assert me["organization"]["id"] == str(expected.id), wanted
    # Not a member: the form says so, and no code is issued.
    stranger = await conn.fetchval(
        "INSERT INTO organizations (name) VALUES ('Umbrella') RETURNING id"
    )
    for wanted in ("Umbrella", str(stranger), "No such org"):
        _, challenge = pkce()
        page = await client.get(
            "/oauth/authorize",
            params={
                "response_type": "code",
                "client_id": "levered-cli",
                "redirect_uri": "http://127.0.0.1:9/cb",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "organization": wanted,
            },
        )
        assert f'value="{wanted}"' in page.text
        refused = await client.post(
            "/oauth/authorize",
            data={
                "response_type": "code",
                "client_id": "levered-cli",
                "redirect_uri": "http://127.0.0.1:9/cb",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "email": org.email,
                "password": org.password,
                "organization": wanted,
            },
        )
        assert refused.status_code == 401 and "not a member" in refused.text
        assert "location" not in refused.headers


async def test_invite_creates_an_account_once(client: Client, org: Org) -> None:
    invited = await client.post(
        f"/api/v2/organizations/{org.id}/invites",
        json={"email": "new@person.test", "role": "member"},
        headers=org.headers,
    )
    assert invited.status_code == 201, invited.text
    token = invited.json()["token"]
    assert token.startswith("lvinv_")
    short = await client.post("/api/v2/invites/accept", json={"token": token, "password": "x"})
    assert short.status_code == 400 and "$.password" in short.text
    accepted = await client.post(
        "/api/v2/invites/accept", json={"token": token, "password": "chosen-pass", "name": "N"}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["created_account"] is True and accepted.json()["role"] == "member"
    again = await client.post(
        "/api/v2/invites/accept", json={"token": token, "password": "other-pass"}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "invite_used"
    listed = await client.get(f"/api/v2/organizations/{org.id}/invites", headers=org.headers)
    (invite,) = listed.json()["invites"]
    assert invite["accepted_at"] is not None and "token" not in invite
    unknown = await client.post(
        "/api/v2/invites/accept", json={"token": "lvinv_nope", "password": "chosen-pass"}
    )
    assert unknown.status_code == 404


async def test_an_invite_never_resets_an_existing_accounts_password(
    client: Client, org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    """An admin of A cannot take over B's admin by adding or inviting their email."""
    taken = await client.post(
        members_url(org),
        json={"email": other_org.email, "password": "attacker-pass", "role": "admin"},
        headers=org.headers,
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "account_exists"
    invited = await client.post(
        f"/api/v2/organizations/{org.id}/invites",
        json={"email": other_org.email, "role": "viewer"},
        headers=org.headers,
    )
    token = invited.json()["token"]
    hijack = await client.post(
        "/api/v2/invites/accept", json={"token": token, "password": "attacker-pass"}
    )
    assert hijack.status_code == 401
    stored = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", other_org.user_id)
    assert verify_password(stored, other_org.password)
    assert not verify_password(stored, "attacker-pass")
    # The invitee accepts with their own password: one account, two organizations.
    accepted = await client.post(
        "/api/v2/invites/accept", json={"token": token, "password": other_org.password}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["created_account"] is False
    assert await role_of(conn, org, other_org.user_id) == "viewer"
    assert await role_of(conn, other_org, other_org.user_id) == "admin"
