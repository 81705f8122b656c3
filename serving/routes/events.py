"""``POST /v1/events``: purchase events, applied idempotently; the members' vectors follow."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, tzinfo

from fastapi import APIRouter

from feature_store.online import RedisOnlineStore
from feature_store.online.incremental import RECENT_CAP
from feature_store.online.profile import PurchaseEvent, PurchaseUpdate, RecentPurchase
from serving.deps import AppState, CurrentModel, Ingest, State
from serving.errors import ServiceUnavailableError
from serving.model import ServingModel
from serving.online import StoreDownError
from serving.routes._problems import secured
from serving.schemas import EventResult, EventsIn, EventsOut, PurchaseEventIn

router = APIRouter(prefix="/v1", tags=["events"])
log = logging.getLogger("recsys.serving")


@router.post(
    "/events",
    response_model=EventsOut,
    summary="Report purchase events",
    **secured(400, 422, 503),
)
def events(body: EventsIn, caller: Ingest, state: State, model: CurrentModel) -> EventsOut:
    """Apply a batch of purchase lines to the online store, each at most once per ``event_id``
    (a repeated id reports ``duplicate`` and changes nothing). For every member with an applied
    event, the vector is re-estimated by ALS fold-in from their history plus the purchases
    reported since the snapshot, and their cached recommendations are dropped, so the next
    request reflects the purchase. Every event is also kept in the campaign database (once per
    ``event_id``), where campaign reports measure outcomes after a send. Events are applied in
    order; if the online store or the campaign database fails midway the answer is 503 and the
    whole batch can be sent again safely.

    ``ts`` with a UTC offset is converted to the data's time zone (``RECSYS_DATA_TIMEZONE``,
    default UTC); without one it is taken as a time in that zone."""
    zone = state.settings.data_zone
    events = [_event(item, zone) for item in body.events]
    updates: list[PurchaseUpdate] = []
    try:
        for event in events:
            updates.append(state.gateway.call(_applier(event)))
        # duplicates too: a batch resent after a failure must still fold its members in
        touched = [u.member_id for u in updates if u.status in ("applied", "duplicate")]
        by_model: dict[int, tuple[ServingModel, list[str]]] = {}
        for member in dict.fromkeys(touched):  # each member refreshed under the model they see
            served = state.model_for(member)[1] if state.challenger else model
            by_model.setdefault(id(served), (served, []))[1].append(member)
        refreshed = sum(_refresh_members(state, m, members) for m, members in by_model.values())
    except StoreDownError as exc:
        raise ServiceUnavailableError(
            f"{len(updates)} of {len(body.events)} events were applied before the online store "
            f"became unavailable ({exc}); send the batch again (applied events are skipped)",
            retry_after_seconds=max(1, int(state.settings.redis_retry_seconds)),
        ) from exc
    state.campaigns.record_events([_row(event) for event in events])
    counts = Counter(u.status for u in updates)
    for status, n in counts.items():
        state.metrics.events.labels(status).inc(n)
    _count_by_variant(state, events, updates)
    return EventsOut(
        applied=counts["applied"],
        duplicates=counts["duplicate"],
        before_snapshot=counts["before_snapshot"],
        members_refreshed=refreshed,
        results=[
            EventResult(event_id=u.event_id, member_id=u.member_id, status=u.status)
            for u in updates
        ],
    )


def _count_by_variant(
    state: AppState, events: list[PurchaseEvent], updates: list[PurchaseUpdate]
) -> None:
    """Prometheus counters of applied purchases and their revenue per experiment variant."""
    for event, update in zip(events, updates, strict=True):
        if update.status != "applied":
            continue
        arm = state.model_for(event.member_id)[0]  # "champion" without an experiment
        state.metrics.purchases.labels(arm).inc()
        if event.amount > 0:
            state.metrics.revenue.labels(arm).inc(event.amount)


def _local(ts: datetime, zone: tzinfo) -> datetime:
    """``ts`` as a naive time of the data's time zone (a naive ``ts`` already is one). The
    schema's years (1000-2999) keep the conversion inside ``datetime``'s range."""
    return ts if ts.tzinfo is None else ts.astimezone(zone).replace(tzinfo=None)


def _event(item: PurchaseEventIn, zone: tzinfo) -> PurchaseEvent:
    return PurchaseEvent(
        event_id=item.event_id,
        member_id=item.member_id,
        order_id=item.order_id,
        item_id=item.item_id,
        ts=_local(item.ts, zone),
        quantity=item.quantity,
        amount=item.amount,
    )


def _row(event: PurchaseEvent) -> dict[str, object]:
    return {
        "event_id": event.event_id,
        "member_id": event.member_id,
        "order_id": event.order_id,
        "item_id": event.item_id,
        "ts": event.ts,
        "quantity": event.quantity,
        "amount": event.amount,
    }


def _applier(event: PurchaseEvent) -> Callable[[RedisOnlineStore], PurchaseUpdate]:
    return lambda store: store.apply_purchase(event)


def _recent_reader(member_id: str) -> Callable[[RedisOnlineStore], list[RecentPurchase]]:
    return lambda store: store.recent_purchases(member_id, RECENT_CAP)


def _refresh_members(state: AppState, model: ServingModel, members: list[str]) -> int:
    """Fold each member in again from the purchases reported since the snapshot, store the
    overlays and drop the members' cached results."""
    if not members:
        return 0
    gateway = state.gateway
    as_of = gateway.snapshot_as_of()
    overlays = []
    for member in members:  # one Redis read per member of the batch
        lines = gateway.call(_recent_reader(member))
        online = [line for line in lines if as_of is None or line.ts >= as_of]
        overlay = model.overlay_from_lines(
            member, [line.item_id for line in online], [line.quantity for line in online]
        )
        overlays.append((member, overlay))
    gateway.save_overlays(model.id, overlays)
    gateway.forget_members(model.id, members)
    return len(overlays)
