"""The rules of a design, as pure functions: factors, levels, sizes, exclusion rules.

:func:`validate_design` reports every problem with the JSON path of the offending field, so
create and update answer one 400 listing them all, and the rules are unit-tested without a
database. The limits are documented in docs/optimizations.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from levered.bandit.variants import Factor, VariantSpace
from levered.errors import ValidationError
from levered.schemas.optimizations import (
    ContextFactor,
    DesignFactor,
    ModelType,
)

MAB_MAX_VARIANTS: Final = 1_000
"""Each mab arm learns only from its own traffic; beyond ~1,000 arms most never get enough."""
CMAB_MAX_VARIANTS: Final = 100_000
"""The cmab model shares strength across variants; serving would take 10⁶ (the sampler searches
the factors), but results summaries are computed over every variant (docs/optimizations.md)."""
CMAB_MAX_DESIGN_LEVELS: Final = 200
"""The cmab model has a coefficient per design level plus pairwise interactions of levels."""
MAX_CONTEXT_FACTORS: Final = 20
MAX_CONTEXT_LEVELS: Final = 1_000
MAX_LEVEL_LENGTH: Final = 200
MAX_EXCLUSION_RULES: Final = 500


Issue = dict[str, str]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- validation (pure) ---------------------------------------------------------------------


def member(path: str, key: str) -> str:
    """The JSON path of ``key`` inside the object at ``path`` (bracketed when not an identifier)."""
    return f"{path}.{key}" if _IDENTIFIER.match(key) else f"{path}[{json.dumps(key)}]"


def raise_issues(issues: list[Issue]) -> None:
    if not issues:
        return
    first = issues[0]
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    raise ValidationError(
        f"invalid request body at {first['path']}: {first['message']}{more}", details=issues
    )


def _level_issues(
    levels: Sequence[str | bool], dtype: str, path: str, *, minimum: int, maximum: int | None
) -> list[Issue]:
    """Problems with one factor's level list (design: minimum 2 distinct; context: 1)."""
    if dtype == "bool":
        if len(levels) != 2 or set(map(repr, levels)) != {"True", "False"}:
            return [
                {
                    "path": path,
                    "message": "a 'bool' factor's levels must be exactly "
                    "[true, false] or [false, true]",
                }
            ]
        return []
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    for j, level in enumerate(levels):
        where = f"{path}[{j}]"
        if not isinstance(level, str):
            issues.append(
                {
                    "path": where,
                    "message": f"levels of a 'str' factor must be strings, got {json.dumps(level)}",
                }
            )
        elif not 1 <= len(level) <= MAX_LEVEL_LENGTH:
            issues.append(
                {
                    "path": where,
                    "message": f"a level must be 1–{MAX_LEVEL_LENGTH} characters, got {len(level)}",
                }
            )
        elif level in seen:
            issues.append(
                {
                    "path": where,
                    "message": f"duplicate level {json.dumps(level)} "
                    f"(also at {path}[{seen[level]}])",
                }
            )
        else:
            seen[level] = j
    if issues:
        return issues
    if len(levels) < minimum:
        need = "at least two distinct levels" if minimum == 2 else "at least one level"
        issues.append({"path": path, "message": f"needs {need}, got {len(levels)}"})
    if maximum is not None and len(levels) > maximum:
        issues.append({"path": path, "message": f"at most {maximum:,} levels, got {len(levels):,}"})
    return issues


def _factor_issues(design: Sequence[DesignFactor], context: Sequence[ContextFactor]) -> list[Issue]:
    issues: list[Issue] = []
    if not design:
        issues.append(
            {"path": "$.design_factors", "message": "at least one design factor is required"}
        )
    if len(context) > MAX_CONTEXT_FACTORS:
        issues.append(
            {
                "path": "$.context_factors",
                "message": f"at most {MAX_CONTEXT_FACTORS} context factors, got {len(context)}",
            }
        )
    names: dict[str, str] = {}
    entries: list[tuple[str, DesignFactor | ContextFactor]] = [
        *((f"$.design_factors[{i}]", f) for i, f in enumerate(design)),
        *((f"$.context_factors[{i}]", f) for i, f in enumerate(context)),
    ]
    for path, factor in entries:
        if factor.name in names:
            issues.append(
                {
                    "path": f"{path}.name",
                    "message": f"duplicate factor name {json.dumps(factor.name)} (also "
                    f"at {names[factor.name]}); names must be unique across "
                    "design and context factors",
                }
            )
        else:
            names[factor.name] = f"{path}.name"
        if isinstance(factor, DesignFactor):
            issues += _level_issues(
                factor.levels, factor.dtype, f"{path}.levels", minimum=2, maximum=None
            )
        elif factor.levels is not None:
            issues += _level_issues(
                factor.levels, factor.dtype, f"{path}.levels", minimum=1, maximum=MAX_CONTEXT_LEVELS
            )
    return issues


