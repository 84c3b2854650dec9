"""Wire Structs of ``/api/v2/models`` (docs/training.md, "Models API"). Decisions:
docs/training.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal
from uuid import UUID

import msgspec
from msgspec import Meta

from levered.schemas.common import ResponseMeta

ModelStatus = Literal["untrained", "training", "trained", "failed"]
Level = str | bool

MAX_BIAS: Final = 10.0
"""Largest per-factor exploration bias: a coefficient's posterior sd grows at most 11-fold."""
BiasMap = Annotated[
    dict[str, float],
    Meta(
        description="Design factor name → exploration bias b, a number from 0 to 10: the "
        "posterior sd of what the factor contributes is multiplied by 1 + b, means unchanged "
        "(docs/training.md, Bias). Checked by the service, which names the offending key."
    ),
]


class Model(msgspec.Struct, frozen=True):
    """One model as the API shows it (also each item of a list)."""

    id: UUID
    optimization_id: UUID
    optimization_name: str
    optimization_status: str
    model_type: str
    status: ModelStatus
    current_version: int | None
    """The version serving uses; null before the first successful training."""
    trained_at: datetime | None
    """When the current version was trained."""
    last_error: str | None
    """Why the last training failed (status ``failed``); serving keeps the current version."""
    created_at: datetime
    updated_at: datetime
    bias: dict[str, float] | None = None
    """The exploration bias of the current version (null: none)."""


class ModelResponse(Model, frozen=True, kw_only=True):
    meta: ResponseMeta


class ModelList(msgspec.Struct, frozen=True):
    models: list[Model]
    meta: ResponseMeta


class ModelVersion(msgspec.Struct, frozen=True):
    """One immutable training result (the posterior itself is not shown, only its kind)."""

    model_id: UUID
    optimization_id: UUID
    version: int
    kind: str
    """``beta`` / ``nig`` (mab), ``laplace_logistic`` / ``laplace_gaussian`` (cmab)."""
    window_start: datetime | None
    """First exposure time trained on; null = all history."""
    window_end: datetime
    """The as-of time: exposures whose window closed by then are the observations."""
    counts: dict[str, Any]
    seed: int
    trained_at: datetime
    bias: dict[str, float] | None = None
    """The exploration bias the posterior was widened by (null: the plain posterior)."""


class ModelVersionResponse(ModelVersion, frozen=True, kw_only=True):
    meta: ResponseMeta


class TrainRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Optional body of ``POST /api/v2/models/{id}/train``."""

    bias: BiasMap | None = None
    """Per design factor, widen the posterior of what it contributes (more exploration of its
    levels). Absent or null: keep the current version's bias; ``{}``: no bias."""


class Interval(msgspec.Struct, frozen=True):
    """A posterior mean with its 95 % credible interval."""

    mean: float
    lo: float
    hi: float


class Coefficient(msgspec.Struct, frozen=True):
    """One GLM column: its name, kind (main, pair, context, context_interaction), posterior mean
    and 95 % interval on the link scale (log-odds for bool, standardized for numeric)."""

    name: str
    kind: str
    mean: float
    lo: float
    hi: float


class ContextCell(msgspec.Struct, frozen=True):
    """A frequent context cell of the training data (``{}``: exposures without context)."""

    context: dict[str, Any]
    exposures: float


class VariantState(msgspec.Struct, frozen=True):
    number: int
    variant_key: str
    variant: dict[str, Level]
    expected_reward: Interval | None
    prob_best: float | None
    weight: float
    """Traffic share: prob_best × (1 − holdout); uniform over allowed variants untrained."""


class ModelState(msgspec.Struct, frozen=True):
    model_id: UUID
    optimization_id: UUID
    status: ModelStatus
    version: int | None
    kind: str | None
    trained_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    counts: dict[str, Any] | None
    seed: int | None
    holdout_percentage: float
    variants: list[VariantState]
    """Allowed variants, highest weight first, at most ``limit``."""
    variants_total: int
    """Allowed variants in all (before ``limit``)."""
    note: str | None
    meta: ResponseMeta
    context: dict[str, Any] | None = None
    """The context the expected rewards and weights describe; None: the population."""
    coefficients: list[Coefficient] | None = None
    """cmab: the 50 largest coefficients by |mean| with 95 % intervals; None for mab."""
    context_cells: list[ContextCell] | None = None
    """cmab: the most frequent context cells in training (what the population averages)."""
    bias: dict[str, float] | None = None
    """The current version's exploration bias (null: none); weights and intervals are those
    of the widened posterior."""
    prior_scales: dict[str, float] | None = None
    """cmab: the prior sd of each coefficient block (``headline`` mains, ``headline × cta``
    pairs, ``device × headline`` context terms), learned from the cells by empirical Bayes at
    training; None for mab and for versions trained before scales were learned."""


class ModelDeleted(msgspec.Struct, frozen=True):
    id: UUID
    deleted: bool
    replacement_id: UUID
    """The optimization's new, untrained model (serving falls back to uniform)."""
    meta: ResponseMeta


def with_meta(model: Model, meta: ResponseMeta) -> ModelResponse:
    return ModelResponse(**msgspec.structs.asdict(model), meta=meta)


def version_with_meta(version: ModelVersion, meta: ResponseMeta) -> ModelVersionResponse:
    return ModelVersionResponse(**msgspec.structs.asdict(version), meta=meta)
