"""Holdout assignment: deterministic across calls and processes, the requested share within
binomial error, a salt changes the split, bad percentages name the field."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import numpy as np
import pytest

from engine.campaigns.errors import CampaignInputError
from engine.campaigns.holdout import (
    control_mask,
    holdout_draw,
    holdout_draws,
    is_control,
    split_holdout,
    validate_percent,
)

IDS = [f"M{i:06d}" for i in range(100_000)]


def test_draw_follows_the_documented_formula() -> None:
    message = b"recsys-holdout/v1:" + b"4:camp," + b"1:s," + b"M000001"
    u64 = int.from_bytes(hashlib.blake2b(message, digest_size=8).digest(), "big")
    assert holdout_draw("camp", "M000001", "s") == (u64 >> 11) / 2**53
    assert holdout_draws("camp", ["M000001"], "s")[0] == (u64 >> 11) / 2**53


def test_deterministic_across_calls_and_processes() -> None:
    first = control_mask("spring-sale", IDS[:2_000], 10)
    assert np.array_equal(first, control_mask("spring-sale", np.array(IDS[:2_000]), 10))
    code = (
        "from engine.campaigns.holdout import control_mask;"
        "ids=[f'M{i:06d}' for i in range(2000)];"
        "print(''.join('1' if c else '0' for c in control_mask('spring-sale', ids, 10)))"
    )
    env_runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    ]  # fmt: skip
    expected = "".join("1" if c else "0" for c in first)
    assert env_runs == [expected, expected]


@pytest.mark.parametrize("percent", [1, 10, 50, 90])
def test_share_within_binomial_error(percent: float) -> None:
    mask = control_mask("campaign-42", IDS, percent)
    p = percent / 100
    sigma = math.sqrt(len(IDS) * p * (1 - p))
    assert abs(int(mask.sum()) - len(IDS) * p) < 4 * sigma


def test_salt_and_campaign_change_the_split() -> None:
    base = control_mask("c1", IDS[:20_000], 50)
    salted = control_mask("c1", IDS[:20_000], 50, salt="resend-2")
    other = control_mask("c2", IDS[:20_000], 50)
    # independent splits agree on about half of the members
    for mask in (salted, other):
        assert 0.45 < float((mask == base).mean()) < 0.55
    # netstrings: campaign "c1" + salt "x" is not campaign "c1x" without salt
    assert not np.array_equal(
        control_mask("c1x", IDS[:2_000], 50), control_mask("c1", IDS[:2_000], 50, "x")
    )


def test_split_keeps_order_and_counts() -> None:
    ids = IDS[:5_000][::-1]
    split = split_holdout("c", ids, 20)
    assert split.counts["total"] == 5_000
    assert split.counts["control"] == int(control_mask("c", ids, 20).sum())
    assert list(split.treatment) == [m for m in ids if not is_control("c", m, 20)]
    assert set(split.treatment).isdisjoint(split.control)


def test_larger_percent_is_a_superset() -> None:
    # same draws, higher threshold: every control member at 10% is a control member at 20%
    small, large = control_mask("c", IDS, 10), control_mask("c", IDS, 20)
    assert not (small & ~large).any()


@pytest.mark.parametrize("bad", [0, 100, -1, 150, float("nan"), "10", True])
def test_invalid_percent_names_the_field(bad: object) -> None:
    with pytest.raises(CampaignInputError) as info:
        validate_percent(bad)  # type: ignore[arg-type]
    assert info.value.field == "holdout.percent"
    assert "holdout.percent" in str(info.value)
    with pytest.raises(CampaignInputError, match=r"holdout\.percent"):
        control_mask("c", IDS[:10], bad)  # type: ignore[arg-type]


def test_bad_ids_are_refused() -> None:
    with pytest.raises(CampaignInputError, match="campaign_id"):
        control_mask("", IDS[:10], 10)
    with pytest.raises(CampaignInputError, match="member_ids"):
        control_mask("c", np.arange(10), 10)
    assert control_mask("c", [], 10).shape == (0,)
