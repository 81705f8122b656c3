"""The hot route without the framework: ``GET /v1/members/{id}/recommendations`` answered by a
plain ASGI middleware when the request is well formed.

The storefront calls the recommendations route for every page view. Through FastAPI, routing,
parameter validation, dependency solving and the exception middlewares cost about twice the
work of the answer itself (py-spy on a loaded worker, docs/api.md "Performance"). This
middleware recognises a valid request (its query parsed by the route's own model,
:class:`engine.ranking.query.ListQuery`; its key checked by the routes' own check,
:func:`serving.deps.caller_key`) and answers it directly through the same
:func:`serving.routes.recommendations.answer` the route uses, with the same body, headers and
metrics. **Anything else falls through** to the FastAPI application unchanged: a missing or bad
key, an invalid query, a repeated parameter, a failure while answering. The route (which stays in the OpenAPI document) therefore remains the single owner of
validation errors and problem+json bodies, and the fast path can only ever answer what the route
would have answered.
"""

from __future__ import annotations

import time
from typing import Final
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.ranking.query import MAX_ID_LENGTH, ListQuery
from serving.deps import AppState, caller_key
from serving.errors import ServingError
from serving.metrics import Metrics
from serving.routes.recommendations import ROUTE_PATH, answer
from serving.security import Permission

_PREFIX: Final = "/v1/members/"
_SUFFIX: Final = "/recommendations"
_ROUTE_LABEL: Final = ROUTE_PATH


def _parse(scope: Scope) -> tuple[str, ListQuery] | None:
    """The member id and the query, parsed by the route's own model (:class:`ListQuery`),
    when the request is a valid one; else None (the framework then answers, with its error)."""
    if scope.get("method") != "GET":
        return None
    path: str = scope.get("path", "")
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    member_id = path[len(_PREFIX) : -len(_SUFFIX)]
    if not member_id or len(member_id) > MAX_ID_LENGTH or "/" in member_id:
        return None
    raw: bytes = scope.get("query_string", b"")
    fields: dict[str, str] = {}
    if raw:
        try:
            pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None
        for name, value in pairs:
            if name in fields:
                return None  # repeated: the framework decides
            fields[name] = value
    try:
        return member_id, ListQuery.model_validate(fields)
    except ValidationError:
        return None


def _allowed(scope: Scope, state: AppState) -> bool:
    client = scope.get("client")
    try:
        caller_key(Headers(scope=scope), client[0] if client else "", state, Permission.RECOMMEND)
    except ServingError:
        return False
    return True


class RecommendationsFastPath:
    """ASGI middleware: answers well-formed recommendation requests itself (module docstring)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._latency = metrics.latency.labels(_ROUTE_LABEL, "GET")
        self._ok = metrics.requests.labels(_ROUTE_LABEL, "GET", "200")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parsed = _parse(scope)
        state: AppState | None = getattr(scope["app"].state, "recsys", None) if parsed else None
        if parsed is None or state is None or not _allowed(scope, state):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            payload, cache = await answer(state, *parsed)
        except Exception:
            # The framework path answers it again and owns the error response and its logging.
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"x-cache", cache.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self._latency.observe(time.perf_counter() - started)
        self._ok.inc()


__all__ = ["RecommendationsFastPath"]
