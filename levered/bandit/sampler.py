"""Thompson sampling (Thompson 1933; Chapelle & Li 2011): serve the argmax of one posterior draw.

Each decision draws one sample of the model parameters and serves the best-scoring *allowed*
variant, so a variant is served with exactly its posterior probability of being the best.

- cmab: θ = μ + L z, z ~ N(0, I) (L the Cholesky factor of the Laplace covariance), then
  score(v) = Σ_f main[f, l_f(v)] + Σ_{f<g} pair[f, g, l_f(v), l_g(v)] for the request's
  context, where ``main`` already holds the context × design terms of the known context
  values. Intercept and context mains are constant across variants, so they are not drawn;
  a bool model is scored on the logit scale (σ is monotone, the argmax is the same). Small
  spaces score every allowed variant; large ones (three factors or more, from
  :data:`BRANCH_AND_BOUND_FROM` allowed variants) find the same argmax by branch and bound over
  the factors (:mod:`levered.bandit.argmax`), whose cost follows the draw, not the space size.
- mab: one draw per allowed variant from its own posterior — Beta for bool, NIG for numeric
  (σ² = β / Gamma(α, 1), then μ ~ N(μₙ, σ²/κ)).

Two ways to use the draws:

- :meth:`Sampler.choose` makes a fresh draw per decision (simulations, the regret benchmark,
  the posterior-mean "winner").
- Serving uses a :class:`Pool`: each model version draws ``pool_size`` (1,000) posterior
  samples once, from a seed fixed by the version; for a context the winner of every sample is
  computed once (≈ the cost of 1,000 fresh decisions, off the request path), and a decision
  then picks one of them uniformly with its seed. That *is* Thompson sampling, from the
  version's 1,000-sample approximation of the posterior: every decision still serves the
  argmax of a posterior draw, at the cost of an array lookup, and the logged propensity — the
  share of the pool's samples the served variant wins — is the exact probability of the
  serving policy, not a Monte Carlo estimate of it (what inverse-propensity estimates need).
  The pool's sampling error (≈ √(p(1−p)/1000) on a variant's share) is redrawn with every
  model version.

Replay: numba's generator is separate from numpy's and per thread, so every kernel seeds it
itself (MT19937, the same stream as ``numpy.random.RandomState``) from the explicit ``seed``.
Serving derives that seed with :func:`decision_seed` from (model version, decision seed); the
same posterior, context, allowed set and seed always give the same variant.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from levered.bandit.argmax import Layout
from levered.bandit.design import Design, levels_matrix
from levered.bandit.kernels import (
    glm_choose,
    glm_choose_bnb,
    glm_winners,
    glm_winners_bnb,
    mab_choose,
    mab_winners,
)
from levered.bandit.posterior import Posterior

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

POOL_SIZE: Final = 1000
"""Posterior samples per model version that serving decisions pick from (see the docstring)."""
CONTEXT_CACHE: Final = 4096
BRANCH_AND_BOUND_FROM: Final = 2_500
"""cmab spaces of three factors or more with at least this many allowed variants find each
draw's argmax by branch and bound (:mod:`levered.bandit.argmax`) instead of scoring every
variant. Measured on fitted posteriors (benchmarks/README.md, Sampler): enumeration wins below
about 2,000 variants, the search from about 3,000 (1.3× at 15×15×15, 3× at 10⁴, 10–20× at
10⁵). With two factors the search must read the whole pair table, an enumeration's work, so
it never wins there (0.6× at 100×100)."""
_KIND_CODE = {"beta": 0, "nig": 1}

Argmax = Literal["auto", "enumerate", "branch_and_bound"]


def decision_seed(model_version: int, seed: int) -> int:
    """The 32-bit kernel seed of a decision: a hash of (model version, decision seed).

    Mixing the version in makes a stored (version, seed) pair the complete recipe for a replay
    while keeping the streams of different versions unrelated.
    """
    digest = hashlib.blake2b(f"{model_version}:{seed}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def pool_seed(model_version: int) -> int:
    """The 32-bit seed of a model version's posterior samples (:class:`Pool`)."""
    digest = hashlib.blake2b(f"pool:{model_version}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


# --------------------------------------------------------------------------- cmab kernels


@dataclass(frozen=True, slots=True)
class Pool:
    """A model version's serving decisions for one context: the winner of each of its posterior
    samples, and the exact probability of each variant under "pick a sample uniformly"."""

    winners: I64
    """0-based index of the variant each posterior sample serves."""
    probs: F64
    """Serving probability per variant (index = number − 1): its share of ``winners``."""

    @classmethod
    def of(cls, winners: I64, n_variants: int) -> Pool:
        probs = np.bincount(winners, minlength=n_variants).astype(np.float64) / winners.size
        probs.setflags(write=False)
        winners.setflags(write=False)
        return cls(winners, probs)

    def number(self, seed: int) -> int:
        """The served variant's number for a decision's kernel seed."""
        return int(self.winners[seed % self.winners.shape[0]]) + 1


class Sampler:
    """A posterior prepared for serving: contiguous arrays, allowed variants, the version's
    posterior samples.

    Build one per (model version, allowed mask) when a version is loaded. :meth:`pool` gives a
    context's serving decisions (callers cache it per context); :meth:`choose` makes one fresh
    Thompson draw. Thread-safe (the kernels release the GIL, numba's generator state is per
    thread, and the lazily drawn samples are a pure function of the version).

    cmab only: ``argmax`` picks how a draw's best variant is found — ``"enumerate"`` scores
    every allowed variant (a per-variant term table, ``terms``, is built once), while
    ``"branch_and_bound"`` searches the factors (``layout``; no per-variant array) — both give
    the same variant; ``"auto"`` chooses by size (:data:`BRANCH_AND_BOUND_FROM`). ``excluded``
    (the exclusion rules behind ``allowed``, as :meth:`VariantSpace.rule_levels` gives them)
    is optional: with it the search drops a partial assignment as soon as it matches a rule of
    three factors or more, instead of rejecting its variants one by one at the leaves — which
    matters when the model favours a large excluded region.
    """

    def __init__(
        self,
        posterior: Posterior,
        allowed: B | None = None,
        model_version: int = 0,
        pool_size: int = POOL_SIZE,
        argmax: Argmax = "auto",
        excluded: Sequence[Mapping[int, int]] = (),
    ) -> None:
        self.posterior = posterior
        self.model_version = model_version
        self.pool_size = int(pool_size)
        n = posterior.n_variants
        mask = np.ones(n, dtype=np.bool_) if allowed is None else np.asarray(allowed, np.bool_)
        if mask.shape != (n,):
            raise ValueError(f"allowed mask has shape {mask.shape}, expected ({n},)")
        if not mask.any():
            raise ValueError("no variant is allowed")
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.allowed_idx = np.ascontiguousarray(np.flatnonzero(mask).astype(np.int64))
        self._thetas: F64 | None = None
        self._mab_pool: Pool | None = None
        if posterior.model_type == "mab":
            self._kind = _KIND_CODE[posterior.kind]
            names = ("alpha", "beta") if self._kind == 0 else ("mu", "kappa", "alpha", "beta")
            arrays = [posterior.array(name) for name in names]
            if self._kind == 0:
                arrays += [arrays[0], arrays[0]]
            self._mab = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in arrays)
            return
        from levered.bandit.glm import design_of

        d: Design = design_of(posterior)
        self.design = d
        self.mean = np.ascontiguousarray(posterior.array("mean"), dtype=np.float64)
        self.chol = np.ascontiguousarray(posterior.array("chol"), dtype=np.float64)
        if argmax == "auto":
            big = self.allowed_idx.size >= BRANCH_AND_BOUND_FROM and len(d.level_counts) >= 3
            argmax = "branch_and_bound" if big else "enumerate"
        self.argmax: Argmax = argmax
        self.terms: npt.NDArray[np.int32] | None = None
        self.layout: Layout | None = None
        if argmax == "branch_and_bound":
            self.layout = Layout(d.level_counts, d.pair_f, d.pair_g, mask, excluded)
        else:
            levels = levels_matrix(d.level_counts)[self.allowed_idx]
            k = d.main_idx.shape[1]
            n_f = levels.shape[1]
            main_terms = np.arange(n_f) * k + levels
            pair_terms = n_f * k + (np.arange(d.pair_f.size) * k + levels[:, d.pair_f]) * k
            pair_terms = pair_terms + levels[:, d.pair_g]
            self.terms = np.ascontiguousarray(np.hstack([main_terms, pair_terms]), dtype=np.int32)
        n_mp = max(int(d.main_idx.max(initial=-1)), int(d.pair_idx.max(initial=-1))) + 1
        self._base_range = np.array([[0, n_mp]], dtype=np.int64)
        self._contexts: dict[Any, tuple[I64, I64]] = {}

    def _context_args(self, context: Mapping[str, Any] | None) -> tuple[I64, I64]:
        """(known context columns, row ranges of θ to draw), memoized per context."""
        try:
            key: Any = tuple(sorted(context.items())) if context else ()
            hit = self._contexts.get(key)
        except TypeError:  # unhashable or unorderable values: compute without caching
            key, hit = None, None
        if hit is not None:
            return hit
        d = self.design
        cols = d.context_columns(context)
        ranges = [self._base_range]
        for c in cols:
            block = d.cd_idx[c][d.cd_idx[c] >= 0]
            if block.size:
                ranges.append(np.array([[block.min(), block.max() + 1]], dtype=np.int64))
        out = (cols, np.ascontiguousarray(np.vstack(ranges), dtype=np.int64))
        if key is not None:
            if len(self._contexts) >= CONTEXT_CACHE:
                self._contexts.clear()
            self._contexts[key] = out
        return out

    def choose(self, seed: int, context: Mapping[str, Any] | None = None) -> int:
        """The variant number of one fresh Thompson draw for a kernel seed
        (see :func:`decision_seed`)."""
        seed = int(seed) & 0xFFFFFFFF
        if self.posterior.model_type == "mab":
            a, b, c, d = self._mab
            return int(mab_choose(seed, self._kind, a, b, c, d, self.allowed_idx)) + 1
        cols, ranges = self._context_args(context)
        ds = self.design
        if self.layout is not None:
            v = glm_choose_bnb(
                seed,
                self.mean,
                self.chol,
                ranges,
                ds.main_idx,
                ds.pair_idx,
                ds.cd_idx,
                cols,
                self.layout.args,
            )
            return int(v) + 1
        assert self.terms is not None
        v = glm_choose(
            seed,
            self.mean,
            self.chol,
            ranges,
            ds.main_idx,
            ds.pair_idx,
            ds.cd_idx,
            cols,
            self.terms,
            self.allowed_idx,
        )
        return int(v) + 1

    def thetas(self) -> F64:
        """cmab: the version's ``pool_size`` posterior samples of the coefficients that differ
        between variants (rows: θ = μ + L z for the columns before the intercept, z from
        ``numpy.random.RandomState(pool_seed(version))``). Drawn once, on first use."""
        if self._thetas is None:
            top = self.design.intercept  # mains, pairs, context × design: all that scores
            z = np.random.RandomState(pool_seed(self.model_version)).standard_normal(
                (self.pool_size, top)
            )
            self._thetas = np.ascontiguousarray(self.mean[:top] + z @ self.chol[:top, :top].T)
        return self._thetas

    def pool(self, context: Mapping[str, Any] | None = None) -> Pool:
        """The serving decisions of this version for a context (≈ ``pool_size`` fresh draws of
        work: cache the result per context)."""
        n = self.posterior.n_variants
        if self.posterior.model_type == "mab":  # independent arms ignore the context
            if self._mab_pool is None:
                a, b, c, d = self._mab
                seed = pool_seed(self.model_version)
                winners = mab_winners(
                    seed, self.pool_size, self._kind, a, b, c, d, self.allowed_idx
                )
                self._mab_pool = Pool.of(winners, n)
            return self._mab_pool
        cols, _ranges = self._context_args(context)
        ds = self.design
        if self.layout is not None:
            winners = glm_winners_bnb(
                self.thetas(),
                ds.main_idx,
                ds.pair_idx,
                ds.cd_idx,
                cols,
                self.layout.args,
            )
            return Pool.of(winners, n)
        assert self.terms is not None
        winners = glm_winners(
            self.thetas(),
            ds.main_idx,
            ds.pair_idx,
            ds.cd_idx,
            cols,
            self.terms,
            self.allowed_idx,
        )
        return Pool.of(winners, n)


def warm_up() -> None:
    """Compile (or load from the on-disk cache) every kernel; call at server start so the first
    decision does not pay numba's compile time."""
    from levered.bandit.cells import Cells
    from levered.bandit.glm import fit_cmab
    from levered.bandit.mab import fit_mab

    cells = Cells.of(
        [1, 2, 3, 4],
        [30, 30, 30, 30],
        [3, 5, 4, 6],
        context_index=[0, 0, 1, 1],
        contexts=[{"c": "a"}, {"c": "b"}],
    )
    modes: tuple[Argmax, ...] = ("enumerate", "branch_and_bound")
    for reward_type in ("bool", "numeric"):
        for posterior in (
            fit_mab(cells, (2, 2), reward_type),
            fit_cmab(cells, (2, 2), reward_type),
        ):
            for argmax, allowed in itertools.product(modes, (None, np.arange(4) < 3)):
                sampler = Sampler(posterior, allowed, pool_size=4, argmax=argmax)
                sampler.choose(1, {"c": "a"})
                sampler.pool({"c": "a"})
