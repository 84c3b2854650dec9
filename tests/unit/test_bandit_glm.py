"""cmab: the Laplace fit against dense and event-level references, and planted effects."""

from __future__ import annotations

import numpy as np

from levered.bandit.cells import Cells
from levered.bandit.design import context_vocabulary
from levered.bandit.glm import design_of, fit_cmab
from levered.bandit.sampler import Sampler
from tests import naive

COUNTS = (3, 2, 2)


def _random_bool_cells(seed: int) -> Cells:
    rng = np.random.default_rng(seed)
    contexts = [{"seg": "a"}, {"seg": "b"}, {"seg": "rare"}]
    numbers = np.repeat(np.arange(1, 13), 3)
    ctx = np.tile([0, 1, 2], 12)
    count = np.where(ctx == 2, 1.0, rng.integers(20, 80, numbers.size).astype(float))
    rate = rng.uniform(0.05, 0.4, numbers.size)
    successes = rng.binomial(count.astype(int), rate).astype(float)
    return Cells.of(numbers, count, successes, context_index=ctx, contexts=contexts)


def test_logistic_laplace_matches_the_dense_newton_twin() -> None:
    cells = _random_bool_cells(1)
    post = fit_cmab(cells, COUNTS, "bool")
    design = design_of(post)
    assert post.context_vocab == [("seg", "a"), ("seg", "b")]  # "rare" has 12 exposures
    x = naive.design_matrix(
        COUNTS,
        post.context_vocab,
        list(cells.variant_number),
        [cells.contexts[i] for i in cells.context_index],
    )
    theta, precision = naive.fit_logistic(x, cells.count, cells.reward_sum, design.prior_sd)
    np.testing.assert_allclose(post.array("mean"), theta, atol=1e-6)
    chol = post.array("chol")
    np.testing.assert_allclose(chol @ chol.T, np.linalg.inv(precision), atol=1e-8)


def test_logistic_cells_equal_individual_events() -> None:
    """Binomial cells and the Bernoulli events they summarize have the same posterior."""
    cells = _random_bool_cells(2)
    post = fit_cmab(cells, COUNTS, "bool")
    rows, trials, successes = [], [], []
    for v, c, n, s in zip(
        cells.variant_number, cells.context_index, cells.count, cells.reward_sum, strict=True
    ):
        for k in range(int(n)):
            rows.append((v, cells.contexts[c]))
            trials.append(1.0)
            successes.append(1.0 if k < s else 0.0)
    x = naive.design_matrix(COUNTS, post.context_vocab, [r[0] for r in rows], [r[1] for r in rows])
    theta, _ = naive.fit_logistic(
        x, np.array(trials), np.array(successes), design_of(post).prior_sd
    )
    np.testing.assert_allclose(post.array("mean"), theta, atol=1e-6)


def test_gaussian_cells_equal_individual_events() -> None:
    rng = np.random.default_rng(5)
    truth = 10.0 + rng.normal(0, 2.0, 12)
    events = [truth[v] + 3.0 * rng.standard_normal(int(rng.integers(5, 40))) for v in range(12)]
    cells = Cells.of(
        np.arange(1, 13),
        [e.size for e in events],
        [e.sum() for e in events],
        [(e**2).sum() for e in events],
    )
    post = fit_cmab(cells, COUNTS, "numeric")
    y = np.concatenate(events)
    assert np.isclose(post.y_mean, y.mean()) and np.isclose(post.y_scale, y.std())
    x = naive.design_matrix(
        COUNTS, [], [v + 1 for v, e in enumerate(events) for _ in e], [None] * y.size
    )
    sigma2 = (post.meta["noise_sd"] / post.y_scale) ** 2
    theta = naive.fit_gaussian_events(x, (y - y.mean()) / y.std(), design_of(post).prior_sd, sigma2)
    np.testing.assert_allclose(post.array("mean"), theta, atol=1e-8)
    assert 2.0 < post.meta["noise_sd"] < 4.0


def _factorial_truth(rng: np.random.Generator) -> np.ndarray:
    grid = naive.levels((4, 3, 2))
    main = [np.array([0, 0.2, -0.1, 0.5]), np.array([0, 0.3, -0.2]), np.array([0, 0.15])]
    logit = -2.0 + sum(m[grid[:, f]] for f, m in enumerate(main))
    return 1 / (1 + np.exp(-logit))


def test_cmab_recovers_the_best_variant_bool() -> None:
    rng = np.random.default_rng(11)
    truth = _factorial_truth(rng)
    n, s, q = naive.simulate_cells(rng, truth, 400)
    cells = Cells.of(np.arange(1, 25), n, s, q)
    sampler = Sampler(fit_cmab(cells, (4, 3, 2), "bool"))
    probs = sampler.pool().probs
    assert int(np.argmax(probs)) == int(np.argmax(truth))
    assert probs[np.argmax(truth)] > 0.5


def test_cmab_recovers_the_best_variant_numeric() -> None:
    rng = np.random.default_rng(12)
    truth = 50.0 + 40.0 * _factorial_truth(rng)
    n, s, q = naive.simulate_cells(rng, truth, 200, "numeric", noise_sd=4.0)
    cells = Cells.of(np.arange(1, 25), n, s, q)
    probs = Sampler(fit_cmab(cells, (4, 3, 2), "numeric")).pool().probs
    assert int(np.argmax(probs)) == int(np.argmax(truth))


def test_cmab_learns_a_context_dependent_best_variant() -> None:
    """Segment A prefers variant 2, segment B variant 5; unseen segments use the population."""
    rng = np.random.default_rng(13)
    counts = (3, 2)
    rates = {"A": np.full(6, 0.10), "B": np.full(6, 0.10)}
    rates["A"][1] = 0.22
    rates["B"][4] = 0.22
    contexts = [{"segment": "A"}, {"segment": "B"}]
    numbers, ctx, n_all, s_all = [], [], [], []
    for c, seg in enumerate(("A", "B")):
        n, s, _ = naive.simulate_cells(rng, rates[seg], 600)
        numbers += list(range(1, 7))
        ctx += [c] * 6
        n_all += list(n)
        s_all += list(s)
    cells = Cells.of(numbers, n_all, s_all, context_index=ctx, contexts=contexts)
    post = fit_cmab(cells, counts, "bool")
    sampler = Sampler(post)
    assert int(np.argmax(sampler.pool({"segment": "A"}).probs)) + 1 == 2
    assert int(np.argmax(sampler.pool({"segment": "B"}).probs)) + 1 == 5
    for seed in range(50):
        assert sampler.choose(seed, {"segment": "Z"}) == sampler.choose(seed, None)
        assert sampler.choose(seed, {"segment": "Z", "x": 1}) == sampler.choose(seed, {})


def test_vocabulary_is_part_of_the_posterior() -> None:
    cells = _random_bool_cells(3)
    post = fit_cmab(cells, COUNTS, "bool", min_context_count=1.0)
    assert tuple(post.context_vocab) == context_vocabulary(cells, 1.0)
    assert design_of(post).n_features == post.array("mean").shape[0]
