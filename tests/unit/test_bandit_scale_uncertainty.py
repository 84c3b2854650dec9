"""Results integrate over the learned prior scales' uncertainty (docs/statistics.md)."""

from __future__ import annotations

import numpy as np

from levered.bandit.bias import apply_bias, row_scale
from levered.bandit.cells import Cells
from levered.bandit.glm import design_of, fit_cmab, fit_logistic
from levered.bandit.results import (
    population_draws,
    prob_best,
    reported_chol,
    summarize,
    theta_draws,
)
from levered.bandit.scales import (
    HYPER_RATE,
    contrast_projection,
    log_scale_variances,
    scale_sensitivity,
    table_shapes,
)
from levered.bandit.variants import VariantSpace
from levered.services.coefficients import coefficient_names, summarize_coefficients
from tests import naive

COUNTS = (4, 3, 2)


def _cells(users: int, seed: int) -> Cells:
    """Uniform traffic, main effects sd 0.3 and pairwise interactions sd 0.15, ≈ 5 %."""
    rng = np.random.default_rng(seed)
    grid = naive.levels(COUNTS)
    eta = np.full(grid.shape[0], -3.0)
    for f, k in enumerate(COUNTS):
        eta += rng.normal(0.0, 0.3, k)[grid[:, f]]
    eta += rng.normal(0.0, 0.15, (4, 3))[grid[:, 0], grid[:, 1]]
    n = rng.multinomial(users, np.full(grid.shape[0], 1 / grid.shape[0])).astype(float)
    s = rng.binomial(n.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    return Cells.of(np.arange(1, grid.shape[0] + 1), n, s)


def _cov(chol: np.ndarray) -> np.ndarray:
    return np.asarray(chol @ chol.T)


def test_scale_variance_limits() -> None:
    """A block the data say nothing about (posterior = prior) keeps the hyperprior's spread,
    1 / (λ s); one they pin down (posterior variance ≈ 0) has 1 / (2 rank P + λ s)."""
    design = design_of(fit_cmab(_cells(5_000, 0), COUNTS, "bool"))
    blocks = [(n, c) for n, c in design.blocks() if n == "pair:0:1"]
    cols = blocks[0][1]
    s, s0 = 0.1, 0.3
    rank = float(np.trace(contrast_projection("pair:0:1", (4, 3))))
    for block_cov, expected in (
        (s**2 * np.eye(cols.size), 1.0 / (HYPER_RATE / s0 * s)),
        (1e-12 * np.eye(cols.size), 1.0 / (2.0 * rank + HYPER_RATE / s0 * s)),
    ):
        cov = np.eye(design.n_features)
        cov[np.ix_(cols, cols)] = block_cov
        var = log_scale_variances(
            cov, {"pair:0:1": s}, {"pair:0:1": s0}, blocks, table_shapes(design)
        )
        assert np.isclose(var["pair:0:1"], expected, rtol=1e-6)


def test_sensitivity_is_the_derivative_of_the_map_in_log_scale() -> None:
    """J_b against central finite differences of the refitted MAP."""
    cells = _cells(20_000, 1)
    post = fit_cmab(cells, COUNTS, "bool")
    design = design_of(post)
    active = np.ascontiguousarray(design.cell_columns(cells))
    theta0 = post.array("mean")
    fitted, precision, _ = fit_logistic(
        active, cells.count, cells.reward_sum, design.prior_sd, theta0
    )
    cov = np.linalg.inv(precision)
    h = 1e-4
    for name, cols in design.blocks():
        if name not in ("pair:0:1", "main:0"):
            continue
        moved = []
        for sign in (1.0, -1.0):
            sd = design.prior_sd.copy()
            sd[cols] *= np.exp(sign * h)
            moved.append(fit_logistic(active, cells.count, cells.reward_sum, sd, fitted)[0])
        numeric = (moved[0] - moved[1]) / (2 * h)
        analytic = scale_sensitivity(cov, fitted, cols, float(design.prior_sd[cols][0]))
        assert np.max(np.abs(numeric - analytic)) < 1e-4 * max(1.0, np.max(np.abs(analytic)))
        assert np.max(np.abs(analytic)) > 1e-3  # the test is not vacuous


def test_reported_intervals_widen_prob_best_stays_the_allocation() -> None:
    post = fit_cmab(_cells(4_000, 2), COUNTS, "bool")
    assert post.meta["prior_scales_source"] == "empirical_bayes"
    plug, averaged = _cov(post.array("chol")), _cov(reported_chol(post))
    assert np.min(np.linalg.eigvalsh(averaged - plug)) > -1e-10
    assert np.trace(averaged) > np.trace(plug) * 1.001
    result = summarize(post, n_draws=2000, seed=5)
    served = population_draws(post, theta_draws(post, result.draws, np.random.default_rng(5)))
    assert np.array_equal(result.prob_best, prob_best(served, np.ones(24, np.bool_)))
    widths = np.array([iv.hi - iv.lo for iv in result.expected_reward])
    plug_widths = np.subtract(*np.quantile(served, [0.975, 0.025], axis=0))
    assert np.all(widths >= plug_widths * 0.98)
    assert np.mean(widths) > np.mean(plug_widths) * 1.01


def test_without_learned_scales_results_draw_from_the_posterior_itself() -> None:
    post = fit_cmab(Cells.of(np.array([], dtype=np.int64), [], []), COUNTS, "bool")
    assert np.array_equal(reported_chol(post), post.array("chol"))


def test_reported_covariance_is_widened_by_the_bias_like_the_posterior() -> None:
    post = fit_cmab(_cells(4_000, 3), COUNTS, "bool")
    bias = [0.5, 0.0, 0.2]
    rows = row_scale(design_of(post), bias)
    expected = rows[:, None] * _cov(reported_chol(post)) * rows[None, :]
    assert np.allclose(_cov(reported_chol(apply_bias(post, bias))), expected, atol=1e-10)


def test_models_state_coefficient_intervals_use_the_reported_covariance() -> None:
    """``models state`` shows coefficients with the same widened intervals as the results,
    not the plug-in ones: each at least as wide, some pair strictly wider."""
    post = fit_cmab(_cells(4_000, 2), COUNTS, "bool")
    space = VariantSpace.of(
        [{"name": f"f{f}", "levels": [f"l{i}" for i in range(k)]} for f, k in enumerate(COUNTS)]
    )
    shown = {c.name: c for c in summarize_coefficients(post, space, top=10_000)}
    names = dict(coefficient_names(post, space))
    plug_sd = np.sqrt(np.diag(_cov(post.array("chol"))))
    mean = post.array("mean")
    wider = 0
    for j, (name, kind) in enumerate(coefficient_names(post, space)):
        if kind == "intercept":
            continue
        c = shown[name]
        assert np.isclose(c.mean, mean[j])
        assert c.hi - c.lo >= 2 * 1.96 * plug_sd[j] * (1 - 1e-9)
        wider += kind == "pair" and c.hi - c.lo > 2 * 1.96 * plug_sd[j] * 1.01
    assert wider > 0 and len(names) == len(mean)
