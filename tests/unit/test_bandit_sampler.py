"""Thompson sampler kernels against the numpy twins; replay, exclusions, propensities, scale."""

from __future__ import annotations

import numpy as np
import pytest

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.posterior import Posterior
from levered.bandit.sampler import Sampler, decision_seed, pool_seed
from levered.bandit.variants import VariantSpace
from tests import naive

COUNTS = (3, 2, 4)


def _contextual_posterior(reward_type: str = "bool") -> Posterior:
    rng = np.random.default_rng(21)
    contexts = [{"country": "US", "device": "mobile"}, {"country": "FR"}, {"device": "web"}]
    n = 24
    numbers = np.tile(np.arange(1, n + 1), 3)
    ctx = np.repeat([0, 1, 2], n)
    rates = rng.uniform(0.05, 0.3, numbers.size)
    count, s, q = naive.simulate_cells(rng, rates, 40, reward_type)
    cells = Cells.of(numbers, count, s, q, context_index=ctx, contexts=contexts)
    return fit_cmab(cells, COUNTS, reward_type)


@pytest.mark.parametrize("reward_type", ["bool", "numeric"])
@pytest.mark.parametrize(
    "context", [None, {"country": "US", "device": "mobile"}, {"device": "web"}, {"country": "?"}]
)
def test_glm_kernel_matches_the_numpy_twin(
    reward_type: str, context: dict[str, str] | None
) -> None:
    post = _contextual_posterior(reward_type)
    allowed = np.ones(24, dtype=bool)
    allowed[[0, 5, 17]] = False
    sampler = Sampler(post, allowed)
    mean, chol = post.array("mean"), post.array("chol")
    for seed in range(60):
        expected = naive.glm_choose(seed, mean, chol, COUNTS, post.context_vocab, context, allowed)
        assert sampler.choose(seed, context) == expected


@pytest.mark.parametrize("context", [None, {"country": "US", "device": "mobile"}, {"country": "?"}])
def test_glm_pool_matches_the_numpy_twin(context: dict[str, str] | None) -> None:
    post = _contextual_posterior()
    allowed = np.ones(24, dtype=bool)
    allowed[[2, 9]] = False
    pool = Sampler(post, allowed, model_version=5, pool_size=300).pool(context)
    mean, chol = post.array("mean"), post.array("chol")
    want = naive.glm_pool_winners(
        pool_seed(5), 300, mean, chol, COUNTS, post.context_vocab, context, allowed
    )
    assert np.array_equal(pool.winners, want)
    assert np.array_equal(pool.probs, np.bincount(want, minlength=24) / 300)


def test_pooled_decisions_follow_the_pool_exactly() -> None:
    """A decision is the winner of the sample its seed picks, so over seeds the served shares
    are the pool's probabilities, and one version's pool is the same in every process."""
    post = _contextual_posterior()
    pool = Sampler(post, model_version=2).pool({"device": "web"})
    assert pool.winners.size == 1000 and np.isclose(pool.probs.sum(), 1.0)
    served = np.array([pool.number(s) for s in range(50_000)])
    assert np.array_equal(served[:1000], pool.winners + 1)
    shares = np.bincount(served - 1, minlength=24) / served.size
    assert np.allclose(shares, pool.probs, atol=1e-3)
    again = Sampler(Posterior.decode(post.encode()), model_version=2).pool({"device": "web"})
    assert np.array_equal(again.winners, pool.winners)
    other = Sampler(post, model_version=3).pool({"device": "web"})
    assert not np.array_equal(other.winners, pool.winners)


def test_replay_is_deterministic_and_versions_differ() -> None:
    post = _contextual_posterior()
    a, b = Sampler(post), Sampler(Posterior.decode(post.encode()))
    seeds = [decision_seed(7, s) for s in range(200)]
    assert [a.choose(s, {"country": "US"}) for s in seeds] == [
        b.choose(s, {"country": "US"}) for s in seeds
    ]
    assert decision_seed(7, 1) == decision_seed(7, 1) != decision_seed(8, 1)
    assert 0 <= decision_seed(2**40, -5) < 2**32


def _mab_posterior(kind: str) -> Posterior:
    rng = np.random.default_rng(4)
    truth = np.linspace(0.1, 0.2, 24)
    reward_type = "bool" if kind == "beta" else "numeric"
    n, s, q = naive.simulate_cells(rng, truth * (1 if kind == "beta" else 50), 80, reward_type, 5)
    return fit_mab(Cells.of(np.arange(1, 25), n, s, q), COUNTS, reward_type)


