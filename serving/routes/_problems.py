"""What the OpenAPI document says besides the success answers: the problem responses
(``application/problem+json``, schema ``Problem``) and the API-key security schemes.

Every route states the problem statuses it can answer with :func:`problems` (public routes) or
:func:`secured` (routes that need a key: 401 and 403 are added, and the operation lists the
security schemes). :func:`add_components` puts the shared schemas in the document; the
application's ``openapi()`` calls it (serving/app.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serving.errors import PROBLEM_JSON, Problem

_REF: Final = "#/components/schemas/{model}"
PROBLEM_SCHEMA: Final[dict[str, Any]] = {"$ref": _REF.format(model="Problem")}

#: The two ways of presenting an API key (serving/deps.py ``presented_token``).
SECURITY_SCHEMES: Final[dict[str, dict[str, Any]]] = {
    "bearerKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer KEY` (a key of `recsys api-key create ROLE`).",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The same key in the `X-API-Key` header.",
    },
}
SECURITY: Final[list[dict[str, list[str]]]] = [{name: []} for name in SECURITY_SCHEMES]

_TEXT: Final[dict[int, str]] = {
    400: "The body could not be read: it is not UTF-8 text",
    401: "No API key, or an invalid one",
    403: "The key's role may not use this endpoint (or, in open mode, the client is not loopback)",
    404: "Unknown id",
    409: "The request conflicts with what is loaded (a model that could not be loaded, a "
    "snapshot without the data asked for); the detail says what to do",
    422: "Invalid input: the `errors` list names each bad field",
    503: "The online store is unavailable; retry after `Retry-After` seconds",
}
_HEADERS: Final[dict[int, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": 'Always `Bearer realm="recsys"`.',
            "required": True,
            "schema": {"type": "string"},
        }
    },
    503: {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route for the given problem statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(set(statuses)):
        response: dict[str, Any] = {
            "description": _TEXT[status],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[status] = response
    return out


def secured(*statuses: int) -> dict[str, Any]:
    """Route keyword arguments of an endpoint that needs an API key: its problem responses
    (``statuses`` plus 401 and 403) and the security schemes that present the key."""
    return {"responses": problems(401, 403, *statuses), "openapi_extra": {"security": SECURITY}}


def add_components(document: dict[str, Any], models: tuple[type[BaseModel], ...] = ()) -> None:
    """Add the ``Problem`` schema, the validation schemas of ``models`` (request bodies a route
    validates itself, e.g. the audience definition) and the security schemes to ``document``."""
    _, top = models_json_schema(
        [(Problem, "serialization"), *((model, "validation") for model in models)],
        ref_template=_REF,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        if schemas.setdefault(name, schema) != schema:
            raise RuntimeError(f"two different OpenAPI schemas are named {name!r}")
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)


def contract_openapi(
    app: FastAPI, models: tuple[type[BaseModel], ...] = ()
) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with :func:`add_components` applied to the document FastAPI builds."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            add_components(document, models)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi


__all__ = [
    "PROBLEM_SCHEMA",
    "SECURITY",
    "add_components",
    "contract_openapi",
    "problems",
    "secured",
]
