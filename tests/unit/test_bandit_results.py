"""Results from posterior draws: consistency with the twin, planted effects, allocation."""

from __future__ import annotations

import numpy as np
import pytest

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.results import linear_predictor_draws, summarize, theta_draws
from tests import naive

COUNTS = (4, 3, 2)


def _planted(model: str, seed: int = 0) -> tuple[Cells, np.ndarray]:
    """Factor 0 matters most (±0.6 logit), factor 2 barely (0.05), no interactions."""
    rng = np.random.default_rng(seed)
    grid = naive.levels(COUNTS)
    main = [np.array([0, 0.6, -0.4, 0.3]), np.array([0, 0.15, -0.1]), np.array([0, 0.05])]
    rate = 1 / (1 + np.exp(-(-2.0 + sum(m[grid[:, f]] for f, m in enumerate(main)))))
    n, s, q = naive.simulate_cells(rng, rate, 3000 if model == "mab" else 600)
    return Cells.of(np.arange(1, 25), n, s, q), rate


def test_linear_predictor_draws_equal_the_dense_design() -> None:
    rng = np.random.default_rng(1)
    contexts = [{"seg": "a", "dev": "m"}, {"seg": "b"}]
    numbers = np.tile(np.arange(1, 25), 2)
    n, s, q = naive.simulate_cells(rng, np.full(48, 0.2), 50)
    cells = Cells.of(numbers, n, s, q, context_index=np.repeat([0, 1], 24), contexts=contexts)
    post = fit_cmab(cells, COUNTS, "bool")
    theta = theta_draws(post, 7, rng)
    for context in (None, contexts[0], {"seg": "b", "dev": "unknown"}):
        x = naive.design_matrix(COUNTS, post.context_vocab, list(range(1, 25)), [context] * 24)
        np.testing.assert_allclose(linear_predictor_draws(post, theta, context), theta @ x.T)


@pytest.mark.parametrize("model", ["mab", "cmab"])
def test_planted_strongest_factor_ranks_first(model: str) -> None:
    cells, rate = _planted(model)
    fit = fit_mab if model == "mab" else fit_cmab
    res = summarize(fit(cells, COUNTS, "bool"), n_draws=1000, seed=3)
    shares = [f.importance.mean for f in res.factor_importance]
    assert int(np.argmax(shares)) == 0
    assert shares[0] > shares[1] > shares[2]
    # Per-level effects of factor 0 on the rate scale have the planted signs.
    effects = [e.mean for e in res.factor_importance[0].level_effects]
    assert effects[0] == 0 and effects[1] > 0 > effects[2] and effects[3] > 0
    assert res.interaction_importance.mean < 0.2
    covered = [e.lo <= r <= e.hi for e, r in zip(res.expected_reward, rate, strict=True)]
    assert np.mean(covered) >= 0.8


def test_weights_prob_best_and_modeled_improvement() -> None:
    cells, rate = _planted("cmab", seed=2)
    allowed = np.ones(24, dtype=bool)
    allowed[[5, 6]] = False
    res = summarize(fit_cmab(cells, COUNTS, "bool"), allowed, holdout_fraction=0.1, seed=4)
    assert np.isclose(res.prob_best.sum(), 1.0) and np.all(res.prob_best[~allowed] == 0)
    assert np.isclose(res.weight.sum(), 0.9)
    assert res.estimated_improvement_percent is not None
    assert res.best_vs_baseline_percent is not None
    true_best = np.max(rate[allowed])
    assert res.best_vs_baseline_percent.lo < 100 * (true_best / rate[0] - 1) < 200
    assert res.best_vs_baseline_percent.mean > 0 and res.estimated_improvement_percent.mean > 0
    assert 0 < res.estimated_progress <= 1


def test_context_importance_sees_a_segment_effect() -> None:
    rng = np.random.default_rng(5)
    rates = {"A": np.full(6, 0.1), "B": np.full(6, 0.1)}
    rates["A"][1] = 0.25
    rates["B"][4] = 0.25
    numbers, ctx, n_all, s_all = [], [], [], []
    for c, seg in enumerate(("A", "B")):
        n, s, _ = naive.simulate_cells(rng, rates[seg], 800)
        numbers += list(range(1, 7))
        ctx += [c] * 6
        n_all += list(n)
        s_all += list(s)
    cells = Cells.of(
        numbers, n_all, s_all, context_index=ctx, contexts=[{"segment": "A"}, {"segment": "B"}]
    )
    res = summarize(fit_cmab(cells, (3, 2), "bool"), n_draws=500)
    share = res.context_importance["segment"]
    assert share["interaction"].mean > 0.3
    assert share["total"].mean >= share["interaction"].mean


def test_numeric_rewards_and_ten_thousand_variants() -> None:
    rng = np.random.default_rng(6)
    truth = 20 + 5 * _planted("mab")[1]
    n, s, q = naive.simulate_cells(rng, truth, 200, "numeric", noise_sd=2.0)
    for fit in (fit_mab, fit_cmab):
        res = summarize(fit(Cells.of(np.arange(1, 25), n, s, q), COUNTS, "numeric"), seed=1)
        assert abs(res.expected_reward[0].mean - truth[0]) < 1.0
    big = fit_mab(Cells.of([1, 2], [10, 10], [1, 5]), (10, 10, 10, 10), "bool")
    res = summarize(big, n_draws=2000)
    assert res.draws == 400 and len(res.expected_reward) == 10_000


def test_importance_shares_form_two_decompositions_each_adding_to_one() -> None:
    """Design shares (with interactions) add up to 1; each context factor's shares (value,
    value × design, design alone) add up to 1 on their own: never one list to be summed."""
    rng = np.random.default_rng(8)
    rates = {"A": np.linspace(0.05, 0.2, 6), "B": np.linspace(0.2, 0.05, 6)}
    numbers, ctx, n_all, s_all = [], [], [], []
    for c, seg in enumerate(("A", "B")):
        n, s, _ = naive.simulate_cells(rng, rates[seg], 600)
        numbers += list(range(1, 7))
        ctx += [c] * 6
        n_all += list(n)
        s_all += list(s)
    cells = Cells.of(
        numbers, n_all, s_all, context_index=ctx, contexts=[{"segment": "A"}, {"segment": "B"}]
    )
    res = summarize(fit_cmab(cells, (3, 2), "bool"), n_draws=500)
    design = sum(f.importance.mean for f in res.factor_importance)
    assert design + res.interaction_importance.mean == pytest.approx(1.0)
    seg = res.context_importance["segment"]
    assert seg["total"].mean + seg["design"].mean == pytest.approx(1.0)
    assert seg["context"].mean + seg["interaction"].mean == pytest.approx(seg["total"].mean)
    # The planted flip is a segment × design effect: it dominates that decomposition.
    assert seg["interaction"].mean > seg["design"].mean
