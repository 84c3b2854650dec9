"""Weighted outcomes: the rules of a weighted metric, and how its rows are matched in SQL.

A weighted metric names two or more mutually exclusive outcomes, each a key, a weight and a
match on one of the metric's columns (``by: name`` compares ``name_col``, ``by: value``
compares ``value_col``). Its normalized reward rows (:func:`weight_sql`) carry the weight of the
outcome a row matches; rows matching none are the implicit ``failure`` outcome of weight 0 and
are dropped, exactly like an exposure without any reward row. Attribution then gives each
exposure the weight of the *highest-weight* outcome among its credited rows
(:data:`levered.db.attribution.CREDITED`, ``value_max``): one outcome per exposure, as
"mutually exclusive" says, and the reward the model learns is that weight, so the numeric
(Gaussian) model estimates the expected weighted reward of each variant (docs/warehouse.md).

Weights must be distinct: the highest-weight rule needs an order, and the outcome mix in the
cells is read back from an exposure's weight (two outcomes of one weight would be the same
reward to the model anyway; merge them). The service checks the rules here, before the dry
run, and names the field of each problem; the Structs check shapes and bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from levered.errors import ValidationError
from levered.schemas.metrics import FAILURE, MetricCreate, NameMatch, Outcome

Problem = dict[str, Any]


def check(data: MetricCreate) -> None:
    """The weighted-outcome rules of a create body (module doc); 400 listing every problem."""
    problems = _problems(data)
    if problems:
        raise ValidationError(
            "; ".join(f"{p['path']}: {p['message']}" for p in problems), details=problems
        )


def _problems(data: MetricCreate) -> list[Problem]:
    outcomes = data.outcomes
    if outcomes is None:
        out: list[Problem] = []
        if data.reward_type == "weighted":
            out.append(_at("$.outcomes", "required when reward_type is weighted"))
        if data.name_col is not None:
            out.append(_at("$.name_col", "only a weighted metric (with outcomes) uses name_col"))
        return out
    out = []
    if data.reward_type not in (None, "weighted"):
        out.append(
            _at(
                "$.reward_type",
                f"a metric with outcomes is weighted, not {data.reward_type}; omit reward_type",
            )
        )
    keys: dict[str, int] = {}
    weights: dict[float, int] = {}
    matches: dict[tuple[str, object], int] = {}
    for i, outcome in enumerate(outcomes):
        at = f"$.outcomes[{i}]"
        if outcome.key.lower() == FAILURE:
            out.append(
                _at(
                    f"{at}.key",
                    f"{outcome.key!r} is reserved: rows matching no outcome are {FAILURE!r}",
                )
            )
        elif outcome.key in keys:
            out.append(_at(f"{at}.key", f"{outcome.key!r} repeats $.outcomes[{keys[outcome.key]}]"))
        keys.setdefault(outcome.key, i)
        if outcome.weight in weights:
            out.append(
                _at(
                    f"{at}.weight",
                    f"{outcome.weight:g} repeats the weight of "
                    f"$.outcomes[{weights[outcome.weight]}]; outcomes need distinct weights "
                    "(equal weights are the same reward: merge them)",
                )
            )
        weights.setdefault(outcome.weight, i)
        match = (_by(outcome), outcome.match.value)
        if match in matches:
            out.append(
                _at(
                    f"{at}.match",
                    f"matches the same rows as $.outcomes[{matches[match]}]; outcomes are "
                    "mutually exclusive",
                )
            )
        matches.setdefault(match, i)
    for by, field in (("name", "name_col"), ("value", "value_col")):
        users = [i for i, o in enumerate(outcomes) if _by(o) == by]
        if users and getattr(data, field) is None:
            named = ", ".join(f"$.outcomes[{i}]" for i in users)
            out.append(_at(f"$.{field}", f"required: {named} match by {by}"))
    return out


def _at(path: str, message: str) -> Problem:
    return {"path": path, "message": message}


def _by(outcome: Outcome) -> str:
    return "name" if isinstance(outcome.match, NameMatch) else "value"


def float_sql(x: float) -> str:
    """A float as an exact SQL constant (``repr`` round-trips a double)."""
    return f"'{float(x)!r}'::double precision"


def text_sql(text: str) -> str:
    """Text as an escape-string constant: safe whatever ``standard_conforming_strings`` is
    (the schema keeps NUL out)."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def weight_sql(outcomes: Sequence[Outcome], name: str | None, value: str | None) -> str:
    """SQL: the weight of the outcome a row matches, NULL when it matches none. ``name`` and
    ``value`` are the row's name and number expressions (None: the metric has no such column,
    which :func:`check` ruled out for the outcomes that use it)."""
    whens = []
    for outcome in outcomes:
        if isinstance(outcome.match, NameMatch):
            assert name is not None
            test = f"{name} = {text_sql(outcome.match.value)}"
        else:
            assert value is not None
            test = f"{value} = {float_sql(outcome.match.value)}"
        whens.append(f"WHEN {test} THEN {float_sql(outcome.weight)}")
    return f"(CASE {' '.join(whens)} END)"
