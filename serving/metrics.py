"""Prometheus metrics of the service (``GET /metrics``).

* ``recsys_http_request_duration_seconds{route,method}``: latency histogram per route template;
* ``recsys_http_requests_total{route,method,status}``;
* ``recsys_cache_requests_total{result}``: ``hit``, ``miss``, ``error`` (Redis unavailable);
* ``recsys_fallbacks_total{basis}``: responses ranked without the model (``popular``, ...);
* ``recsys_events_total{status}``: purchase events applied, duplicate, before the snapshot;
* ``recsys_model_reloads_total{result}``: ``changed``, ``unchanged``, ``failed``;
* ``recsys_model_info{version,bundle_id}``: 1 for the model this process serves;
* ``recsys_store_degraded``: 1 while ``/readyz`` says ``degraded``: the online store is
  unreachable, or holds no snapshot version or not the expected one (set by each readiness check);
* ``recsys_store_restores_total{result}``: automatic restores of an emptied online store by this
  worker, ``restored`` or ``failed`` (brought up to date at each ``/readyz`` and ``/metrics``).

With several worker processes (``recsys serve --workers N``) the CLI sets
``PROMETHEUS_MULTIPROC_DIR`` and every worker writes there; ``/metrics`` then aggregates all
workers, whichever one answers. Metrics are created per app (own registry), so several apps in
one process (tests) do not collide.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The service's metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Request latency by route template",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "recsys_http_requests_total",
            "Requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.cache = Counter(
            "recsys_cache_requests_total", "Result cache lookups", ["result"], registry=r
        )
        self.fallbacks = Counter(
            "recsys_fallbacks_total", "Responses ranked without the model", ["basis"], registry=r
        )
        self.events = Counter(
            "recsys_events_total", "Purchase events by outcome", ["status"], registry=r
        )
        self.exposures = Counter(
            "recsys_experiment_exposures_total",
            "Recommendation lists served, by experiment variant",
            ["variant"],
            registry=r,
        )
        self.exposure_errors = Counter(
            "recsys_exposure_log_errors_total",
            "Served lists that could not be written to the exposure log",
            registry=r,
        )
        self.purchases = Counter(
            "recsys_experiment_purchase_events_total",
            "Applied purchase events, by the experiment variant of their member",
            ["variant"],
            registry=r,
        )
        self.revenue = Counter(
            "recsys_experiment_revenue_total",
            "Revenue of applied purchase events (quantity x price), by the experiment variant "
            "of their member",
            ["variant"],
            registry=r,
        )
        self.reloads = Counter(
            "recsys_model_reloads_total", "Model reloads by result", ["result"], registry=r
        )
        self.model_info = Gauge(
            "recsys_model_info",
            "The served model (value 1)",
            ["version", "bundle_id"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.degraded = Gauge(
            "recsys_store_degraded",
            "1 while the online store is unreachable or lacks the expected snapshot version",
            registry=r,
            multiprocess_mode="max",
        )
        self.restores = Counter(
            "recsys_store_restores_total",
            "Automatic restores of an emptied online store",
            ["result"],
            registry=r,
        )
        self._restores_counted: dict[str, int] = {}
        self._restores_lock = threading.Lock()

    def set_model(self, version: str, bundle_id: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version, bundle_id).set(1)

    def count_restores(self, totals: Mapping[str, int]) -> None:
        """Bring ``recsys_store_restores_total`` up to ``totals`` (what the store watch of this
        worker counted so far, by result)."""
        with self._restores_lock:  # /readyz and /metrics may run at once
            for result, total in totals.items():
                new = total - self._restores_counted.get(result, 0)
                if new > 0:
                    self.restores.labels(result).inc(new)
                    self._restores_counted[result] = total

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (all workers in multiprocess mode)."""
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Times every request and labels it with its route template (``/v1/members/{member_id}/...``);
    unmatched paths are counted as ``unmatched`` (no unbounded label values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route: Any = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.latency.labels(name, method).observe(time.perf_counter() - started)
            self.metrics.requests.labels(name, method, str(status["code"])).inc()


__all__ = ["Metrics", "MetricsMiddleware", "multiprocess_dir"]
