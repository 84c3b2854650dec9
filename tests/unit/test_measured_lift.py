"""Measured lift (optimized vs holdout) by the log-ratio delta method: hand numbers, coverage,
and agreement of the interval with the p-value."""

from __future__ import annotations

import math

import numpy as np
import pytest

from levered.db.attribution import Arm
from levered.services.results import measured_lift


def arm_of(outcomes: np.ndarray) -> Arm:
    return Arm(int(outcomes.size), float(outcomes.sum()), float((outcomes**2).sum()))


def test_hand_computed_bool_example() -> None:
    # 200 users with 60 conversions vs 100 users with 20.
    lift = measured_lift(Arm(200, 60.0, 60.0), Arm(100, 20.0, 20.0))
    assert lift.optimized_rate == 0.3 and lift.holdout_rate == 0.2
    assert lift.lift_percent == pytest.approx(50.0)
    var_o = (60 - 60**2 / 200) / 199 / 200  # s² / n
    var_h = (20 - 20**2 / 100) / 99 / 100
    se_log = math.sqrt(var_o / 0.3**2 + var_h / 0.2**2)
    assert lift.ci == pytest.approx(
        [
            100 * (1.5 * math.exp(-1.959964 * se_log) - 1),
            100 * (1.5 * math.exp(1.959964 * se_log) - 1),
        ]
    )
    z = math.log(1.5) / se_log
    assert lift.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert lift.p_value == pytest.approx(0.0758, abs=5e-4)  # z ≈ 1.78: the interval spans 0 too


def test_interval_and_p_value_agree() -> None:
    """One estimator: the interval excludes 0 exactly when p < 0.05."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        n_o, n_h = int(rng.integers(100, 2000)), int(rng.integers(100, 500))
        o = float(rng.binomial(n_o, 0.1))
        h = float(max(rng.binomial(n_h, 0.08), 1))
        lift = measured_lift(Arm(n_o, o, o), Arm(n_h, h, h))
        assert lift.ci is not None and lift.p_value is not None
        excludes_zero = lift.ci[0] > 0 or lift.ci[1] < 0
        assert excludes_zero == (lift.p_value < 0.05)


def test_interval_and_p_value_need_100_users_per_arm() -> None:
    below = measured_lift(Arm(500, 100.0, 100.0), Arm(99, 10.0, 10.0))
    assert below.ci is None and below.p_value is None
    assert below.lift_percent == pytest.approx(100 * ((100 / 500) / (10 / 99) - 1))
    at = measured_lift(Arm(100, 30.0, 30.0), Arm(100, 20.0, 20.0))
    assert at.ci is not None and at.p_value is not None


def test_degenerate_arms() -> None:
    empty = measured_lift(Arm(0, 0.0, 0.0), Arm(0, 0.0, 0.0))
    assert empty.optimized_rate is None and empty.lift_percent is None and empty.ci is None
    zero_holdout = measured_lift(Arm(200, 10.0, 10.0), Arm(200, 0.0, 0.0))
    # log R is undefined with a zero mean: neither the interval nor its test is reported.
    assert zero_holdout.lift_percent is None and zero_holdout.ci is None
    assert zero_holdout.p_value is None
    same = measured_lift(Arm(200, 0.0, 0.0), Arm(200, 0.0, 0.0))
    assert same.p_value is None


def test_the_interval_covers_the_true_lift_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(11)
    true_lift = 100 * (0.12 / 0.10 - 1)
    covered = 0
    rejected = 0
    reps = 2000
    for _ in range(reps):
        o = (rng.random(3000) < 0.12).astype(float)
        h = (rng.random(1500) < 0.10).astype(float)
        lift = measured_lift(arm_of(o), arm_of(h))
        assert lift.ci is not None
        covered += lift.ci[0] <= true_lift <= lift.ci[1]
        null = measured_lift(arm_of(h[:750]), arm_of(h[750:]))
        assert null.p_value is not None
        rejected += null.p_value < 0.05
    assert 0.93 <= covered / reps <= 0.97
    assert 0.03 <= rejected / reps <= 0.07  # the test's size under no lift


def test_numeric_outcomes_match_a_direct_delta_method() -> None:
    rng = np.random.default_rng(3)
    o = rng.exponential(12.0, 400) * (rng.random(400) < 0.3)
    h = rng.exponential(10.0, 300) * (rng.random(300) < 0.3)
    lift = measured_lift(arm_of(o), arm_of(h))
    mo, mh = o.mean(), h.mean()
    cov = np.diag([o.var(ddof=1) / o.size, h.var(ddof=1) / h.size])
    grad = np.array([1 / mo, -1 / mh])  # of log(mo / mh)
    se = math.sqrt(grad @ cov @ grad)
    assert lift.lift_percent == pytest.approx(100 * (mo / mh - 1))
    ratio = mo / mh
    assert lift.ci == pytest.approx(
        [100 * (ratio * math.exp(-1.959964 * se) - 1), 100 * (ratio * math.exp(1.959964 * se) - 1)]
    )
