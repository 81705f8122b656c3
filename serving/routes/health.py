"""``/healthz`` (alive), ``/readyz`` (model loaded; store ready or degraded), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from serving.deps import State
from serving.routes.models import model_out
from serving.schemas import Health, Readiness, StoreStatus

router = APIRouter(tags=["health"])
_OK = Health(status="ok")


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """The process answers."""
    return _OK


@router.get("/readyz", response_model=Readiness, summary="Readiness")
def readyz(state: State) -> Readiness:
    """``ready`` with a model and a reachable online store that holds the expected snapshot
    version; ``degraded`` with a model but no store, or a store without that version
    (recommendations still answer from the bundle); ``store.error`` says why. Checks the store
    each time."""
    health = state.gateway.health()
    state.metrics.degraded.set(0 if health.ok else 1)
    state.metrics.count_restores(state.gateway.watch.restore_counts())
    return Readiness(
        status="ready" if health.ok else "degraded",
        model=model_out(state.holder.current.info),
        store=StoreStatus(
            ok=health.ok,
            url=health.url,
            latency_ms=health.latency_ms,
            active_version=health.active_version,
            error=health.error,
        ),
    )


@router.get("/metrics", include_in_schema=False)
def metrics(state: State) -> Response:
    state.metrics.count_restores(state.gateway.watch.restore_counts())
    body, content_type = state.metrics.exposition()
    return Response(body, media_type=content_type)
