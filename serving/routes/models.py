"""``GET /v1/models/current`` and ``POST /v1/models/reload``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body

from serving.deps import Admin, AnyCaller, State
from serving.errors import ConflictError, ModelLoadError
from serving.model import ModelInfo
from serving.online import StoreDownError
from serving.routes._problems import secured
from serving.schemas import ModelOut, ReloadIn, ReloadOut
from serving.state import published_record

router = APIRouter(prefix="/v1/models", tags=["models"])
log = logging.getLogger("recsys.serving")


def model_out(info: ModelInfo) -> ModelOut:
    return ModelOut(
        version=info.label,
        uri=info.uri,
        bundle_id=info.bundle_id,
        path=info.path,
        kind=info.kind,
        created_at=info.created_at,
        loaded_at=info.loaded_at,
        registry_version=info.registry_version,
        run_id=info.run_id,
        n_members=info.n_members,
        n_items=info.n_items,
        dim=info.dim,
        index=info.index,
        catalogue=info.catalogue,
        cold_start=info.cold_start,
    )


@router.get("/current", response_model=ModelOut, summary="The served model", **secured())
def current(caller: AnyCaller, state: State) -> ModelOut:
    """The model this worker serves (any valid API key)."""
    return model_out(state.holder.current.info)


@router.post(
    "/reload",
    response_model=ReloadOut,
    summary="Switch to the current champion",
    **secured(400, 409, 422),
)
def reload(
    caller: Admin, state: State, body: Annotated[ReloadIn | None, Body()] = None
) -> ReloadOut:
    """Resolve the configured model URI again (``models:/member-recs@champion``: the champion
    now) or ``uri``, load it completely, then switch atomically: requests in flight finish on
    the old model. A model that fails to load leaves the old one serving (409). The other
    workers follow through the record published in Redis."""
    uri = body.uri if body is not None else None
    role = body.role if body is not None else "champion"
    holder = state.holder_of(role)
    if holder is None:
        raise ConflictError(
            "no challenger is configured: set RECSYS_CHALLENGER_URI to run an experiment"
        )
    try:
        outcome = holder.reload(uri)
    except ModelLoadError:
        state.metrics.reloads.labels("failed").inc()
        raise
    except RuntimeError as exc:  # "~user/..." of an unknown user: Path.expanduser
        state.metrics.reloads.labels("failed").inc()
        raise ModelLoadError(
            f"model URI {uri!r}: {exc}; model {holder.current.info.label} keeps serving"
        ) from exc
    propagated = False
    if outcome.changed:
        state.metrics.reloads.labels("changed").inc()
        if role == "champion":
            state.metrics.set_model(outcome.current.label, outcome.current.bundle_id)
        try:
            state.gateway.publish_model(published_record(holder, outcome.current), role)
            propagated = True
        except StoreDownError as exc:
            log.warning("reload not published to the other workers: %s", exc)
    else:
        state.metrics.reloads.labels("unchanged").inc()
    return ReloadOut(
        changed=outcome.changed,
        previous=model_out(outcome.previous),
        current=model_out(outcome.current),
        propagated=propagated,
    )
