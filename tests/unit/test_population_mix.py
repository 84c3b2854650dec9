"""The population view of a cmab model averages over the observed traffic mix."""

from __future__ import annotations

import numpy as np

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.results import summarize

RATES = {"mobile": [0.05, 0.20], "desktop": [0.20, 0.05]}
SHARE = {"mobile": 0.7, "desktop": 0.3}


def test_population_expected_reward_is_the_traffic_weighted_rate() -> None:
    """Every exposure carries a known device, so the no-context prediction is pinned only by
    the prior; the population must instead be the count-weighted mix of the two devices."""
    rng = np.random.default_rng(3)
    contexts = ({"device": "mobile"}, {"device": "desktop"})
    numbers, context_index, counts, sums = [], [], [], []
    for c, context in enumerate(contexts):
        for v in (1, 2):
            n = int(20000 * SHARE[context["device"]])
            numbers.append(v)
            context_index.append(c)
            counts.append(n)
            sums.append(rng.binomial(n, RATES[context["device"]][v - 1]))
    cells = Cells.of(numbers, counts, sums, context_index=context_index, contexts=contexts)
    posterior = fit_cmab(cells, [2], "bool")
    results = summarize(posterior, n_draws=2000, seed=1)
    for v in (1, 2):
        truth = sum(SHARE[d] * RATES[d][v - 1] for d in SHARE)
        interval = results.expected_reward[v - 1]
        assert interval.lo <= truth <= interval.hi
        assert interval.hi - interval.lo < 0.03  # 14k exposures per variant: a tight interval
    mobile = summarize(posterior, n_draws=2000, seed=1, context={"device": "mobile"})
    assert mobile.expected_reward[1].mean > mobile.expected_reward[0].mean
