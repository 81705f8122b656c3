"""Errors of the service and their HTTP form: ``application/problem+json`` (RFC 9457).

Routes raise :class:`ServingError` subclasses; engine and feature-store errors are mapped here,
at the edge. A body looks like::

    {"type": "/problems/not-found", "title": "Not found", "status": 404,
     "detail": "item 'x9' is not in the catalogue of model member-recs/3",
     "instance": "/v1/items/x9/similar"}

Validation errors (422) add ``errors``: one entry per bad field, e.g.
``{"field": "query.k", "message": "Input should be less than or equal to 200"}``. An unexpected
exception becomes a 500 whose body holds only a reference id; the traceback goes to the log.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from engine.errors import EngineError, InvalidInputError, UnknownIdError
from feature_store.errors import DataError, FeatureStoreError
from feature_store.online.errors import OnlineStoreError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("recsys.serving")


class FieldError(BaseModel):
    """One bad field of a 422 (``query.k``, ``body.events[0].ts``, ``filters.tiers[0]``)."""

    field: str
    message: str


class Problem(BaseModel):
    """The body of every error response (RFC 9457), as documented in the OpenAPI document."""

    model_config = ConfigDict(extra="allow")  # RFC 9457 allows extension members

    type: str = Field(description="/problems/<slug>: what kind of problem (stable, for code).")
    title: str
    status: int = Field(description="The HTTP status, repeated.")
    detail: str = Field(description="What went wrong and how to fix it.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[FieldError] | None = Field(
        default=None, description="422: one entry per bad field (input values are not echoed)."
    )
    reference: str | None = Field(
        default=None, description="500: the id under which the service logged the failure."
    )


class ServingError(Exception):
    """An error with an HTTP status; the message is the problem's ``detail``."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class BadRequestError(ServingError):
    status, slug, title = 422, "invalid-request", "Invalid request"


class NotFoundError(ServingError):
    status, slug, title = 404, "not-found", "Not found"


class AuthenticationError(ServingError):
    status, slug, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="recsys"'})


class PermissionDeniedError(ServingError):
    status, slug, title = 403, "forbidden", "Forbidden"


class ModelLoadError(ServingError):
    """A model could not be loaded; the previous one (if any) keeps serving."""

    status, slug, title = 409, "model-load-failed", "Model could not be loaded"


class ConflictError(ServingError):
    """The request is valid but the service's current data cannot answer it (e.g. the loaded
    snapshot has no member-value model); the detail says what to do."""

    status, slug, title = 409, "conflict", "Conflict with the loaded data"


class ServiceUnavailableError(ServingError):
    status, slug, title = 503, "unavailable", "Service unavailable"

    def __init__(self, detail: str, retry_after_seconds: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra or {})
    return JSONResponse(
        body, status_code=status, headers=dict(headers or {}), media_type=PROBLEM_JSON
    )


def _field(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_errors(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Pydantic error dicts as ``{"field", "message"}`` (input values are not echoed)."""
    return [
        {"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
        for e in errors
    ]


def _map_domain(exc: Exception) -> ServingError | None:
    if isinstance(exc, UnknownIdError):
        return NotFoundError(str(exc))
    if isinstance(exc, InvalidInputError | DataError):
        return BadRequestError(str(exc))
    if isinstance(exc, OnlineStoreError):
        return ServiceUnavailableError(f"the online store is unavailable: {exc}")
    if isinstance(exc, EngineError | FeatureStoreError):
        return BadRequestError(str(exc))
    return None


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through :func:`problem`."""

    async def serving_error(request: Request, exc: Exception) -> JSONResponse:
        error = exc if isinstance(exc, ServingError) else _map_domain(exc)
        if error is None:
            return await unexpected(request, exc)
        return problem(
            error.status,
            error.title,
            error.detail,
            slug=error.slug,
            instance=request.url.path,
            headers=error.headers,
            extra=error.extra,
        )

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        errors = validation_errors(exc.errors() if isinstance(exc, RequestValidationError) else [])
        fields = ", ".join(e["field"] for e in errors[:5])
        return problem(
            422,
            "Invalid request",
            f"invalid value for {fields}" if fields else "invalid request",
            slug="invalid-request",
            instance=request.url.path,
            extra={"errors": errors},
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else ""
        title = HTTPStatus(status).phrase
        return problem(
            status,
            title,
            str(detail or title),
            slug=title.lower().replace(" ", "-"),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex[:12]
        log.error(
            "unexpected error %s on %s %s",
            reference,
            request.method,
            request.url.path,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return problem(
            500,
            "Internal error",
            f"the service failed unexpectedly; reference {reference} (details are in its log)",
            slug="internal",
            instance=request.url.path,
            extra={"reference": reference},
        )

    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(EngineError, serving_error)
    app.add_exception_handler(FeatureStoreError, serving_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


__all__ = [
    "PROBLEM_JSON",
    "AuthenticationError",
    "BadRequestError",
    "FieldError",
    "ModelLoadError",
    "NotFoundError",
    "PermissionDeniedError",
    "Problem",
    "ServiceUnavailableError",
    "ServingError",
    "install_error_handlers",
    "problem",
]