@pytest.mark.parametrize("kind", ["beta", "nig"])
def test_mab_kernel_propensities_match_the_twin(kind: str) -> None:
    post = _mab_posterior(kind)
    allowed = np.ones(24, dtype=bool)
    allowed[[23, 3]] = False
    got = Sampler(post, allowed, pool_size=20_000).pool().probs
    arrays = {k: post.array(k) for k in post.arrays}
    want = naive.mab_propensities(0, kind, arrays, allowed, 20_000)
    # Two independent Monte Carlo estimates: |Δ| ≲ 4·sqrt(2 p (1-p) / n).
    tol = 4 * np.sqrt(2 * np.maximum(want, 1e-3) / 20_000) + 1e-3
    assert np.all(np.abs(got - want) <= tol)


@pytest.mark.parametrize("model", ["beta", "nig", "cmab"])
def test_excluded_variants_are_never_served(model: str) -> None:
    space = VariantSpace.of(
        [
            {"name": "a", "levels": ["x", "y", "z"]},
            {"name": "b", "levels": [True, False]},
            {"name": "c", "levels": ["1", "2", "3", "4"]},
        ]
    )
    post = _contextual_posterior() if model == "cmab" else _mab_posterior(model)
    # Exclude what the model likes most, so the exclusion really bites.
    favourite = int(np.argmax(Sampler(post).pool({"country": "US"}).probs)) + 1
    rule = dict(
        zip(("a", "c"), (space.variant(favourite)["a"], space.variant(favourite)["c"]), strict=True)
    )
    allowed = space.allowed_mask([rule, {"b": False, "c": "2"}])
    sampler = Sampler(post, allowed)
    served = {sampler.choose(s, {"country": "US"}) for s in range(3000)}
    assert served and all(allowed[v - 1] for v in served)
    pool = sampler.pool({"country": "US"})
    assert np.all(pool.probs[~allowed] == 0) and np.all(allowed[pool.winners])


@pytest.mark.parametrize("model", ["beta", "nig", "cmab"])
def test_pools_sum_to_one_and_depend_only_on_the_version(model: str) -> None:
    post = _contextual_posterior() if model == "cmab" else _mab_posterior(model)
    sampler = Sampler(post, model_version=3)
    pool = sampler.pool({"device": "web"})
    assert pool.probs.shape == (24,) and np.isclose(pool.probs.sum(), 1.0)
    again = Sampler(post, model_version=3).pool({"device": "web"})
    assert np.array_equal(again.probs, pool.probs)
    served = pool.number(decision_seed(3, 99))
    assert pool.probs[served - 1] >= 1 / 1000


def test_ten_thousand_variants() -> None:
    """A 10⁴-variant space (4 factors × 10 levels, 523 features) fits, serves and replays."""
    rng = np.random.default_rng(8)
    counts = (10, 10, 10, 10)
    grid = naive.levels(counts)
    effects = rng.normal(0, 0.3, (4, 10))
    effects[:, 0] = 0
    logit = -2.5 + sum(effects[f, grid[:, f]] for f in range(4))
    best = int(np.argmax(logit))
    observed = rng.choice(10_000, 3000, replace=False)
    n, s, _ = naive.simulate_cells(rng, 1 / (1 + np.exp(-logit[observed])), 300)
    post = fit_cmab(Cells.of(observed + 1, n, s), counts, "bool")
    allowed = np.ones(10_000, dtype=bool)
    allowed[rng.choice(10_000, 500, replace=False)] = False
    allowed[best] = True
    sampler = Sampler(post, allowed)
    choices = [sampler.choose(s) for s in range(300)]
    assert all(allowed[c - 1] for c in choices)
    assert choices == [sampler.choose(s) for s in range(300)]
    probs = Sampler(post, allowed, pool_size=500).pool().probs
    assert np.isclose(probs.sum(), 1.0)
    top = np.argsort(probs)[::-1][:10]
    assert logit[top[0]] > np.quantile(logit, 0.99)
    mean, chol = post.array("mean"), post.array("chol")
    for seed in range(3):
        expected = naive.glm_choose(seed, mean, chol, counts, [], None, allowed)
        assert sampler.choose(seed) == expected
