"""``levered models list|state|train|delete``: the bandit models behind optimizations."""

from __future__ import annotations

import math
from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.console import EXIT_USAGE, confirm, fail, notice
from cli.flags import ApiUrlFlag, JsonFlag, YesFlag
from cli.output import emit_json, emit_table
from cli.session import call

app = App(name="models", help="Inspect and manage the bandit models behind optimizations.")


@app.command(name="list")
def list_(
    *,
    limit: int = 10,
    include_archived: bool = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """List models in the organization."""
    body = call(
        lambda api: api.get(
            "/api/v2/models", {"limit": limit, "include_archived": include_archived}
        ),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    emit_table(
        ["id", "optimization", "status", "version", "trained_at"],
        [
            [
                m["id"],
                m.get("optimization_name") or m.get("optimization_id"),
                m["status"],
                m.get("current_version"),
                m.get("trained_at"),
            ]
            for m in body["models"]
        ],
    )
    if not body["models"]:
        notice("no models yet: each optimization gets one when it is created")


@app.command
def state(
    model_id: str,
    *,
    context: Annotated[
        str | None, Parameter(help='Posterior for one context, e.g. \'{"device": "mobile"}\'.')
    ] = None,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Print the model state: traffic distribution and expected reward per variant."""
    body = call(
        lambda api: api.get(f"/api/v2/models/{model_id}/state", {"context": context}),
        url_flag=api_url_flag,
    )
    if json:
        emit_json(body)
        return
    if body.get("note"):
        notice(body["note"])
    notice(
        f"model {body.get('model_id', model_id)}: {body.get('status')}, version "
        f"{body.get('version') or body.get('current_version') or '-'}{_bias_note(body)}"
        f"{data_note(body.get('counts'))}"
    )
    emit_table(
        ["number", "variant", "expected_reward", "prob_best", "weight"],
        [
            [
                v["number"],
                " / ".join(map(str, (v.get("variant") or {}).values())),
                _mean(v.get("expected_reward")),
                v.get("prob_best"),
                v.get("weight"),
            ]
            for v in body.get("variants", [])
        ],
    )
    scales = body.get("prior_scales")
    if scales:
        notice(
            "prior scales learned from the data (sd on the link scale): "
            + ", ".join(f"{name} {value:g}" for name, value in scales.items())
        )


def data_note(counts: dict[str, Any] | None) -> str:
    """``; trained on <window>, data through <watermark>`` from a version's counts."""
    if not counts or not counts.get("data_through"):
        return ""
    window = counts.get("window") or {"type": "all"}
    if window.get("type") == "days":
        what = f"the last {window['days']:g} days"
    elif window.get("type") == "decay":
        what = f"all history, half-life {window['half_life_days']:g} days"
    else:
        what = "all history"
    return f"; trained on {what}, data through {counts['data_through']}"


def _mean(value: dict[str, Any] | None) -> str:
    if not value or value.get("mean") is None:
        return "-"
    return f"{value['mean']:.4f} [{value['lo']:.4f}, {value['hi']:.4f}]"


def _bias_note(body: dict[str, Any]) -> str:
    bias = body.get("bias")
    if not bias:
        return ""
    return " (bias: " + ", ".join(f"{name}={value:g}" for name, value in bias.items()) + ")"


def _bias_flag(values: list[str]) -> dict[str, float]:
    """``--bias FACTOR=NUMBER`` (repeatable) as a map; the range is the server's to check."""
    out: dict[str, float] = {}
    for raw in values:
        name, sep, number = raw.partition("=")
        name = name.strip()
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not sep or not name or not math.isfinite(value):
            fail(f"--bias expects FACTOR=NUMBER (e.g. headline=0.5), got {raw!r}", EXIT_USAGE)
        if name in out:
            fail(f"--bias names {name!r} more than once", EXIT_USAGE)
        out[name] = value
    return out


@app.command
def train(
    model_id: str,
    *,
    bias: Annotated[
        list[str] | None,
        Parameter(
            name="--bias",
            negative="",
            consume_multiple=False,
            help="Explore a design factor more: FACTOR=B with 0 ≤ B ≤ 10 widens the posterior "
            "of its effects (sd × (1 + B)); repeat per factor. Kept by later trainings until "
            "changed.",
        ),
    ] = None,
    clear_bias: Annotated[
        bool, Parameter(name="--clear-bias", negative="", help="Train without any bias.")
    ] = False,
    rebuild: Annotated[
        bool,
        Parameter(
            name="--rebuild",
            negative="",
            help="Rebuild the stored observation cells from the raw events first (normally "
            "only data new since the last pass is attributed).",
        ),
    ] = False,
    api_url_flag: ApiUrlFlag = None,
    json: JsonFlag = False,
) -> None:
    """Train now: a new immutable model version from the matured data."""
    if bias and clear_bias:
        fail("--bias and --clear-bias exclude each other", EXIT_USAGE)
    payload: dict[str, Any] | None = None
    if bias:
        payload = {"bias": _bias_flag(bias)}
    elif clear_bias:
        payload = {"bias": {}}
    path = f"/api/v2/models/{model_id}/train" + ("?rebuild=true" if rebuild else "")
    body = call(lambda api: api.post(path, payload), url_flag=api_url_flag)
    if json:
        emit_json(body)
    else:
        notice(
            f"trained version {body.get('version') or body.get('current_version')}"
            f"{_bias_note(body)}{data_note(body.get('counts'))}"
        )


@app.command
def delete(
    model_id: str, *, yes: YesFlag = False, api_url_flag: ApiUrlFlag = None, json: JsonFlag = False
) -> None:
    """Delete a model (soft delete). Prompts unless -y."""
    confirm(f"Delete model {model_id}?", yes)
    body = call(lambda api: api.delete(f"/api/v2/models/{model_id}"), url_flag=api_url_flag)
    if json:
        emit_json(body)
    else:
        notice(f"deleted model {model_id}")
