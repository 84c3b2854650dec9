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

with Σ = H⁻¹. A block the data pin down keeps the scale its effects need (a strong planted
interaction survives); a block whose effects the data do not support drives Σ θ̂² toward 0
and its scale to ``MIN_SCALE`` (absent effects shrink to nothing). Each iteration is one cell
fit plus one inverse, so learning costs ``ITERATIONS`` fits at most; spaces with more than
``MAX_FEATURES`` columns keep the default scales.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MIN_SCALE = 0.02
MAX_SCALE = 3.0
ITERATIONS = 30
TOL = 1e-3
MAX_FEATURES = 600

Fit = Callable[[F64], tuple[F64, F64]]
"""MAP θ̂ and precision H of the model under the given per-column prior sd."""


def learn_scales(fit: Fit, base_sd: F64, blocks: Sequence[tuple[str, I64]]) -> dict[str, float]:
    """Block scales by MacKay's fixed point (module docstring), clipped to
    [``MIN_SCALE``, ``MAX_SCALE``]; blocks start at their default scale."""
    sd = base_sd.copy()
    scales = {name: float(sd[cols].mean()) for name, cols in blocks}
    for _ in range(ITERATIONS):
        theta, precision = fit(sd)
        cov_diag = np.diag(np.linalg.inv(precision))
        moved = 0.0
        for name, cols in blocks:
            gamma = float(np.sum(np.clip(1.0 - cov_diag[cols] / sd[cols] ** 2, 0.0, 1.0)))
            ss = float(np.sum(theta[cols] ** 2))
            new = np.sqrt(ss / gamma) if gamma > 1e-9 else MIN_SCALE
            new = float(np.clip(new, MIN_SCALE, MAX_SCALE))
            moved = max(moved, abs(np.log(new) - np.log(scales[name])))
            scales[name] = new
            sd[cols] = new
        if moved < TOL:
            break
    return {name: round(value, 4) for name, value in scales.items()}