def _size_issues(space: VariantSpace, model_type: ModelType) -> list[Issue]:
    size = space.size
    shape = " × ".join(str(len(f.levels)) for f in space.factors)
    if model_type == "mab" and size > MAB_MAX_VARIANTS:
        return [
            {
                "path": "$.design_factors",
                "message": f"these design factors make {size:,} variants ({shape}); a 'mab' "
                f"optimization supports at most {MAB_MAX_VARIANTS:,}, since every "
                "variant learns only from its own traffic. Use model_type 'cmab' "
                "or fewer levels",
            }
        ]
    levels = sum(len(f.levels) for f in space.factors)
    if model_type == "cmab" and levels > CMAB_MAX_DESIGN_LEVELS:
        return [
            {
                "path": "$.design_factors",
                "message": f"these design factors have {levels:,} levels in total; a 'cmab' "
                f"optimization supports at most {CMAB_MAX_DESIGN_LEVELS}",
            }
        ]
    if model_type == "cmab" and size > CMAB_MAX_VARIANTS:
        return [
            {
                "path": "$.design_factors",
                "message": f"these design factors make {size:,} variants ({shape}); a 'cmab' "
                f"optimization supports at most {CMAB_MAX_VARIANTS:,}",
            }
        ]
    return []


def _rule_issues(
    space: VariantSpace, context_names: set[str], rules: Sequence[dict[str, str | bool]]
) -> list[Issue]:
    if len(rules) > MAX_EXCLUSION_RULES:
        return [
            {
                "path": "$.excluded_combinations",
                "message": f"at most {MAX_EXCLUSION_RULES} exclusion rules, got {len(rules)}",
            }
        ]
    levels = {f.name: f.levels for f in space.factors}
    issues: list[Issue] = []
    for k, rule in enumerate(rules):
        path = f"$.excluded_combinations[{k}]"
        if not rule:
            issues.append(
                {
                    "path": path,
                    "message": "an exclusion rule needs at least one design factor → level entry",
                }
            )
        for name, value in rule.items():
            where = member(path, name)
            if name not in levels:
                what = (
                    "is a context factor; rules can name only design factors"
                    if name in context_names
                    else "is not a design factor"
                )
                issues.append({"path": where, "message": f"{json.dumps(name)} {what}"})
            elif not any(type(value) is type(level) and value == level for level in levels[name]):
                issues.append(
                    {
                        "path": where,
                        "message": f"{json.dumps(value)} is not a level of "
                        f"{json.dumps(name)}; levels: "
                        f"{json.dumps(list(levels[name]))}",
                    }
                )
    return issues


def validate_design(
    design: Sequence[DesignFactor],
    context: Sequence[ContextFactor],
    excluded: Sequence[dict[str, str | bool]],
    model_type: ModelType,
) -> tuple[VariantSpace, npt.NDArray[np.bool_]]:
    """Check a whole design; return its variant space and allowed mask, or raise 400.

    Stages run in order (factors, size, exclusion rules, what the rules leave), and each stage
    reports all of its problems at once; later stages need the earlier ones to pass.
    """
    raise_issues(_factor_issues(design, context))
    space = space_of(design)
    raise_issues(_size_issues(space, model_type))
    raise_issues(_rule_issues(space, {f.name for f in context}, excluded))
    mask = space.allowed_mask(excluded)
    if not mask[0]:
        k = next(k for k, rule in enumerate(excluded) if space.matches(1, rule))
        raise_issues(
            [
                {
                    "path": f"$.excluded_combinations[{k}]",
                    "message": "this rule excludes the baseline (variant 1, "
                    f"{json.dumps(space.variant(1))}); the baseline cannot be "
                    "excluded",
                }
            ]
        )
    remaining = int(mask.sum())
    if remaining < 2:
        raise_issues(
            [
                {
                    "path": "$.excluded_combinations",
                    "message": f"these rules leave {remaining} of {space.size:,} variants; "
                    "at least two must remain",
                }
            ]
        )
    return space, mask


def space_of(design: Sequence[DesignFactor]) -> VariantSpace:
    return VariantSpace(tuple(Factor(f.name, tuple(f.levels)) for f in design))


def check_dimensions(dimensions: Sequence[str], context: Sequence[ContextFactor]) -> None:
    """400 naming ``$.dimensions[i]`` for a repeated name or one that is a context factor (a
    context factor's breakdown already comes from the cells; a dimension is what the model
    does not use)."""
    factors = {f.name for f in context}
    seen: dict[str, int] = {}
    issues: list[Issue] = []
    for i, name in enumerate(dimensions):
        path = f"$.dimensions[{i}]"
        if name in seen:
            issues.append(
                {
                    "path": path,
                    "message": f"duplicate dimension {json.dumps(name)} (also at "
                    f"$.dimensions[{seen[name]}])",
                }
            )
        elif name in factors:
            issues.append(
                {
                    "path": path,
                    "message": f"{json.dumps(name)} is a context factor; its breakdown comes "
                    "with the model's cells, so list only keys the model does not use",
                }
            )
        seen.setdefault(name, i)
    raise_issues(issues)
