"""A bundle and feature snapshot for audience tests, with right answers worked out by hand.

Items are those of tests/serving/conftest.py (tea along axis 0, coffee along 1, cake along 2).
Members of the bundle have vectors whose tea component falls from m01 (0.90) to m11 (0);
``x_novec`` is in the snapshot but not in the bundle (unscored).

=======  ==============  ========  =========  ==========  ======  ===============  =====  ======  ==========
member   vector          tier      lifecycle  segment     region  tags             month  points  joined
=======  ==============  ========  =========  ==========  ======  ===============  =====  ======  ==========
m01      (0.90, 0, 0)    gold      active     Champions   north   vip              12     500     2022-01-01
m02      (0.80, 0, 0)    gold      at_risk    Loyal       south                    6      1500    2023-03-01
m03      (0.70, 0, 0)    diamond   active     Champions   north   vip, opt_out     12     6000    2021-05-01
m04      (0.60, 0, 0)    regular   active     New         north                    1      50      2024-05-01
m05      (0.50, 0, 0)    silver    churned    Lost        south   vip              3      200     2020-01-01
m06      (0.40, 0, 0)    gold      active     Loyal       east                     12     300     2023-07-01
m07      (0.30, 0, 0)    regular   new        (none)      north                    -      -       2024-05-20
m08      (0.20, 0.5, 0)  platinum  active     Champions   south   vip              7      2500    2022-09-01
m09      (0.10, 0, 1)    diamond   at_risk    At Risk     east    opt_out          12     9000    2019-01-01
m10      (0.05, 1, 0)    regular   active     Loyal       north                    5      100     2023-01-01
m11      (0, 0, 0.5)     gold      active     Champions   north   vip              12     400     2022-02-02
x_novec  (none)          gold      active     Champions   north   vip              12     700     2022-02-02
=======  ==============  ========  =========  ==========  ======  ===============  =====  ======  ==========

The bundle's ``buy_again`` history (:data:`HISTORY`): m09 tea1 3, m06 tea1 1, m11 cof2 1 and
cake1 1 (a bundle holds no negative weights: the blend refuses them). Distinct buyers per item in the
snapshot's items.parquet (:data:`BUYERS`, the popularity weighting category and tag seeds): tea1
3, cake1 1, every other item 2. Item tags: tea1 and cake1 ``winter``.

Scores (docs/audiences.md, "Scoring"; W = 2): ``m / max|m| + 2 log1p(h) / max log1p(h)``, the
maxima over the 11 members with a vector. ``log1p(3) = ln 4 = 2 ln 2`` and ``log1p(1) = ln 2``,
so when the largest ``h`` is 3 a member with ``h = 1`` gains exactly 1 and one with ``h = 3``
gains 2; when the largest is 1, ``h = 1`` gains 2.

* ``items = [tea1]`` (seed (1, 0, 0)): ``m`` = tea component, max 0.9 (m01); ``h``: m09 3,
  m06 1 (m11's cake1 and cof2 are not seed items). :data:`TEA1_SCORES`.
* ``categories = [coffee]``: the seed lies along axis 1 whatever the weights, ``m / max|m|`` is
  m10 1, m08 0.5, the rest 0; ``h``: m11 1 (cof2) -> +2. :data:`COFFEE_SCORES` (ties: snapshot
  row order).
* ``item_tags = [winter]`` (tea1, cake1 weighed 3 : 1 by buyers): seed (0.75, 0, 0.25), max
  ``m`` 0.675 (m01); ``h`` over tea1 and cake1: m09 3, m06 1, m11 1. :data:`WINTER_SCORES`.
  (With the trending prior, tea1 0.5 : cake1 1.0, or uniform weights, the scores differ.)
* ``members = [m10]`` (lookalike): seed m10 / |m10|; the score is the pure ``m``, neither
  normalised nor given history. :data:`LOOKALIKE_M10_SCORES`.

Member value (docs/features.md, "Member value"): the snapshot's value model is CDNOW's published
BG/NBD + Gamma-Gamma (:data:`VALUE_PARAMS`); each member's purchase history is summarised in
:data:`VALUE_STATS` and their p_alive, expected orders and spend and CLV (:data:`VALUES`) come
from the one-member scorer (feature_store.value.score_member), which the snapshot builder agrees
with (tests/feature_store/test_member_value_snapshot.py). m07 never bought: no value.

Recent purchases in the snapshot (as of 2024-06-01): m02 bought tea1 on 2024-05-25, m04 bought
tea1 on 2024-03-01, m09 on 2024-02-01, m06 on 2024-01-15 (both older than 30 days), m05
returned tea1 on 2024-05-30 (quantity -1: not a purchase).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from engine.bundle import write_bundle
from engine.index import IndexConfig, build_index
from feature_store.online import connect, materialize
from feature_store.online.bulk import SNAPSHOT_FIELDS
from feature_store.online.profile import Kind
from feature_store.policy import load_policy
from feature_store.value import MemberScore, MemberValueStats, ValueParams, score_member
from serving.settings import Settings
from tests.conftest import RedisBackend
from tests.serving.conftest import BLEND, ITEM_IDS, ITEMS, keys

AS_OF = datetime(2024, 6, 1)

MEMBERS: list[tuple[Any, ...]] = [
    # id, vector, tier, lifecycle, segment, region, tags, month, points, joined
    ("m01", (0.90, 0, 0), "gold", "active", "Champions", "north", ["vip"], 12, 500, "2022-01-01"),
    ("m02", (0.80, 0, 0), "gold", "at_risk", "Loyal", "south", [], 6, 1500, "2023-03-01"),
    (
        "m03",
        (0.70, 0, 0),
        "diamond",
        "active",
        "Champions",
        "north",
        ["vip", "opt_out"],
        12,
        6000,
        "2021-05-01",
    ),
    ("m04", (0.60, 0, 0), "regular", "active", "New", "north", [], 1, 50, "2024-05-01"),
    ("m05", (0.50, 0, 0), "silver", "churned", "Lost", "south", ["vip"], 3, 200, "2020-01-01"),
    ("m06", (0.40, 0, 0), "gold", "active", "Loyal", "east", [], 12, 300, "2023-07-01"),
    ("m07", (0.30, 0, 0), "regular", "new", None, "north", [], None, None, "2024-05-20"),
    (
        "m08",
        (0.20, 0.5, 0),
        "platinum",
        "active",
        "Champions",
        "south",
        ["vip"],
        7,
        2500,
        "2022-09-01",
    ),
    (
        "m09",
        (0.10, 0, 1),
        "diamond",
        "at_risk",
        "At Risk",
        "east",
        ["opt_out"],
        12,
        9000,
        "2019-01-01",
    ),
    ("m10", (0.05, 1, 0), "regular", "active", "Loyal", "north", [], 5, 100, "2023-01-01"),
    ("m11", (0, 0, 0.5), "gold", "active", "Champions", "north", ["vip"], 12, 400, "2022-02-02"),
    ("x_novec", None, "gold", "active", "Champions", "north", ["vip"], 12, 700, "2022-02-02"),
]
ITEM_TAGS = {"tea1": ["winter"], "cake1": ["winter"]}
VALUE_PARAMS = ValueParams(
    r=0.243, alpha=4.414, a=0.793, b=2.426, p=6.25, q=3.74, v=15.44, n_members=11,
    n_repeaters=10, fitted_at_as_of=date(2024, 6, 1),
)  # fmt: skip
#: purchase days, first and last purchase day, spend of the repeat days
VALUE_STATS: dict[str, MemberValueStats] = {
    "m01": MemberValueStats(10, date(2022, 2, 1), date(2024, 5, 25), 900.0),
    "m02": MemberValueStats(6, date(2023, 4, 1), date(2023, 10, 1), 500.0),
    "m03": MemberValueStats(20, date(2021, 6, 1), date(2024, 5, 30), 3000.0),
    "m04": MemberValueStats(1, date(2024, 5, 5), date(2024, 5, 5), 0.0),
    "m05": MemberValueStats(4, date(2020, 2, 1), date(2021, 1, 1), 300.0),
    "m06": MemberValueStats(3, date(2023, 8, 1), date(2024, 1, 15), 200.0),
    "m08": MemberValueStats(12, date(2022, 10, 1), date(2024, 5, 1), 2000.0),
    "m09": MemberValueStats(15, date(2019, 2, 1), date(2024, 2, 1), 4000.0),
    "m10": MemberValueStats(5, date(2023, 2, 1), date(2024, 5, 28), 400.0),
    "m11": MemberValueStats(8, date(2022, 3, 1), date(2023, 6, 1), 700.0),
    "x_novec": MemberValueStats(2, date(2022, 3, 1), date(2022, 4, 1), 100.0),
}


def member_value(member_id: str, as_of: date) -> MemberScore | None:
    """The member's value as of ``as_of`` (exclusive); None without purchases."""
    stats = VALUE_STATS.get(member_id)
    if stats is None:
        return None
    return score_member(VALUE_PARAMS, *stats.inputs(as_of), horizon_days=90, clv_months=12)


