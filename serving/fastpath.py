"""The hot route without the framework: ``GET /v1/members/{id}/recommendations`` answered by a
plain ASGI middleware when the request is well formed.

The storefront calls the recommendations route for every page view. Through FastAPI, routing,
parameter validation, dependency solving and the exception middlewares cost about twice the
work of the answer itself (py-spy on a loaded worker, docs/api.md "Performance"). This
middleware recognises the common, valid request (a known query parameter set with valid
values, a key that may ``recommend``) and answers it directly through the same
:func:`serving.routes.recommendations.answer` the route uses, with the same body, headers and
metrics. **Anything else falls through** to the FastAPI application unchanged: a missing or bad
key, an out-of-range ``k``, an unknown query parameter, a repeated one, a failure while
answering. The route (which stays in the OpenAPI document) therefore remains the single owner of
validation errors and problem+json bodies, and the fast path can only ever answer what the route
would have answered.
"""

from __future__ import annotations

import time
from typing import Final
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from serving.deps import AppState, presented_token
from serving.metrics import Metrics
from serving.routes.recommendations import ROUTE_PATH, answer
from serving.schemas import MAX_ID_LENGTH, MAX_K
from serving.security import MAX_KEY_LENGTH, Permission

_PREFIX: Final = "/v1/members/"
_SUFFIX: Final = "/recommendations"
_BOOLS: Final = {"true": True, "false": False, "1": True, "0": False}
_ROUTE_LABEL: Final = ROUTE_PATH


class _Ask:
    __slots__ = ("category", "exclude_purchased", "k", "member_id")

    def __init__(self, member_id: str) -> None:
        self.member_id = member_id
        self.k = 10
        self.category: str | None = None
        self.exclude_purchased: bool | None = None


def _parse(scope: Scope) -> _Ask | None:
    """The request's parameters when they are all present in the plain valid form, else None
    (the framework then validates and answers)."""
    if scope.get("method") != "GET":
        return None
    path: str = scope.get("path", "")
    if not (path.startswith(_PREFIX) and path.endswith(_SUFFIX)):
        return None
    member_id = path[len(_PREFIX) : -len(_SUFFIX)]
    if not member_id or len(member_id) > MAX_ID_LENGTH or "/" in member_id:
        return None
    ask = _Ask(member_id)
    raw: bytes = scope.get("query_string", b"")
    if raw:
        seen: set[str] = set()
        try:
            pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None
        for name, value in pairs:
            if name in seen:
                return None
            seen.add(name)
            if name == "k":
                if not (value.isascii() and value.isdigit()) or len(value) > 3:
                    return None
                ask.k = int(value)
                if not 1 <= ask.k <= MAX_K:
                    return None
            elif name == "category":
                if not value or len(value) > MAX_ID_LENGTH:
                    return None
                ask.category = value
            elif name == "exclude_purchased":
                flag = _BOOLS.get(value)
                if flag is None:
                    return None
                ask.exclude_purchased = flag
            else:
                return None
    return ask


def _allowed(scope: Scope, state: AppState) -> bool:
    if state.settings.open_mode:
        return False  # the framework applies the loopback-only rule and its message
    token = presented_token(Headers(scope=scope))
    if token is None or len(token) > MAX_KEY_LENGTH:
        return False
    key = state.keyring.find(token)
    return key is not None and key.allows(Permission.RECOMMEND)


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
        ask = _parse(scope)
        state: AppState | None = getattr(scope["app"].state, "recsys", None) if ask else None
        if ask is None or state is None or not _allowed(scope, state):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            payload, cache = await answer(
                state, ask.member_id, ask.k, ask.category, ask.exclude_purchased
            )
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
