"""OpenAPI descriptions of the problem responses the routes may return."""

from __future__ import annotations

from typing import Any

from serving.errors import PROBLEM_JSON

_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

_TEXT = {
    401: "No or an invalid API key",
    403: "The key's role may not use this endpoint",
    404: "Unknown id",
    409: "The model could not be loaded; the previous one keeps serving",
    422: "Invalid input (the `errors` list names each field)",
    503: "The online store is unavailable; retry after the Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route for the given problem statuses."""
    return {
        status: {
            "description": _TEXT[status],
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_SCHEMA}},
        }
        for status in statuses
    }