#: the bundle's buy_again history (member, item) -> value
HISTORY = {
    ("m09", "tea1"): 3.0,
    ("m06", "tea1"): 1.0,
    ("m11", "cof2"): 1.0,
    ("m11", "cake1"): 1.0,
}
#: distinct buyers per item in the snapshot (items.parquet); 2 for the others
BUYERS = {"tea1": 3, "cake1": 1}
RECENT = [
    ("m02", "o2", "tea1", datetime(2024, 5, 25), 1, 4.0),
    ("m04", "o4", "tea1", datetime(2024, 3, 1), 1, 4.0),
    ("m09", "o9", "tea1", datetime(2024, 2, 1), 3, 12.0),
    ("m06", "o6", "tea1", datetime(2024, 1, 15), 1, 4.0),
    ("m05", "o5", "tea1", datetime(2024, 5, 30), -1, -4.0),
]

#: seed items = [tea1], best first (worked out in the module docstring)
TEA1_SCORES = {
    "m09": 0.10 / 0.9 + 2,
    "m06": 0.40 / 0.9 + 1,
    "m01": 1.0,
    "m02": 0.80 / 0.9,
    "m03": 0.70 / 0.9,
    "m04": 0.60 / 0.9,
    "m05": 0.50 / 0.9,
    "m07": 0.30 / 0.9,
    "m08": 0.20 / 0.9,
    "m10": 0.05 / 0.9,
    "m11": 0.0,
}
RANKED = list(TEA1_SCORES)  # best first for the seed tea1
#: seed categories = [coffee], best first; the 0 ties in snapshot row order
COFFEE_SCORES = {"m11": 2.0, "m10": 1.0, "m08": 0.5} | {
    m: 0.0 for m in ("m01", "m02", "m03", "m04", "m05", "m06", "m07", "m09")
}
#: seed item_tags = [winter], best first
WINTER_SCORES = {
    "m09": (0.75 * 0.10 + 0.25 * 1.0) / 0.675 + 2,
    "m06": 0.75 * 0.40 / 0.675 + 1,
    "m11": 0.25 * 0.5 / 0.675 + 1,
    "m01": 1.0,
    "m02": 0.75 * 0.80 / 0.675,
    "m03": 0.75 * 0.70 / 0.675,
    "m04": 0.75 * 0.60 / 0.675,
    "m05": 0.75 * 0.50 / 0.675,
    "m07": 0.75 * 0.30 / 0.675,
    "m08": 0.75 * 0.20 / 0.675,
    "m10": 0.75 * 0.05 / 0.675,
}
_M10 = (0.05**2 + 1.0) ** 0.5
#: seed members = [m10], the best three (m10 itself is excluded)
LOOKALIKE_M10_SCORES = {"m08": 0.51 / _M10, "m01": 0.045 / _M10, "m02": 0.04 / _M10}


