"""Training: attribute an optimization's matured exposures, fit its model, publish a version.

One run (:func:`train`):

1. take the optimization's training lock — a session-level ``pg_try_advisory_lock`` on a
   dedicated pooled connection, keyed by the optimization — or fail at once with 409
   ``training_in_progress`` (never wait: the other trainer is already reading the same data,
   and the scheduler simply tries again next interval);
2. resolve the exploration ``bias`` (:mod:`levered.services.bias`: the request's, else the
   current version's; a bad one is a 400 that leaves the model as it was), mark the model
   ``training`` and run attribution in the warehouse as the organization
   (:func:`levered.services.observations.attribute`, all history up to ``as_of``);
3. fit ``mab`` or ``cmab`` for the metric's reward type on a worker thread (the event loop keeps
   serving), widen the posterior by the bias (:mod:`levered.bandit.bias`), and summarize it
   once for the optimization's ``summary``;
4. in one transaction write a new immutable ``model_versions`` row (posterior, window, counts,
   seed, bias), point ``models.current_version`` at it with status ``trained`` (migration 0006's
   trigger tells every serving process) and update ``optimizations.summary``.

Any later failure marks the model ``failed`` with the message in ``last_error`` and
leaves ``current_version`` alone, so serving keeps the previous version. Decisions and formulas:
docs/training.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

import anyio
import msgspec
import numpy as np
import numpy.typing as npt

from levered.bandit import results as bandit_results
from levered.bandit.bias import apply_bias
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.posterior import Posterior
from levered.bandit.variants import VariantSpace
from levered.db import Connection
from levered.db import models as db
from levered.errors import Conflict, LeveredError, NotFound
from levered.schemas.models import ModelVersion
from levered.services.bias import Bias, resolve_bias
from levered.services.observations import Attribution, attribute, stored
from levered.services.results import measured_lift
from levered.services.warehouse import Warehouse

log = logging.getLogger(__name__)

SEED_BITS: Final = 62
"""Seeds fit in a signed bigint column and in numba's and numpy's seeders."""
CONFIDENCE_DRAWS: Final = 1000
MAX_ERROR_CHARS: Final = 2000


@dataclass(frozen=True)
class Target:
    """What training needs of an optimization and its (non-deleted) model."""

    organization_id: UUID
    optimization_id: UUID
    model_id: UUID
    model_type: str
    space: VariantSpace
    allowed: npt.NDArray[np.bool_]
    holdout_fraction: float
    previous_status: str
    current_bias: dict[str, float] | None = None
    """The bias of the current version, inherited by a run given none."""


@dataclass(frozen=True)
class Fitted:
    posterior: Posterior
    counts: dict[str, Any]
    summary: dict[str, Any]


async def load_target(conn: Connection, organization_id: UUID, optimization_id: UUID) -> Target:
    """The optimization and its model (created if missing); 404 for another organization's."""
    await db.ensure_model(conn, organization_id, optimization_id)
    row = await db.select_target(conn, organization_id, optimization_id)
    if row is None or row["model_id"] is None:
        raise NotFound(f"no optimization {optimization_id} in this organization")
    space = VariantSpace.of(row["design_factors"])
    return Target(
        organization_id=organization_id,
        optimization_id=optimization_id,
        model_id=row["model_id"],
        model_type=row["model_type"],
        space=space,
        allowed=space.allowed_mask(row["excluded_combinations"]),
        holdout_fraction=float(row["holdout_percentage"]) / 100.0,
        previous_status=row["model_status"],
        current_bias=row["current_bias"],
    )


async def train_model(
    wh: Warehouse,
    organization_id: UUID,
    model_id: UUID,
    *,
    as_of: datetime | None = None,
    seed: int | None = None,
    bias: Mapping[str, float] | None = None,
    rebuild: bool = False,
) -> ModelVersion:
    """:func:`train` the optimization of a model (404 for a deleted or another org's model)."""
    async with wh.pool.acquire() as conn:
        row = await db.select_model(conn, organization_id, model_id)
    if row is None:
        raise NotFound(f"no model {model_id} in this organization")
    return await train(
        wh,
        organization_id,
        row["optimization_id"],
        as_of=as_of,
        seed=seed,
        bias=bias,
        rebuild=rebuild,
    )


