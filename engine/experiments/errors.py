"""Errors of the experiment core; each names the field at fault (``days``,
``attribution_hours``, ``data_timezone`` ...) so that the API answers a 422 pointing at it."""

from __future__ import annotations

from engine.errors import EngineError, InvalidInputError


class ExperimentError(EngineError):
    """Base class of every error engine.experiments raises on purpose."""


class ExperimentInputError(ExperimentError, InvalidInputError):
    """An argument is invalid; ``field`` is the dotted name of the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


__all__ = ["ExperimentError", "ExperimentInputError"]
