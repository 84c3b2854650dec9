"""How the dashboard's analysis panels write rates, changes and intervals, so a number reads
the same in every panel: bool metrics as percentages, numeric and weighted ones (a value or
an outcome weight per exposure) as numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def rate(value: float | None, reward_type: str | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2%}" if reward_type == "bool" else f"{value:.3g}"


def rate_interval(value: float | None, ci: Sequence[float] | None, reward_type: str | None) -> str:
    if value is None:
        return "-"
    if not ci:
        return rate(value, reward_type)
    return f"{rate(value, reward_type)} [{rate(ci[0], reward_type)}, {rate(ci[1], reward_type)}]"


def change(percent: float | None, ci: Sequence[float] | None = None) -> str:
    """A relative change in percent, with its interval when there is one; ``n/a`` when the
    server could not compute one (too few users or exposures, or a zero rate)."""
    if percent is None:
        return "n/a"
    if not ci:
        return f"{percent:+.1f} %"
    return f"{percent:+.1f} % [{ci[0]:+.1f}, {ci[1]:+.1f}]"


def variant_labels(results: dict[str, Any] | None, width: int = 34) -> dict[int, str]:
    """``#3 Start free / Try it free`` by variant number, for the variants the results list
    (the top ones by traffic); others are written as their number alone. Plain text: escape
    it before putting it in markup."""
    labels = {}
    for v in (results or {}).get("variants") or []:
        levels = " / ".join(map(str, (v.get("variant") or {}).values()))
        labels[v["number"]] = f"#{v['number']} {levels}"[:width]
    return labels


def label(labels: dict[int, str], number: int | None) -> str:
    if number is None:
        return "-"
    return labels.get(number, f"#{number}")
