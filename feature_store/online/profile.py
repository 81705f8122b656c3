"""What the online store holds, as typed values, and how each value is encoded in Redis.

A profile is stored as one JSON array whose positions follow :data:`PROFILE_FIELDS` (schema
version :data:`feature_store.redis_keys.SCHEMA_VERSION`): one GET and one ``json.loads`` per read,
about half the bytes of a JSON object with field names. Timestamps are ISO 8601 text with
microseconds, lists are JSON arrays, missing values are ``null``. Recent purchases of a member are
one JSON array of small objects (keys ``o i t q a``), newest first.

The same encoding is produced in bulk by polars (:mod:`feature_store.online.bulk`) and one value
at a time here; tests check the two agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Final, Literal

import polars as pl

#: Text form of timestamps in Redis (Python side); polars writes the same with TS_POLARS_FORMAT.
TS_POLARS_FORMAT: Final[str] = "%Y-%m-%dT%H:%M:%S%.6f"

FieldValue = str | int | float | datetime | tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class MemberProfile:
    """A member's features as of ``as_of`` (the instant the day counts refer to).

    Loaded from a feature snapshot (docs/feature_snapshot.md explains each field; ``as_of`` is
    the snapshot's cut-off) and kept up to date by purchase events after it
    (:meth:`OnlineStore.apply_purchase` moves ``as_of`` to the event's time).
    """

    member_id: str
    joined_at: datetime
    tier: str
    tier_source: str
    policy_tier: str
    tier_since: datetime | None
    spend_window: float
    orders_window: int
    growth_points: float
    recency_days: int | None
    frequency: int
    monetary: float
    r_score: int | None
    f_score: int | None
    m_score: int | None
    rfm_segment: str | None
    lifecycle: str
    days_since_last_purchase: int | None
    avg_interpurchase_days: float | None
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    n_orders: int
    total_spend: float
    return_rate: float
    days_since_joined: int
    tags: tuple[str, ...]
    top_categories: tuple[str, ...]
    region: str | None
    points_balance: int | None
    birth_month: int | None
    #: distinct days with a purchase order, and the spend of those days after the first (the
    #: value model's sufficient statistics, with first/last_purchase_at)
    purchase_days: int
    repeat_day_spend: float
    #: member value (docs/features.md, "Member value"); None without purchases or value model
    p_alive: float | None
    expected_orders_90d: float | None
    expected_spend_90d: float | None
    clv: float | None
    as_of: datetime


@dataclass(frozen=True, slots=True)
class RecentPurchase:
    """One purchase line of a member (negative quantity and amount for a return)."""

    order_id: str
    item_id: str
    ts: datetime
    quantity: int
    amount: float


@dataclass(frozen=True, slots=True)
class PurchaseEvent:
    """A purchase line reported after the snapshot (e.g. by POST /v1/events).

    ``event_id`` identifies the report: applying the same id twice changes nothing.
    """

    event_id: str
    member_id: str
    order_id: str
    item_id: str
    ts: datetime
    quantity: int
    amount: float

    def line(self) -> RecentPurchase:
        return RecentPurchase(self.order_id, self.item_id, self.ts, self.quantity, self.amount)


@dataclass(frozen=True, slots=True)
class FieldChange:
    old: FieldValue
    new: FieldValue


#: ``applied``: the profile changed; ``duplicate``: this event id was applied before;
#: ``before_snapshot``: the event is before the snapshot's as_of, which already counts it.
UpdateStatus = Literal["applied", "duplicate", "before_snapshot"]


@dataclass(frozen=True, slots=True)
class PurchaseUpdate:
    """What :meth:`OnlineStore.apply_purchase` did."""

    event_id: str
    member_id: str
    status: UpdateStatus
    #: The snapshot version the event was applied to.
    version: str
    #: True when the member had no profile and a minimal one was created.
    new_member: bool
    #: Profile fields that changed, with old and new values (empty unless applied).
    changes: Mapping[str, FieldChange]


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A loaded snapshot version (from its meta hash)."""

    #: Load id; the keys of this load live under ``...:v:{version}:``.
    version: str
    #: ``loading`` while being written, ``active`` once readers use it, ``retired`` after.
    state: str
    #: The snapshot folder it was loaded from and the fields of its manifest.json.
    snapshot: str
    as_of: datetime
    created_at: str
    source_fingerprint: str
    policy_sha256: str
    members: int
    recent_lists: int
    loaded_at: datetime


# ---- encoding ---------------------------------------------------------------------------


class Kind(Enum):
    """How one profile field is typed, encoded in JSON and cast in bulk."""

    TEXT = "text"
    INT = "int"
    FLOAT = "float"
    TS = "ts"
    TEXT_LIST = "text_list"

    @property
    def dtype(self) -> pl.DataType:
        return {
            Kind.TEXT: pl.String(),
            Kind.INT: pl.Int64(),
            Kind.FLOAT: pl.Float64(),
            Kind.TS: pl.Datetime("us"),
            Kind.TEXT_LIST: pl.List(pl.String()),
        }[self]


@dataclass(frozen=True, slots=True)
class ProfileField:
    name: str
    kind: Kind
    #: May be null (None). Non-nullable fields must have a value in every snapshot row.
    nullable: bool


def _f(name: str, kind: Kind, nullable: bool = False) -> ProfileField:
    return ProfileField(name, kind, nullable)


#: Position i of the stored JSON array holds field i. Changing this tuple changes the schema:
#: bump SCHEMA_VERSION in feature_store/redis_keys.py and update docs/redis_layout.md.
PROFILE_FIELDS: Final[tuple[ProfileField, ...]] = (
    _f("member_id", Kind.TEXT),
    _f("joined_at", Kind.TS),
    _f("tier", Kind.TEXT),
    _f("tier_source", Kind.TEXT),
    _f("policy_tier", Kind.TEXT),
    _f("tier_since", Kind.TS, True),
    _f("spend_window", Kind.FLOAT),
    _f("orders_window", Kind.INT),
    _f("growth_points", Kind.FLOAT),
    _f("recency_days", Kind.INT, True),
    _f("frequency", Kind.INT),
    _f("monetary", Kind.FLOAT),
    _f("r_score", Kind.INT, True),
    _f("f_score", Kind.INT, True),
    _f("m_score", Kind.INT, True),
    _f("rfm_segment", Kind.TEXT, True),
    _f("lifecycle", Kind.TEXT),
    _f("days_since_last_purchase", Kind.INT, True),
    _f("avg_interpurchase_days", Kind.FLOAT, True),
    _f("first_purchase_at", Kind.TS, True),
    _f("last_purchase_at", Kind.TS, True),
    _f("n_orders", Kind.INT),
    _f("total_spend", Kind.FLOAT),
    _f("return_rate", Kind.FLOAT),
    _f("days_since_joined", Kind.INT),
    _f("tags", Kind.TEXT_LIST),
    _f("top_categories", Kind.TEXT_LIST),
    _f("region", Kind.TEXT, True),
    _f("points_balance", Kind.INT, True),
    _f("birth_month", Kind.INT, True),
    _f("purchase_days", Kind.INT),
    _f("repeat_day_spend", Kind.FLOAT),
    _f("p_alive", Kind.FLOAT, True),
    _f("expected_orders_90d", Kind.FLOAT, True),
    _f("expected_spend_90d", Kind.FLOAT, True),
    _f("clv", Kind.FLOAT, True),
    _f("as_of", Kind.TS),
)

if tuple(f.name for f in PROFILE_FIELDS) != tuple(f.name for f in fields(MemberProfile)):
    raise RuntimeError("PROFILE_FIELDS and MemberProfile disagree")  # a programming error


class CorruptValueError(ValueError):
    """A stored value does not decode with this schema version."""


def _ts_out(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _encode_value(value: FieldValue) -> object:
    if isinstance(value, datetime):
        return _ts_out(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def encode_profile(profile: MemberProfile) -> str:
    return json.dumps([_encode_value(v) for v in astuple(profile)], separators=(",", ":"))


def _ts_in(value: object) -> datetime:
    if not isinstance(value, str):
        raise CorruptValueError(f"expected an ISO timestamp, got {value!r}")
    return datetime.fromisoformat(value)


def _int_in(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorruptValueError(f"expected an integer, got {value!r}")
    return int(value)


def _float_in(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CorruptValueError(f"expected a number, got {value!r}")
    return float(value)


def _text_in(value: object) -> str:
    if not isinstance(value, str):
        raise CorruptValueError(f"expected text, got {value!r}")
    return value


def _list_in(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CorruptValueError(f"expected a list of text, got {value!r}")
    return tuple(value)


_JSON_TYPES: Final[dict[Kind, frozenset[type]]] = {
    Kind.TEXT: frozenset({str}),
    Kind.INT: frozenset({int}),
    Kind.FLOAT: frozenset({int, float}),
    Kind.TS: frozenset({str}),
    Kind.TEXT_LIST: frozenset({list, type(None)}),
}
#: JSON value types allowed at each position (with null where the field is nullable).
_ALLOWED: Final[tuple[frozenset[type], ...]] = tuple(
    _JSON_TYPES[f.kind] | ({type(None)} if f.nullable else set()) for f in PROFILE_FIELDS
)
_TS_AT: Final = tuple(i for i, f in enumerate(PROFILE_FIELDS) if f.kind is Kind.TS)
_FLOAT_AT: Final = tuple(i for i, f in enumerate(PROFILE_FIELDS) if f.kind is Kind.FLOAT)
_LIST_AT: Final = tuple(i for i, f in enumerate(PROFILE_FIELDS) if f.kind is Kind.TEXT_LIST)


def decode_profile(raw: bytes | str) -> MemberProfile:
    """Raise CorruptValueError when ``raw`` is not a profile of this schema version.

    (The hot path of every profile read: one type check per position, then conversions only
    where JSON and Python types differ.)
    """
    try:
        values = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptValueError(f"not JSON: {exc}") from exc
    if type(values) is not list or len(values) != len(PROFILE_FIELDS):
        raise CorruptValueError(f"expected a JSON array of {len(PROFILE_FIELDS)} values")
    if not all(type(v) in allowed for v, allowed in zip(values, _ALLOWED, strict=True)):
        field, value = next(
            (f, v)
            for f, v, a in zip(PROFILE_FIELDS, values, _ALLOWED, strict=True)
            if type(v) not in a
        )
        raise CorruptValueError(f"field {field.name}: unexpected value {value!r}")
    try:
        for i in _TS_AT:
            if values[i] is not None:
                values[i] = datetime.fromisoformat(values[i])
    except ValueError as exc:
        raise CorruptValueError(f"not an ISO timestamp: {exc}") from exc
    for i in _FLOAT_AT:
        if values[i] is not None:
            values[i] = float(values[i])
    for i in _LIST_AT:
        items = values[i] or ()
        if not all(type(item) is str for item in items):
            raise CorruptValueError(f"field {PROFILE_FIELDS[i].name}: expected a list of text")
        values[i] = tuple(items)
    return MemberProfile(*values)


def encode_recent(lines: list[RecentPurchase]) -> str:
    return json.dumps(
        [
            {"o": p.order_id, "i": p.item_id, "t": _ts_out(p.ts), "q": p.quantity, "a": p.amount}
            for p in lines
        ],
        separators=(",", ":"),
    )


def decode_recent(raw: bytes | str, n: int | None = None) -> list[RecentPurchase]:
    """The first ``n`` lines (all when None); raise CorruptValueError on a malformed value."""
    try:
        rows = json.loads(raw)
        if not isinstance(rows, list):
            raise CorruptValueError("expected a JSON array of purchase lines")
        return [
            RecentPurchase(
                _text_in(r["o"]),
                _text_in(r["i"]),
                _ts_in(r["t"]),
                _int_in(r["q"]),
                _float_in(r["a"]),
            )
            for r in (rows if n is None else rows[:n])
        ]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CorruptValueError(f"not a list of purchase lines: {exc}") from exc


def encode_event(event: PurchaseEvent) -> str:
    return json.dumps(
        {
            "event_id": event.event_id,
            "member_id": event.member_id,
            "order_id": event.order_id,
            "item_id": event.item_id,
            "ts": _ts_out(event.ts),
            "quantity": event.quantity,
            "amount": event.amount,
        },
        separators=(",", ":"),
    )


def decode_event(raw: bytes | str) -> PurchaseEvent:
    try:
        d = json.loads(raw)
        return PurchaseEvent(
            event_id=_text_in(d["event_id"]),
            member_id=_text_in(d["member_id"]),
            order_id=_text_in(d["order_id"]),
            item_id=_text_in(d["item_id"]),
            ts=_ts_in(d["ts"]),
            quantity=_int_in(d["quantity"]),
            amount=_float_in(d["amount"]),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CorruptValueError(f"not a purchase event: {exc}") from exc


__all__ = [
    "PROFILE_FIELDS",
    "CorruptValueError",
    "FieldChange",
    "FieldValue",
    "Kind",
    "MemberProfile",
    "ProfileField",
    "PurchaseEvent",
    "PurchaseUpdate",
    "RecentPurchase",
    "SnapshotInfo",
    "UpdateStatus",
    "decode_event",
    "decode_profile",
    "decode_recent",
    "encode_event",
    "encode_profile",
    "encode_recent",
]
