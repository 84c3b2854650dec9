"""Branch-and-bound argmax against scoring every variant (the numpy twin), and its use in the
sampler: the same variant for every draw, exclusions never served, exact ties to the lower
number."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from levered.bandit.argmax import Layout, argmax_bnb
from levered.bandit.cells import Cells
from levered.bandit.design import Design
from levered.bandit.glm import fit_cmab
from levered.bandit.posterior import Posterior, make_posterior
from levered.bandit.sampler import Argmax, Sampler, pool_seed
from levered.bandit.variants import VariantSpace
from tests import naive

SHAPES = [(5,), (4, 3), (3, 2, 4), (4, 4, 4, 4), (2,) * 8, (5, 3, 1, 4), (3,) * 5]


def _table(rng: np.random.Generator, counts: tuple[int, ...], kind: str) -> naive.F64:
    d = Design(counts)
    k = max(counts)
    size = len(counts) * k + d.pair_f.size * k * k
    if kind == "zero":  # every variant ties
        return np.zeros(size)
    if kind == "coarse":  # many exact ties (half-integers add exactly)
        return np.round(rng.normal(0.0, 1.0, size) * 2.0) / 2.0
    pairs = rng.uniform(0.0, 3.0)  # from weak to dominating interactions
    scale = np.r_[np.ones(len(counts) * k), np.full(size - len(counts) * k, pairs)]
    return np.asarray(rng.normal(0.0, 1.0, size) * scale, dtype=np.float64)


def _rules(
    rng: np.random.Generator, counts: tuple[int, ...], n: int
) -> tuple[list[dict[int, int]], np.ndarray]:
    rules = []
    for _ in range(n):
        factors = rng.choice(len(counts), rng.integers(1, len(counts) + 1), replace=False)
        rules.append({int(f): int(rng.integers(counts[f])) for f in factors})
    allowed = np.ones(int(np.prod(counts)), dtype=bool)
    grid = allowed.reshape(counts)
    for rule in rules:
        where: list[int | slice] = [slice(None)] * len(counts)
        for f, level in rule.items():
            where[f] = level
        grid[tuple(where)] = False
    return rules, allowed


def _bnb(table: np.ndarray, layout: Layout) -> int:
    return int(argmax_bnb(table, *layout.args))


@pytest.mark.parametrize("counts", SHAPES)
@pytest.mark.parametrize("kind", ["random", "coarse", "zero"])
def test_kernel_matches_enumeration(counts: tuple[int, ...], kind: str) -> None:
    rng = np.random.default_rng(sum(counts) * 7 + len(kind))
    d = Design(counts)
    n = d.n_variants
    everything = Layout(counts, d.pair_f, d.pair_g, np.ones(n, dtype=bool))
    for trial in range(150):
        table = _table(rng, counts, kind)
        all_allowed = np.ones(n, dtype=bool)
        assert _bnb(table, everything) == naive.argmax_table(table, counts, all_allowed)
        # Exclusions from rules (given to the search or not), and arbitrary masks.
        rules, allowed = _rules(rng, counts, int(rng.integers(1, 6)))
        random_mask = rng.random(n) > rng.uniform(0.0, 0.95)
        for mask, given in ((allowed, rules), (allowed, []), (random_mask, [])):
            if not mask.any():
                continue
            layout = Layout(counts, d.pair_f, d.pair_g, mask, given)
            got = _bnb(table, layout)
            assert mask[got], (trial, got)
            assert got == naive.argmax_table(table, counts, mask), (trial, kind)


def test_exact_ties_go_to_the_lowest_allowed_number() -> None:
    counts = (4, 3, 5, 2)
    d = Design(counts)
    n = d.n_variants
    zero = np.zeros(len(counts) * 5 + d.pair_f.size * 25)
    assert _bnb(zero, Layout(counts, d.pair_f, d.pair_g, np.ones(n, dtype=bool))) == 0
    allowed = np.ones(n, dtype=bool)
    allowed[:37] = False
    assert _bnb(zero, Layout(counts, d.pair_f, d.pair_g, allowed)) == 37
    # Two best variants with the same score: the lower number wins, whichever way the search
    # reaches them.
    table = zero.copy()
    table[0 * 5 + 3] = table[0 * 5 + 1] = 1.0  # factor 0 levels 1 and 3 tie
    table[2 * 5 + 4] = 0.5
    mask = np.ones(n, dtype=bool)
    assert _bnb(table, Layout(counts, d.pair_f, d.pair_g, mask)) == (
        naive.argmax_table(table, counts, mask)
    )
    assert naive.levels(counts)[naive.argmax_table(table, counts, mask)].tolist() == [1, 0, 4, 0]


def test_without_pairs_it_is_a_per_factor_argmax() -> None:
    """No pair terms: the bound is exact and the answer is each factor's best level."""
    rng = np.random.default_rng(3)
    counts = (6, 5, 7, 4)
    d = Design(counts)
    layout = Layout(counts, d.pair_f, d.pair_g, np.ones(d.n_variants, dtype=bool))
    for _ in range(50):
        table = np.zeros(len(counts) * 7 + d.pair_f.size * 49)
        for f, kf in enumerate(counts):
            table[f * 7 : f * 7 + kf] = rng.normal(size=kf)
        best = [int(np.argmax(table[f * 7 : f * 7 + kf])) for f, kf in enumerate(counts)]
        assert naive.levels(counts)[_bnb(table, layout)].tolist() == best


