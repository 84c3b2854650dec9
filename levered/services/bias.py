"""Which exploration bias a training run applies: the request's, else the current version's.

A bias is kept with the version it widened (``model_versions.bias``) and a run given none —
every scheduler retrain, a ``POST .../train`` without ``bias`` — inherits it, so it lasts
until someone changes it (``{"bias": {}}`` clears it). A one-shot bias would be undone by the
scheduler within one interval of new matured data, i.e. within a minute on exactly the live
optimizations where exploring more matters. Semantics of the widening:
:mod:`levered.bandit.bias`; decisions: docs/training.md ("Bias").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from levered.bandit.variants import VariantSpace
from levered.schemas.models import MAX_BIAS
from levered.services.design_rules import Issue, member, raise_issues


@dataclass(frozen=True)
class Bias:
    by_name: dict[str, float]
    """What the version records (design factor → b, sorted by name), requested or inherited."""
    per_factor: tuple[float, ...]
    """b per design factor in design order (0 for a factor not named)."""


def resolve_bias(
    space: VariantSpace,
    requested: Mapping[str, float] | None,
    current: Mapping[str, float] | None,
) -> Bias | None:
    """The bias of this run; None for the plain posterior.

    ``requested`` None: inherit ``current`` (minus factors the design no longer has — designs
    change only in draft); ``{}``: none. A requested bias naming an unknown factor, or with a
    value that is not a finite number in [0, MAX_BIAS], is a 400 listing every problem with its
    JSON path (``$.bias.<factor>``).
    """
    names = [f.name for f in space.factors]
    if requested is None:
        kept = {k: float(v) for k, v in (current or {}).items() if k in names}
        return _bias(names, kept) if kept else None
    issues: list[Issue] = []
    for name, value in requested.items():
        path = member("$.bias", name)
        if name not in names:
            known = ", ".join(repr(n) for n in names)
            issues.append(
                {"path": path, "message": f"unknown design factor {name!r} (factors: {known})"}
            )
        elif (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not 0.0 <= value <= MAX_BIAS
        ):
            issues.append(
                {
                    "path": path,
                    "message": f"must be a finite number from 0 to {MAX_BIAS:g}, got {value!r}",
                }
            )
    raise_issues(issues)
    return _bias(names, {k: float(v) for k, v in requested.items()}) if requested else None


def recorded(value: Mapping[str, float] | None) -> dict[str, float] | None:
    """A stored bias as the API shows it: keys sorted by name (jsonb keeps its own order)."""
    return dict(sorted(value.items())) if value else None


def _bias(names: list[str], by_name: dict[str, float]) -> Bias:
    return Bias(dict(sorted(by_name.items())), tuple(by_name.get(n, 0.0) for n in names))
