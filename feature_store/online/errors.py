"""Errors of the online store; all are FeatureStoreError, so the CLI and API handle them."""

from __future__ import annotations

from feature_store.errors import FeatureStoreError


class OnlineStoreError(FeatureStoreError):
    """The online store cannot do what was asked; the message names the store URL or key."""


class StoreUnavailableError(OnlineStoreError):
    """Redis cannot be reached (or the embedded server cannot start) at the named URL."""


class NoActiveSnapshotError(OnlineStoreError):
    """Nothing has been materialized into this store yet."""


__all__ = ["NoActiveSnapshotError", "OnlineStoreError", "StoreUnavailableError"]
