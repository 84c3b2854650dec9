"""Optimization use cases: create, list, show, update (edits and lifecycle), delete drafts.

Validation that spans fields is pure (:mod:`levered.services.design_rules`), so it is
unit-tested without a database; every problem is reported with the JSON path of the offending
field. Limits and decisions are documented in docs/optimizations.md.
"""

from __future__ import annotations

from typing import Final
from uuid import UUID

import asyncpg
import msgspec
from msgspec import UNSET

from levered.db import Connection
from levered.db import models as models_db
from levered.db import optimizations as db
from levered.errors import Conflict, NotFound, ValidationError
from levered.schemas.optimizations import (
    AllHistory,
    Attribution,
    Baseline,
    ContextFactor,
    DesignFactor,
    Guardrail,
    LinkedMetric,
    LinkedModel,
    ModelType,
    Optimization,
    OptimizationCreate,
    OptimizationUpdate,
    Status,
    StatusReason,
    TrainingWindow,
    Variant,
)
from levered.services import guardrail_rules, lifecycle
from levered.services.design_rules import check_dimensions, space_of, validate_design

DESIGN_FIELDS: Final = ("design_factors", "context_factors", "excluded_combinations", "model_type")
"""Fields that change what is being tested; editable only while the optimization is a draft."""

# --- rows and views --------------------------------------------------------------------------


class Config(msgspec.Struct, frozen=True):
    """The editable configuration of an optimization, typed (status is handled apart)."""

    name: str
    model_type: ModelType
    design_factors: list[DesignFactor]
    context_factors: list[ContextFactor]
    reward_metric_id: UUID | None
    attribution: Attribution
    holdout_percentage: float
    excluded_combinations: list[dict[str, str | bool]]
    sticky: bool
    training_window: TrainingWindow = AllHistory()
    guardrails: list[Guardrail] = []
    dimensions: list[str] = []


CONFIG_FIELDS: Final = Config.__struct_fields__


def _values(config: Config, status: Status) -> db.OptimizationValues:
    return db.OptimizationValues(
        name=config.name,
        status=status,
        model_type=config.model_type,
        design_factors=msgspec.to_builtins(config.design_factors),
        context_factors=msgspec.to_builtins(config.context_factors),
        reward_metric_id=config.reward_metric_id,
        attribution=msgspec.to_builtins(config.attribution),
        holdout_percentage=float(config.holdout_percentage),
        excluded_combinations=msgspec.to_builtins(config.excluded_combinations),
        sticky=config.sticky,
        training_window=msgspec.to_builtins(config.training_window),
        guardrails=msgspec.to_builtins(config.guardrails),
        dimensions=list(config.dimensions),
    )


def _stored_config(row: asyncpg.Record) -> Config:
    return msgspec.convert({name: row[name] for name in CONFIG_FIELDS}, Config)


def changed_fields(before: Config, after: Config) -> list[str]:
    """Fields whose value differs (by wire value, so a re-sent unchanged field is no edit)."""
    return [
        name
        for name in CONFIG_FIELDS
        if msgspec.to_builtins(getattr(before, name)) != msgspec.to_builtins(getattr(after, name))
    ]