async def train(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    *,
    as_of: datetime | None = None,
    seed: int | None = None,
    bias: Mapping[str, float] | None = None,
    rebuild: bool = False,
) -> ModelVersion:
    """Train the optimization's model now and publish a new version (module doc).

    ``as_of`` None (the normal case) extends the stored cells to now and trains on them
    (``rebuild``: rebuild them from scratch first); a given ``as_of`` attributes from scratch
    as of then, leaving the stored cells alone.

    ``bias``: design factor → exploration bias; None keeps the current version's, ``{}``
    clears it (400 ``validation_error`` for an unknown factor or a value outside [0, 10]).
    404 unknown optimization; 409 ``training_in_progress`` when another trainer holds the lock;
    409 ``no_reward_metric`` / ``metric_failed`` / ``metric_timeout`` from attribution and
    ``training_failed`` when fitting fails (all of these mark the model ``failed``).
    """
    seed = secrets.randbits(SEED_BITS) if seed is None else int(seed)
    async with wh.pool.acquire() as lock:
        if not await db.try_training_lock(lock, optimization_id):
            raise Conflict(
                f"the model of optimization {optimization_id} is being trained right now; "
                "try again when that run has finished",
                code="training_in_progress",
            )
        try:
            return await _train_locked(
                wh, organization_id, optimization_id, as_of, seed, bias, rebuild
            )
        finally:
            await _unlock(lock, optimization_id)


async def _train_locked(
    wh: Warehouse,
    organization_id: UUID,
    optimization_id: UUID,
    as_of: datetime | None,
    seed: int,
    requested: Mapping[str, float] | None,
    rebuild: bool,
) -> ModelVersion:
    async with wh.pool.acquire() as conn:
        target = await load_target(conn, organization_id, optimization_id)
        bias = resolve_bias(target.space, requested, target.current_bias)  # 400 before "training"
        await db.set_status(conn, target.model_id, "training")
    try:
        started = time.perf_counter()
        if as_of is None:
            attribution = await stored(wh, organization_id, optimization_id, rebuild=rebuild)
        else:  # a past as-of: the stored cells only move forward, so compute from scratch
            attribution = await attribute(wh, organization_id, optimization_id, as_of=as_of)
        attributed = time.perf_counter()
        fitted = await anyio.to_thread.run_sync(_fit, target, attribution, seed, bias)
        # Where training time goes (SQL vs fit), kept with the version for operators and
        # benchmarks/training.py.
        fitted.counts["seconds"] = {
            "attribution": round(attributed - started, 6),
            "fit": round(time.perf_counter() - attributed, 6),
        }
        return await _publish(wh, target, attribution, fitted, seed, bias)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):
            await _set_status(wh, target.model_id, target.previous_status, None)
        raise
    except Exception as exc:
        message = _message(exc)
        log.warning("training optimization %s failed: %s", optimization_id, message)
        with anyio.CancelScope(shield=True):
            await _set_status(wh, target.model_id, "failed", message)
        if isinstance(exc, LeveredError):
            raise
        raise Conflict(
            f"training failed: {message}", code="training_failed", details={"error": message}
        ) from exc


async def _set_status(wh: Warehouse, model_id: UUID, status: str, error: str | None) -> None:
    async with wh.pool.acquire() as conn:
        await db.set_status(conn, model_id, status, error)


async def _unlock(lock: Any, optimization_id: UUID) -> None:
    try:
        with anyio.CancelScope(shield=True):
            await db.training_unlock(lock, optimization_id)
    except Exception:  # the session ends, and with it the lock
        log.exception("releasing the training lock of %s failed", optimization_id)
        lock.terminate()


def _message(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, LeveredError) else f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]


