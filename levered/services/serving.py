"""Serving (docs/serving.md): which variant this user sees now, and the exposure it makes.

By status (``levered.services.lifecycle.SERVE_MODE``):

- ``draft``/``archived``: 409 ``not_live``.
- ``live``: holdout users (a stable hash of (optimization, anonymous id) below the holdout
  share) get the baseline, variant 1; everyone else gets a Thompson draw of the current model
  version, or a uniform draw over the allowed variants before the first training. With
  ``sticky`` the first decision is stored and later serves return it (same decision id,
  propensity and model version) until the optimization leaves live.
- ``paused``: the baseline for everyone (propensity 1).
- ``shipped``/``completed``: the current winner for the context — the allowed variant with the
  best posterior-mean score (no exploration, propensity 1); the baseline before any training.
  Holdout applies only while live: outside it ``holdout`` is false.

Thompson decisions pick one of the model version's posterior samples with the decision's seed
(:class:`~levered.bandit.sampler.Pool`: the winners of the version's 1,000 samples are
computed once per context, so a decision is a lookup).

Propensity (live): the probability that the *logging policy* shows the served variant to a
user with this context, before the holdout hash is known — holdout mixing included:
``P(v) = h·[v = 1] + (1 − h)·p_TS(v | context)``, with ``p_TS`` the variant's share of the
pool (exact for the policy that served it) or ``1 / allowed`` before training. The exposure
also records ``holdout``, so an analysis can condition on it instead.

Replay: a decision's kernel seed is ``decision_seed(model_version, decision_id.int)``
(uuid as a 128-bit integer), so (model version, decision id, context) reproduce it:
:func:`replay`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NoReturn
from uuid import UUID

import numpy as np

from levered.bandit.sampler import Sampler, decision_seed
from levered.db import serving as db
from levered.db.pool import database_deadline, stateless
from levered.errors import NotFound, NotLive, ValidationError
from levered.schemas.serving import Served, ServeRequest
from levered.services.exposure_buffer import ExposureBuffer
from levered.services.random_ids import random_uuid, time_ordered_hex
from levered.services.serving_config import ContextKey, ServingConfig, compute_pool
from levered.services.serving_state import ServingState

BASELINE: Final = 1
_TWO_64: Final = float(2**64)


@dataclass(frozen=True, slots=True)
class Decision:
    variant_number: int
    holdout: bool
    propensity: float
    model_version: int | None
    decision_id: UUID


# -- pure pieces ------------------------------------------------------------------------------


def holdout_bucket(optimization_id: UUID | bytes, anonymous_id: str) -> float:
    """A uniform number in [0, 1) fixed by (optimization, anonymous id): BLAKE2b-64 of the id's
    16 bytes followed by the UTF-8 anonymous id. Stable across processes, versions and
    restarts (no Python ``hash`` salt); independent between optimizations."""
    key = optimization_id if isinstance(optimization_id, bytes) else optimization_id.bytes
    digest = hashlib.blake2b(key + anonymous_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / _TWO_64


def in_holdout(optimization_id: UUID | bytes, anonymous_id: str, percentage: float) -> bool:
    return holdout_bucket(optimization_id, anonymous_id) < percentage / 100.0


def kernel_seed(model_version: int | None, decision_id: UUID) -> int:
    """The 32-bit sampler seed of a decision (see the module docstring)."""
    return decision_seed(model_version or 0, decision_id.int)


def clean_context(config: ServingConfig, context: Mapping[str, Any] | None) -> dict[str, Any]:
    """The request's context, checked against the optimization's context factors.

    A key that is not a context factor is a 400 naming it and the declared factors: ignoring
    it would let a typo (``device`` for ``device_type``) switch personalization off unnoticed.
    ``null`` counts as absent; a value of the wrong type (a ``str`` factor needs a string, a
    ``bool`` factor a boolean), or a string with a NUL (PostgreSQL cannot store U+0000), is a
    400 that names the key.
    """
    if not context:
        return {}
    dtypes = config.context_dtypes
    out: dict[str, Any] = {}
    for name, value in context.items():
        dtype = dtypes.get(name)
        if dtype is None:
            _unknown_key(name, dtypes)
        if value is None:
            continue
        if dtype == "bool" and not isinstance(value, bool):
            _wrong_type(name, "a boolean", value)
        if dtype == "str":
            if not isinstance(value, str):
                _wrong_type(name, "a string", value)
            if "\x00" in value:
                _refuse_nul(f"$.context.{name}")
        out[name] = value
    return out


def check_anonymous_id(anonymous_id: str | None) -> None:
    """400 for a NUL in the caller's id (it would fail the sticky claim and every exposure
    write: PostgreSQL text cannot hold U+0000), as ingestion refuses it."""
    if anonymous_id is not None and "\x00" in anonymous_id:
        _refuse_nul("$.anonymous_id")


def _refuse_nul(path: str) -> NoReturn:
    message = "the NUL character (U+0000) cannot be stored"
    raise ValidationError(
        f"invalid request body at {path}: {message}",
        details=[{"path": path, "message": message}],
    )


def _unknown_key(name: str, dtypes: Mapping[str, str]) -> NoReturn:
    declared = ", ".join(dtypes) if dtypes else None
    raise ValidationError(
        f"invalid request body at $.context.{name}: '{name}' is not a context factor of this "
        + (
            f"optimization; its context factors are: {declared}"
            if declared
            else "optimization, which has no context factors (send no context)"
        ),
        details=[
            {
                "path": f"$.context.{name}",
                "message": "not a context factor of this optimization",
                "context_factors": list(dtypes),
            }
        ],
    )


def _wrong_type(name: str, expected: str, value: Any) -> NoReturn:
    got = "a number" if isinstance(value, int | float) else type(value).__name__
    if isinstance(value, bool):
        got = "a boolean"
    elif isinstance(value, dict):
        got = "an object"
    elif isinstance(value, list):
        got = "an array"
    raise ValidationError(
        f"invalid request body at $.context.{name}: context factor '{name}' takes {expected}, "
        f"got {got}",
        details=[{"path": f"$.context.{name}", "message": f"expected {expected}, got {got}"}],
    )


def decide(
    config: ServingConfig,
    anonymous_id: str,
    context: Mapping[str, Any],
    decision_id: UUID,
    key: ContextKey | None = None,
) -> Decision:
    """One decision, synchronously (the in-process hot path; no I/O).

    Expects ``context`` already cleaned; ``key`` is its ``config.known_context`` when the
    caller has it already. Decision pools come from the config's cache; a miss is computed
    here (blocking) — the async :func:`serve` warms the cache off the loop first.
    """
    mode = config.mode
    if mode == "refuse":
        raise NotLive(
            f"optimization {config.id} is {config.status}: nothing is served (show your fallback)",
            details={"status": config.status},
        )
    if mode == "baseline":
        return Decision(BASELINE, False, 1.0, config.model_version, decision_id)
    if mode == "winner":
        return Decision(winner(config, context), False, 1.0, config.model_version, decision_id)
    # in_holdout's rule, with the fraction precomputed (percentage / 100) in the config.
    holdout = config.holdout_fraction > 0 and (
        holdout_bucket(config.id_bytes, anonymous_id) < config.holdout_fraction
    )
    sampler = config.sampler
    seed = kernel_seed(config.model_version, decision_id)
    if sampler is None:
        n = config.allowed_idx.shape[0]
        number = BASELINE if holdout else int(config.allowed_idx[seed % n]) + 1
        p_ts = 1.0 / n  # the baseline is always allowed (it cannot be excluded)
    else:
        if key is None:
            key = config.known_context(context)
        pool = config.pools.get(key) or compute_pool(config, key)
        number = BASELINE if holdout else pool.number(seed)
        p_ts = float(pool.probs[number - 1])
    h = config.holdout_fraction
    propensity = (1.0 - h) * p_ts + (h if number == BASELINE else 0.0)
    return Decision(number, holdout, propensity, config.model_version, decision_id)


def winner(config: ServingConfig, context: Mapping[str, Any]) -> int:
    """The allowed variant with the best posterior mean for the context (baseline untrained)."""
    if config.mab_winner is not None:
        return config.mab_winner
    if config.mean_sampler is None:
        return BASELINE
    key = config.known_context(context)
    hit = config.winners.get(key)
    if hit is None:
        hit = config.mean_sampler.choose(0, dict(key))
        if len(config.winners) >= 4096:
            config.winners.clear()
        config.winners[key] = hit
    return hit


def replay(
    sampler: Sampler | None,
    allowed_idx: np.ndarray[Any, np.dtype[np.int64]],
    model_version: int | None,
    decision_id: UUID,
    context: Mapping[str, Any] | None = None,
) -> int:
    """The variant a (non-holdout, live) decision served, recomputed from its recipe: the model
    version's sampler (None before training), the allowed variants, the decision id and the
    context as recorded in the exposure (the context's pool is recomputed: one call costs as
    much as a pool)."""
    seed = kernel_seed(model_version, decision_id)
    if sampler is None:
        return int(allowed_idx[seed % allowed_idx.shape[0]]) + 1
    return sampler.pool(context).number(seed)


# -- the use case -----------------------------------------------------------------------------


async def serve(
    state: ServingState,
    buffer: ExposureBuffer,
    optimization_id: UUID,
    request: ServeRequest,
    caller_organization: UUID | None = None,
) -> tuple[Served, UUID]:
    """Decide, keep it sticky, buffer the exposure; returns the decision and the optimization's
    organization (the response's ``meta``).

    Serving is public; a caller that did authenticate (an API key) sees only its own
    organization's optimizations, like every other org-scoped endpoint (404 otherwise).
    """
    config = await state.get(optimization_id)
    if caller_organization is not None and caller_organization != config.organization_id:
        raise NotFound(f"optimization {optimization_id} not found")
    check_anonymous_id(request.anonymous_id)
    context = clean_context(config, request.context)
    generated = request.anonymous_id is None
    anonymous_id = request.anonymous_id or time_ordered_hex()
    explore = config.mode == "explore"
    # A server-generated id is new everywhere: no assignment to look up.
    known = (
        config.assignments.get(anonymous_id)
        if explore and config.sticky and not generated
        else None
    )
    if known is not None:  # a returning sticky user: no draw at all (the kernel is most of one)
        decision = _from_assignment(known)
    else:
        key: ContextKey | None = None
        if explore and config.sampler is not None:
            key = config.known_context(context)
            if key not in config.pools:
                await state.decision_pool(config, key)
        decision = decide(config, anonymous_id, context, random_uuid(), key)
        if explore and config.sticky:
            decision = await _sticky(
                state, buffer, config, anonymous_id, decision, generated, request
            )
    variant, variant_key = config.variant(decision.variant_number)
    if not request.dry_run:
        buffer.add(
            (
                config.organization_id,
                config.id,
                anonymous_id,
                variant,
                decision.variant_number,
                context,
                datetime.now(UTC),
                decision.propensity,
                decision.decision_id,
                decision.model_version,
                decision.holdout,
            )
        )
    served = Served(
        config.id,
        anonymous_id,
        variant,
        decision.variant_number,
        variant_key,
        decision.holdout,
        decision.propensity,
        decision.model_version,
        decision.decision_id,
    )
    return served, config.organization_id


async def _sticky(
    state: ServingState,
    buffer: ExposureBuffer,
    config: ServingConfig,
    anonymous_id: str,
    fresh: Decision,
    generated: bool,
    request: ServeRequest,
) -> Decision:
    """The user's stored decision if any, else ``fresh`` (stored unless a dry run).

    A server-generated id cannot have an assignment anywhere yet, so its row joins the
    exposure buffer (no round trip); a caller's id is claimed in the database (atomic against
    other processes; claims arriving together share a statement:
    :mod:`levered.services.assignment_claims`) unless this process already knows it.
    """
    known = None if generated else config.assignments.get(anonymous_id)
    if known is not None:
        return _from_assignment(known)
    mine = db.Assignment(
        fresh.variant_number,
        fresh.holdout,
        fresh.decision_id,
        fresh.propensity,
        fresh.model_version,
    )
    if generated:
        if not request.dry_run:
            buffer.add_assignment((config.id, anonymous_id, config.organization_id, *mine))
            config.remember(anonymous_id, mine)
        return fresh
    if request.dry_run:
        async with (
            database_deadline("reading the sticky assignment"),
            stateless(state.claims) as conn,
        ):
            found = await db.select_assignment(conn, config.id, anonymous_id, config.live_since)
        if found is None:
            return fresh
    else:
        row = (config.id, anonymous_id, config.organization_id, *mine)
        # bounded by the batcher (DB_WAIT_S from now, else 503): no timer per claim
        found = await state.claim_batcher.claim(row, config.live_since)
    config.remember(anonymous_id, found)
    return _from_assignment(found)


def _from_assignment(a: db.Assignment) -> Decision:
    return Decision(a.variant_number, a.holdout, a.propensity, a.model_version, a.decision_id)
