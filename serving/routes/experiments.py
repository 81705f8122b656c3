"""``/v1/experiments``: the champion-vs-challenger experiment's report (role marketer or admin).

The service serves the champion and, when ``RECSYS_CHALLENGER_URI`` is set, the challenger to a
share of the members (by a hash of experiment and member), and records every served list in the
exposure log. The report compares the members exposed to each variant over the last ``days``
days on the purchases reported to ``POST /v1/events``: conversion, conversion to a recommended
item (bought within ``RECSYS_ATTRIBUTION_HOURS`` of a list that showed it), revenue per exposed
member and the share of it from recommended items, each with the challenger-minus-champion
difference, its 95% interval and p-value, and the minimum detectable effect
(docs/experiments.md). The work is in :mod:`serving.experiments`.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query

from engine.experiments.report import ExperimentReport
from serving.deps import Campaigns, State
from serving.experiments import DEFAULT_DAYS, MAX_DAYS, ExperimentService
from serving.routes._problems import secured
from serving.schemas import QUERY_INT

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.get(
    "/current",
    response_model=ExperimentReport,
    summary="The current experiment: champion vs challenger",
    **secured(422, 503),
)
async def current(
    caller: Campaigns,
    state: State,
    days: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_DAYS,
            description="Report period: members exposed in the last N days (1-90) and their "
            "purchases since their first exposure.",
        ),
        QUERY_INT,
    ] = DEFAULT_DAYS,
) -> ExperimentReport:
    """Champion vs challenger over the period, per exposed member: members exposed, conversion,
    conversion to a recommended item (the primary metric), revenue per exposed member, revenue
    from recommended items and its share, each with the challenger-minus-champion difference,
    its 95% interval and p-value, and the minimum detectable effect. 503 while the campaign
    database (where purchase events are kept) is not configured or unreachable, or the online
    store (where the exposure log is) cannot be read."""
    service = ExperimentService(state.settings, state.gateway, state.campaigns)
    body = await anyio.to_thread.run_sync(lambda: service.report(days))
    return ExperimentReport.model_validate(body)


__all__ = ["router"]
