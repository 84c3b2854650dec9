"""Thompson-sampling decision latency: the numba sampler against its numpy twin, side by side.

``python -m benchmarks.sampler [--decisions 20000]``

For 12 (3×2×2), 1,000 (10×10×10) and 10,000 (10×10×10×10) variants, a cmab posterior is fitted
on synthetic bool cells with one context factor (two known values) and decisions are timed one
by one for a request carrying a context, through ``Sampler.choose`` — the serving path: context
lookup, kernel call, seeding included. The baseline is the numpy twin (``tests/naive.py``
``glm_choose_dense``) with the variants' design matrix for the context precomputed, so it does
only the two matrix-vector products. Also reported: the mab (Beta) sampler, the cost of one
context's serving pool (the winners of the version's 1,000 posterior samples, computed once per
version and context when serving; the samples themselves drawn on first use), a pooled decision
(``Pool.number``: what serving does per request) and the fit.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.sampler import Sampler, warm_up
from tests import naive

SPACES: dict[int, tuple[int, ...]] = {12: (3, 2, 2), 1_000: (10, 10, 10), 10_000: (10,) * 4}
CONTEXT = {"segment": "a"}


def _cells(counts: tuple[int, ...], rng: np.random.Generator) -> Cells:
    n_variants = int(np.prod(counts))
    observed = np.sort(rng.choice(n_variants, min(n_variants, 2000), replace=False)) + 1
    numbers = np.concatenate([observed, observed])
    ctx = np.repeat([0, 1], observed.size)
    count = np.full(numbers.size, 200.0)
    rates = rng.uniform(0.05, 0.2, numbers.size)
    successes = rng.binomial(200, rates).astype(np.float64)
    return Cells.of(
        numbers, count, successes, context_index=ctx, contexts=[{"segment": "a"}, {"segment": "b"}]
    )


def _time(fn: Callable[[int], object], n: int) -> tuple[float, float, float]:
    """p50 and p99 latency (µs) and decisions/s over n calls with distinct seeds."""
    lat = np.empty(n)
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter_ns()
        fn(i)
        lat[i] = time.perf_counter_ns() - t0
    total = time.perf_counter() - start
    return float(np.percentile(lat, 50)) / 1e3, float(np.percentile(lat, 99)) / 1e3, n / total


def _row(n_variants: int, counts: tuple[int, ...], rng: np.random.Generator, n: int) -> str:
    cells = _cells(counts, rng)
    t0 = time.perf_counter()
    post = fit_cmab(cells, counts, "bool")
    fit_s = time.perf_counter() - t0
    sampler = Sampler(post)
    sampler.choose(0, CONTEXT)
    fast = _time(lambda s: sampler.choose(s, CONTEXT), n)
    mean, chol = post.array("mean"), post.array("chol")
    allowed = np.ones(n_variants, dtype=np.bool_)
    x = naive.design_matrix(
        counts, post.context_vocab, list(range(1, n_variants + 1)), [CONTEXT] * n_variants
    )
    twin_n = max(200, n // (1 if n_variants <= 12 else 20))
    slow = _time(lambda s: naive.glm_choose_dense(s, mean, chol, x, allowed), twin_n)
    mab = Sampler(fit_mab(cells, counts, "bool"))
    mab_t = _time(lambda s: mab.choose(s), n)
    t0 = time.perf_counter()
    pool = Sampler(post, model_version=1).pool(CONTEXT)
    pool_ms = (time.perf_counter() - t0) * 1e3
    pooled = _time(pool.number, n)
    return (
        f"{n_variants:>8,} {post.array('mean').size:>8} | "
        f"{fast[0]:>8.1f}/{fast[1]:>8.1f} {fast[2]:>8,.0f} | "
        f"{slow[0]:>8.1f}/{slow[1]:>8.1f} {slow[2]:>8,.0f} | "
        f"{slow[0] / fast[0]:>7.1f}× | {mab_t[0]:>7.1f}/{mab_t[1]:>7.1f} | "
        f"{pool_ms:>8.1f} | {pooled[0]:>6.2f}/{pooled[1]:>6.2f} | {fit_s:>6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=20_000)
    args = parser.parse_args()
    warm_up()
    rng = np.random.default_rng(0)
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}, decisions per size: {args.decisions}"
    )
    header = (
        f"{'variants':>8} {'features':>8} | {'numba p50/p99 µs':>17} {'dec/s':>8} | "
        f"{'numpy p50/p99 µs':>17} {'dec/s':>8} | {'speed-up':>8} | "
        f"{'mab p50/p99 µs':>15} | {'pool ms':>8} | {'pooled µs':>13} | {'fit s':>6}"
    )
    print(header)
    print("-" * len(header))
    for n_variants, counts in SPACES.items():
        print(_row(n_variants, counts, rng, args.decisions))


if __name__ == "__main__":
    main()
