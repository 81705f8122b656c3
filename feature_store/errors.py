"""Errors of the data and feature layer. The CLI and the API map them to exit codes / 4xx."""

from __future__ import annotations


class FeatureStoreError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(FeatureStoreError):
    """Input data cannot be used as given (missing file, missing column, unreadable file).

    The message names the file (and column or row where it applies) and says what to do.
    """


class ConfigError(FeatureStoreError):
    """A configuration file is malformed: the feature policy, a training configuration or a
    search space (training.config_toml.ConfigError is this class). The message names the file
    and, for each problem, the dotted key (``tiers.levels[2].min_spend``) or the rule, and what
    is wrong; feature_store.config_model builds it from the models' validation errors."""
