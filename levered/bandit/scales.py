"""Prior scales learned from the cells: empirical Bayes on the Laplace marginal likelihood.

Fixed interaction scales shrink real context effects hard and leave absent ones too loose.
Each prior block of the design (:meth:`levered.bandit.design.Design.blocks`: one per design
factor, per factor pair, per context factor × design factor) instead gets the sd s_b that
maximizes the Laplace approximation of the marginal likelihood of the cells (MacKay 1992,
"Bayesian interpolation"; Bishop, PRML §3.5.2 and §4.4.1):

    log p(y | s) ≈ log p(y | θ̂) − ½ Σ_j θ̂_j² / s_j² − Σ_j log s_j − ½ log |H|.

Its stationary point gives MacKay's fixed-point update, iterated with a refit each time:

    γ_j = 1 − Σ_jj / s_j²   (how well the data determine θ_j, between 0 and 1)
    s_b² = Σ_{j∈b} θ̂_j² / Σ_{j∈b} γ_j

with Σ = H⁻¹. Two refinements make the scales stable enough to serve from:

- **Contrasts only.** Under exchangeable coding a block's columns are not all its own: the
  row and column means of a pair table are main effects of its two factors, a factor's mean
  level is the intercept, a context × design table's means are context mains and design
  mains. The likelihood cannot tell those components apart, so plain ML-II traded scale
  between blocks at random (a main block at the floor while an absent pair block carried its
  effect). Each block's scale is therefore learned from its *centred* coefficients only —
  the projection P_b = C ⊗ C' (C = I − 11ᵀ/k per table axis), as in the finite-population
  sds of Gelman's hierarchical ANOVA (Gelman 2005, "Analysis of variance — why it is more
  important than ever"): Σ θ̂² becomes ‖P θ̂‖², Σ γ becomes rank P − tr(P Σ P) / s².
- **A boundary-avoiding hyperprior** (MAP-II instead of ML-II). With few data the evidence of
  a block is flat or falls towards s = 0, and ML-II dropped interaction blocks to the floor
  after the first refits, and back up later, from one refit to the next. Each block's sd gets
  the weak Gamma(2, rate λ) prior of Chung et al. (2013, "A nondegenerate penalized
  likelihood estimator for variance parameters in multilevel models") with λ =
  ``HYPER_RATE`` / s₀, s₀ the block's default scale: its density vanishes at 0, so the
  estimate stays positive; its mode is s₀ / 3, where a block settles while the data say
  nothing. The stationary point of log p(y | s) + log s − λ s is

      s_b² (Σ γ − 1 + λ s_b) = ‖P θ̂‖²,

  iterated as s² ← (‖P θ̂‖² + s²) / (Σ γ + λ s). A block the data pin down keeps about the
  ML-II scale (a strong planted interaction survives); a block whose effects are absent
  settles where its best-determined contrast is about half prior, half data — the noise
  level of the fit, which shrinks like 1/√n as exposures grow (absent effects shrink towards
  nothing, instead of dropping to it after the first hundred conversions).

Scales are clipped to [``MIN_SCALE``, ``MAX_SCALE``]. Each iteration is one cell fit plus one
inverse, so learning costs ``ITERATIONS`` fits at most; spaces with more than
``MAX_FEATURES`` columns keep the default scales.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from levered.bandit.design import Design

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MIN_SCALE = 0.02
MAX_SCALE = 3.0
ITERATIONS = 30
TOL = 1e-3
MAX_FEATURES = 600
HYPER_SHAPE = 2.0
"""Shape of the Gamma prior on each block's sd: 2 is the smallest that vanishes at 0 (Chung et
al. 2013); its weight against the evidence is that of a single coefficient."""
HYPER_RATE = 3.0
"""Its rate, times 1/s₀: the prior's mode is s₀ / 3 (0.33 for mains, 0.1 for interactions).
Measured on the regret benchmark (10 seeds, benchmarks/README.md): a mode at the default
itself explored too much (factorial 358, interactions 424 against 306 and 350)."""

Fit = Callable[[F64], tuple[F64, F64]]
"""MAP θ̂ and precision H of the model under the given per-column prior sd."""


def table_shapes(design: Design) -> dict[str, tuple[int, ...]]:
    """The table each block's columns fill, row-major in column order (see
    :meth:`Design.blocks`): ``(K_f,)`` for a main block, ``(K_f, K_g)`` for a pair and
    ``(values, K_f)`` for context × design. Only for exchangeable coding (every level its own
    column); reference-coded layouts are never learned."""
    counts = design.level_counts
    values: dict[str, int] = {}
    for name, _ in design.context_vocab:
        values[name] = values.get(name, 0) + 1
    out: dict[str, tuple[int, ...]] = {}
    for name, _ in design.blocks():
        kind, *rest = name.split(":")
        if kind == "main":
            out[name] = (counts[int(rest[0])],)
        elif kind == "pair":
            out[name] = (counts[int(rest[0])], counts[int(rest[1])])
        else:
            out[name] = (values[":".join(rest[:-1])], counts[int(rest[-1])])
    return out


def _centering(k: int, center: bool = True) -> F64:
    return np.eye(k) - (np.full((k, k), 1.0 / k) if center else 0.0)


def contrast_projection(name: str, shape: tuple[int, ...]) -> F64:
    """P_b: centres the block's table along every axis whose mean another block can carry
    (module docstring). A context table with a single known value is centred over design
    levels only: traffic without that value identifies its column means."""
    out: F64 = np.ones((1, 1))
    for i, k in enumerate(shape):
        axis = _centering(k, not (name.startswith("context:") and i == 0 and k == 1))
        out = np.asarray(np.kron(out, axis), dtype=np.float64)
    return out


def learn_scales(
    fit: Fit,
    base_sd: F64,
    blocks: Sequence[tuple[str, I64]],
    shapes: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, float]:
    """Block scales by the MAP-II fixed point on each block's contrasts (module docstring),
    clipped to [``MIN_SCALE``, ``MAX_SCALE``]; blocks start at their default scale s₀, which is
    also the mode of their hyperprior. Without ``shapes`` every column counts as a contrast."""
    sd = base_sd.copy()
    prior = {name: float(sd[cols].mean()) for name, cols in blocks}
    scales = dict(prior)
    projections = {
        name: contrast_projection(name, shapes[name]) if shapes else np.eye(cols.size)
        for name, cols in blocks
    }
    ranks = {name: float(np.trace(p)) for name, p in projections.items()}
    for _ in range(ITERATIONS):
        theta, precision = fit(sd)
        cov = np.linalg.inv(precision)
        moved = 0.0
        for name, cols in blocks:
            if ranks[name] < 0.5:
                continue  # a one-level factor: nothing of its own to learn
            proj = projections[name]
            v = scales[name] ** 2
            centred = proj @ theta[cols]
            ss = float(centred @ centred)
            determined = ranks[name] - float(np.trace(proj @ cov[np.ix_(cols, cols)] @ proj)) / v
            determined = max(determined, 0.0)
            rate = HYPER_RATE / prior[name]
            new_v = (ss + (HYPER_SHAPE - 1.0) * v) / (determined + rate * scales[name])
            new = float(np.clip(np.sqrt(new_v), MIN_SCALE, MAX_SCALE))
            moved = max(moved, abs(np.log(new) - np.log(scales[name])))
            scales[name] = new
            sd[cols] = new
        if moved < TOL:
            break
    return {name: round(value, 4) for name, value in scales.items()}
