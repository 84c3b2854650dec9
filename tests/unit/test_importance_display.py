"""The dashboard's factor importance text: design shares and context shares are shown as two
decompositions with their own 100 % (issue 19 item 6: "70 % + 18 % + 42 %" read as one list)."""

from __future__ import annotations

import re

from tui.screens.optimization import importance

RESULTS = {
    "factor_importance": [
        {"name": "headline", "mean": 0.70, "q1": 0.6, "q3": 0.8},
        {"name": "cta", "mean": 0.18, "q1": 0.1, "q3": 0.25},
    ],
    "interaction_importance": {"mean": 0.12, "q1": 0.08, "q3": 0.15, "pairs": []},
    "context_importance": [
        {
            "name": "device",
            "mean": 0.42,
            "q1": 0.3,
            "q3": 0.5,
            "context": {"mean": 0.30, "q1": 0.2, "q3": 0.4},
            "interaction": {"mean": 0.12, "q1": 0.1, "q3": 0.15},
        }
    ],
}


def _percents(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+\.\d)%", line)]


def test_design_shares_with_interactions_add_up_to_100() -> None:
    lines = importance(RESULTS).splitlines()
    assert "100 %" in lines[0]
    design = [_percents(line)[0] for line in lines[1:4]]
    assert [line.split()[0] for line in lines[1:4]] == ["headline", "cta", "interactions"]
    assert sum(design) == 100.0


def test_a_context_factor_is_its_own_decomposition() -> None:
    line = importance(RESULTS).splitlines()[-1]
    assert "device" in line and "its own 100 %" in line
    assert _percents(line) == [30.0, 12.0, 58.0]  # value + value × design + design alone


def test_untrained_says_so() -> None:
    assert "after the first training" in importance({"factor_importance": []})