def _view(row: asyncpg.Record) -> Optimization:
    design = msgspec.convert(row["design_factors"], list[DesignFactor])
    excluded = msgspec.convert(row["excluded_combinations"], list[dict[str, str | bool]])
    space = space_of(design)
    mask = space.allowed_mask(excluded)
    metric = None
    if row["reward_metric_id"] is not None and row["metric_name"] is not None:
        metric = LinkedMetric(
            row["reward_metric_id"], row["metric_name"], row["metric_reward_type"]
        )
    model = None
    if row["model_id"] is not None:
        model = LinkedModel(
            row["model_id"],
            row["model_status"],
            row["model_current_version"],
            row["model_trained_at"],
        )
    return Optimization(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        model_type=row["model_type"],
        design_factors=design,
        context_factors=msgspec.convert(row["context_factors"], list[ContextFactor]),
        reward_metric_id=row["reward_metric_id"],
        reward_metric=metric,
        attribution=msgspec.convert(row["attribution"], Attribution),
        holdout_percentage=row["holdout_percentage"],
        excluded_combinations=excluded,
        sticky=row["sticky"],
        variants_count=int(mask.sum()),
        variants_total=space.size,
        baseline=Baseline(1, space.variant(1), space.key(1)),
        model=model,
        summary=row["summary"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        training_window=msgspec.convert(row["training_window"], TrainingWindow),
        guardrails=msgspec.convert(row["guardrails"], list[Guardrail]),
        dimensions=list(row["dimensions"]),
        status_reason=None
        if row["status_reason"] is None
        else msgspec.convert(row["status_reason"], StatusReason, strict=False),
    )


def _not_found(optimization_id: UUID) -> NotFound:
    return NotFound(f"no optimization {optimization_id} in this organization")


async def _check_metric(conn: Connection, organization_id: UUID, metric_id: UUID) -> None:
    # 400 rather than 404, and the same message whether the id exists elsewhere or nowhere.
    if await db.find_metric(conn, organization_id, metric_id) is None:
        message = (
            f"no metric {metric_id} in this organization; create one with POST /api/v2/metrics"
        )
        raise ValidationError(
            f"invalid request body at $.reward_metric_id: {message}",
            details=[{"path": "$.reward_metric_id", "message": message}],
        )


async def _fetch_view(
    conn: Connection, organization_id: UUID, optimization_id: UUID
) -> Optimization:
    row = await db.select_optimization(conn, organization_id, optimization_id)
    if row is None:
        raise _not_found(optimization_id)
    return _view(row)


# --- use cases -----------------------------------------------------------------------------


async def create_optimization(
    pool: asyncpg.Pool, organization_id: UUID, body: OptimizationCreate
) -> Optimization:
    """Create it (``live``, or ``draft`` when asked) together with its untrained model."""
    validate_design(
        body.design_factors, body.context_factors, body.excluded_combinations, body.model_type
    )
    config = Config(
        name=body.name,
        model_type=body.model_type,
        design_factors=body.design_factors,
        context_factors=body.context_factors,
        reward_metric_id=body.reward_metric_id,
        attribution=body.attribution,
        holdout_percentage=body.holdout_percentage,
        excluded_combinations=body.excluded_combinations,
        sticky=body.sticky,
        training_window=body.training_window,
        guardrails=body.guardrails,
        dimensions=body.dimensions,
    )
    check_dimensions(config.dimensions, config.context_factors)
    values = _values(config, "draft" if body.draft else "live")
    async with pool.acquire() as conn, conn.transaction():
        await _check_metric(conn, organization_id, body.reward_metric_id)
        await guardrail_rules.check(conn, organization_id, body.guardrails)
        optimization_id = await db.insert_optimization(conn, organization_id, values)
        await models_db.insert_model(conn, organization_id, optimization_id)
        return await _fetch_view(conn, organization_id, optimization_id)


async def list_optimizations(
    pool: asyncpg.Pool, organization_id: UUID, *, limit: int, include_archived: bool
) -> list[Optimization]:
    """Newest first; archived ones only when asked."""
    async with pool.acquire() as conn:
        rows = await db.list_optimizations(conn, organization_id, limit, include_archived)
    return [_view(row) for row in rows]


async def get_optimization(
    pool: asyncpg.Pool, organization_id: UUID, optimization_id: UUID
) -> Optimization:
    async with pool.acquire() as conn:
        return await _fetch_view(conn, organization_id, optimization_id)


async def update_optimization(
    pool: asyncpg.Pool, organization_id: UUID, optimization_id: UUID, body: OptimizationUpdate
) -> Optimization:
    """Apply edits and/or a status transition atomically, under a row lock.

    Order of checks: the transition (409 ``invalid_transition``), read-only archived (409),
    design edits outside draft (409), then the resulting configuration (400). A field sent with
    its current value is not an edit, so a client may send back what it read; the same goes
    for the current status (a no-op, not an error).
    """
    async with pool.acquire() as conn, conn.transaction():
        row = await db.lock_optimization(conn, organization_id, optimization_id)
        if row is None:
            raise _not_found(optimization_id)
        stored = _stored_config(row)
        status: Status = row["status"]
        target = status if body.status is UNSET else body.status
        if target != status:
            lifecycle.check_transition(status, target)

        edits = {
            name: value
            for name, value in msgspec.structs.asdict(body).items()
            if name != "status" and value is not UNSET
        }
        config = msgspec.structs.replace(stored, **edits)
        changed = changed_fields(stored, config)
        if changed and status in lifecycle.READ_ONLY:
            raise Conflict(
                f"an {status} optimization cannot be changed "
                f"(tried to change {', '.join(changed)})",
                details={"status": status, "fields": changed},
            )
        design_changed = [field for field in changed if field in DESIGN_FIELDS]
        if design_changed and status not in lifecycle.DESIGN_EDITABLE:
            raise Conflict(
                f"{', '.join(design_changed)} can change only while the optimization is a "
                f"draft; it is {status}. Create a new optimization to test a different design",
                details={"status": status, "fields": design_changed},
            )
        if set(changed) - {"name"}:
            validate_design(
                config.design_factors,
                config.context_factors,
                config.excluded_combinations,
                config.model_type,
            )
        if "reward_metric_id" in changed and config.reward_metric_id is not None:
            await _check_metric(conn, organization_id, config.reward_metric_id)
        if "guardrails" in changed:
            await guardrail_rules.check(conn, organization_id, config.guardrails)
        if {"dimensions", "context_factors"} & set(changed):
            check_dimensions(config.dimensions, config.context_factors)
        if changed or target != status:
            await db.update_optimization(
                conn, organization_id, optimization_id, _values(config, target)
            )
        return await _fetch_view(conn, organization_id, optimization_id)


async def delete_optimization(
    pool: asyncpg.Pool, organization_id: UUID, optimization_id: UUID
) -> UUID:
    """Delete a draft (with its model); anything else must be archived instead (409)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await db.lock_optimization(conn, organization_id, optimization_id)
        if row is None:
            raise _not_found(optimization_id)
        if row["status"] != "draft":
            raise Conflict(
                f"only drafts can be deleted; this optimization is {row['status']}. Archive it "
                'instead (PATCH {"status": "archived"}), which keeps its data and hides it '
                "from lists",
                details={"status": row["status"]},
            )
        await db.delete_draft(conn, organization_id, optimization_id)
        return optimization_id


async def list_variants(
    pool: asyncpg.Pool, organization_id: UUID, optimization_id: UUID, *, limit: int, offset: int
) -> tuple[list[Variant], int]:
    """A page of the variant space in number order, and the total number of variants."""
    optimization = await get_optimization(pool, organization_id, optimization_id)
    space = space_of(optimization.design_factors)
    mask = space.allowed_mask(optimization.excluded_combinations)
    last = min(space.size, offset + limit)
    page = [
        Variant(n, space.key(n), space.variant(n), not bool(mask[n - 1]))
        for n in range(offset + 1, last + 1)
    ]
    return page, space.size
