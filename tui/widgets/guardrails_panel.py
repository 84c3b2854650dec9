"""The guardrails of an optimization, each judged optimized vs holdout (docs/analysis.md,
"Guardrails"): what it guards, its status in colour, the change with its interval, the users
behind it, whether it pauses, and the server's reason in words."""

from __future__ import annotations

from typing import Any

from textual.markup import escape
from textual.widgets import Static

from tui.widgets.figures import change, rate

INDENT = " " * 11  # under the name, past the status
STATUS_STYLE = {"ok": "green", "violated": "bold red", "pending": "yellow"}
DIRECTION = {"must_not_increase": "must not rise", "must_not_decrease": "must not fall"}
NO_GUARDRAILS = "No guardrails: `levered optimizations update ID --guardrails …` adds them."


def guardrail_lines(g: dict[str, Any], width: int = 120) -> list[str]:
    """Three lines per guardrail, four when narrow (the change and the arms apart)."""
    status = str(g.get("status", "pending"))
    style = STATUS_STYLE.get(status, "yellow")
    name = escape(g.get("metric_name") or f"metric {g.get('metric_id')} (deleted)")
    rule = DIRECTION.get(str(g.get("direction")), str(g.get("direction")))
    pause = "auto-pause on" if g.get("auto_pause") else "auto-pause off"
    reward_type = g.get("reward_type")
    measured = f"change {change(g.get('change_percent'), g.get('ci'))}"
    arms = (
        f"optimized {rate(g.get('optimized_rate'), reward_type)} "
        f"({g.get('optimized_users', 0):,} users) vs holdout "
        f"{rate(g.get('holdout_rate'), reward_type)} ({g.get('holdout_users', 0):,} users)"
    )
    detail = (
        [f"{INDENT}{measured}  ·  {arms}"] if width >= 120 else [INDENT + measured, INDENT + arms]
    )
    return [
        f"[{style}]● {status:<8}[/{style}] [b]{name}[/b] {rule} more than "
        f"{g.get('tolerance_percent', 0):g} %  ·  {pause}",
        *detail,
        f"{INDENT}[dim]{escape(str(g.get('reason') or ''))}[/dim]",
    ]


def guardrails_text(report: dict[str, Any] | None, width: int = 120) -> str:
    if report is None:
        return "Guardrails appear once the server has answered."
    lines: list[str] = []
    reason = report.get("status_reason") or {}
    if reason.get("code") == "guardrail_violated":
        lines.append(f"[bold red]{escape(str(reason.get('message', '')))}[/bold red]")
    guardrails = report.get("guardrails") or []
    if not guardrails:
        lines.append(NO_GUARDRAILS)
    for g in guardrails:
        lines += guardrail_lines(g, width)
    return "\n".join(lines)


class GuardrailsPanel(Static):
    DEFAULT_CSS = "GuardrailsPanel { height: auto; }"

    def show(self, report: dict[str, Any] | None) -> None:
        self.update(guardrails_text(report, self.size.width or 120))