def _fit(target: Target, attribution: Attribution, seed: int, bias: Bias | None = None) -> Fitted:
    """Fit, widen by the bias, and summarize (CPU work: runs on a worker thread)."""
    level_counts = [len(f.levels) for f in target.space.factors]
    cells = attribution.cells
    # A weighted metric's reward is its outcome weight: the numeric (Gaussian) model fits the
    # expected weighted reward (docs/warehouse.md, "Weighted outcomes").
    model_reward = "bool" if attribution.reward_type == "bool" else "numeric"
    if target.model_type == "mab":
        posterior = fit_mab(cells, level_counts, model_reward)
    else:
        posterior = fit_cmab(cells, level_counts, model_reward)
    if bias is not None:
        posterior = apply_bias(posterior, bias.per_factor)
    n, s, _ = cells.per_variant(target.space.size)
    held = attribution.holdout
    counts: dict[str, Any] = {
        "matured": int(attribution.matured),
        "pending": int(attribution.pending),
        "cells": cells.size,
        "contexts": len(cells.contexts),
        "reward_sum": float(s.sum()),
        "holdout_exposures": int(cells.count[held].sum()),
        "optimized_users": int(attribution.optimized_users.users),
        "holdout_users": int(attribution.holdout_users.users),
        "exposures": {str(int(v) + 1): _count(n[v]) for v in np.flatnonzero(n)},
        "seed": seed,
        "window": attribution.window or {"type": "all"},
        "data_through": _iso(attribution.data_through),
        "marker": _iso(attribution.marker),
        "seen_below": attribution.seen_below,
    }
    modeled = bandit_results.summarize(
        posterior, target.allowed, target.holdout_fraction, n_draws=CONFIDENCE_DRAWS, seed=seed
    )
    improvement = modeled.estimated_improvement_percent
    # Kept with the version, so the lift history can show the modeled lift as it stood.
    counts["modeled_lift"] = (
        None
        if improvement is None
        else {"percent": improvement.mean, "ci": [improvement.lo, improvement.hi]}
    )
    summary = _summary(target, attribution, posterior, modeled, seed)
    return Fitted(posterior, counts, summary)


def _count(n: float) -> float | int:
    """A cell count: whole without decay, a weighted sum with it."""
    return int(n) if float(n).is_integer() else round(float(n), 6)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _summary(
    target: Target,
    attribution: Attribution,
    posterior: Posterior,
    modeled: bandit_results.Results,
    seed: int,
) -> dict[str, Any]:
    """``optimizations.summary``: variants_count, exposures, lift, confidence (docs)."""
    measured = measured_lift(attribution.optimized_users, attribution.holdout_users)
    lift_ci: list[float] | None = None
    if measured.ci is not None and measured.lift_percent is not None:
        lift, source, lift_ci = measured.lift_percent, "measured", list(measured.ci)
    elif modeled.estimated_improvement_percent is not None:
        interval = modeled.estimated_improvement_percent
        lift, source, lift_ci = interval.mean, "modeled", [interval.lo, interval.hi]
    else:
        lift, source = None, None
    return {
        "variants_count": int(target.allowed.sum()),
        "exposures": int(attribution.matured + attribution.pending),
        "lift": lift,
        "lift_ci": lift_ci,  # 95 %: delta method (measured) or posterior interval (modeled)
        "lift_source": source,
        "confidence": _confidence(posterior, target.allowed, modeled.prob_best, seed),
    }


def _confidence(
    posterior: Posterior,
    allowed: npt.NDArray[np.bool_],
    prob_best: npt.NDArray[np.float64],
    seed: int,
) -> float:
    """P(current allocation's expected reward > baseline's): the share of joint posterior
    draws in which Σ_v prob_best_v · r_v exceeds r_1 (fresh draws, not those of prob_best)."""
    n_draws = max(100, min(CONFIDENCE_DRAWS, bandit_results.MAX_CELLS // posterior.n_variants))
    rng = np.random.default_rng(seed + 1)
    draws = bandit_results.reward_draws(posterior, n_draws, rng)
    weights = np.where(allowed, prob_best, 0.0)
    return float(np.mean(draws @ weights > draws[:, 0]))


async def _publish(
    wh: Warehouse,
    target: Target,
    attribution: Attribution,
    fitted: Fitted,
    seed: int,
    bias: Bias | None,
) -> ModelVersion:
    recorded = None if bias is None else bias.by_name
    async with wh.pool.acquire() as conn, conn.transaction():
        version = await db.next_version(conn, target.model_id)
        trained_at = await db.insert_version(
            conn,
            target.model_id,
            version,
            target.organization_id,
            fitted.posterior.kind,
            fitted.posterior.encode(),
            attribution.start,
            attribution.as_of,
            fitted.counts,
            seed,
            recorded,
        )
        if not await db.publish_version(conn, target.model_id, version):
            raise Conflict(
                "the model was deleted while it was training; nothing was published",
                code="model_deleted",
            )
        await db.set_summary(conn, target.organization_id, target.optimization_id, fitted.summary)
    return ModelVersion(
        model_id=target.model_id,
        optimization_id=target.optimization_id,
        version=version,
        kind=fitted.posterior.kind,
        window_start=attribution.start,
        window_end=attribution.as_of,
        counts=msgspec.to_builtins(fitted.counts),
        seed=seed,
        trained_at=trained_at,
        bias=recorded,
    )
