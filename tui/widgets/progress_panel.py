"""How far the optimization is from a decision (``progress`` of the report document): days
running, users per arm, how close the leader is to certain and the expected time left."""

from __future__ import annotations

import math
from typing import Any

from textual.markup import escape
from textual.widgets import Static

from tui.widgets.bars import bar
from tui.widgets.figures import label


def _days(days: float) -> str:
    return f"{days * 24:.1f} hours" if days < 1 else f"{days:.1f} days"


def decision(p: dict[str, Any]) -> str:
    if p.get("decided"):
        return "[green]decided[/green]: the leader has reached the threshold"
    days = p.get("expected_days_to_decision")
    if days is None:
        return "decision: no estimate yet"
    more = p.get("observations_to_decision")
    rate = p.get("daily_observations")
    basis = f": {more:,} more observations at {rate:,.0f}/day" if more and rate else ""
    return f"decision in ~{_days(days)}{basis}"


def arms_line(p: dict[str, Any], width: int) -> str | None:
    """Observations and prob_best of as many arms (best first) as fit on one line."""
    arms = [
        f"#{a['number']} {a.get('exposures', 0):,}"
        + (f" ({a['prob_best']:.2f})" if a.get("prob_best") is not None else "")
        for a in p.get("arms") or []
    ]
    if not arms:
        return None
    line = "observations per arm (prob_best):"
    for n, arm in enumerate(arms):
        rest = f" · … {len(arms) - n} more"
        if len(line) + len(arm) + 3 + len(rest) > width and n < len(arms) - 1:
            return line + rest
        line += f" {arm}" if n == 0 else f" · {arm}"
    return line


def progress_text(p: dict[str, Any] | None, labels: dict[int, str], width: int = 120) -> str:
    """``days_running`` counts from the UTC midnight of the first exposure (the API's
    definition), so it is written as the day of traffic rather than as a duration."""
    if not p:
        return "Progress appears once the server has answered."
    if not p.get("started_at"):
        return "No exposures yet: progress starts with the first served user."
    lines = [
        f"day {math.floor(p.get('days_running') or 0) + 1} "
        f"(since {str(p['started_at'])[:10]} UTC)  ·  "
        f"{p.get('optimized_users', 0):,} optimized / {p.get('holdout_users', 0):,} holdout users"
    ]
    leader = p.get("leader")
    if leader is None:
        lines.append("leader: none until the first training")
    else:
        certainty = p.get("certainty") or 0.0
        lines.append(
            f"leader {escape(label(labels, leader))}: prob_best "
            f"{p.get('leader_prob_best') or 0:.3f}, certain at {p.get('threshold', 0.95):g}"
        )
        lines.append(f"certainty {bar(certainty, 20)} {certainty:.0%}")
    lines.append(decision(p))
    arms = arms_line(p, width)
    if arms:
        lines.append(arms)
    if p.get("method") and not p.get("decided"):
        lines.append(f"[dim]{escape(str(p['method']))}[/dim]")
    return "\n".join(lines)


class ProgressPanel(Static):
    DEFAULT_CSS = "ProgressPanel { height: auto; }"

    def show(self, progress: dict[str, Any] | None, labels: dict[int, str]) -> None:
        self.update(progress_text(progress, labels, self.size.width or 120))
