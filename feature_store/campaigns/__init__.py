"""The campaign store (SQL through SQLAlchemy, Alembic migrations) and campaign outcomes.

- :class:`CampaignStore` (store.py): campaigns and their treatment / control members in SQLite
  (embedded default, ``<data_dir>/campaigns.db``) or PostgreSQL (``DATABASE_URL``);
- :func:`member_outcomes` / :func:`outcomes_from_events` (outcomes.py): per-member outcomes in
  an attribution window from purchase lines, as arrays for engine.campaigns.build_report.

This package never imports engine (the caller joins the two); see docs/campaigns.md.
"""

from feature_store.campaigns.db import default_url, make_engine, resolve_url
from feature_store.campaigns.errors import (
    CampaignExistsError,
    CampaignNotFoundError,
    CampaignStoreError,
    InvalidCampaignInputError,
    StoreUnavailableError,
)
from feature_store.campaigns.events import EVENT_COLUMNS, PurchaseEventLog
from feature_store.campaigns.outcomes import (
    CampaignOutcomes,
    group_frame,
    member_outcomes,
    outcomes_from_events,
)
from feature_store.campaigns.store import Campaign, CampaignStore

__all__ = [
    "EVENT_COLUMNS",
    "Campaign",
    "CampaignExistsError",
    "CampaignNotFoundError",
    "CampaignOutcomes",
    "CampaignStore",
    "CampaignStoreError",
    "InvalidCampaignInputError",
    "PurchaseEventLog",
    "StoreUnavailableError",
    "default_url",
    "group_frame",
    "make_engine",
    "member_outcomes",
    "outcomes_from_events",
    "resolve_url",
]
