"""A campaign's report, one way for the service and the command line.

:func:`campaign_report` takes each member's outcomes in the attribution window
``[send, send + window)`` from a dataset's purchases or from the purchase events the campaign
database received (``POST /v1/events``), builds the report (engine.campaigns.build_report),
caches it in the database and writes its files when asked. ``GET /v1/campaigns/{id}/report``
(serving.campaigns) and ``recsys campaign report`` (cli/campaign.py) both call it, as does the
uplift fit for its outcomes (:func:`campaign_outcomes`).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import polars as pl

from engine.campaigns import CampaignFacts, GroupOutcomes, build_report, write_report
from engine.campaigns.report import CampaignReport
from feature_store.campaigns import (
    Campaign,
    CampaignOutcomes,
    CampaignStore,
    member_outcomes,
    outcomes_from_events,
)
from feature_store.campaigns.outcomes import local_send_time
from feature_store.dataset import load_dataset, table_path
from feature_store.errors import DataError
from feature_store.schema import PURCHASES

#: Source name of reports built from the purchase events the service received.
EVENTS_SOURCE = "events"


def scan_purchases(data: Path) -> pl.LazyFrame:
    """The dataset's purchase lines: Parquet scanned lazily; CSV read and validated."""
    if not data.is_dir():
        raise DataError(f"--data: {data} is not a dataset folder")
    path = table_path(data, PURCHASES)
    if path.name.endswith(".parquet"):
        return pl.scan_parquet(path)
    return load_dataset(data).dataset.purchases.lazy()


def dataset_source(data: Path) -> str:
    """The report cache's source key of a dataset: its purchases file, size and mtime."""
    path = table_path(data, PURCHASES).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()
    return f"dataset:{hashlib.sha256(key).hexdigest()[:16]}"


def campaign_outcomes(
    store: CampaignStore,
    campaign: Campaign,
    window_days: int,
    *,
    data: Path | None,
    data_timezone: str,
) -> tuple[CampaignOutcomes, str]:
    """Per-member outcomes in ``[send, send + window)`` and where they came from."""
    members = store.groups(campaign.id).select("member_id", "group")
    common = {
        "sent_at": campaign.sent_at,
        "window_days": window_days,
        "seed_items": campaign.seed_items,
        "data_timezone": data_timezone,
    }
    if data is not None:
        return member_outcomes(scan_purchases(data), members, **common), dataset_source(data)  # type: ignore[arg-type]
    start = local_send_time(campaign.sent_at, data_timezone)
    events = store.events.purchases(start, start + timedelta(days=window_days))
    return outcomes_from_events(events, members, **common), EVENTS_SOURCE  # type: ignore[arg-type]


def campaign_report(
    store: CampaignStore,
    campaign_id: str,
    window_days: int,
    *,
    data: Path | None,
    data_timezone: str,
    out: Path | None,
) -> tuple[CampaignReport, str]:
    """Build a campaign's report, cache it in the store and write its files to ``out``."""
    campaign = store.get(campaign_id)
    outcomes, source = campaign_outcomes(
        store, campaign, window_days, data=data, data_timezone=data_timezone
    )
    facts = CampaignFacts(
        campaign.id,
        campaign.sent_at,
        window_days,
        name=campaign.name,
        observed_days=outcomes.observed_days,
    )
    report = build_report(
        facts,
        GroupOutcomes.from_columns(outcomes.columns("treatment")),
        GroupOutcomes.from_columns(outcomes.columns("control")),
    )
    store.save_report(campaign.id, window_days, source, report.model_dump(mode="json"))
    if out is not None:
        write_report(report, out)
    return report, source


__all__ = [
    "EVENTS_SOURCE",
    "campaign_outcomes",
    "campaign_report",
    "dataset_source",
    "scan_purchases",
]