def write_audience_bundle(path: Path) -> Path:
    tiers = load_policy().tiers.names
    items = np.asarray([row[4] for row in ITEMS], dtype=np.float32)
    with_vectors = [m for m in MEMBERS if m[1] is not None]
    members = np.asarray([m[1] for m in with_vectors], dtype=np.float32)
    ids = [m[0] for m in with_vectors]
    history = sp.csr_matrix(
        (
            np.asarray(list(HISTORY.values()), dtype=np.float32),
            ([ids.index(m) for m, _ in HISTORY], [ITEM_IDS.index(i) for _, i in HISTORY]),
        ),
        shape=(len(with_vectors), len(ITEMS)),
    )
    return write_bundle(
        path,
        manifest={"kind": "als", "blend": BLEND, "label": "audiences"},
        arrays={
            "member_vectors": members,
            "item_vectors": items,
            "trending": np.asarray([r[5] for r in ITEMS], dtype=np.float32),
            "item_category": np.asarray([r[1] for r in ITEMS]),
            "item_min_tier": np.asarray([r[2] for r in ITEMS]),
            "item_active": np.asarray([r[3] for r in ITEMS]),
            "item_tier_popularity": np.ones((len(ITEMS), len(tiers)), np.float32),
        },
        member_ids=ids,
        item_ids=ITEM_IDS,
        sparse={"buy_again": history},
        indexes={"items": build_index(items, IndexConfig(kind="exact")).faiss_index},
        overwrite=True,
    )


