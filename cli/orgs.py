"""``levered orgs list|create|switch|current``: the organizations you belong to.

A login acts for one organization at a time. ``switch`` asks the server for a new token pair
acting for another organization you are a member of, stores it in place of the current
session, and revokes the old session's refresh token.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.console import EXIT_AUTH, EXIT_NOT_FOUND, fail, notice
from cli.flags import ApiUrlFlag, JsonFlag
from cli.output import emit_json, emit_table
from cli.session import CLIENT_ID, api_url, call, token_from_response
from cli.store import load_tokens, save_token

app = App(name="orgs", help="Organizations you belong to: list, create, switch.")


def _table(organizations: list[dict[str, Any]]) -> None:
    emit_table(
        ["current", "id", "name", "role"],
        [
            ["*" if o["current"] else "", o["id"], o["name"], o.get("role") or "-"]
            for o in organizations
        ],
    )


@app.command(name="list")
def list_(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """List your organizations and your role in each (* marks the current one)."""
    body = call(lambda api: api.get("/api/v2/organizations"), url_flag=api_url_flag)
    if json:
        emit_json(body)
        return
    _table(body["organizations"])


@app.command
def create(
    name: Annotated[str, Parameter(help="The new organization's name.")],
    *,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Create an organization (server administrators); you become its admin."""
    body = call(
        lambda api: api.post("/api/v2/organizations", {"name": name}), url_flag=api_url_flag
    )
    if json:
        emit_json(body)
        return
    _table([body])
    notice(f"created {body['name']}; `levered orgs switch {body['id']}` to act for it")


def _resolve(organizations: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """An organization by id, else by (case-insensitive) name; ambiguity is an error."""
    by_id = [o for o in organizations if o["id"] == wanted]
    matches = by_id or [o for o in organizations if o["name"].lower() == wanted.lower()]
    if len(matches) > 1:
        fail(f"several of your organizations are named {wanted!r}: give its id", EXIT_NOT_FOUND)
    if not matches:
        names = ", ".join(o["name"] for o in organizations) or "none"
        fail(f"you are not a member of an organization {wanted!r} (yours: {names})", EXIT_NOT_FOUND)
    return matches[0]


@app.command
def switch(
    organization: Annotated[str, Parameter(help="Organization id or name.")],
    *,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Act for another of your organizations from now on (re-issues your session's tokens)."""
    url = api_url(api_url_flag)
    stored = load_tokens().get(url)
    if os.environ.get("LEVERED_API_KEY") or stored is None or stored.api_key:
        fail(
            "switching needs a user session (`levered login`): an API key belongs to one "
            "organization",
            EXIT_AUTH,
        )

    async def run(api: Any) -> dict[str, Any]:
        listed = await api.get("/api/v2/organizations")
        target = _resolve(listed["organizations"], organization)
        switched: dict[str, Any] = await api.post(f"/api/v2/organizations/{target['id']}/switch")
        return switched

    body = call(run, url_flag=url)
    save_token(url, token_from_response(body))
    if stored.refresh_token:  # the previous session is done with: do not leave it usable
        try:
            call(
                lambda api: api.request(
                    "POST",
                    "/oauth/revoke",
                    data={"token": stored.refresh_token or "", "client_id": CLIENT_ID},
                ),
                url_flag=url,
                authenticated=False,
            )
        except Exception as exc:  # the new session is stored either way
            notice(f"warning: could not revoke the previous session ({exc})")
    org = body["organization"]
    if json:
        emit_json({"organization": org, "meta": body["meta"]})
        return
    notice(f"now acting for {org['name']} ({org['id']}) as {org['role']}")


@app.command
def current(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """The organization your credentials act for, and your role in it."""
    me = call(lambda api: api.get("/api/v2/me"), url_flag=api_url_flag)
    org = me["organization"]
    if json:
        emit_json({"organization": org, "role": me.get("role"), "meta": me["meta"]})
        return
    emit_table(["id", "name", "role"], [[org["id"], org["name"], me.get("role") or "-"]])
