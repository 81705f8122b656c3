"""Member value in the online store: purchase events keep each member's value statistics
current and recompute p_alive, expected orders and spend and CLV without refitting."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

from feature_store.online import RedisOnlineStore, connect, materialize
from feature_store.policy import load_policy
from feature_store.value import MemberValueStats, ValueParams, score_member
from tests.conftest import RedisBackend
from tests.feature_store.test_online_store import (
    M1_RECENT,
    POLICY_TOML,
    event,
    m1_row,
    plain_row,
    write_snapshot,
)

#: The published CDNOW parameters (weeks), as a fitted model would hold them.
PARAMS = ValueParams(
    r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, n_members=2357,
    n_repeaters=946, fitted_at_as_of=date(2024, 6, 1),
)  # fmt: skip
#: m1's statistics in the snapshot: purchase days 2023-11-14, 2023-12-20, 2024-02-02
M1 = MemberValueStats(3, date(2023, 11, 14), date(2024, 2, 2), 300.0)


def _score(stats: MemberValueStats, as_of: date) -> Any:
    return score_member(PARAMS, *stats.inputs(as_of), horizon_days=90, clv_months=12)


@pytest.fixture
def valued(redis_backend: RedisBackend, tmp_path: Path) -> Iterator[RedisOnlineStore]:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(POLICY_TOML)
    policy = load_policy(policy_file)
    store = connect(redis_backend.url, prefix=redis_backend.prefix, policy=policy)
    before = _score(M1, date(2024, 6, 1))
    row = m1_row(
        p_alive=before.p_alive,
        expected_orders_90d=before.expected_orders,
        expected_spend_90d=before.expected_spend,
        clv=before.clv,
    )
    snap = write_snapshot(
        tmp_path / "snap",
        [row, plain_row("m2")],
        M1_RECENT,
        policy,
        value_params=PARAMS.model_dump(mode="json"),
    )
    materialize(snap, store)
    yield store
    store.close()


def _assert_value(profile: Any, expected: Any) -> None:
    assert math.isclose(profile.p_alive, expected.p_alive, rel_tol=1e-12)
    assert math.isclose(profile.expected_orders_90d, expected.expected_orders, rel_tol=1e-12)
    assert math.isclose(profile.expected_spend_90d, expected.expected_spend, rel_tol=1e-12)
    assert math.isclose(profile.clv, expected.clv, rel_tol=1e-12)


def test_a_purchase_on_a_new_day_matches_a_refit_free_recomputation(
    valued: RedisOnlineStore,
) -> None:
    before = valued.get_profile("m1")
    assert before is not None
    assert before.p_alive is not None
    update = valued.apply_purchase(event(ts=datetime(2024, 6, 10, 12), amount=150.0))
    after = valued.get_profile("m1")
    assert after is not None
    stats = M1.add_purchase(date(2024, 6, 10), 150.0)
    assert (after.purchase_days, after.repeat_day_spend) == (4, 450.0)
    _assert_value(after, _score(stats, date(2024, 6, 11)))
    assert {"p_alive", "expected_orders_90d", "expected_spend_90d", "clv"} <= set(update.changes)
    # a member seen buying again after a long pause is more likely alive than before
    assert after.p_alive > before.p_alive


def test_second_line_of_the_same_day_adds_to_the_day_value(valued: RedisOnlineStore) -> None:
    valued.apply_purchase(event("e1", ts=datetime(2024, 6, 10, 12), amount=150.0))
    valued.apply_purchase(event("e2", order_id="o10", ts=datetime(2024, 6, 10, 18), amount=50.0))
    after = valued.get_profile("m1")
    assert after is not None
    stats = M1.add_purchase(date(2024, 6, 10), 150.0).add_purchase(date(2024, 6, 10), 50.0)
    assert (after.purchase_days, after.repeat_day_spend) == (4, 500.0)
    _assert_value(after, _score(stats, date(2024, 6, 11)))


def test_a_return_changes_no_value_statistic(valued: RedisOnlineStore) -> None:
    valued.apply_purchase(
        event(order_id="r1", ts=datetime(2024, 6, 10, 12), quantity=-1, amount=-100.0)
    )
    after = valued.get_profile("m1")
    assert after is not None
    assert (after.purchase_days, after.repeat_day_spend) == (3, 300.0)
    # time has passed (the profile is now as of the return): p_alive is recounted to it
    _assert_value(after, _score(M1, date(2024, 6, 10)))


def test_a_first_purchase_gives_a_new_member_values(valued: RedisOnlineStore) -> None:
    valued.apply_purchase(event(member_id="m2", ts=datetime(2024, 6, 3, 9), amount=40.0))
    after = valued.get_profile("m2")
    assert after is not None
    stats = MemberValueStats().add_purchase(date(2024, 6, 3), 40.0)
    assert after.purchase_days == 1
    _assert_value(after, _score(stats, date(2024, 6, 4)))
    assert after.p_alive == 1.0  # BG/NBD: nobody drops out before a repeat purchase