def _member_row(member: tuple[Any, ...]) -> dict[str, Any]:
    member_id, _, tier, lifecycle, segment, region, tags, month, points, joined = member
    defaults = {Kind.TEXT: "", Kind.INT: 0, Kind.FLOAT: 0.0, Kind.TS: None, Kind.TEXT_LIST: []}
    row: dict[str, Any] = {f.name: defaults[f.kind] for f in SNAPSHOT_FIELDS}
    purchased = segment is not None
    row.update(
        member_id=member_id,
        joined_at=datetime.fromisoformat(joined),
        tier=tier,
        tier_source="crm",
        policy_tier="regular",
        lifecycle=lifecycle,
        rfm_segment=segment,
        r_score=3 if purchased else None,
        f_score=3 if purchased else None,
        m_score=3 if purchased else None,
        region=region,
        tags=tags,
        birth_month=month,
        points_balance=points,
        monetary=100.0 if purchased else 0.0,
        days_since_joined=(AS_OF - datetime.fromisoformat(joined)).days,
    )
    stats = VALUE_STATS.get(member_id)
    value = member_value(member_id, AS_OF.date())
    if stats is not None and value is not None:
        assert stats.first_day is not None
        assert stats.last_day is not None
        row.update(
            purchase_days=stats.purchase_days,
            repeat_day_spend=stats.repeat_spend,
            first_purchase_at=datetime.combine(stats.first_day, datetime.min.time()),
            last_purchase_at=datetime.combine(stats.last_day, datetime.min.time()),
            p_alive=value.p_alive,
            expected_orders_90d=value.expected_orders,
            expected_spend_90d=value.expected_spend,
            clv=value.clv,
        )
    else:
        row.update(p_alive=None, expected_orders_90d=None, expected_spend_90d=None, clv=None)
    return row


