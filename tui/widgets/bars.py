"""Horizontal bars for traffic shares and rates, drawn with block characters."""

from __future__ import annotations

BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int) -> str:
    """A bar ``width`` cells wide filled to ``fraction`` (0–1), with eighth-cell precision."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[rest] if rest else "")).ljust(width)
