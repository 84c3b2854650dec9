"""``levered serve``: ask for a variant the way an application would."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from cyclopts import Parameter

from cli.console import EXIT_USAGE, fail
from cli.flags import ApiUrlFlag, JsonFlag
from cli.output import emit_json, emit_table
from cli.session import call


def serve(
    optimization_id: str,
    *,
    anonymous_id: Annotated[
        str | None, Parameter(help="The user's anonymous ID; a random one when omitted.")
    ] = None,
    context: Annotated[
        str | None, Parameter(help='JSON object of context values, e.g. \'{"country": "US"}\'.')
    ] = None,
    dry_run: Annotated[bool, Parameter(negative="", help="Decide, record nothing.")] = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Return the selected variant for the given user and context."""
    body: dict[str, Any] = {"dry_run": dry_run}
    if anonymous_id is not None:
        body["anonymous_id"] = anonymous_id
    if context is not None:
        try:
            body["context"] = msgspec.json.decode(context)
        except msgspec.DecodeError as exc:
            fail(f"--context is not valid JSON: {exc}", EXIT_USAGE)
        if not isinstance(body["context"], dict):
            fail("--context must be a JSON object", EXIT_USAGE)
    served = call(
        lambda api: api.post(f"/api/v2/optimizations/{optimization_id}/serve", body),
        url_flag=api_url_flag,
        authenticated=None,
    )
    if json:
        emit_json(served)
        return
    rows: list[list[Any]] = [[f"variant: {k}", v] for k, v in served["variant"].items()]
    rows += [
        ["variant_number", served["variant_number"]],
        ["variant_key", served["variant_key"]],
        ["holdout", served["holdout"]],
        ["propensity", served.get("propensity")],
        ["model_version", served.get("model_version")],
        ["anonymous_id", served["anonymous_id"]],
        ["decision_id", served["decision_id"]],
    ]
    emit_table(["field", "value"], rows)
