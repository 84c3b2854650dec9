"""One optimization's serving config: what a decision needs, built from its row and posterior.

Immutable once built (:func:`build_config`); the caches inside memoize pure functions of it
(decision pools per known context, variants, the mean model's winners) and the sticky
assignments this process has seen. :mod:`levered.services.serving_state` keeps one per
optimization and rebuilds it when the database says it changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, cast
from uuid import UUID

import numpy as np
import numpy.typing as npt

from levered.bandit.posterior import Posterior, make_posterior
from levered.bandit.sampler import Pool, Sampler
from levered.bandit.variants import Level, VariantSpace
from levered.db import serving as db
from levered.schemas.optimizations import Status
from levered.services.lifecycle import SERVE_MODE, ServeMode

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
ContextKey = tuple[tuple[str, str | bool], ...]
"""A context reduced to the (factor, value) pairs the model knows, sorted: the cache key."""

MAX_CONTEXTS: Final = 4_096
"""Per config: cached decision pools and winners, one per known-context combination."""
STICKY_GENERATION: Final = 50_000
"""Per config: sticky assignments per generation of the in-process cache (two are kept)."""


class StickyCache:
    """The sticky assignments this process has seen, bounded, recent users first.

    Two generations of at most ``generation`` users each: a new user goes into the current one;
    when it is full it becomes the previous one (the one before is dropped) and a fresh one
    starts; a hit in the previous generation moves the user back into the current one. So a
    user who keeps coming back stays in memory however many new users pass through, and a
    burst of new users evicts only those not seen for a whole generation — who are then read
    from the database on their next serve (the database has every assignment). Clearing one
    dict when it was full, as before, sent every returning user back to the database at once.

    Entries are plain tuples of atomic values (the decision id as its 128-bit int), which the
    cyclic garbage collector stops tracking after their first collection. As
    :class:`~levered.db.serving.Assignment` (a tuple subclass holding a ``UUID`` object) each
    entry was two tracked objects, and with new users arriving the cache's 10⁵ entries made
    every full collection walk them: measured under new-caller-id load, 16 full collections in
    30 s stalled the worker's event loop for up to 78 ms each — the serves' p99. Rebuilding the
    ``UUID`` on a hit costs 0.6 µs.
    """

    __slots__ = ("current", "generation", "previous")

    def __init__(self, generation: int = STICKY_GENERATION) -> None:
        self.generation = generation
        self.current: dict[str, _Entry] = {}
        self.previous: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self.current) + len(self.previous)

    def get(self, anonymous_id: str) -> db.Assignment | None:
        hit = self.current.get(anonymous_id)
        if hit is None and self.previous:
            hit = self.previous.pop(anonymous_id, None)
            if hit is not None:
                self._put(anonymous_id, hit)
        if hit is None:
            return None
        variant_number, holdout, decision_id, propensity, model_version = hit
        return db.Assignment(
            variant_number, holdout, UUID(int=decision_id), propensity, model_version
        )

    def put(self, anonymous_id: str, assignment: db.Assignment) -> None:
        a = assignment
        entry = (a.variant_number, a.holdout, a.decision_id.int, a.propensity, a.model_version)
        self._put(anonymous_id, entry)

    def _put(self, anonymous_id: str, entry: _Entry) -> None:
        current = self.current
        if len(current) >= self.generation and anonymous_id not in current:
            self.previous, self.current = current, {}
            current = self.current
        current[anonymous_id] = entry


_Entry = tuple[int, bool, int, float, int | None]
"""A cached assignment: variant number, holdout, decision id (``UUID.int``), propensity, model
version — atomic values only, so the tuple is untracked by the garbage collector."""


@dataclass
class ServingConfig:
    """Everything a decision needs about one optimization, immutable once built (the caches
    inside only memoize pure functions of it)."""

    id: UUID
    id_bytes: bytes
    organization_id: UUID
    status: str
    mode: ServeMode
    space: VariantSpace
    allowed_idx: I64
    holdout_fraction: float
    sticky: bool
    context_dtypes: dict[str, str]
    live_since: datetime | None
    model_key: tuple[Any, ...]
    model_version: int | None
    sampler: Sampler | None
    mean_sampler: Sampler | None
    vocab: frozenset[tuple[str, type, Any]]
    mab_winner: int | None
    pools: dict[ContextKey, Pool] = field(default_factory=dict)
    winners: dict[ContextKey, int] = field(default_factory=dict)
    variants: dict[int, tuple[dict[str, Level], str]] = field(default_factory=dict)
    assignments: StickyCache = field(default_factory=StickyCache)

    def known_context(self, context: Mapping[str, str | bool]) -> ContextKey:
        """The pairs of ``context`` the model has a column for (others use the population
        model, so they do not change a decision and do not split the caches)."""
        vocab = self.vocab
        if not context or not vocab:
            return ()
        pairs = [(k, v) for k, v in context.items() if (k, type(v), v) in vocab]
        if len(pairs) > 1:
            pairs.sort()
        return tuple(pairs)

    def variant(self, number: int) -> tuple[dict[str, Level], str]:
        hit = self.variants.get(number)
        if hit is None:
            hit = (self.space.variant(number), self.space.key(number))
            if len(self.variants) < MAX_CONTEXTS * 4:
                self.variants[number] = hit
        return hit

    def remember(self, anonymous_id: str, assignment: db.Assignment) -> None:
        self.assignments.put(anonymous_id, assignment)


def build_config(
    row: Mapping[str, Any], posterior: bytes | None, previous: ServingConfig | None
) -> ServingConfig:
    """A config from its database row (CPU work: run it off the event loop).

    The sampler, decision pools and winners are reused from ``previous`` when the model and the
    allowed variants are the same (a status change does not throw away warm caches), and so are
    the in-process sticky assignments while the optimization stays live in the same period
    (a retrain does not move assigned users).
    """
    space = VariantSpace.of(row["design_factors"])
    excluded = row["excluded_combinations"] or []
    model_key = model_key_of(row)
    status = str(row["status"])
    same_model = previous is not None and previous.model_key == model_key
    if previous is not None and same_model:
        allowed_idx = previous.allowed_idx
        sampler, mean_sampler = previous.sampler, previous.mean_sampler
        vocab, mab_winner = previous.vocab, previous.mab_winner
        pools, winners, variants = previous.pools, previous.winners, previous.variants
    else:
        mask = space.allowed_mask(excluded)
        allowed_idx = np.ascontiguousarray(np.flatnonzero(mask).astype(np.int64))
        sampler = mean_sampler = None
        vocab, mab_winner = frozenset(), None
        pools, winners, variants = {}, {}, {}
        if posterior is not None and row["model_version"] is not None:
            decoded = Posterior.decode(posterior)
            if decoded.n_variants != space.size:
                raise ValueError(
                    f"model version {row['model_version']} has {decoded.n_variants} variants, "
                    f"the optimization {space.size}"
                )
            version = int(row["model_version"])
            rules = space.rule_levels(excluded)  # lets the large-space search prune them
            sampler = Sampler(decoded, mask, version, excluded=rules)
            if decoded.model_type == "mab":
                mab_winner = _mab_winner(decoded, allowed_idx)
            else:
                mean_sampler = Sampler(_posterior_mean(decoded), mask, version, excluded=rules)
                vocab = frozenset((n, type(v), v) for n, v in decoded.context_vocab)
    keep_sticky = (
        previous is not None
        and previous.status == "live"
        and status == "live"
        and previous.live_since == row["live_since"]
    )
    config = ServingConfig(
        id=row["id"],
        id_bytes=row["id"].bytes,
        organization_id=row["organization_id"],
        status=status,
        mode=SERVE_MODE[cast(Status, status)],  # the CHECK constraint admits only Status values
        space=space,
        allowed_idx=allowed_idx,
        holdout_fraction=float(row["holdout_percentage"]) / 100.0,
        sticky=bool(row["sticky"]),
        context_dtypes={str(f["name"]): str(f.get("dtype", "str")) for f in row["context_factors"]},
        live_since=row["live_since"],
        model_key=model_key,
        model_version=None if sampler is None else int(row["model_version"]),
        sampler=sampler,
        mean_sampler=mean_sampler,
        vocab=vocab,
        mab_winner=mab_winner,
        pools=pools,
        winners=winners,
        variants=variants,
        assignments=previous.assignments if keep_sticky and previous is not None else StickyCache(),
    )
    if sampler is not None and config.mode == "explore":
        compute_pool(config, ())  # the no-context pool, ready before the first serve
    return config


def model_key_of(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What the sampler depends on: when equal, a rebuilt config reuses it and its caches."""
    return (
        row["model_id"],
        row["model_version"],
        repr(row["design_factors"]),
        repr(row["excluded_combinations"] or []),
        row["model_type"],
    )


