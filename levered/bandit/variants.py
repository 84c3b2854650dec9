"""The variant space of an optimization: every combination of one level per design factor.

Numbering: a variant's ``number`` is its 1-based mixed-radix index in declared
factor and level order — the first factor is the most significant digit — so variant 1 (every
first level) is the baseline. Its ``key`` is the level indices joined by ``.``: with factors of
5 and 2 levels, variant 7 is levels (3, 0) and key ``"3.0"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Level = str | bool


@dataclass(frozen=True)
class Factor:
    name: str
    levels: tuple[Level, ...]


@dataclass(frozen=True)
class VariantSpace:
    factors: tuple[Factor, ...]
    _index: tuple[dict[Any, int], ...] = field(init=False, repr=False, compare=False)
    _radix: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Level lookup must not conflate True with 1 or "true"; key by (type, value).
        index = tuple({(type(v), v): i for i, v in enumerate(f.levels)} for f in self.factors)
        radix: list[int] = []
        place = 1
        for factor in reversed(self.factors):
            radix.append(place)
            place *= len(factor.levels)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_radix", tuple(reversed(radix)))

    @classmethod
    def of(cls, design_factors: Sequence[Mapping[str, Any]]) -> VariantSpace:
        return cls(tuple(Factor(str(f["name"]), tuple(f["levels"])) for f in design_factors))

    @property
    def size(self) -> int:
        size = 1
        for factor in self.factors:
            size *= len(factor.levels)
        return size

    def levels_of(self, number: int) -> tuple[int, ...]:
        if not 1 <= number <= self.size:
            raise ValueError(f"variant number {number} is outside 1..{self.size}")
        rest = number - 1
        return tuple(
            (rest // place) % len(f.levels)
            for f, place in zip(self.factors, self._radix, strict=True)
        )

    def number_of_levels(self, levels: Sequence[int]) -> int:
        return 1 + sum(i * place for i, place in zip(levels, self._radix, strict=True))

    def variant(self, number: int) -> dict[str, Level]:
        return {
            f.name: f.levels[i] for f, i in zip(self.factors, self.levels_of(number), strict=True)
        }

    def key(self, number: int) -> str:
        return ".".join(str(i) for i in self.levels_of(number))

    def problems(self, variant: Mapping[str, Any]) -> list[str]:
        """Why ``variant`` is not one of this space's variants (empty when it is)."""
        out: list[str] = []
        for factor, index in zip(self.factors, self._index, strict=True):
            if factor.name not in variant:
                out.append(f"missing design factor '{factor.name}'")
            elif (type(variant[factor.name]), variant[factor.name]) not in index:
                out.append(
                    f"'{factor.name}' must be one of {list(factor.levels)!r}, "
                    f"got {variant[factor.name]!r}"
                )
        known = {f.name for f in self.factors}
        out.extend(f"unknown design factor '{name}'" for name in variant if name not in known)
        return out

    def number(self, variant: Mapping[str, Any]) -> int | None:
        """The variant's number, or None when it is not a variant of this space."""
        if len(variant) != len(self.factors):
            return None
        total = 1
        for factor, index, place in zip(self.factors, self._index, self._radix, strict=True):
            value = variant.get(factor.name, _MISSING)
            position = index.get((type(value), value))
            if position is None:
                return None
            total += position * place
        return total

    def matches(self, number: int, partial: Mapping[str, Any]) -> bool:
        """Whether the variant agrees with a partial factor→level map (an exclusion rule)."""
        chosen = self.variant(number)
        return all(
            name in chosen and type(chosen[name]) is type(value) and chosen[name] == value
            for name, value in partial.items()
        )

    def rule_levels(self, excluded: Sequence[Mapping[str, Any]]) -> list[dict[int, int]]:
        """Exclusion rules as {factor position: level index}; a rule naming an unknown factor
        or level excludes nothing and is left out."""
        positions = {f.name: i for i, f in enumerate(self.factors)}
        out: list[dict[int, int]] = []
        for rule in excluded:
            levels: dict[int, int] = {}
            for name, value in rule.items():
                position = positions.get(name)
                if position is None:
                    break
                level = self._index[position].get((type(value), value))
                if level is None:
                    break
                levels[position] = level
            else:
                out.append(levels)
        return out

    def allowed_mask(self, excluded: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.bool_]:
        """Boolean array over variants (index = number - 1): False where a rule excludes it.

        A rule is a cylinder of the level grid (its factors fixed, the others free), so it is
        cleared as one strided slice of the grid: a rule costs the variants it excludes, and a
        10⁶-variant space with 500 rules costs milliseconds.
        """
        allowed = np.ones(self.size, dtype=np.bool_)
        grid = allowed.reshape(tuple(len(f.levels) for f in self.factors))
        for rule in self.rule_levels(excluded):
            where: list[int | slice] = [slice(None)] * len(self.factors)
            for position, level in rule.items():
                where[position] = level
            grid[tuple(where)] = False
        return allowed


_MISSING = object()
