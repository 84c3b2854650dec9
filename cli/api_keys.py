"""``levered api-keys create|list|revoke``."""

from __future__ import annotations

from typing import Annotated

from cyclopts import App, Parameter

from cli.console import confirm, notice
from cli.flags import ApiUrlFlag, JsonFlag, YesFlag
from cli.output import emit_json, emit_table, emit_text
from cli.session import call

app = App(name="api-keys", help="Manage the organization's API keys.")


@app.command
def create(
    *,
    label: Annotated[str, Parameter(help="What the key is for.")],
    scopes: Annotated[
        str,
        Parameter(help="Comma-separated scopes: ingest, serve, read, admin (admin implies all)."),
    ] = "admin",
    key_only: Annotated[
        bool, Parameter(negative=(), help="Print only the secret, for scripts.")
    ] = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Create an API key; its secret is shown once."""
    body = {"label": label, "scopes": [s.strip() for s in scopes.split(",") if s.strip()]}
    key = call(lambda api: api.post("/api/v2/api-keys", body), url_flag=api_url_flag)
    if key_only:
        emit_text(key["secret"])
        return
    if json:
        emit_json(key)
        return
    emit_table(
        ["id", "prefix", "label", "scopes", "secret"],
        [[key["id"], key["prefix"], key["label"], ",".join(key["scopes"]), key["secret"]]],
    )
    notice("Store the secret now: it is not shown again.")


@app.command(name="list")
def list_(*, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False) -> None:
    """List API keys (never their secrets)."""
    body = call(lambda api: api.get("/api/v2/api-keys"), url_flag=api_url_flag)
    if json:
        emit_json(body)
        return
    emit_table(
        ["id", "prefix", "label", "scopes", "created_at", "last_used_at", "revoked_at"],
        [
            [
                k["id"],
                k["prefix"],
                k["label"],
                ",".join(k.get("scopes", ["admin"])),
                k["created_at"],
                k.get("last_used_at"),
                k.get("revoked_at"),
            ]
            for k in body["api_keys"]
        ],
    )


@app.command
def revoke(
    key_id: str, *, yes: YesFlag = False, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
) -> None:
    """Revoke an API key; requests using it are refused at once."""
    confirm(f"Revoke API key {key_id}?", yes)
    body = call(lambda api: api.delete(f"/api/v2/api-keys/{key_id}"), url_flag=api_url_flag)
    if json:
        emit_json(body)
    else:
        notice(f"revoked {body.get('prefix', key_id)}")
