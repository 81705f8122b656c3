"""The early-warning list from the online store (``GET /v1/members/at-risk``).

The snapshot's member values come from the audience tables the service already keeps
(serving.audiences, one read per snapshot version); the members whose profiles purchase events
changed since the snapshot are read back from their profiles, which the events keep current
(feature_store.online.incremental). The list itself is feature_store.value.at_risk's, the same
as ``recsys members at-risk`` computes on a snapshot folder.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import date
from typing import Any

import polars as pl

from feature_store.errors import DataError
from feature_store.online import RedisOnlineStore
from feature_store.online.profile import MemberProfile
from feature_store.value.at_risk import NEEDED, at_risk_members, value_frame
from serving.audience_context import journal_purchases
from serving.audiences import AudienceService
from serving.errors import BadRequestError, ConflictError, ServiceUnavailableError
from serving.model import ServingModel

if not set(NEEDED) <= {f.name for f in fields(MemberProfile)}:
    raise RuntimeError("the at-risk columns must all be profile fields")  # a programming error


def _profiles_frame(profiles: list[MemberProfile], schema: pl.Schema) -> pl.DataFrame:
    rows = [{name: getattr(p, name) for name in NEEDED} for p in profiles]
    return pl.DataFrame(rows, schema=schema)


def _current(service: AudienceService, frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """``frame`` with the rows of members changed by events since the snapshot replaced by
    their profiles (members new since the snapshot added); and how many changed."""
    events = service.call(journal_purchases)
    ids = events.get_column("member_id").unique().sort().to_list()
    if not ids:
        return frame, 0

    def read(store: RedisOnlineStore) -> list[MemberProfile | None]:
        return store.get_profiles(ids)

    found = [p for p in service.call(read) if p is not None]
    changed = _profiles_frame(found, frame.schema)
    kept = frame.filter(~pl.col("member_id").is_in(changed.get_column("member_id").implode()))
    return pl.concat([kept, changed]), len(found)


def at_risk_list(
    service: AudienceService,
    model: ServingModel,
    *,
    top: int,
    min_clv: float | None,
    below: float | None,
    as_of: date | None,
) -> dict[str, Any]:
    """The list and what it was computed from (the route's response body)."""
    context = service.context(model)
    frame, changed = _current(service, value_frame(context.columns))

    def value_context(store: RedisOnlineStore) -> Any:
        version = store.active_version()
        if version is None:
            return None
        return store.update_context(version)[1]

    ctx = service.call(value_context)
    if ctx is None:
        raise ServiceUnavailableError(
            "the online store has no active snapshot version: run `recsys features materialize`",
            retry_after_seconds=60,
        )
    if ctx.value_params is None:
        raise ConflictError(
            "the loaded snapshot has no member-value model (see value_model.note in its "
            "manifest): build a snapshot with [value] enabled = true and materialize it"
        )
    policy = ctx.policy.value if below is None else replace(ctx.policy.value, at_risk_below=below)
    try:
        listed = at_risk_members(
            frame,
            params=ctx.value_params,
            policy=policy,
            values_as_of=context.as_of,
            as_of=as_of,
            top=top,
            min_clv=min_clv,
        )
    except DataError as exc:
        raise BadRequestError(
            str(exc), extra={"errors": [{"field": "query.as_of", "message": str(exc)}]}
        ) from exc
    except ValueError as exc:  # as_of not after an event's purchase day
        raise BadRequestError(
            f"as_of: {exc}", extra={"errors": [{"field": "query.as_of", "message": str(exc)}]}
        ) from exc
    return {
        "snapshot_as_of": context.as_of,
        "as_of": as_of or context.as_of,
        "below": policy.at_risk_below,
        "members_with_value": int(frame.get_column("p_alive").is_not_null().sum()),
        "changed_since_snapshot": changed,
        "size": listed.height,
        "members": listed.to_dicts(),
    }


__all__ = ["at_risk_list"]
