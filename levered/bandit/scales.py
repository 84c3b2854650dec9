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


def log_scale_variances(
    cov: F64,
    scales: Mapping[str, float],
    defaults: Mapping[str, float],
    blocks: Sequence[tuple[str, I64]],
    shapes: Mapping[str, tuple[int, ...]],
) -> dict[str, float]:
    """Var(log s_b | y) of each learned block scale, from the curvature of its log marginal
    posterior at the learned value: the expected information about u = log s_b of the block's
    contrasts, 2 Σ_j γ_j² (each contrast's marginal variance s² + σ_j² moves with u by
    2γ_j, γ_j = s² / (s² + σ_j²) the fraction the data determine), plus the hyperprior's
    λ s_b (the Gamma(2, λ) density of s, written in u, is 2u − λ e^u):

        Var(u_b) ≈ 1 / (2 tr(G²) + λ s_b),   G = P − P Σ_bb P / s_b².

    With data that pin a block down (every γ ≈ 1) the variance is about 1 / (2 rank P); a block
    the data say nothing about keeps its hyperprior's spread, 1 / (λ s_b) (≈ 1 at the mode)."""
    out: dict[str, float] = {}
    for name, cols in blocks:
        proj = contrast_projection(name, shapes[name])
        if float(np.trace(proj)) < 0.5:
            out[name] = 0.0
            continue
        s = float(scales[name])
        g = proj - proj @ cov[np.ix_(cols, cols)] @ proj / s**2
        info = 2.0 * float(np.sum(g * g.T)) + HYPER_RATE / defaults[name] * s
        out[name] = 1.0 / info
    return out


def scale_averaged_covariance(design: Design, theta: F64, cov: F64) -> tuple[F64, dict[str, float]]:
    """The posterior covariance with the learned block scales' uncertainty added, for
    reporting (``levered.bandit.results``), and Var(log s_b | y) per block.

    The fit plugs the learned scales in as if they were known, so its intervals are too narrow
    where the data barely determine a scale — the undercoverage of empirical Bayes intervals
    (Morris 1983): with planted pairwise interactions of sd 0.15 and a few thousand users, the
    pair scales settle near their hyperprior's mode, 0.1. By the law of total variance, with
    u_b = log s_b ~ N(log ŝ_b, V_b) (:func:`log_scale_variances`), to first order (Kass &
    Steffey 1989, "Approximate Bayesian inference in conditionally independent hierarchical
    models"):

        Var(θ | y) = E_u[Var(θ | y, u)] + Var_u(E[θ | y, u]) ≈ H⁻¹ + Σ_b V_b J_b J_bᵀ,

    with H the precision of the fit and J_b = ∂θ̂/∂u_b = H⁻¹ (2 θ̂_b / ŝ_b²), from
    differentiating the MAP's stationarity condition ∇ log p(y | θ) = Λ θ, in which block b's
    prior precision 1/s_b² moves by −2/s_b² per unit of u_b. A block the data pin down has a
    small V_b and a θ̂_b that hardly depends on its scale: its term vanishes. The mean is
    unchanged (the MAP at ŝ). The second-order term (Var(θ | y, u) evaluated at E[s²] instead
    of ŝ²) is left out on purpose: under the weak Gamma(2) hyperprior it widens absent
    interaction blocks to about 2.5 × their learned scale, and the 95 % intervals then cover
    99 % in simulation (benchmarks/README.md, "Calibration")."""
    blocks = design.blocks()
    defaults_of = Design(design.level_counts, design.context_vocab, design.coding)
    defaults = {name: float(defaults_of.prior_sd[cols][0]) for name, cols in blocks}
    scales = {name: float(design.prior_sd[cols][0]) for name, cols in blocks}
    variances = log_scale_variances(cov, scales, defaults, blocks, table_shapes(design))
    out = cov.copy()
    for name, cols in blocks:
        jac = scale_sensitivity(cov, theta, cols, scales[name])
        out += variances[name] * np.outer(jac, jac)
    return np.asarray((out + out.T) / 2.0, dtype=np.float64), variances


def scale_sensitivity(cov: F64, theta: F64, cols: I64, scale: float) -> F64:
    """J_b = ∂θ̂/∂ log s_b = H⁻¹ (2 θ̂_b / s_b²) (zero outside b's columns inside the
    bracket): how the MAP moves when block b's prior sd is multiplied by e^ε."""
    return np.asarray(cov[:, cols] @ theta[cols] * (2.0 / scale**2), dtype=np.float64)
