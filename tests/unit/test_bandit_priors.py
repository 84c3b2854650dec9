"""Exchangeable priors and scales learned from the cells (docs/statistics.md)."""

from __future__ import annotations

import numpy as np
import pytest

from levered.bandit.cells import Cells
from levered.bandit.glm import design_of, fit_cmab
from levered.bandit.results import prob_best, summarize, theta_draws
from levered.bandit.sampler import Sampler
from levered.bandit.scales import contrast_projection
from tests import naive

COUNTS = (4, 3, 2)
EMPTY = Cells.of(np.array([], dtype=np.int64), [], [])


@pytest.mark.parametrize("reward_type", ["bool", "numeric"])
def test_no_data_every_variant_equally_likely_best(reward_type: str) -> None:
    post = fit_cmab(EMPTY, COUNTS, reward_type)
    rng = np.random.default_rng(3)
    draws = 40_000
    theta = theta_draws(post, draws, rng)
    x = naive.design_matrix(COUNTS, post.context_vocab, list(range(1, 25)), [None] * 24)
    pb = prob_best(theta @ x.T, np.ones(24, np.bool_))
    # Multinomial share of 1/24 over 40k draws: sd ≈ 0.001; 5 sd bounds every variant.
    assert np.max(np.abs(pb - 1 / 24)) < 5 * np.sqrt((1 / 24) * (23 / 24) / draws)
    assert post.meta["prior_scales_source"] == "defaults"


def test_no_data_the_sampler_serves_every_variant_evenly() -> None:
    post = fit_cmab(EMPTY, COUNTS, "bool")
    sampler = Sampler(post, model_version=1)
    served = np.bincount([sampler.choose(seed) for seed in range(24_000)], minlength=25)[1:]
    # Expected 1,000 each, sd ≈ 31: 5 sd.
    assert np.max(np.abs(served - 1000)) < 160


def test_no_data_claims_no_lift() -> None:
    result = summarize(fit_cmab(EMPTY, COUNTS, "bool"))
    assert result.estimated_improvement_percent is None
    assert result.best_vs_baseline_percent is None


def _context_cells(effect: float, seed: int) -> Cells:
    """Two segments; factor 0's best level flips between them by ``effect`` on the logit."""
    rng = np.random.default_rng(seed)
    grid = naive.levels(COUNTS)
    numbers = np.tile(np.arange(1, 25), 2)
    seg = np.repeat([0, 1], 24)
    main = np.array([0.0, 0.3, -0.2, 0.1])[grid[:, 0]]
    flip = np.where(grid[:, 0] == 1, effect, 0.0)
    eta = -1.5 + np.concatenate([main + flip, main - flip])
    n, s, q = naive.simulate_cells(rng, 1 / (1 + np.exp(-eta)), 400)
    return Cells.of(numbers, n, s, q, context_index=seg, contexts=[{"seg": "a"}, {"seg": "b"}])


def test_planted_context_interaction_keeps_a_wide_scale_and_an_absent_one_shrinks() -> None:
    strong = fit_cmab(_context_cells(0.8, 1), COUNTS, "bool")
    absent = fit_cmab(_context_cells(0.0, 1), COUNTS, "bool")
    assert strong.meta["prior_scales_source"] == "empirical_bayes"
    s_strong = strong.meta["prior_scales"]["context:seg:0"]
    s_absent = absent.meta["prior_scales"]["context:seg:0"]
    # The planted ±0.8 flip of one level between two segments has centred contrasts of sd
    # ≈ 0.35: that is what the block's scale should find.
    assert s_strong >= 0.35
    assert s_absent <= 0.1
    assert dict(design_of(strong).scales)["context:seg:0"] == s_strong


def test_legacy_reference_posteriors_keep_their_layout() -> None:
    post = fit_cmab(_context_cells(0.5, 2), COUNTS, "bool")
    legacy_meta = {k: v for k, v in post.meta.items() if k not in ("coding", "prior_scales")}
    import msgspec

    old = msgspec.structs.replace(post, meta=legacy_meta)
    d = design_of(old)
    assert d.coding == "reference"
    assert d.n_features < design_of(post).n_features


SPACE = (4, 4, 3)


def _space_cells(users: int, pair_sd: float, seed: int) -> Cells:
    """Uniform traffic on a 4×4×3 space: main effects sd 0.3 and pairwise design interactions
    of sd ``pair_sd`` on the logit, ≈ 5 % conversion."""
    rng = np.random.default_rng(seed)
    grid = naive.levels(SPACE)
    eta = np.full(grid.shape[0], -3.0)
    for f, k in enumerate(SPACE):
        eta += rng.normal(0.0, 0.3, k)[grid[:, f]]
    for f in range(len(SPACE)):
        for g in range(f + 1, len(SPACE)):
            eta += rng.normal(0.0, pair_sd, (SPACE[f], SPACE[g]))[grid[:, f], grid[:, g]]
    n = rng.multinomial(users, np.full(grid.shape[0], 1 / grid.shape[0])).astype(float)
    s = rng.binomial(n.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    return Cells.of(np.arange(1, grid.shape[0] + 1), n, s)


def _pair_scales(cells: Cells) -> list[float]:
    scales = fit_cmab(cells, SPACE, "bool").meta["prior_scales"]
    return [v for k, v in scales.items() if k.startswith("pair:")]


def test_few_data_keep_interaction_scales_off_the_floor() -> None:
    """≈ 75 conversions say little about 48 interaction coefficients: the evidence is flat
    there, and ML-II used to drop pair blocks to the 0.02 floor, so the sampler stopped
    exploring interactions that exist, and back up at a later refit. The boundary-avoiding
    hyperprior keeps them near its mode, 0.1, until the data say otherwise."""
    for seed in range(3):
        scales = _pair_scales(_space_cells(1_500, 0.2, seed))
        assert min(scales) > 0.06


def test_absent_interactions_shrink_as_exposures_grow() -> None:
    """Without planted interactions the pair scales fall with the data (the noise level of
    the fit, ≈ 1/√n), well below the default 0.3 and the hyperprior's mode 0.1 at 10⁵
    exposures."""
    few = [np.mean(_pair_scales(_space_cells(3_000, 0.0, seed))) for seed in range(3)]
    many = [max(_pair_scales(_space_cells(100_000, 0.0, seed))) for seed in range(3)]
    assert max(many) <= 0.1
    assert np.mean(many) < 0.6 * np.mean(few)


def test_planted_interactions_keep_their_scale_with_data() -> None:
    for seed in range(3):
        scales = _pair_scales(_space_cells(100_000, 0.3, seed))
        assert np.mean(scales) > 0.15


def test_block_scales_see_only_their_own_contrasts() -> None:
    """A pair table's row and column means are main effects, a factor's mean level is the
    intercept: the projection keeps only what no other block can carry."""
    pair = contrast_projection("pair:0:1", (4, 3))
    rows_plus_cols = (np.arange(4.0)[:, None] + np.array([0.0, 2.0, -1.0])[None, :]).ravel()
    assert np.allclose(pair @ rows_plus_cols, 0.0)
    assert round(float(np.trace(pair))) == 3 * 2
    assert round(float(np.trace(contrast_projection("main:0", (4,))))) == 3
    # One known context value: traffic without it identifies the column means.
    assert round(float(np.trace(contrast_projection("context:seg:0", (1, 4))))) == 3
    assert round(float(np.trace(contrast_projection("context:seg:0", (3, 4))))) == 2 * 3
