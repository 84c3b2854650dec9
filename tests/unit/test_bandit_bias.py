"""Exploration bias (levered.bandit.bias): which covariance entries grow, by how much, and that
every posterior mean stays put."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pytest

from levered.bandit.bias import apply_bias, arm_variance_scale, row_scale
from levered.bandit.cells import Cells
from levered.bandit.design import levels_matrix
from levered.bandit.glm import design_of, fit_cmab
from levered.bandit.mab import KAPPA0, fit_mab
from levered.bandit.posterior import Posterior
from levered.bandit.results import reward_draws, summarize
from tests import naive

F64 = npt.NDArray[np.float64]
COUNTS = (3, 2, 2)


def _cmab(reward_type: str = "bool") -> Posterior:
    rng = np.random.default_rng(4)
    contexts = [{"seg": "a"}, {"seg": "b"}]
    numbers = np.repeat(np.arange(1, 13), 2)
    ctx = np.tile([0, 1], 12)
    count = rng.integers(30, 90, numbers.size).astype(float)
    successes = rng.binomial(count.astype(int), rng.uniform(0.05, 0.4, numbers.size))
    return fit_cmab(
        Cells.of(numbers, count, successes.astype(float), context_index=ctx, contexts=contexts),
        COUNTS,
        reward_type,
    )


def _involved_factors(post: Posterior) -> list[set[int]]:
    """Per GLM column, the design factors whose level changes the column's value for some
    variant and context — read off the dense design matrix, independently of the index tables
    the implementation uses."""
    numbers = list(range(1, int(np.prod(COUNTS)) + 1))
    contexts = [None, *({name: value} for name, value in post.context_vocab)]
    rows = [(v, c) for c in contexts for v in numbers]
    x = naive.design_matrix(COUNTS, post.context_vocab, [v for v, _ in rows], [c for _, c in rows])
    lv = levels_matrix(COUNTS)
    involved: list[set[int]] = [set() for _ in range(x.shape[1])]
    for (i, (v, c)), (k, (w, d)) in itertools.combinations(enumerate(rows), 2):
        differ = np.flatnonzero(lv[v - 1] != lv[w - 1])
        if c == d and differ.size == 1:
            for j in np.flatnonzero(x[i] != x[k]):
                involved[j].add(int(differ[0]))
    return involved


def test_scaling_rows_of_l_inflates_exactly_the_covariance_of_the_biased_factors() -> None:
    post = _cmab()
    bias = [0.5, 0.0, 2.0]
    biased = apply_bias(post, bias)
    expected = np.array(
        [np.prod([1.0 + bias[f] for f in fs]) for fs in _involved_factors(post)], dtype=float
    )
    np.testing.assert_array_equal(row_scale(design_of(post), bias), expected)
    chol, new = post.array("chol"), biased.array("chol")
    sigma = chol @ chol.T
    d = np.diag(expected)
    np.testing.assert_allclose(new @ new.T, d @ sigma @ d, rtol=1e-12, atol=1e-15)
    assert np.all(np.triu(new, 1) == 0.0)  # still lower triangular: the sampler's row prefixes
    np.testing.assert_array_equal(biased.array("mean"), post.array("mean"))
    # Columns that involve no biased factor (factor 1's mains, the intercept, context mains)
    # keep their rows bit for bit; pairs of factors 0 and 2 grow by 1.5 · 3.
    design = design_of(post)
    untouched = expected == 1.0
    assert untouched[design.intercept] and untouched[design.ctx_main_idx].all()
    assert untouched[design.main_idx[1, 1]]
    np.testing.assert_array_equal(new[untouched], chol[untouched])
    pair_02 = int(np.flatnonzero((design.pair_f == 0) & (design.pair_g == 2))[0])
    assert expected[design.pair_idx[pair_02, 1, 1]] == pytest.approx(4.5)
    assert biased.meta["bias"] == bias


def test_gaussian_cmab_is_widened_the_same_way() -> None:
    rng = np.random.default_rng(2)
    numbers = np.arange(1, 13)
    count = np.full(12, 40.0)
    ysum = rng.normal(3.0, 1.0, 12) * count
    post = fit_cmab(Cells.of(numbers, count, ysum, ysum**2 / count + count), COUNTS, "numeric")
    biased = apply_bias(post, [0.0, 1.0, 0.0])
    scale = row_scale(design_of(post), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(biased.array("chol"), scale[:, None] * post.array("chol"))
    np.testing.assert_array_equal(biased.array("mean"), post.array("mean"))
    assert (biased.y_mean, biased.y_scale) == (post.y_mean, post.y_scale)


def test_bias_spreads_the_thompson_allocation() -> None:
    post = _cmab()
    plain = summarize(post, n_draws=4000, seed=1)
    wide = summarize(apply_bias(post, [3.0, 3.0, 3.0]), n_draws=4000, seed=1)
    assert wide.prob_best.max() < plain.prob_best.max()

    def entropy(p: F64) -> float:
        q = p[p > 0]
        return float(-(q * np.log(q)).sum())

    assert entropy(wide.prob_best) > entropy(plain.prob_best)


def test_zero_bias_is_the_plain_posterior_and_bad_values_are_refused() -> None:
    post = _cmab()
    assert apply_bias(post, [0.0, 0.0, 0.0]) is post
    for bad in ([-0.1, 0, 0], [float("nan"), 0, 0], [float("inf"), 0, 0], [10.5, 0, 0], [1.0]):
        with pytest.raises(ValueError):
            apply_bias(post, bad)


def test_beta_arms_keep_their_mean_and_their_variance_grows_by_the_largest_factor() -> None:
    cells = Cells.of([1, 2, 3], [400, 60, 3], [40, 30, 2])
    post = fit_mab(cells, (4,), "bool")  # variant 4 unseen: Beta(1, 1)
    bias = [0.5]
    biased = apply_bias(post, bias)
    a, b = post.array("alpha"), post.array("beta")
    a2, b2 = biased.array("alpha"), biased.array("beta")
    np.testing.assert_allclose(a2 / (a2 + b2), a / (a + b), rtol=1e-12)

    def var(x: F64, y: F64) -> F64:
        n = x + y
        return np.asarray(x * y / (n * n * (n + 1.0)), dtype=np.float64)

    s = arm_variance_scale(bias)
    assert s == 2.25
    np.testing.assert_allclose(var(a2, b2)[:2], s * var(a, b)[:2], rtol=1e-12)
    # Floored at the uniform prior's concentration 2: never less certain than before any data.
    assert a2[2] + b2[2] == pytest.approx(2.0) and a2[2] / (a2[2] + b2[2]) == pytest.approx(0.6)
    assert (a2[3], b2[3]) == (1.0, 1.0)
    # mab arms involve every factor: the largest bias applies.
    two = fit_mab(Cells.of([1, 2], [400, 400], [40, 80]), (2, 2), "bool")
    np.testing.assert_array_equal(
        apply_bias(two, [0.2, 1.0]).array("alpha"), apply_bias(two, [1.0, 0.0]).array("alpha")
    )


def test_nig_arms_keep_their_mean_and_every_draw_deviates_sqrt_s_times_more() -> None:
    rng = np.random.default_rng(0)
    ys = [rng.normal(5.0, 2.0, 50), rng.normal(7.0, 2.0, 20), np.array([])]
    cells = Cells.of(
        [1, 2, 3], [y.size for y in ys], [y.sum() for y in ys], [(y**2).sum() for y in ys]
    )
    post = fit_mab(cells, (3,), "numeric")
    biased = apply_bias(post, [1.0])
    s = arm_variance_scale([1.0])
    for name in ("mu", "alpha", "beta"):
        np.testing.assert_array_equal(biased.array(name), post.array(name))
    kappa, kappa2 = post.array("kappa"), biased.array("kappa")
    np.testing.assert_allclose(kappa2[:2], kappa[:2] / s)
    assert kappa2[2] == kappa[2] == KAPPA0  # unseen: already the prior, not widened further
    mu = post.array("mu")
    plain = reward_draws(post, 500, np.random.default_rng(9)) - mu
    wide = reward_draws(biased, 500, np.random.default_rng(9)) - mu
    np.testing.assert_allclose(wide[:, :2], np.sqrt(s) * plain[:, :2], rtol=1e-9, atol=1e-12)