def compute_pool(config: ServingConfig, key: ContextKey) -> Pool:
    """The decision pool of a known context (blocking: ≈ 1–200 ms, run off the loop)."""
    hit = config.pools.get(key)
    if hit is not None:
        return hit
    assert config.sampler is not None
    pool = config.sampler.pool(dict(key))
    if len(config.pools) >= MAX_CONTEXTS:
        config.pools.clear()
    config.pools[key] = pool
    return pool


def _mab_winner(posterior: Posterior, allowed_idx: I64) -> int:
    if posterior.kind == "beta":
        alpha, beta = posterior.array("alpha"), posterior.array("beta")
        mean = alpha / (alpha + beta)
    else:
        mean = posterior.array("mu")
    return int(allowed_idx[int(np.argmax(mean[allowed_idx]))]) + 1


def _posterior_mean(posterior: Posterior) -> Posterior:
    """The same GLM with a zero covariance: its Thompson draw is the posterior mean θ, so the
    sampler's argmax is the variant with the best mean linear predictor for the context."""
    mean = posterior.array("mean")
    return make_posterior(
        posterior.kind,
        posterior.reward_type,
        posterior.level_counts,
        {"mean": mean, "chol": np.zeros((mean.size, mean.size))},
        context_vocab=list(posterior.context_vocab),
        y_mean=posterior.y_mean,
        y_scale=posterior.y_scale,
        meta=dict(posterior.meta),  # the coding and learned scales: the same column layout
    )
