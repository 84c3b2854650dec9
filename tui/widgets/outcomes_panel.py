"""The outcome mix of a weighted-outcome metric per variant: which share of each variant's
matured exposures ended in which outcome. The expected reward alone cannot tell a variant that
converts often to a cheap outcome from one that converts rarely to a valuable one."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import Static

from tui.widgets.figures import label, variant_labels

NAME_WIDTH = 34


def outcomes_text(results: dict[str, Any] | None) -> str | None:
    """A table, one row per listed variant and one column per outcome (declared ones, then
    ``failure``); None when the metric is not a weighted one."""
    variants = [v for v in (results or {}).get("variants") or [] if v.get("outcomes")]
    if not variants:
        return None
    keys: dict[str, float] = {}
    for v in variants:
        for o in v["outcomes"]:
            keys.setdefault(o["key"], o.get("weight") or 0.0)
    widths = {k: max(8, len(f"{k} ×{w:g}")) for k, w in keys.items()}
    header = " " * (NAME_WIDTH + 1) + "  ".join(
        escape(f"{k} ×{w:g}").rjust(widths[k]) for k, w in keys.items()
    )
    labels = variant_labels(results, NAME_WIDTH)
    lines = [f"[dim]{header}[/dim]"]
    for v in variants:
        shares = {o["key"]: o.get("share") for o in v["outcomes"]}
        cells = [
            (f"{shares[k]:.1%}" if shares.get(k) is not None else "-").rjust(widths[k])
            for k in keys
        ]
        lines.append(f"{escape(label(labels, v['number']).ljust(NAME_WIDTH))} " + "  ".join(cells))
    return "\n".join(lines)


class OutcomesPanel(Vertical):
    """Hidden, title and all, unless the reward metric has weighted outcomes."""

    DEFAULT_CSS = "OutcomesPanel { height: auto; }"

    def compose(self) -> ComposeResult:
        yield Static("Outcome mix per variant (share of matured exposures)", classes="section")
        yield Static("", id="outcomes-table")

    def show(self, results: dict[str, Any] | None) -> None:
        text = outcomes_text(results)
        self.display = text is not None
        self.query_one("#outcomes-table", Static).update(text or "")
