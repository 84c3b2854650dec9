"""Holdout membership: a stable hash of (optimization, anonymous id), the right share of users,
independent between optimizations; and the decision seed derived from the decision id."""

from __future__ import annotations

import math
import subprocess
import sys
from uuid import UUID

import pytest

from levered.services.serving import holdout_bucket, in_holdout, kernel_seed

OPT = UUID("6f1c1d4e-8d0b-4c1e-9f5a-0c2d3e4f5a6b")
OTHER = UUID("0b8e2f7a-1c3d-4e5f-8a9b-0c1d2e3f4a5b")
USERS = [f"user-{i}" for i in range(100_000)]


def test_the_bucket_is_pinned_across_processes_and_releases() -> None:
    # A changed hash would silently move users in and out of every running holdout.
    assert holdout_bucket(OPT, "user-1") == pytest.approx(0.6829620731969908, abs=1e-12)
    code = (
        "from uuid import UUID; from levered.services.serving import holdout_bucket; "
        f"print(repr(holdout_bucket(UUID('{OPT}'), 'user-1')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == holdout_bucket(OPT, "user-1")
    assert holdout_bucket(OPT.bytes, "user-1") == holdout_bucket(OPT, "user-1")


@pytest.mark.parametrize("percentage", [0, 1, 10, 25, 50])
def test_the_holdout_share_matches_the_percentage(percentage: float) -> None:
    held = sum(in_holdout(OPT, user, percentage) for user in USERS)
    p = percentage / 100
    sd = math.sqrt(len(USERS) * p * (1 - p))
    assert abs(held - len(USERS) * p) <= 4.5 * sd + 1e-9


def test_buckets_are_uniform() -> None:
    deciles = [0] * 10
    for user in USERS:
        deciles[int(holdout_bucket(OPT, user) * 10)] += 1
    expected = len(USERS) / 10
    chi2 = sum((d - expected) ** 2 / expected for d in deciles)
    assert chi2 < 33.7  # χ²(9) at p = 10⁻⁴


def test_membership_is_stable_and_nested_in_larger_holdouts() -> None:
    for user in USERS[:2000]:
        assert in_holdout(OPT, user, 10) == in_holdout(OPT, user, 10)
        if in_holdout(OPT, user, 10):
            assert in_holdout(OPT, user, 20)  # raising the share only adds users


def test_optimizations_hold_out_independent_users() -> None:
    a = {u for u in USERS if in_holdout(OPT, u, 50)}
    b = {u for u in USERS if in_holdout(OTHER, u, 50)}
    both = len(a & b) / len(USERS)
    assert both == pytest.approx(0.25, abs=0.01)


def test_unicode_ids_hash_fine() -> None:
    assert 0 <= holdout_bucket(OPT, "ユーザー🙂") < 1


def test_kernel_seed_is_a_function_of_version_and_decision() -> None:
    decision = UUID("9a7b2c3d-4e5f-4a1b-8c2d-3e4f5a6b7c8d")
    assert kernel_seed(3, decision) == kernel_seed(3, decision)
    assert kernel_seed(3, decision) != kernel_seed(4, decision)
    assert kernel_seed(None, decision) == kernel_seed(0, decision)
    assert 0 <= kernel_seed(3, decision) < 2**32
