"""Cumulative regret of our bandits against baselines, on simulated users with planted effects.

    python -m benchmarks.regret [--users 50000] [--reps 3] [--refit 1000] [--seed 0]
        [--cases factorial,interactions,contextual] [--half-life 3000]

Four cases, bool rewards (≈ 5 % conversion), truth on the logit scale (``drift`` only when
named in ``--cases``):

- ``factorial``: 4×4×3×2 = 96 variants, main effects only (sd 0.3 per level);
- ``interactions``: the same mains plus pairwise design interactions (sd 0.15);
- ``contextual``: the same 96 variants, a ``segment`` context (3 values, equally likely) with
  its own main effect and segment × design-level effects (sd 0.3), so the best variant differs
  by segment (the seed is advanced until it does);
- ``drift``: main effects only, as ``factorial``, redrawn halfway through the run (until the
  best variant changes): the world the model learned stops being true.

Policies, all fed the same users (same contexts and same uniform draws — common random
numbers):

- ``uniform``: a uniformly random variant;
- ``ind-TS``: independent-arm Thompson sampling, Beta(1, 1) per variant, updated after *every*
  user (an online baseline: it sees more recent data than our batched models);
- ``ind-TS/seg`` (contextual case only): the same, one Beta per (variant, segment);
- ``mab``: our ``fit_mab`` + ``Sampler`` refitted every ``--refit`` users on the cells. It is the
  same Beta–Bernoulli model as ``ind-TS``, only updated in batches, as the product does;
- ``cmab``: our ``fit_cmab`` (Laplace GLM) + ``Sampler``, refitted every ``--refit`` users on
  the cells (variant × segment → count, successes), as the scheduler does in production;
- ``vw``: Vowpal Wabbit ``--cb_explore_adf`` only when ``import vowpalwabbit`` works (not a
  dependency; skipped otherwise);
- ``mab-decay``, ``cmab-decay`` (drift case only): the same models trained through the
  product's decay window (``{"type": "decay", "half_life_days": H}``, docs/training.md):
  every refit interval is one bucket (an "hour"), its counts and sums weighted by
  0.5^(age / ``--half-life``), age in users from the bucket's middle to the refit.

Regret is expected (pseudo-)regret: Σ over users of p(best variant | segment) − p(served |
segment), with the true probabilities at the time. Printed per case: each policy's regret
(mean over ``--reps`` repetitions with distinct seeds, and its range), cmab / ind-TS, cmab /
the best peer (ind-TS, ind-TS/seg, vw; goal ≤ 0.6), whether cmab beats every baseline on the
contextual case; for drift, the regret after the change and cmab-decay / cmab over it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from levered.bandit.cells import NO_CONTEXT, Cells
from levered.bandit.design import levels_matrix
from levered.bandit.glm import fit_cmab
from levered.bandit.mab import fit_mab
from levered.bandit.sampler import Sampler, warm_up

F64 = npt.NDArray[np.float64]
LEVELS: tuple[int, ...] = (4, 4, 3, 2)
SEGMENTS = ("a", "b", "c")
BASE_RATE = 0.05


@dataclass(frozen=True)
class Case:
    """A simulated world: true conversion probability per (segment, variant)."""

    name: str
    p: F64  # shape (segments, variants); one row when there is no context
    contextual: bool
    p_after: F64 | None = None
    """The truth from user ``change_at`` on (drift case)."""
    change_at: int = 0


def _logit(x: float) -> float:
    return float(np.log(x / (1.0 - x)))


def _mains(rng: np.random.Generator) -> F64:
    lv = levels_matrix(LEVELS)
    eta = np.full(lv.shape[0], _logit(BASE_RATE))
    for f, k in enumerate(LEVELS):
        eta += rng.normal(0.0, 0.3, k)[lv[:, f]]
    eta -= eta.mean() - _logit(BASE_RATE)
    return np.asarray(1.0 / (1.0 + np.exp(-eta[None, :])), dtype=np.float64)


def make_case(name: str, seed: int, users: int = 0) -> Case:
    rng = np.random.default_rng(seed)
    if name == "drift":
        before = _mains(rng)
        after = _mains(rng)
        while int(np.argmax(after)) == int(np.argmax(before)):
            after = _mains(rng)
        return Case(name, before, False, after, users // 2)
    lv = levels_matrix(LEVELS)
    n_v, n_f = lv.shape
    eta = np.full(n_v, _logit(BASE_RATE))
    for f, k in enumerate(LEVELS):
        eta += rng.normal(0.0, 0.3, k)[lv[:, f]]
    if name == "interactions":
        for f in range(n_f):
            for g in range(f + 1, n_f):
                eta += rng.normal(0.0, 0.15, (LEVELS[f], LEVELS[g]))[lv[:, f], lv[:, g]]
    if name != "contextual":
        eta -= eta.mean() - _logit(BASE_RATE)
        return Case(name, 1.0 / (1.0 + np.exp(-eta[None, :])), False)
    while True:
        rows = []
        for _ in SEGMENTS:
            seg = eta + rng.normal(0.0, 0.2)
            for f, k in enumerate(LEVELS):
                seg = seg + rng.normal(0.0, 0.3, k)[lv[:, f]]
            rows.append(seg)
        e = np.array(rows)
        e -= e.mean() - _logit(BASE_RATE)
        p = 1.0 / (1.0 + np.exp(-e))
        if len(set(np.argmax(p, axis=1).tolist())) == len(SEGMENTS):
            return Case(name, p, True)


class Policy:
    """Serves a variant index (0-based) for a segment; learns from (variant, segment, reward)."""

    name = ""

    def choose(self, i: int, seg: int) -> int:
        raise NotImplementedError

    def update(self, v: int, seg: int, reward: float) -> None:
        pass


class Uniform(Policy):
    name = "uniform"

    def __init__(self, n_v: int, rng: np.random.Generator) -> None:
        self.n_v, self.rng = n_v, rng

    def choose(self, i: int, seg: int) -> int:
        return int(self.rng.integers(self.n_v))


class IndependentTS(Policy):
    """Beta(1, 1) per arm, online; ``per_segment`` keeps one set of arms per segment."""

    def __init__(self, n_v: int, n_seg: int, per_segment: bool, rng: np.random.Generator) -> None:
        self.name = "ind-TS/seg" if per_segment else "ind-TS"
        rows = n_seg if per_segment else 1
        self.a = np.ones((rows, n_v))
        self.b = np.ones((rows, n_v))
        self.per_segment, self.rng = per_segment, rng

    def choose(self, i: int, seg: int) -> int:
        r = seg if self.per_segment else 0
        return int(np.argmax(self.rng.beta(self.a[r], self.b[r])))

    def update(self, v: int, seg: int, reward: float) -> None:
        r = seg if self.per_segment else 0
        self.a[r, v] += reward
        self.b[r, v] += 1.0 - reward


class Batched(Policy):
    """Our model: refit on the cells every ``refit`` users, Thompson decisions in between."""

    def __init__(
        self,
        kind: str,
        n_v: int,
        n_seg: int,
        contextual: bool,
        refit: int,
        seed: int,
        half_life: float | None = None,
    ) -> None:
        self.name = kind if half_life is None else f"{kind}-decay"
        self.kind, self.refit, self.seed, self.half_life = kind, refit, seed, half_life
        self.contextual = contextual
        self.n = np.zeros((n_seg, n_v))
        self.s = np.zeros((n_seg, n_v))
        self._buckets: list[tuple[F64, F64]] = []  # closed refit intervals (decay only)
        self.fit_seconds = 0.0
        self.fits = 0
        self._contexts = [{"segment": s} for s in SEGMENTS[:n_seg]]
        self._fit()

    def _training_counts(self) -> tuple[F64, F64]:
        """All history, or the decay window's weighted sums: bucket b (users [b·refit,
        (b+1)·refit)) weighs 0.5^(age / half-life), age from its middle to now."""
        if self.half_life is None:
            return self.n, self.s
        self._buckets.append((self.n.copy(), self.s.copy()))
        self.n[:] = 0.0
        self.s[:] = 0.0
        now = len(self._buckets) * self.refit
        n = np.zeros_like(self.n)
        s = np.zeros_like(self.s)
        for b, (bn, bs) in enumerate(self._buckets):
            w = 0.5 ** ((now - (b + 0.5) * self.refit) / self.half_life)
            n += w * bn
            s += w * bs
        return n, s

    def _fit(self) -> None:
        started = time.perf_counter()
        n, s = self._training_counts()
        seg_idx, v_idx = np.nonzero(n)
        ctx = seg_idx if self.contextual else np.full(seg_idx.size, NO_CONTEXT)
        cells = Cells.of(
            v_idx + 1,
            n[seg_idx, v_idx],
            s[seg_idx, v_idx],
            context_index=ctx,
            contexts=self._contexts if self.contextual else (),
        )
        fit = fit_cmab if self.kind == "cmab" else fit_mab
        self.sampler = Sampler(fit(cells, LEVELS, "bool"))
        self.fit_seconds += time.perf_counter() - started
        self.fits += 1

    def choose(self, i: int, seg: int) -> int:
        if i and i % self.refit == 0:
            self._fit()
        context = self._contexts[seg] if self.contextual else None
        return self.sampler.choose(self.seed * 1_000_003 + i, context) - 1

    def update(self, v: int, seg: int, reward: float) -> None:
        self.n[seg, v] += 1.0
        self.s[seg, v] += reward


class VowpalWabbit(Policy):
    """``--cb_explore_adf --squarecb -q UA`` (quadratic user × action features), one action line
    per variant with its factor levels as features: the strongest contextual peer measured."""

    name = "vw"

    def __init__(self, vw_module: Any, n_v: int, contextual: bool, seed: int) -> None:
        self.vw = vw_module.Workspace(
            f"--cb_explore_adf --squarecb -q UA --quiet --random_seed {seed}"
        )
        lv = levels_matrix(LEVELS)
        self.actions = [
            "|Action " + " ".join(f"f{f}={lv[v, f]}" for f in range(len(LEVELS)))
            for v in range(n_v)
        ]
        self.contextual = contextual
        self.rng = np.random.default_rng(seed)
        self._last: tuple[str, float] = ("", 1.0)

    def _shared(self, seg: int) -> str:
        return f"shared |User segment={SEGMENTS[seg]}" if self.contextual else "shared |User c"

    def choose(self, i: int, seg: int) -> int:
        pmf = np.asarray(self.vw.predict("\n".join([self._shared(seg), *self.actions])))
        pmf = pmf / pmf.sum()
        v = int(self.rng.choice(pmf.size, p=pmf))
        self._last = (self._shared(seg), float(pmf[v]))
        return v

    def update(self, v: int, seg: int, reward: float) -> None:
        shared, prob = self._last
        lines = [shared] + [
            (f"0:{-reward}:{prob} " if a == v else "") + line for a, line in enumerate(self.actions)
        ]
        self.vw.learn("\n".join(lines))


def simulate(
    case: Case, policy: Policy, segs: npt.NDArray[np.int64], u: F64
) -> tuple[float, float]:
    """Expected regret of ``policy`` over the users (segment, uniform draw) given: in all, and
    from ``case.change_at`` on (drift; 0 otherwise)."""
    p = case.p
    best = p.max(axis=1)
    regret = after = 0.0
    for i in range(segs.size):
        if case.p_after is not None and i == case.change_at:
            p = case.p_after
            best = p.max(axis=1)
        seg = int(segs[i])
        row = seg if case.contextual else 0
        v = policy.choose(i, seg)
        pv = p[row, v]
        regret += best[row] - pv
        if case.p_after is not None and i >= case.change_at:
            after += best[row] - pv
        policy.update(v, seg, 1.0 if u[i] < pv else 0.0)
    return regret, after


def policies_for(
    case: Case, refit: int, seed: int, vw_module: Any | None, half_life: float = 3000.0
) -> list[Callable[[], Policy]]:
    n_v, n_seg = case.p.shape[1], len(SEGMENTS)
    makers: list[Callable[[], Policy]] = [
        lambda: Uniform(n_v, np.random.default_rng(seed + 1)),
        lambda: IndependentTS(n_v, n_seg, False, np.random.default_rng(seed + 2)),
    ]
    if case.contextual:
        makers.append(lambda: IndependentTS(n_v, n_seg, True, np.random.default_rng(seed + 3)))
    makers += [
        lambda: Batched("mab", n_v, n_seg, case.contextual, refit, seed + 4),
        lambda: Batched("cmab", n_v, n_seg, case.contextual, refit, seed + 5),
    ]
    if case.p_after is not None:
        makers += [
            lambda: Batched("mab", n_v, n_seg, False, refit, seed + 4, half_life),
            lambda: Batched("cmab", n_v, n_seg, False, refit, seed + 5, half_life),
        ]
    if vw_module is not None:
        makers.append(lambda: VowpalWabbit(vw_module, n_v, case.contextual, seed + 6))
    return makers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--reps", type=int, default=3, help="repetitions (distinct seeds)")
    parser.add_argument("--refit", type=int, default=1000, help="users between refits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", default="factorial,interactions,contextual")
    parser.add_argument(
        "--half-life", type=float, default=3000.0, help="decay half-life in users (drift case)"
    )
    args = parser.parse_args()
    try:
        import vowpalwabbit as vw_module  # optional extra, not a dependency
    except ImportError:
        vw_module = None
        print("vowpalwabbit is not installed: the VW baseline is skipped")
    warm_up()
    print(
        f"{args.users:,} users, refit every {args.refit:,}, {args.reps} rep(s), "
        f"{len(LEVELS)} factors {'×'.join(map(str, LEVELS))} = {int(np.prod(LEVELS))} variants, "
        f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for c, name in enumerate(args.cases.split(",")):
        runs: dict[str, list[float]] = {}
        after: dict[str, list[float]] = {}
        fit_s: dict[str, float] = {}
        started = time.perf_counter()
        for rep in range(args.reps):
            seed = args.seed + 1000 * rep + 100 * c
            case = make_case(name, seed, args.users)
            rng = np.random.default_rng(seed + 7)
            n_seg = len(SEGMENTS) if case.contextual else 1
            segs = rng.integers(n_seg, size=args.users)
            u = rng.random(args.users)
            for make in policies_for(case, args.refit, seed, vw_module, args.half_life):
                policy = make()
                total, later = simulate(case, policy, segs, u)
                runs.setdefault(policy.name, []).append(total)
                after.setdefault(policy.name, []).append(later)
                if isinstance(policy, Batched):
                    fit_s[policy.name] = fit_s.get(policy.name, 0.0) + policy.fit_seconds
        best = case.p.max(axis=1)
        print(
            f"\n== {name}: best p {', '.join(f'{b:.3f}' for b in best)}, "
            f"mean p {case.p.mean():.3f} (last rep), {time.perf_counter() - started:.0f} s"
        )
        drift = case.p_after is not None
        if drift:
            print(f"  best variant changes at user {case.change_at:,}")
        for label, values in runs.items():
            extra = f"  (fits {fit_s[label] / args.reps:.2f} s/rep)" if label in fit_s else ""
            if drift:
                extra = f"  after the change {np.mean(after[label]):>8.1f}{extra}"
            print(
                f"  {label:<11} regret {np.mean(values):>8.1f}  "
                f"[{min(values):.1f} – {max(values):.1f}]{extra}"
            )
        mean = {label: float(np.mean(v)) for label, v in runs.items()}
        ratio = mean["cmab"] / mean["ind-TS"]
        verdict = "met" if ratio <= 0.5 else "MISSED"
        target = "" if case.contextual else f"  (factorial target ≤ 0.5: {verdict})"
        print(f"  cmab / ind-TS = {ratio:.2f}{target}")
        peers = {k: v for k, v in mean.items() if k in ("ind-TS", "ind-TS/seg", "vw")}
        peer = min(peers, key=lambda k: peers[k])
        share = mean["cmab"] / peers[peer]
        print(
            f"  cmab / best peer ({peer}) = {share:.2f}  "
            f"(goal ≤ 0.6: {'met' if share <= 0.6 else 'MISSED'})"
        )
        if drift:
            later_mean = {label: float(np.mean(v)) for label, v in after.items()}
            for kind in ("mab", "cmab"):
                print(
                    f"  after the change: {kind}-decay / {kind} = "
                    f"{later_mean[f'{kind}-decay'] / later_mean[kind]:.2f}"
                )
        if case.contextual:
            others = {k: v for k, v in mean.items() if k != "cmab"}
            beaten = all(mean["cmab"] < v for v in others.values())
            closest = min(others, key=lambda k: others[k])
            print(
                f"  cmab beats every baseline: {'yes' if beaten else 'NO'} "
                f"(closest: {closest}, cmab / {closest} = {mean['cmab'] / others[closest]:.2f})"
            )


if __name__ == "__main__":
    main()
