"""Errors of the data and feature layer. The CLI and the API map them to exit codes / 4xx."""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(FeatureStoreError):
    """Input data cannot be used as given (missing file, missing column, unreadable file).

    The message names the file (and column or row where it applies) and says what to do.
    """


class ConfigError(FeatureStoreError):
    """A policy or rule file is malformed; the message names the file and the key or rule."""