def test_rules_must_agree_with_the_mask() -> None:
    counts = (3, 3, 3)
    d = Design(counts)
    rules, allowed = _rules(np.random.default_rng(1), counts, 3)
    Layout(counts, d.pair_f, d.pair_g, allowed, rules)
    with pytest.raises(ValueError, match="the mask allows"):
        Layout(counts, d.pair_f, d.pair_g, np.ones(27, dtype=bool), [{0: 1, 1: 1, 2: 1}])
    with pytest.raises(ValueError, match="outside"):
        Layout(counts, d.pair_f, d.pair_g, np.ones(27, dtype=bool), [{0: 1, 1: 1, 5: 1}])


def test_rule_levels_and_allowed_mask_follow_matches() -> None:
    space = VariantSpace.of(
        [
            {"name": "a", "levels": ["x", "y", "z"]},
            {"name": "b", "levels": [True, False]},
            {"name": "c", "levels": ["1", "2", "3", "4"]},
            {"name": "d", "levels": ["p", "q"]},
        ]
    )
    rules: list[dict[str, Any]] = [
        {"a": "y", "c": "3"},
        {"b": False, "c": "1", "d": "q"},
        {"a": "z"},
        {"a": "nope"},  # unknown level: excludes nothing
        {"e": "x"},  # unknown factor: excludes nothing
        {"b": "false"},  # a string is not the bool level
    ]
    assert space.rule_levels(rules) == [{0: 1, 2: 2}, {1: 1, 2: 0, 3: 1}, {0: 2}]
    mask = space.allowed_mask(rules)
    for number in range(1, space.size + 1):
        assert mask[number - 1] == (not any(space.matches(number, r) for r in rules[:3]))


# --------------------------------------------------------------------------- in the sampler


def _huge_posterior() -> tuple[tuple[int, ...], Posterior]:
    """A cmab posterior fitted on 1,500 observed cells of a 10⁵-variant space, two contexts."""
    rng = np.random.default_rng(12)
    counts = (10,) * 5
    grid = naive.levels(counts)
    effects = rng.normal(0.0, 0.4, (5, 10))
    effects[:, 0] = 0.0
    observed = np.sort(rng.choice(100_000, 1500, replace=False))
    logit = -2.0 + sum(effects[f, grid[observed, f]] for f in range(5))
    numbers = np.concatenate([observed, observed]) + 1
    rates = 1.0 / (1.0 + np.exp(-np.concatenate([logit, logit + 0.3 * (grid[observed, 0] > 4)])))
    n, s, _ = naive.simulate_cells(rng, rates, 150)
    cells = Cells.of(
        numbers,
        n,
        s,
        context_index=np.repeat([0, 1], observed.size),
        contexts=[{"segment": "a"}, {"segment": "b"}],
    )
    return counts, fit_cmab(cells, counts, "bool")


@pytest.fixture(scope="module")
def huge() -> tuple[tuple[int, ...], Posterior]:
    return _huge_posterior()


def test_huge_space_uses_the_search_and_no_per_variant_table(
    huge: tuple[tuple[int, ...], Posterior],
) -> None:
    _, post = huge
    sampler = Sampler(post)
    assert sampler.argmax == "branch_and_bound" and sampler.terms is None
    small = Sampler(post, np.arange(100_000) < 1000)
    assert small.argmax == "enumerate" and small.terms is not None


