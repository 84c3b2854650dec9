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

Second table, the argmax search: for 1,000 to 10⁶ variants (10×10×10 … 10⁶ = (10,)*6, plus
2²⁰ binary factors and a two-factor 100×100), the same fitted posterior served with
``argmax="enumerate"`` (score every allowed variant) and ``argmax="branch_and_bound"``
(``levered.bandit.argmax``) side by side: decision p50/p99 through ``Sampler.choose``, the
cost of one context's 1,000-sample pool (the posterior samples drawn beforehand, so this is
the argmax work alone), the sampler's build time (ms) and per-variant memory (MB), and the
ratios enumeration / search. Both give the same winners (checked on every pool).
Enumeration is skipped when a draw would score more than ``--enumerate-work`` (3·10⁷)
variant terms (2²⁰ has 210 terms per variant).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from levered.bandit.cells import Cells
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.posterior import Posterior
from levered.bandit.sampler import Argmax, Sampler, warm_up
from tests import naive

SPACES: dict[int, tuple[int, ...]] = {12: (3, 2, 2), 1_000: (10, 10, 10), 10_000: (10,) * 4}
SEARCH_SPACES: list[tuple[int, ...]] = [
    (10, 10, 10),
    (10,) * 4,
    (100, 100),
    (10,) * 5,
    (10,) * 6,
    (2,) * 20,
]
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


def _sampler_bytes(sampler: Sampler) -> int:
    """What the sampler holds per variant: the enumeration's term table or the search's mask
    and index tables, plus the allowed indices both keep."""
    held: list[Any] = [sampler.allowed_idx]
    if sampler.terms is not None:
        held.append(sampler.terms)
    if sampler.layout is not None:
        held += [a for a in sampler.layout.args if isinstance(a, np.ndarray)]
    return sum(int(a.nbytes) for a in held)


def _search_side(
    post: Posterior, argmax: Argmax, n_decisions: int
) -> tuple[tuple[float, float, float], float, float, float, Any]:
    """(choose p50/p99/rate, pool ms, build ms, MB, pool) for one argmax mode."""
    t0 = time.perf_counter()
    sampler = Sampler(post, model_version=1, argmax=argmax)
    build_ms = (time.perf_counter() - t0) * 1e3
    sampler.choose(0, CONTEXT)
    choose = _time(lambda s: sampler.choose(s, CONTEXT), n_decisions)
    sampler.thetas()  # drawn once per version: not the argmax's cost
    t0 = time.perf_counter()
    pool = sampler.pool(CONTEXT)
    pool_ms = (time.perf_counter() - t0) * 1e3
    return choose, pool_ms, build_ms, _sampler_bytes(sampler) / 1e6, pool


def _search_row(
    counts: tuple[int, ...], rng: np.random.Generator, n: int, enumerate_work: int
) -> str:
    n_variants = int(np.prod(counts))
    shape = "×".join(str(c) for c in counts) if len(counts) < 6 else f"{counts[0]}^{len(counts)}"
    post = fit_cmab(_cells(counts, rng), counts, "bool")
    auto = Sampler(post).argmax
    bnb = _search_side(post, "branch_and_bound", n)
    mode = "search" if auto == "branch_and_bound" else "enum"
    left = f"{n_variants:>9,} {shape:>14} {post.array('mean').size:>6} {mode:>6} | "
    right = f"{bnb[0][0]:>7.1f}/{bnb[0][1]:>7.1f} {bnb[1]:>8.1f} {bnb[2]:>6.0f} {bnb[3]:>5.1f}"
    n_terms = len(counts) * (len(counts) + 1) // 2
    if n_variants * n_terms > enumerate_work:
        skipped = f"(not run: {n_variants * n_terms:.1e} terms a draw)"
        return left + f"{skipped:>37} | " + right + f" | {'—':>6} {'—':>6}"
    # Enumeration costs ~15 ns per variant and term: fewer decisions for the largest spaces.
    n_enum = max(100, min(n, 20_000_000 // n_variants))
    enum = _search_side(post, "enumerate", n_enum)
    assert np.array_equal(enum[4].winners, bnb[4].winners), "the search must equal enumeration"
    return (
        left
        + f"{enum[0][0]:>7.1f}/{enum[0][1]:>7.1f} {enum[1]:>8.1f} {enum[2]:>6.0f} {enum[3]:>5.1f}"
        + " | "
        + right
        + f" | {enum[0][0] / bnb[0][0]:>5.1f}× {enum[1] / bnb[1]:>5.1f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--search-decisions", type=int, default=2_000)
    parser.add_argument("--enumerate-work", type=int, default=30_000_000)
    args = parser.parse_args()
    warm_up()
    rng = np.random.default_rng(0)
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs"
    )
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
        print(_row(n_variants, counts, rng, args.decisions), flush=True)
    print()
    print("argmax: enumeration vs branch and bound (same posterior, same winners)")
    side = f"{'p50/p99 µs':>15} {'pool ms':>8} {'build':>6} {'MB':>5}"
    header = (
        f"{'variants':>9} {'shape':>14} {'feat.':>6} {'auto':>6} | {side} | {side} | "
        f"{'p50':>6} {'pool':>6}"
    )
    print(f"{'':>39}| {'enumerate':<37} | {'branch and bound':<37} | enum / search")
    print(header)
    print("-" * len(header))
    for counts in SEARCH_SPACES:
        row = _search_row(counts, rng, args.search_decisions, args.enumerate_work)
        print(row, flush=True)


if __name__ == "__main__":
    main()
