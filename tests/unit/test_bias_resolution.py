"""Which bias a training run applies (levered.services.bias): requested, inherited, cleared,
and every problem of a requested one listed with its JSON path."""

from __future__ import annotations

import pytest

from levered.bandit.variants import VariantSpace
from levered.errors import ValidationError
from levered.services.bias import resolve_bias

SPACE = VariantSpace.of(
    [{"name": "headline", "levels": ["a", "b"]}, {"name": "cta", "levels": ["go", "try"]}]
)


def test_requested_inherited_and_cleared() -> None:
    given = resolve_bias(SPACE, {"cta": 0.5}, {"headline": 2.0})
    assert given is not None
    assert (given.by_name, given.per_factor) == ({"cta": 0.5}, (0.0, 0.5))
    inherited = resolve_bias(SPACE, None, {"headline": 2.0, "gone": 1.0})  # design changed
    assert inherited is not None
    assert (inherited.by_name, inherited.per_factor) == ({"headline": 2.0}, (2.0, 0.0))
    assert resolve_bias(SPACE, {}, {"headline": 2.0}) is None
    assert resolve_bias(SPACE, None, None) is None
    assert resolve_bias(SPACE, None, {"gone": 1.0}) is None


def test_every_problem_is_listed_with_its_path() -> None:
    with pytest.raises(ValidationError) as caught:
        resolve_bias(
            SPACE, {"colour": 1.0, "headline": float("nan"), "cta": 10.000001, "x y": 1}, None
        )
    paths = [issue["path"] for issue in caught.value.details]
    assert paths == ["$.bias.colour", "$.bias.headline", "$.bias.cta", '$.bias["x y"]']
    assert caught.value.message.startswith("invalid request body at $.bias.colour: unknown")
    assert "(and 3 more)" in caught.value.message
