"""``levered orgs …`` and ``levered users …`` against a real server: members added, invited,
re-roled and removed; organizations created and switched with a stored user session."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import asyncpg
import msgspec

from cli.store import StoredToken
from levered.services.tokens import digest, new_token
from tests.cli.conftest import levered
from tests.conftest import Org


def _keyed(env: dict[str, str], org: Org) -> dict[str, str]:
    return env | {"LEVERED_API_KEY": org.api_key}


async def test_users_add_list_role_remove_invite_accept(cli_env: dict[str, str], org: Org) -> None:
    env = _keyed(cli_env, org)
    added = await levered("users", "add", "bo@example.test", "--role", "viewer", "--json", env=env)
    assert added.code == 0, added.stderr
    assert added.json()["role"] == "viewer" and len(added.json()["initial_password"]) >= 8
    listed = await levered("users", "list", "--json", env=env)
    roles = {m["email"]: m["role"] for m in listed.json()["members"]}
    assert roles == {org.email: "admin", "bo@example.test": "viewer"}
    table = await levered("users", "list", env=env)
    assert "bo@example.test" in table.stdout and "viewer" in table.stdout

    changed = await levered("users", "role", "bo@example.test", "member", "--json", env=env)
    assert changed.code == 0 and changed.json()["role"] == "member", changed.stderr
    bad = await levered("users", "role", "bo@example.test", "owner", env=env)
    assert bad.code == 2
    last = await levered("users", "role", org.email, "viewer", "--json", env=env)
    assert last.code == 5 and last.json()["error"]["code"] == "last_admin"
    unknown = await levered("users", "role", "nobody@example.test", "viewer", env=env)
    assert unknown.code == 4 and "no member" in unknown.stderr

    refused = await levered("users", "remove", "bo@example.test", env=env)
    assert refused.code == 2 and "-y" in refused.stderr  # no terminal, no -y: nothing done
    still = await levered("users", "list", "--json", env=env)
    assert len(still.json()["members"]) == 2
    removed = await levered("users", "remove", "bo@example.test", "-y", "--json", env=env)
    assert removed.code == 0 and removed.json()["email"] == "bo@example.test", removed.stderr

    invited = await levered("users", "invite", "cy@example.test", "--role", "viewer", env=env)
    assert invited.code == 0, invited.stderr
    token = invited.stdout.split()[-1]
    assert token.startswith("lvinv_") and "levered users accept" in invited.stderr
    accepted = await levered(
        "users", "accept", token, "--password-stdin", "--json", env=cli_env, stdin="cy-password\n"
    )
    assert accepted.code == 0, accepted.stderr
    assert accepted.json()["created_account"] is True and accepted.json()["role"] == "viewer"
    reused = await levered(
        "users", "accept", token, "--password-stdin", env=cli_env, stdin="cy-password\n"
    )
    assert reused.code == 5


async def _session(conn: asyncpg.Connection, org: Org, config_dir: Path, url: str) -> str:
    """A stored login of the org's user, as `levered login` leaves it; returns its refresh."""
    access, refresh = new_token("lvat"), new_token("lvrt")
    family = uuid.uuid4()
    for token, kind in ((access, "access"), (refresh, "refresh")):
        await conn.execute(
            "INSERT INTO oauth_tokens (token_hash, kind, family_id, user_id, organization_id, "
            "client_id, expires_at) VALUES ($1, $2, $3, $4, $5, 'levered-cli', "
            "now() + interval '1 hour')",
            digest(token),
            kind,
            family,
            org.user_id,
            org.id,
        )
    stored = {url: StoredToken(access, refresh, time.time() + 3600)}
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "credentials.json").write_bytes(msgspec.json.encode(stored))
    return refresh


async def test_orgs_create_switch_current(
    cli_env: dict[str, str], org: Org, other_org: Org, conn: asyncpg.Connection
) -> None:
    await conn.execute("UPDATE users SET is_server_admin = true WHERE id = $1", org.user_id)
    old_refresh = await _session(
        conn, org, Path(cli_env["LEVERED_CONFIG_DIR"]), cli_env["LEVERED_API_URL"]
    )
    created = await levered("orgs", "create", "Initech", "--json", env=cli_env)
    assert created.code == 0, created.stderr
    assert created.json()["role"] == "admin"
    listed = await levered("orgs", "list", "--json", env=cli_env)
    assert [(o["name"], o["current"]) for o in listed.json()["organizations"]] == [
        ("Acme", True),
        ("Initech", False),
    ]
    switched = await levered("orgs", "switch", "initech", "--json", env=cli_env)
    assert switched.code == 0, switched.stderr
    assert switched.json()["organization"]["name"] == "Initech"
    current = await levered("orgs", "current", "--json", env=cli_env)
    assert current.json()["organization"]["id"] == created.json()["id"]
    assert current.json()["role"] == "admin"
    revoked = await conn.fetchval(
        "SELECT revoked_at FROM oauth_tokens WHERE token_hash = $1", digest(old_refresh)
    )
    assert revoked is not None  # the previous session cannot be refreshed any more
    # Not a member of Globex: no switch, and the session stays where it was.
    stranger = await levered("orgs", "switch", "Globex", env=cli_env)
    assert stranger.code == 4 and "not a member" in stranger.stderr
    back = await levered("orgs", "switch", str(org.id), env=cli_env)
    assert back.code == 0 and "Acme" in back.stderr
    # An API key neither creates organizations nor switches.
    keyed = _keyed(cli_env, other_org)
    assert (await levered("orgs", "create", "X", env=keyed)).code == 3
    assert (await levered("orgs", "switch", "Acme", env=keyed)).code == 3
