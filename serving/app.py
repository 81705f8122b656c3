"""The FastAPI application: ``create_app()`` builds it, its lifespan loads what it serves.

``uvicorn --factory serving.app:create_app`` (what ``recsys serve`` runs) calls
:func:`create_app` once per worker process. Settings are read from the environment there
(never at import) and validated; the lifespan then loads the feature policy and the model
(:class:`~serving.state.ModelHolder`) and opens the online store
(:class:`~serving.online.OnlineGateway`), which may be down: the service then starts degraded.
A background task follows model switches published by other workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from feature_store.errors import ConfigError
from feature_store.policy import FeaturePolicy, load_policy
from serving.audiences import AudienceService
from serving.batcher import RecommendationBatcher
from serving.campaigns import CampaignService
from serving.deps import AppState
from serving.errors import install_error_handlers
from serving.fastpath import RecommendationsFastPath
from serving.metrics import Metrics, MetricsMiddleware
from serving.online import OnlineGateway, StoreDownError
from serving.routes import (
    audiences,
    events,
    health,
    items,
    members,
    models,
    recommendations,
)
from serving.routes import (
    campaigns as campaign_routes,
)
from serving.routes import (
    experiments as experiment_routes,
)
from serving.routes._problems import contract_openapi
from serving.security import KeyRing
from serving.settings import Settings, SettingsError, load_settings
from serving.state import ModelHolder, Resolver

log = logging.getLogger("recsys.serving")
API_VERSION = "1"


def _policy(settings: Settings) -> FeaturePolicy:
    try:
        return load_policy(settings.policy_file)
    except ConfigError as exc:
        raise SettingsError(f"RECSYS_POLICY_FILE: {exc}") from exc


async def _follow_published(state: AppState, interval: float) -> None:
    """Poll the model records other workers publish (one per role) and switch to them
    (serving/state.py)."""
    while True:
        await asyncio.sleep(interval)
        for holder in state.holders():
            try:
                record = await anyio.to_thread.run_sync(state.gateway.published_model, holder.role)
            except StoreDownError:
                break  # Redis down: nothing to follow; the readiness probe reports it
            if record is not None and await anyio.to_thread.run_sync(holder.follow, record):
                info = holder.current.info
                if holder.role == "champion":
                    state.metrics.set_model(info.label, info.bundle_id)


def create_app(settings: Settings | None = None, *, resolver: Resolver | None = None) -> FastAPI:
    """The service. ``settings`` default to the environment (:func:`load_settings`);
    ``resolver`` replaces how model URIs are resolved (tests)."""
    settings = settings or load_settings()
    policy = _policy(settings)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder = ModelHolder(settings, policy.tiers.names, resolver)
        model = await anyio.to_thread.run_sync(holder.load_initial)
        metrics.set_model(model.info.label, model.id)
        challenger = None
        if settings.challenger_uri is not None:
            challenger = ModelHolder(
                settings,
                policy.tiers.names,
                resolver,
                uri=settings.challenger_uri,
                role="challenger",
            )
            await anyio.to_thread.run_sync(challenger.load_initial)
        gateway = OnlineGateway(settings, policy)
        batcher = RecommendationBatcher(gateway, metrics, log_exposures=settings.exposure_log)
        campaigns = CampaignService(settings)
        state = AppState(
            settings,
            policy,
            holder,
            gateway,
            metrics,
            KeyRing(settings.api_keys),
            batcher,
            AudienceService(settings, gateway, policy.rfm.segment_names, campaigns),
            campaigns,
            challenger,
        )
        app.state.recsys = state
        batcher.start()
        store = await anyio.to_thread.run_sync(gateway.health)
        metrics.degraded.set(0 if store.ok else 1)
        for line in settings.describe():
            log.warning("%s", line)
        log.warning(
            "serving %s (bundle %s, %d items, %d members, %s index, item attributes: %s); "
            "online store %s",
            model.info.label,
            model.id,
            model.info.n_items,
            model.info.n_members,
            model.info.index,
            model.info.catalogue,
            "ok" if store.ok else f"DEGRADED ({store.error})",
        )
        # Everything loaded so far lives as long as the process: out of the collector's sight,
        # so that a full collection under load scans only what requests allocate (a full
        # collection of the ~300k startup objects takes ~0.1 s, a latency spike for every
        # request waiting on it).
        gc.collect()
        gc.freeze()
        follower = None
        if settings.model_poll_seconds > 0:
            follower = asyncio.create_task(_follow_published(state, settings.model_poll_seconds))
        try:
            yield
        finally:
            await batcher.stop()
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
            await anyio.to_thread.run_sync(gateway.close)
            await anyio.to_thread.run_sync(campaigns.close)

    app = FastAPI(
        title="recsys: member recommendations",
        version=API_VERSION,
        summary="For-you recommendations, similar items, member profiles, campaign audiences "
        "and purchase events for retail loyalty programmes.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (
        recommendations,
        items,
        members,
        audiences,
        campaign_routes,
        experiment_routes,
        events,
        models,
        health,
    ):
        app.include_router(module.router)
    # the Problem schema, the security schemes and the bodies routes validate themselves
    app.openapi = contract_openapi(app, audiences.BODY_MODELS)  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RecommendationsFastPath, metrics=metrics)  # outermost: skips the rest
    return app


__all__ = ["create_app"]
