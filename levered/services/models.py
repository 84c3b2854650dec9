"""Models: list, show, state (what the current version says per variant), soft delete.

Training itself is :mod:`levered.services.training`. The posterior summary a version yields
(:func:`levered.bandit.results.summarize`, seeded by the version's seed, so deterministic) is
cached per process by (model, version, allowed mask, holdout): a version is immutable, and for
10⁴ variants one summary costs a second of CPU on a worker thread. Decisions:
docs/training.md.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import anyio
import asyncpg
import msgspec
import numpy as np
import numpy.typing as npt

from levered.bandit import results as bandit_results
from levered.bandit.posterior import Posterior
from levered.bandit.variants import VariantSpace
from levered.db import Connection
from levered.db import models as db
from levered.errors import NotFound
from levered.schemas.common import ResponseMeta
from levered.schemas.models import (
    Coefficient,
    ContextCell,
    Interval,
    Model,
    ModelDeleted,
    ModelState,
    VariantState,
)
from levered.services.bias import recorded
from levered.services.coefficients import prior_scales, summarize_coefficients

SUMMARY_CACHE_SIZE: Final = 16
UNTRAINED_NOTE: Final = (
    "the model has not been trained yet: traffic is split uniformly over the allowed variants "
    "(holdout users see the baseline); posterior fields are null until the first training"
)


@dataclass(frozen=True)
class Version:
    """A stored model version, decoded."""

    model_id: UUID
    version: int
    kind: str
    posterior: Posterior
    window_start: datetime | None
    window_end: datetime
    counts: dict[str, Any]
    seed: int
    trained_at: datetime
    bias: dict[str, float] | None = None


@dataclass(frozen=True)
class Subject:
    """An optimization with its variant space, exclusions and current model version."""

    optimization_id: UUID
    model_id: UUID | None
    model_status: str | None
    space: VariantSpace
    allowed: npt.NDArray[np.bool_]
    holdout_fraction: float
    version: Version | None


def _model(row: asyncpg.Record) -> Model:
    return Model(
        id=row["id"],
        optimization_id=row["optimization_id"],
        optimization_name=row["optimization_name"],
        optimization_status=row["optimization_status"],
        model_type=row["model_type"],
        status=row["status"],
        current_version=row["current_version"],
        trained_at=row["trained_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        bias=recorded(row["bias"]),
    )


async def list_models(
    pool: asyncpg.Pool, organization_id: UUID, *, limit: int, include_archived: bool
) -> list[Model]:
    async with pool.acquire() as conn:
        rows = await db.list_models(conn, organization_id, limit, include_archived)
    return [_model(r) for r in rows]


async def get_model(pool: asyncpg.Pool, organization_id: UUID, model_id: UUID) -> Model:
    async with pool.acquire() as conn:
        row = await db.select_model(conn, organization_id, model_id)
    if row is None:
        raise _not_found(model_id)
    return _model(row)


async def delete_model(
    pool: asyncpg.Pool, organization_id: UUID, model_id: UUID, meta: ResponseMeta
) -> ModelDeleted:
    """Soft-delete the model and give its optimization a fresh untrained one, in one
    transaction: serving falls back to uniform traffic; the old versions stay for the record."""
    async with pool.acquire() as conn, conn.transaction():
        optimization_id = await db.soft_delete(conn, organization_id, model_id)
        if optimization_id is None:
            raise _not_found(model_id)
        replacement = await db.insert_model(conn, organization_id, optimization_id)
    return ModelDeleted(model_id, True, replacement, meta)


async def subject(conn: Connection, organization_id: UUID, optimization_id: UUID) -> Subject:
    """The optimization and its current version (404 for another organization's)."""
    row = await db.select_target(conn, organization_id, optimization_id)
    if row is None:
        raise NotFound(f"no optimization {optimization_id} in this organization")
    space = VariantSpace.of(row["design_factors"])
    version = None
    if row["model_id"] is not None and row["current_version"] is not None:
        found = await db.select_version(
            conn, organization_id, row["model_id"], row["current_version"]
        )
        if found is not None:
            version = Version(
                model_id=found["model_id"],
                version=found["version"],
                kind=found["kind"],
                posterior=Posterior.decode(found["posterior"]),
                window_start=found["window_start"],
                window_end=found["window_end"],
                counts=found["counts"],
                seed=found["seed"],
                trained_at=found["trained_at"],
                bias=recorded(found["bias"]),
            )
    return Subject(
        optimization_id=optimization_id,
        model_id=row["model_id"],
        model_status=row["model_status"],
        space=space,
        allowed=space.allowed_mask(row["excluded_combinations"]),
        holdout_fraction=float(row["holdout_percentage"]) / 100.0,
        version=version,
    )


def fits_space(version: Version, space: VariantSpace) -> bool:
    """Whether the posterior was fit on this variant space (designs change only in draft)."""
    return version.posterior.level_counts == [len(f.levels) for f in space.factors]


_summaries: OrderedDict[tuple[Any, ...], bandit_results.Results] = OrderedDict()


async def summarize(
    s: Subject, context: Mapping[str, Any] | None = None
) -> bandit_results.Results | None:
    """The current version's posterior summary for ``context`` (None: the population), cached
    per version and context and computed on a worker thread."""
    v = s.version
    if v is None or not fits_space(v, s.space):
        return None
    context_key = msgspec.json.encode(dict(sorted((context or {}).items())))
    key = (v.model_id, v.version, s.holdout_fraction, s.allowed.tobytes(), context_key)
    cached = _summaries.get(key)
    if cached is not None:
        _summaries.move_to_end(key)
        return cached
    result = await anyio.to_thread.run_sync(
        lambda: bandit_results.summarize(
            v.posterior, s.allowed, s.holdout_fraction, seed=v.seed, context=context
        )
    )
    _summaries[key] = result
    while len(_summaries) > SUMMARY_CACHE_SIZE:
        _summaries.popitem(last=False)
    return result


def interval(x: bandit_results.Interval) -> Interval:
    return Interval(x.mean, x.lo, x.hi)


def optional_interval(x: bandit_results.Interval | None) -> Interval | None:
    return None if x is None else interval(x)


def ranked(
    allowed: npt.NDArray[np.bool_], weight: npt.NDArray[np.float64] | None, limit: int
) -> list[int]:
    """Allowed variant indices (number − 1), highest weight first (by number untrained)."""
    idx = np.flatnonzero(allowed)
    if weight is not None:
        idx = idx[np.lexsort((idx, -weight[idx]))]
    return [int(i) for i in idx[:limit]]


async def model_state(
    pool: asyncpg.Pool,
    organization_id: UUID,
    model_id: UUID,
    *,
    limit: int,
    meta: ResponseMeta,
    context: Mapping[str, Any] | None = None,
) -> ModelState:
    async with pool.acquire() as conn:
        row = await db.select_model(conn, organization_id, model_id)
        if row is None:
            raise _not_found(model_id)
        s = await subject(conn, organization_id, row["optimization_id"])
    summary = await summarize(s, context)
    v = s.version
    n_allowed = int(s.allowed.sum())
    variants: list[VariantState] = []
    for i in ranked(s.allowed, None if summary is None else summary.weight, limit):
        number = i + 1
        if summary is None:
            er, pb, w = None, None, (1.0 - s.holdout_fraction) / n_allowed
        else:
            er = interval(summary.expected_reward[i])
            pb, w = float(summary.prob_best[i]), float(summary.weight[i])
        variants.append(
            VariantState(number, s.space.key(number), s.space.variant(number), er, pb, w)
        )
    note = None
    if v is None:
        note = UNTRAINED_NOTE
    elif summary is None:
        note = "the current version was trained on another design; retrain the model"
    return ModelState(
        model_id=model_id,
        optimization_id=row["optimization_id"],
        status=row["status"],
        version=None if v is None else v.version,
        kind=None if v is None else v.kind,
        trained_at=None if v is None else v.trained_at,
        window_start=None if v is None else v.window_start,
        window_end=None if v is None else v.window_end,
        counts=None if v is None else v.counts,
        seed=None if v is None else v.seed,
        holdout_percentage=s.holdout_fraction * 100.0,
        variants=variants,
        variants_total=n_allowed,
        note=note,
        meta=meta,
        context=None if context is None else dict(context),
        coefficients=_coefficients(v, s.space) if summary is not None else None,
        context_cells=_context_cells(v) if summary is not None else None,
        bias=None if v is None else v.bias,
        prior_scales=None if v is None or summary is None else prior_scales(v.posterior, s.space),
    )


def _coefficients(v: Version | None, space: VariantSpace) -> list[Coefficient] | None:
    if v is None or v.posterior.model_type != "cmab":
        return None
    return summarize_coefficients(v.posterior, space)


def _context_cells(v: Version | None) -> list[ContextCell] | None:
    if v is None or v.posterior.model_type != "cmab":
        return None
    mix = v.posterior.meta.get("traffic_mix") or []
    return [ContextCell(dict(context), float(count)) for context, count in mix]


def _not_found(model_id: UUID) -> NotFound:
    return NotFound(f"no model {model_id} in this organization")
