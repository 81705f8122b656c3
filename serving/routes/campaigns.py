"""``/v1/campaigns``: campaigns sent from audiences, and what they earned (role marketer).

A campaign is recorded when an audience is marked sent (``POST /v1/audiences/{id}/sent``; its
id is the audience id). Its report compares the treatment group with the control group kept out
by the audience's holdout, on the purchases reported to ``POST /v1/events`` within the window
after the send: conversion, revenue, orders, average order value and retention per group, the
differences with 95% intervals and p-values, the incremental revenue, and the smallest effect
the campaign could detect (docs/campaigns.md). The work is in :mod:`serving.campaigns`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import anyio.to_thread
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from engine.campaigns import CampaignReport
from serving.deps import Campaigns, State
from serving.routes._problems import secured
from serving.schemas import QUERY_INT

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])
MAX_PAGE: Final = 1_000
MAX_WINDOW_DAYS: Final = 365
#: Largest offset a page may start at (a database integer; far beyond any campaign count).
MAX_OFFSET: Final = 2**31 - 1

CampaignIdPath = Annotated[
    str, Path(min_length=1, max_length=128, description="The campaign id (its audience's id).")
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CampaignOut(_Out):
    id: str
    audience_id: str | None
    name: str | None
    sent_at: datetime
    holdout_percent: float = Field(description="Share (%) kept out as the control group.")
    salt: str | None
    holdout_scheme: str | None
    model_version: str | None
    counts: dict[str, int] = Field(description="Members per group: treatment, control.")
    definition: dict[str, Any] = Field(description="The audience definition, normalized.")
    created_at: datetime


class CampaignPage(_Out):
    total: int
    offset: int
    limit: int
    campaigns: list[CampaignOut] = Field(description="Most recent send first.")


@router.get("", response_model=CampaignPage, summary="Campaigns", **secured(422, 503))
async def list_campaigns(
    caller: Campaigns,
    state: State,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Campaigns to skip."), QUERY_INT
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE, description="Campaigns per page (1-1,000)."), QUERY_INT
    ] = 100,
) -> CampaignPage:
    """The recorded campaigns, most recent send first."""
    body = await anyio.to_thread.run_sync(lambda: state.campaigns.list(limit, offset))
    return CampaignPage.model_validate(body)


@router.get(
    "/{campaign_id}", response_model=CampaignOut, summary="A campaign", **secured(404, 422, 503)
)
async def get_campaign(campaign_id: CampaignIdPath, caller: Campaigns, state: State) -> CampaignOut:
    """A recorded campaign: its audience definition, send time, groups and model version."""
    body = await anyio.to_thread.run_sync(lambda: state.campaigns.get(campaign_id))
    return CampaignOut.model_validate(body)


@router.get(
    "/{campaign_id}/report",
    response_model=CampaignReport,
    summary="What a campaign earned",
    **secured(404, 422, 503),
)
async def report(
    campaign_id: CampaignIdPath,
    caller: Campaigns,
    state: State,
    window_days: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_WINDOW_DAYS,
            description="Attribution window: purchases in [send, send + N days) count.",
        ),
        QUERY_INT,
    ] = 30,
) -> CampaignReport:
    """Treatment vs control over the window after the send, from the purchase events reported
    since: per group and the difference with its 95% interval and p-value, the incremental
    revenue and conversions, the minimum detectable effect (so a small campaign says how small
    an effect it could have seen), and the conversion by day. ``observed_days`` tells how much
    of the window has passed."""
    body = await anyio.to_thread.run_sync(lambda: state.campaigns.report(campaign_id, window_days))
    return CampaignReport.model_validate(body)