def write_audience_snapshot(folder: Path) -> Path:
    policy = load_policy()
    folder.mkdir(parents=True, exist_ok=True)
    schema = {f.name: f.kind.dtype for f in SNAPSHOT_FIELDS}
    schema.update({n: pl.Int8() for n in ("r_score", "f_score", "m_score", "birth_month")})
    pl.DataFrame([_member_row(m) for m in MEMBERS], schema=schema).write_parquet(
        folder / "members.parquet"
    )
    pl.DataFrame(
        {
            "item_id": ITEM_IDS,
            "category": [r[1] for r in ITEMS],
            "price": [4.0] * len(ITEMS),
            "price_band": ["mid"] * len(ITEMS),
            "tags": [ITEM_TAGS.get(i, []) for i in ITEM_IDS],
            "min_tier": [r[2] for r in ITEMS],
            "active": [r[3] for r in ITEMS],
            "pop_7d": [0] * len(ITEMS),
            "pop_30d": [0] * len(ITEMS),
            "pop_90d": [0] * len(ITEMS),
            "buyers": [BUYERS.get(i, 2) for i in ITEM_IDS],
            "repeat_rate": [0.0] * len(ITEMS),
        },
        schema_overrides={"tags": pl.List(pl.String)},
    ).write_parquet(folder / "items.parquet")
    pl.DataFrame(
        {
            "member_id": [m[0] for m in MEMBERS],
            "tier": [m[2] for m in MEMBERS],
            "valid_from": [datetime.fromisoformat(m[9]) for m in MEMBERS],
            "valid_to": [None] * len(MEMBERS),
            "reason": ["joined"] * len(MEMBERS),
        },
        schema_overrides={"valid_to": pl.Datetime("us"), "valid_from": pl.Datetime("us")},
    ).write_parquet(folder / "tier_history.parquet")
    pl.DataFrame(
        [
            {"member_id": m, "order_id": o, "item_id": i, "ts": t, "quantity": q, "amount": a}
            for m, o, i, t, q, a in RECENT
        ],
        schema={
            "member_id": pl.String,
            "order_id": pl.String,
            "item_id": pl.String,
            "ts": pl.Datetime("us"),
            "quantity": pl.Int64,
            "amount": pl.Float64,
        },
    ).write_parquet(folder / "recent_purchases.parquet")
    manifest = {
        "format_version": 2,
        "value_model": {"params": VALUE_PARAMS.model_dump(mode="json"), "note": None},
        "value_policy": {"clv_months": 12, "monthly_discount": 0.01, "at_risk_below": 0.5},
        "as_of": AS_OF.date().isoformat(),
        "created_at": "2024-06-01T02:00:00Z",
        "source_fingerprint": "sha256:" + "0" * 64,
        "policy_sha256": policy.sha256,
        "policy_path": str(policy.source),
        "tiers": list(policy.tiers.names),
        "rfm_score_bounds": {
            "recency_days": [90, 60, 30, 7],
            "frequency": [2, 3, 5, 8],
            "monetary": [100.0, 300.0, 600.0, 1000.0],
        },
        "files": {
            "members": "members.parquet",
            "items": "items.parquet",
            "tier_history": "tier_history.parquet",
            "recent_purchases": "recent_purchases.parquet",
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


#: as_of of the snapshot, for tests
AS_OF_DATE: date = AS_OF.date()


def audience_settings(
    bundle: Path, snapshot: Path, redis_backend: RedisBackend, **overrides: Any
) -> Settings:
    """Settings of a service on the audience bundle, with ``snapshot`` materialized under the
    backend's prefix (audiences read the tables stored with it); ``overrides`` replace any
    setting (a campaign database, an uplift model ...)."""
    store = connect(redis_backend.url, prefix=redis_backend.prefix)
    try:
        materialize(snapshot, store)
    finally:
        store.close()
    values: dict[str, Any] = {
        "model_uri": str(bundle),
        "redis_url": redis_backend.url,
        "redis_prefix": redis_backend.prefix,
        "api_keys": keys(),
        "keys_source": "tests",
        "cache_ttl_seconds": 0,
        "model_poll_seconds": 0,
        "redis_retry_seconds": 0.0,
    }
    return Settings(**(values | overrides))