@pytest.mark.parametrize("context", [None, {"segment": "a"}, {"segment": "b"}])
def test_huge_space_decisions_and_pools_equal_enumeration(
    huge: tuple[tuple[int, ...], Posterior], context: dict[str, str] | None
) -> None:
    counts, post = huge
    space = VariantSpace.of(
        [{"name": f"f{i}", "levels": [str(j) for j in range(10)]} for i in range(5)]
    )
    # What the model likes most (under the posterior mean) is excluded by a wide rule.
    mean = Sampler(
        make_posterior(
            "laplace_logistic",
            "bool",
            counts,
            {"mean": post.array("mean"), "chol": np.zeros(post.array("chol").shape)},
            context_vocab=list(post.context_vocab),
        ),
        argmax="branch_and_bound",
    )
    favourite = space.variant(mean.choose(0, context))
    rules: list[dict[str, Any]] = [
        {name: favourite[name] for name in ("f0", "f1", "f3")},
        {"f2": favourite["f2"], "f4": "0"},
        {"f1": "7"},
    ]
    mask = space.allowed_mask(rules)
    runs = [
        Sampler(post, mask, model_version=4, pool_size=250, argmax="enumerate"),
        Sampler(post, mask, model_version=4, pool_size=250, argmax="branch_and_bound"),
        Sampler(
            post,
            mask,
            model_version=4,
            pool_size=250,
            argmax="branch_and_bound",
            excluded=space.rule_levels(rules),
        ),
    ]
    pools = [s.pool(context) for s in runs]
    for pool in pools[1:]:
        assert np.array_equal(pool.winners, pools[0].winners)
    assert mask[pools[0].winners].all()
    seeds = range(40)
    choices = [[s.choose(seed, context) for seed in seeds] for s in runs]
    assert choices[1] == choices[0] and choices[2] == choices[0]
    assert all(mask[c - 1] for c in choices[0])


def test_zero_posterior_ties_everywhere_and_serves_the_first_allowed() -> None:
    counts = (10,) * 5
    d = Design(counts)
    post = make_posterior(
        "laplace_logistic",
        "bool",
        counts,
        {"mean": np.zeros(d.n_features), "chol": np.zeros((d.n_features, d.n_features))},
    )
    mask = np.ones(d.n_variants, dtype=bool)
    mask[[0, 1, 2]] = False
    modes: tuple[Argmax, ...] = ("enumerate", "branch_and_bound")
    for argmax in modes:
        sampler = Sampler(post, mask, pool_size=20, argmax=argmax)
        assert sampler.choose(5) == 4
        assert set(sampler.pool().winners.tolist()) == {3}


@pytest.mark.parametrize(
    "context", [None, {"country": "US", "device": "mobile"}, {"device": "web"}]
)
def test_search_matches_the_dense_twin_on_a_small_contextual_model(
    context: dict[str, str] | None,
) -> None:
    """The search on the sampler tests' 3×2×4 model, against the by-the-book twin."""
    rng = np.random.default_rng(21)
    contexts = [{"country": "US", "device": "mobile"}, {"country": "FR"}, {"device": "web"}]
    numbers = np.tile(np.arange(1, 25), 3)
    count, s, q = naive.simulate_cells(rng, rng.uniform(0.05, 0.3, numbers.size), 40)
    cells = Cells.of(
        numbers, count, s, q, context_index=np.repeat([0, 1, 2], 24), contexts=contexts
    )
    counts = (3, 2, 4)
    post = fit_cmab(cells, counts, "bool")
    allowed = np.ones(24, dtype=bool)
    allowed[[0, 5, 17]] = False
    sampler = Sampler(post, allowed, model_version=9, pool_size=300, argmax="branch_and_bound")
    mean, chol = post.array("mean"), post.array("chol")
    for seed in range(60):
        want = naive.glm_choose(seed, mean, chol, counts, post.context_vocab, context, allowed)
        assert sampler.choose(seed, context) == want
    want_pool = naive.glm_pool_winners(
        pool_seed(9), 300, mean, chol, counts, post.context_vocab, context, allowed
    )
    assert np.array_equal(sampler.pool(context).winners, want_pool)
