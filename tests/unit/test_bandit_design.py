"""Feature encoding and the cell container against the dense twins in tests/naive.py."""

from __future__ import annotations

import numpy as np
import pytest

from levered.bandit.cells import Cells
from levered.bandit.design import Design, context_vocabulary, levels_matrix
from levered.bandit.posterior import Posterior, make_posterior
from levered.bandit.variants import VariantSpace
from tests import naive


def test_levels_matrix_follows_variant_numbering() -> None:
    space = VariantSpace.of(
        [
            {"name": "a", "levels": ["x", "y", "z"]},
            {"name": "b", "levels": [True, False]},
            {"name": "c", "levels": ["1", "2", "3", "4"]},
        ]
    )
    grid = levels_matrix((3, 2, 4))
    assert np.array_equal(grid, naive.levels((3, 2, 4)))
    for number in range(1, space.size + 1):
        assert tuple(grid[number - 1]) == space.levels_of(number)


def test_cell_columns_equal_the_dense_design() -> None:
    rng = np.random.default_rng(3)
    counts = (3, 2, 4)
    contexts = [
        {"country": "US", "device": "mobile"},
        {"country": "FR"},
        {"device": "desktop"},
        {"country": "US", "device": "desktop"},
        {},
    ]
    n = 60
    numbers = rng.integers(1, 25, n)
    ctx_index = rng.integers(-1, len(contexts), n)
    cells = Cells.of(
        numbers, np.full(n, 50.0), np.full(n, 5.0), context_index=ctx_index, contexts=contexts
    )
    vocab = context_vocabulary(cells, min_count=1.0)
    design = Design(counts, vocab)
    dense = design.dense(design.cell_columns(cells))
    expected = naive.design_matrix(
        counts, vocab, list(numbers), [contexts[i] if i >= 0 else None for i in ctx_index]
    )
    assert dense.shape == expected.shape == (n, design.n_features)
    assert np.array_equal(dense, expected)
    sds = design.prior_sd
    names = naive.feature_names(counts, vocab)
    for j, name in enumerate(names):
        expected_sd = {"main": 1.0, "pair": 0.3, "cd": 0.3, "intercept": 5.0, "ctx": 1.0}
        assert sds[j] == expected_sd[name[0]]


def test_rare_and_unseen_context_values_get_no_column() -> None:
    contexts: list[dict[str, object]] = [{"country": "US"}, {"country": "LU"}, {"country": True}]
    cells = Cells.of(
        [1, 2, 1], [100, 3, 50], [10, 1, 5], context_index=[0, 1, 2], contexts=contexts
    )
    vocab = context_vocabulary(cells, min_count=20)
    assert vocab == (("country", True), ("country", "US"))  # sorted by type, then value
    design = Design((2,), vocab)
    assert design.context_columns({"country": "LU"}).size == 0
    assert design.context_columns({"country": "JP", "other": 1}).size == 0
    assert design.context_columns({"country": 1}).size == 0  # 1 is not True
    assert list(design.context_columns({"country": True})) == [0]


def test_cells_validation() -> None:
    with pytest.raises(ValueError, match="1-based"):
        Cells.of([0], [1], [0])
    with pytest.raises(ValueError, match="context_index"):
        Cells.of([1], [1], [0], context_index=[3], contexts=[{}])
    with pytest.raises(ValueError, match="shape"):
        Cells.of([1, 2], [1], [0, 0])
    cells = Cells.of([1, 2, 2], [10, 5, 5], [1, 2, 3])
    n, s, q = cells.per_variant(3)
    assert list(n) == [10, 10, 0] and list(s) == [1, 5, 0] and list(q) == [1, 5, 0]


def test_posterior_round_trips_through_msgpack() -> None:
    chol = np.tril(np.random.default_rng(0).standard_normal((5, 5)))
    post = make_posterior(
        "laplace_gaussian",
        "numeric",
        (2, 3),
        {"mean": np.arange(5.0), "chol": chol},
        context_vocab=[("country", "US"), ("vip", True), ("age", 3)],
        y_mean=2.5,
        meta={"seed": 7},
    )
    back = Posterior.decode(post.encode())
    assert back == post
    assert np.array_equal(back.array("chol"), chol)
    assert back.context_vocab[1] == ("vip", True)
    assert back.model_type == "cmab" and back.n_variants == 6
