"""mab: conjugate updates from cells equal the textbook formulas on the events; recovery."""

from __future__ import annotations

import numpy as np

from levered.bandit.cells import Cells
from levered.bandit.mab import ALPHA0, KAPPA0, fit_mab
from levered.bandit.sampler import Sampler
from tests import naive


def test_beta_posterior_counts_successes_and_failures() -> None:
    # Two context cells of variant 1 pool into one arm.
    cells = Cells.of(
        [1, 1, 3], [10, 5, 4], [2, 1, 4], context_index=[0, 1, 0], contexts=[{"c": "a"}, {"c": "b"}]
    )
    post = fit_mab(cells, (2, 2), "bool")
    assert post.kind == "beta"
    assert list(post.array("alpha")) == [4, 1, 5, 1]
    assert list(post.array("beta")) == [13, 1, 1, 1]


def test_nig_posterior_equals_sequential_textbook_update() -> None:
    """Updating the NIG prior event by event (BDA3 §3.3) gives the same posterior as the
    closed form from (count, Σy, Σy²)."""
    rng = np.random.default_rng(0)
    ys = [rng.normal(5.0, 2.0, 30), rng.normal(7.0, 2.0, 3), np.array([])]
    cells = Cells.of(
        [1, 2, 3], [y.size for y in ys], [y.sum() for y in ys], [(y**2).sum() for y in ys]
    )
    post = fit_mab(cells, (3,), "numeric")
    pooled = np.concatenate(ys)
    within = sum(((y - y.mean()) ** 2).sum() for y in ys if y.size) / (pooled.size - 2)
    mu0, beta0 = pooled.mean(), ALPHA0 * within  # the prior of levered.bandit.mab
    for v, y in enumerate(ys):
        mu, kappa, alpha, beta = mu0, KAPPA0, ALPHA0, beta0
        for x in y:  # one observation at a time
            kappa_new = kappa + 1
            beta += kappa * (x - mu) ** 2 / (2 * kappa_new)
            mu = (kappa * mu + x) / kappa_new
            kappa, alpha = kappa_new, alpha + 0.5
        got = [post.array(k)[v] for k in ("mu", "kappa", "alpha", "beta")]
        np.testing.assert_allclose(got, [mu, kappa, alpha, beta], rtol=1e-9)


def test_mab_recovers_the_best_variant() -> None:
    rng = np.random.default_rng(2)
    truth = np.full(12, 0.10)
    truth[8] = 0.16
    n, s, q = naive.simulate_cells(rng, truth, 800)
    probs = Sampler(fit_mab(Cells.of(np.arange(1, 13), n, s, q), (3, 4), "bool")).pool().probs
    assert int(np.argmax(probs)) == 8 and probs[8] > 0.8
    n, s, q = naive.simulate_cells(rng, 20 + 10 * truth, 300, "numeric", noise_sd=1.0)
    probs = Sampler(fit_mab(Cells.of(np.arange(1, 13), n, s, q), (3, 4), "numeric")).pool().probs
    assert int(np.argmax(probs)) == 8 and probs[8] > 0.5


def test_thompson_allocation_concentrates_on_the_best_arm() -> None:
    """A simulated run: serve by Thompson sampling, refit every 200 users; most of the last
    traffic goes to the best arm."""
    rng = np.random.default_rng(3)
    truth = np.array([0.05, 0.07, 0.12, 0.06])
    n, s = np.zeros(4), np.zeros(4)
    last = []
    for batch in range(40):
        sampler = Sampler(fit_mab(Cells.of(np.arange(1, 5), n, s), (4,), "bool"))
        for u in range(200):
            v = sampler.choose(batch * 1000 + u) - 1
            n[v] += 1
            s[v] += rng.random() < truth[v]
            if batch >= 35:
                last.append(v)
    assert np.mean(np.array(last) == 2) > 0.8
