"""Results broken down by one context factor (``?dimension=``, docs/analysis.md,
"Dimensions"): per value, the optimized and holdout rates, their lift, and the rate of each
variant with its 95 % interval. The unit is the exposure, as the server computes it."""

from __future__ import annotations

from typing import Any

from textual.markup import escape
from textual.widgets import Static

from tui.widgets.bars import bar
from tui.widgets.figures import change, label, rate_interval

VALUES_SHOWN = 8
VARIANTS_PER_VALUE = 5


def _value(value: Any) -> str:
    return "(not sent)" if value is None else escape(str(value))


def value_lines(
    d: dict[str, Any], labels: dict[int, str], reward_type: str | None, width: int
) -> list[str]:
    optimized, held = d.get("optimized") or {}, d.get("holdout") or {}
    head = (
        f"[b]{_value(d.get('value'))}[/b]  {d.get('exposures', 0):,} exposures  ·  lift "
        f"{change(d.get('lift_percent'), d.get('lift_ci'))}"
    )
    arms_text = (
        f"optimized {rate_interval(optimized.get('rate'), optimized.get('ci'), reward_type)} vs "
        f"holdout {rate_interval(held.get('rate'), held.get('ci'), reward_type)}"
    )
    lines = [f"{head}  ·  {arms_text}"] if width >= 120 else [head, f"    {arms_text}"]
    arms = sorted(d.get("variants") or [], key=lambda a: -a.get("exposures", 0))
    top = max((a.get("rate") or 0.0 for a in arms), default=0.0)
    name_width = 20 if width < 100 else 32
    for arm in arms[:VARIANTS_PER_VALUE]:
        name = label(labels, arm.get("number"))[:name_width]
        share = (arm.get("rate") or 0.0) / top if top > 0 else 0.0
        lines.append(
            f"    {escape(name):<{name_width}} {bar(share, 8)} "
            f"{rate_interval(arm.get('rate'), arm.get('ci'), reward_type):<26} "
            f"{arm.get('exposures', 0):>8,} exp."
        )
    if len(arms) > VARIANTS_PER_VALUE:
        lines.append(f"    … {len(arms) - VARIANTS_PER_VALUE} more variants with exposures")
    return lines


def dimensions_text(
    breakdown: dict[str, Any] | None,
    available: list[str],
    labels: dict[int, str],
    reward_type: str | None,
    width: int = 120,
) -> str:
    if not available:
        return (
            "No context factors: results can be broken down only by a context factor the "
            "optimization declares."
        )
    choices = ", ".join(map(escape, available))
    if breakdown is None:
        return f"Press d to break the results down by a context factor ({choices})."
    header = (
        f"[i]by {escape(breakdown['name'])}[/i] (d: next of {choices}, or off)  ·  "
        f"{breakdown.get('values_total', 0):,} values  ·  per exposure, 95 % CI"
    )
    values = breakdown.get("values") or []
    if not values:
        return f"{header}\nNo matured exposures yet: the breakdown fills in as windows close."
    lines = [header]
    for d in values[:VALUES_SHOWN]:
        lines += value_lines(d, labels, reward_type, width)
    if len(values) > VALUES_SHOWN:
        lines.append(f"… {breakdown.get('values_total', len(values)) - VALUES_SHOWN} more values")
    return "\n".join(lines)


class DimensionsPanel(Static):
    DEFAULT_CSS = "DimensionsPanel { height: auto; }"

    def show(
        self,
        breakdown: dict[str, Any] | None,
        available: list[str],
        labels: dict[int, str],
        reward_type: str | None,
    ) -> None:
        self.update(
            dimensions_text(breakdown, available, labels, reward_type, self.size.width or 120)
        )
