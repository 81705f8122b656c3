"""Errors of the campaign store and the outcome extraction; the API maps them to 4xx/5xx."""

from __future__ import annotations

from feature_store.errors import FeatureStoreError


class CampaignStoreError(FeatureStoreError):
    """Base class of the errors this package raises on purpose."""


class CampaignNotFoundError(CampaignStoreError, LookupError):
    """No campaign has this id."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"campaign {campaign_id!r} not found")
        self.campaign_id = campaign_id


class CampaignExistsError(CampaignStoreError):
    """A campaign with this id was recorded before (campaign ids are never reused)."""

    def __init__(self, campaign_id: str) -> None:
        super().__init__(f"campaign {campaign_id!r} already exists")
        self.campaign_id = campaign_id


class InvalidCampaignInputError(CampaignStoreError, ValueError):
    """An argument is invalid; ``field`` names it (``window_days``, ``sent_at``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StoreUnavailableError(CampaignStoreError):
    """The database cannot be reached or is not migrated; the message says which and what to do."""
