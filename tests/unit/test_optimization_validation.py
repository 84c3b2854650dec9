"""Validation of an optimization's configuration, without a database.

Two layers: the wire Structs (types and single-field ranges, reported by msgspec with a JSON
path) and :func:`validate_design` (rules spanning fields). Each rule names the offending path.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from levered.errors import ValidationError
from levered.schemas.optimizations import (
    ContextFactor,
    DesignFactor,
    ModelType,
    OptimizationCreate,
    OptimizationUpdate,
)
from levered.services.design_rules import (
    CMAB_MAX_DESIGN_LEVELS,
    CMAB_MAX_VARIANTS,
    MAB_MAX_VARIANTS,
    MAX_CONTEXT_FACTORS,
    MAX_EXCLUSION_RULES,
    member,
    validate_design,
)

HEADLINES = ["Ship faster", "Build better", "Scale up", "Go live today", "Start free"]
CTAS = ["Get started", "Try it free"]
HERO: list[dict[str, Any]] = [
    {"name": "headline", "levels": HEADLINES},
    {"name": "cta_text", "levels": CTAS},
]
METRIC = "8a3b12c4-5678-4def-abcd-1234567890ab"


def check(
    design: list[dict[str, Any]],
    context: list[dict[str, Any]] | None = None,
    excluded: list[dict[str, Any]] | None = None,
    model_type: ModelType = "cmab",
) -> Any:
    return validate_design(
        msgspec.convert(design, list[DesignFactor]),
        msgspec.convert(context or [], list[ContextFactor]),
        excluded or [],
        model_type,
    )


def refused(
    design: list[dict[str, Any]],
    context: list[dict[str, Any]] | None = None,
    excluded: list[dict[str, Any]] | None = None,
    model_type: ModelType = "cmab",
) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as caught:
        check(design, context, excluded, model_type)
    details: list[dict[str, str]] = caught.value.details
    assert caught.value.status == 400
    assert details and details[0]["path"] in caught.value.message
    return details


def paths(details: list[dict[str, str]]) -> list[str]:
    return [d["path"] for d in details]


# --- the valid case -------------------------------------------------------------------------


def test_landing_page_hero_is_valid() -> None:
    space, mask = check(HERO, [{"name": "country"}, {"name": "device_type"}])
    assert space.size == 10 and int(mask.sum()) == 10
    assert space.variant(1) == {"headline": "Ship faster", "cta_text": "Get started"}


def test_bool_factor_either_order() -> None:
    for levels in ([True, False], [False, True]):
        space, _ = check([{"name": "badge", "dtype": "bool", "levels": levels}, HERO[1]])
        assert space.variant(1)["badge"] is levels[0]


# --- factors --------------------------------------------------------------------------------


def test_at_least_one_design_factor() -> None:
    details = refused([])
    assert paths(details) == ["$.design_factors"]
    assert "at least one design factor" in details[0]["message"]


def test_factor_names_unique_within_design() -> None:
    details = refused([HERO[0], {"name": "headline", "levels": ["a", "b"]}])
    assert paths(details) == ["$.design_factors[1].name"]
    assert "duplicate factor name" in details[0]["message"]
    assert "$.design_factors[0].name" in details[0]["message"]


def test_factor_names_unique_across_design_and_context() -> None:
    details = refused(HERO, [{"name": "country"}, {"name": "cta_text"}])
    assert paths(details) == ["$.context_factors[1].name"]


def test_at_least_two_distinct_levels() -> None:
    details = refused([HERO[0], {"name": "cta_text", "levels": ["Only one"]}])
    assert paths(details) == ["$.design_factors[1].levels"]
    assert "at least two distinct levels" in details[0]["message"]


def test_duplicate_levels() -> None:
    details = refused([{"name": "cta_text", "levels": ["Go", "Stop", "Go"]}])
    assert paths(details) == ["$.design_factors[0].levels[2]"]
    assert "duplicate level" in details[0]["message"]


def test_str_levels_must_be_strings() -> None:
    details = refused([{"name": "cta_text", "levels": ["Go", True]}])
    assert paths(details) == ["$.design_factors[0].levels[1]"]
    assert "must be strings" in details[0]["message"]


@pytest.mark.parametrize("level", ["", "x" * 201])
def test_level_length(level: str) -> None:
    details = refused([{"name": "cta_text", "levels": ["Go", level]}])
    assert paths(details) == ["$.design_factors[0].levels[1]"]
    assert "1–200 characters" in details[0]["message"]


def test_level_of_200_characters_is_fine() -> None:
    check([{"name": "cta_text", "levels": ["Go", "x" * 200]}])


@pytest.mark.parametrize(
    "levels", [[True, True], [True], ["true", "false"], [True, False, True], [True, "no"]]
)
def test_bool_levels_are_exactly_true_and_false(levels: list[Any]) -> None:
    details = refused([{"name": "badge", "dtype": "bool", "levels": levels}])
    assert paths(details) == ["$.design_factors[0].levels"]
    assert "[true, false]" in details[0]["message"]


def test_all_factor_problems_are_reported_together() -> None:
    details = refused([{"name": "a", "levels": ["x"]}, {"name": "a", "levels": ["y", "y"]}])
    assert paths(details) == [
        "$.design_factors[0].levels",
        "$.design_factors[1].name",
        "$.design_factors[1].levels[1]",
    ]


def test_context_levels_optional_but_checked() -> None:
    check(HERO, [{"name": "country", "levels": ["US"]}, {"name": "mobile", "dtype": "bool"}])
    details = refused(HERO, [{"name": "country", "levels": []}])
    assert paths(details) == ["$.context_factors[0].levels"]
    details = refused(HERO, [{"name": "country", "levels": ["US", "US"]}])
    assert paths(details) == ["$.context_factors[0].levels[1]"]
    details = refused(HERO, [{"name": "mobile", "dtype": "bool", "levels": [True]}])
    assert paths(details) == ["$.context_factors[0].levels"]


def test_context_factor_count_limit() -> None:
    context = [{"name": f"c{i}"} for i in range(MAX_CONTEXT_FACTORS + 1)]
    details = refused(HERO, context)
    assert paths(details) == ["$.context_factors"]
    assert f"at most {MAX_CONTEXT_FACTORS}" in details[0]["message"]


# --- variant-space limits -------------------------------------------------------------------


def grid(*sizes: int) -> list[dict[str, Any]]:
    return [{"name": f"f{i}", "levels": [f"l{j}" for j in range(n)]} for i, n in enumerate(sizes)]


def test_mab_limit_names_size_and_limit() -> None:
    check(grid(10, 10, 10), model_type="mab")  # exactly 1,000
    details = refused(grid(10, 10, 11), model_type="mab")
    assert paths(details) == ["$.design_factors"]
    message = details[0]["message"]
    assert "1,100 variants" in message and "10 × 10 × 11" in message
    assert f"at most {MAB_MAX_VARIANTS:,}" in message and "'mab'" in message


def test_cmab_variant_limit() -> None:
    check(grid(10, 10, 10, 10, 10))  # exactly 100,000
    details = refused(grid(10, 10, 10, 10, 11))
    message = details[0]["message"]
    assert "110,000 variants" in message and f"at most {CMAB_MAX_VARIANTS:,}" in message


def test_cmab_total_level_limit() -> None:
    check(grid(100, 100))  # 200 levels, 10,000 variants
    details = refused(grid(100, 99, 2))
    message = details[0]["message"]
    assert "201 levels" in message and f"at most {CMAB_MAX_DESIGN_LEVELS}" in message


def test_huge_space_refused_before_any_allocation() -> None:
    details = refused(grid(*([2] * 60)))  # 2**60 variants: must not build a mask
    assert "variants" in details[0]["message"]


# --- excluded combinations ------------------------------------------------------------------


def test_exclusions_reduce_the_count() -> None:
    space, mask = check(
        HERO,
        excluded=[{"headline": "Scale up", "cta_text": "Try it free"}, {"headline": "Start free"}],
    )
    assert int(mask.sum()) == 10 - 1 - 2
    assert not mask[space.number({"headline": "Scale up", "cta_text": "Try it free"}) - 1]


def test_exclusion_key_must_be_a_design_factor() -> None:
    details = refused(HERO, [{"name": "country"}], [{"colour": "red"}, {"country": "US"}])
    assert paths(details) == [
        "$.excluded_combinations[0].colour",
        "$.excluded_combinations[1].country",
    ]
    assert "not a design factor" in details[0]["message"]
    assert "context factor" in details[1]["message"]


def test_exclusion_value_must_be_a_level() -> None:
    details = refused(HERO, excluded=[{"headline": "Nope"}])
    assert paths(details) == ["$.excluded_combinations[0].headline"]
    assert '"Nope" is not a level of "headline"' in details[0]["message"]


def test_exclusion_bool_is_not_a_string() -> None:
    design: list[dict[str, Any]] = [
        {"name": "badge", "dtype": "bool", "levels": [True, False]},
        HERO[1],
    ]
    check(design, excluded=[{"badge": False, "cta_text": "Try it free"}])
    details = refused(design, excluded=[{"badge": "false"}])
    assert paths(details) == ["$.excluded_combinations[0].badge"]


def test_exclusion_path_quotes_odd_names() -> None:
    assert member("$.x", "cta text") == '$.x["cta text"]'
    details = refused(HERO, excluded=[{"cta text": "Go"}])
    assert paths(details) == ['$.excluded_combinations[0]["cta text"]']


def test_empty_exclusion_rule() -> None:
    details = refused(HERO, excluded=[{}])
    assert paths(details) == ["$.excluded_combinations[0]"]


def test_baseline_cannot_be_excluded() -> None:
    details = refused(HERO, excluded=[{"headline": "Scale up"}, {"cta_text": "Get started"}])
    assert paths(details) == ["$.excluded_combinations[1]"]
    assert "baseline" in details[0]["message"]


def test_at_least_two_variants_remain() -> None:
    design = [{"name": "a", "levels": ["x", "y"]}, {"name": "b", "levels": ["p", "q"]}]
    check(design, excluded=[{"a": "y"}])  # two remain
    details = refused(design, excluded=[{"a": "y"}, {"b": "q"}])
    assert paths(details) == ["$.excluded_combinations"]
    assert "leave 1 of 4 variants" in details[0]["message"]


def test_exclusion_rule_count_limit() -> None:
    details = refused(HERO, excluded=[{"headline": "Scale up"}] * (MAX_EXCLUSION_RULES + 1))
    assert paths(details) == ["$.excluded_combinations"]


# --- wire Structs ---------------------------------------------------------------------------


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Landing Page Hero",
        "design_factors": HERO,
        "reward_metric_id": METRIC,
        **overrides,
    }


def decode_error(payload: dict[str, Any], kind: type[Any] = OptimizationCreate) -> str:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(msgspec.json.encode(payload), type=kind)
    return str(caught.value)


def test_defaults() -> None:
    created = msgspec.json.decode(msgspec.json.encode(body()), type=OptimizationCreate)
    assert created.model_type == "cmab" and created.holdout_percentage == 10
    assert created.attribution.type == "last_touch"
    assert created.attribution.conversion_window_hours == 24
    assert created.sticky is True and created.draft is False
    assert created.context_factors == [] and created.excluded_combinations == []
    assert created.design_factors[0].dtype == "str"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        (body(name=""), "$.name"),
        (body(name="x" * 201), "$.name"),
        (body(holdout_percentage=50.5), "$.holdout_percentage"),
        (body(holdout_percentage=-1), "$.holdout_percentage"),
        (body(model_type="bandit"), "$.model_type"),
        (body(reward_metric_id="not-a-uuid"), "$.reward_metric_id"),
        (body(attribution={"type": "first_touch"}), "$.attribution.type"),
        (body(attribution={"conversion_window_hours": 0}), "$.attribution.conversion_window_hours"),
        (
            body(attribution={"conversion_window_hours": 0.01}),
            "$.attribution.conversion_window_hours",
        ),
        (
            body(attribution={"conversion_window_hours": 721}),
            "$.attribution.conversion_window_hours",
        ),
        (
            body(design_factors=[{"name": "h", "dtype": "int", "levels": ["a", "b"]}]),
            "$.design_factors[0].dtype",
        ),
        (body(design_factors=[{"name": "", "levels": ["a", "b"]}]), "$.design_factors[0].name"),
        (body(design_factors=[{"name": "h", "levels": ["a", 3]}]), "$.design_factors[0].levels[1]"),
        (body(excluded_combinations=[{"headline": 1}]), "$.excluded_combinations[0]"),
    ],
)
def test_struct_constraints_name_the_path(payload: dict[str, Any], path: str) -> None:
    assert f"at `{path}" in decode_error(payload)


@pytest.mark.parametrize("hours", [1 / 60, 0.5, 720])
def test_conversion_window_bounds_inclusive(hours: float) -> None:
    created = msgspec.json.decode(
        msgspec.json.encode(body(attribution={"conversion_window_hours": hours})),
        type=OptimizationCreate,
    )
    assert created.attribution.conversion_window_hours == hours


def test_unknown_fields_refused() -> None:
    assert "unknown field `colour`" in decode_error(body(colour="red"))
    assert "unknown field `status`" in decode_error(body(status="live"))
    assert "unknown field `draft`" in decode_error({"draft": True}, OptimizationUpdate)


def test_update_is_all_optional() -> None:
    update = msgspec.json.decode(b"{}", type=OptimizationUpdate)
    assert all(value is msgspec.UNSET for value in msgspec.structs.astuple(update))
    assert "$.status" in decode_error({"status": "running"}, OptimizationUpdate)
    assert "$.name" in decode_error({"name": None}, OptimizationUpdate)
