"""Errors of the campaign core. Each names the field at fault so that the API can answer with a
4xx that points at it (``holdout.percent``, ``window_days``, ``treatment.revenue`` ...)."""

from __future__ import annotations

from engine.errors import EngineError, InvalidInputError


class CampaignError(EngineError):
    """Base class of every error engine.campaigns raises on purpose."""


class CampaignInputError(CampaignError, InvalidInputError):
    """An argument is invalid; ``field`` is the dotted name of the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ModelFormatError(CampaignError):
    """A saved uplift model cannot be read (unknown format version, missing or bad key)."""
