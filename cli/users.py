"""``levered users list|add|invite|role|remove|accept``: members of the current organization.

Every command but ``accept`` acts on the organization your credentials act for (``levered orgs
current``) and needs its ``admin`` role. A USER argument is an email or a user id.
"""

from __future__ import annotations

import getpass
import secrets
import sys
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter

from cli.console import EXIT_NOT_FOUND, EXIT_USAGE, confirm, fail, notice
from cli.flags import ApiUrlFlag, JsonFlag, YesFlag
from cli.output import emit_json, emit_table
from cli.session import api_url, call
from levered.client.api import LeveredAPI

app = App(name="users", help="Members of the current organization and their roles.")

Role = Literal["admin", "member", "viewer"]
RoleFlag = Annotated[Role, Parameter(help="admin, member or viewer (docs/teams.md).")]
PasswordStdin = Annotated[
    bool, Parameter(name="--password-stdin", negative="", help="Read the password from stdin.")
]


async def _members_url(api: LeveredAPI) -> str:
    me = await api.get("/api/v2/me")
    return f"/api/v2/organizations/{me['organization']['id']}/members"


def _rows(members: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [m["user_id"], m["email"], m["name"], m["role"], m["created_at"], m["updated_at"]]
        for m in members
    ]


HEADERS = ["user_id", "email", "name", "role", "joined", "updated"]


@app.command(name="list")
def list_(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """List the organization's members and their roles."""

    async def run(api: LeveredAPI) -> dict[str, Any]:
        return await api.get(await _members_url(api))

    body = call(run, url_flag=api_url_flag)
    if json:
        emit_json(body)
        return
    emit_table(HEADERS, _rows(body["members"]))


def _password(from_stdin: bool) -> str | None:
    if not from_stdin:
        return None
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        fail("--password-stdin: nothing on stdin", EXIT_USAGE)
    return password


@app.command
def add(
    email: str,
    *,
    role: RoleFlag = "member",
    name: Annotated[str, Parameter(help="Display name.")] = "",
    password_stdin: PasswordStdin = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Create an account with an initial password and add it (generated and shown once unless
    --password-stdin). An email that already has an account is refused (exit 5): invite it."""
    given = _password(password_stdin)
    password = given or secrets.token_urlsafe(12)
    body = {"email": email, "password": password, "role": role, "name": name}

    async def run(api: LeveredAPI) -> dict[str, Any]:
        return await api.post(await _members_url(api), body)

    member = call(run, url_flag=api_url_flag)
    if json:
        emit_json(member | ({} if given else {"initial_password": password}))
        return
    emit_table(HEADERS, _rows([member]))
    if not given:
        notice(f"initial password (shown once; hand it over privately): {password}")


@app.command
def invite(
    email: str,
    *,
    role: RoleFlag = "member",
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Invite an email: prints a one-time token (valid 7 days) the invitee accepts with
    `levered users accept TOKEN`, setting their password (or giving their existing one)."""

    async def run(api: LeveredAPI) -> dict[str, Any]:
        url = (await _members_url(api)).removesuffix("/members") + "/invites"
        return await api.post(url, {"email": email, "role": role})

    created = call(run, url_flag=api_url_flag)
    if json:
        emit_json(created)
        return
    emit_table(
        ["id", "email", "role", "expires_at", "token"],
        [
            [
                created["id"],
                created["email"],
                created["role"],
                created["expires_at"],
                created["token"],
            ]
        ],
    )
    notice(
        "Send the invitee this command (the token is not shown again):\n"
        f"  levered users accept {created['token']} --api-url {api_url(api_url_flag)}"
    )


async def _user_id(api: LeveredAPI, url: str, user: str) -> str:
    members = (await api.get(url))["members"]
    for member in members:
        if user in (member["user_id"], member["email"]) or member["email"].lower() == user.lower():
            return str(member["user_id"])
    fail(f"no member {user!r} in this organization (see `levered users list`)", EXIT_NOT_FOUND)


@app.command
def role(
    user: Annotated[str, Parameter(help="Email or user id.")],
    new_role: Annotated[Role, Parameter(name="ROLE", help="admin, member or viewer.")],
    *,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Change a member's role (the last admin cannot be demoted)."""

    async def run(api: LeveredAPI) -> dict[str, Any]:
        url = await _members_url(api)
        return await api.patch(f"{url}/{await _user_id(api, url, user)}", {"role": new_role})

    member = call(run, url_flag=api_url_flag)
    if json:
        emit_json(member)
        return
    emit_table(HEADERS, _rows([member]))


@app.command
def remove(
    user: Annotated[str, Parameter(help="Email or user id.")],
    *,
    yes: YesFlag = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Remove a member; their sessions for this organization end at once."""
    confirm(f"Remove {user} from the organization?", yes)

    async def run(api: LeveredAPI) -> dict[str, Any]:
        url = await _members_url(api)
        return await api.delete(f"{url}/{await _user_id(api, url, user)}")

    member = call(run, url_flag=api_url_flag)
    if json:
        emit_json(member)
        return
    notice(f"removed {member['email']}")


@app.command
def accept(
    token: Annotated[str, Parameter(help="The invite token (lvinv_…).")],
    *,
    name: Annotated[str, Parameter(help="Your display name (new accounts).")] = "",
    password_stdin: PasswordStdin = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Accept an invite: choose a password for a new account, or give your existing one."""
    password = _password(password_stdin)
    if password is None:
        if not sys.stdin.isatty():
            fail("no terminal to ask for the password: pass --password-stdin", EXIT_USAGE)
        password = getpass.getpass("Password (new, or your existing account's): ")
    body = {"token": token, "password": password, "name": name}
    accepted = call(
        lambda api: api.post("/api/v2/invites/accept", body),
        url_flag=api_url_flag,
        authenticated=False,
    )
    if json:
        emit_json(accepted)
        return
    notice(
        f"joined as {accepted['role']} ({accepted['email']}); "
        "`levered login` and choose the organization to act for it"
    )
