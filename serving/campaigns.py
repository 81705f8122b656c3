"""Campaigns in the service: recording sends, keeping purchase events, reporting the lift.

:class:`CampaignService` opens the campaign database (feature_store.campaigns; SQLite under
``RECSYS_DATA_DIR`` or ``DATABASE_URL``) on first use and migrates it. It records a campaign
when an audience is marked sent (serving.audiences), appends the purchase events the service
receives (serving/routes/events.py), and builds a campaign's report from those events
(engine.campaigns.build_report, the same as ``recsys campaign report``). Every database failure
is a 503 naming the database; a database that is not configured (settings built in code) makes
the campaign endpoints 503 and leaves sends unrecorded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from engine.campaigns import validate_window
from engine.campaigns.errors import CampaignInputError
from feature_store.campaigns import (
    Campaign,
    CampaignExistsError,
    CampaignNotFoundError,
    CampaignStore,
    InvalidCampaignInputError,
    StoreUnavailableError,
)
from serving.campaign_report import campaign_report
from serving.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from serving.settings import Settings

log = logging.getLogger("recsys.serving")
T = TypeVar("T")

#: Seconds a client should wait before retrying after a database failure.
_RETRY_SECONDS: Final[int] = 5


def campaign_out(campaign: Campaign) -> dict[str, Any]:
    """A campaign as the API returns it."""
    return {
        "id": campaign.id,
        "audience_id": campaign.audience_id,
        "name": campaign.name,
        "sent_at": campaign.sent_at,
        "holdout_percent": campaign.holdout_percent,
        "salt": campaign.salt,
        "holdout_scheme": campaign.holdout_scheme,
        "model_version": campaign.model_version,
        "counts": dict(campaign.counts),
        "definition": campaign.definition,
        "created_at": campaign.created_at,
    }


class CampaignService:
    """The campaign database of the service (module docstring). Thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: CampaignStore | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return self.settings.campaign_db_url is not None

    def _open(self) -> CampaignStore:
        url = self.settings.campaign_db_url
        if url is None:
            raise ServiceUnavailableError(
                "campaigns are unavailable: no campaign database is configured (set "
                "DATABASE_URL, or RECSYS_DATA_DIR for the embedded SQLite file)",
                _RETRY_SECONDS,
            )
        with self._lock:
            if self._store is None:
                store = CampaignStore.from_url(url)
                store.migrate()
                log.warning("campaign database %s ready (%s)", store.url, store.current_revision())
                self._store = store
            return self._store

    def call(self, action: Callable[[CampaignStore], T]) -> T:
        """``action`` on the store; database failures become 503, unknown campaigns 404 and
        invalid input 422 naming the field."""
        try:
            return action(self._open())
        except StoreUnavailableError as exc:
            raise ServiceUnavailableError(
                f"the campaign database is unavailable ({exc}); retry later", _RETRY_SECONDS
            ) from exc
        except CampaignNotFoundError as exc:
            raise NotFoundError(f"{exc}: no campaign was recorded under this id") from exc
        except (InvalidCampaignInputError, CampaignInputError) as exc:
            raise BadRequestError(
                str(exc), extra={"errors": [{"field": exc.field, "message": exc.message}]}
            ) from exc

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.dispose()
                self._store = None

    # -- writes ------------------------------------------------------------------------------

    def record_send(
        self,
        *,
        campaign_id: str,
        summary: Mapping[str, Any],
        seed: Mapping[str, Any],
        treatment: npt.NDArray[np.str_],
        control: npt.NDArray[np.str_],
        treatment_scores: npt.NDArray[np.float32],
        control_scores: npt.NDArray[np.float32],
        sent_at: datetime,
    ) -> Campaign:
        """Record a sent audience as a campaign (its id is the audience id); a repeat returns
        the campaign recorded first."""
        holdout = summary.get("holdout") or {}

        def record(store: CampaignStore) -> Campaign:
            try:
                return store.record_campaign(
                    campaign_id=campaign_id,
                    audience_id=campaign_id,
                    treatment=treatment,
                    control=control,
                    treatment_scores=treatment_scores,
                    control_scores=control_scores,
                    sent_at=sent_at,
                    holdout_percent=float(holdout.get("percent", 0.0)),
                    salt=holdout.get("salt"),
                    holdout_scheme=holdout.get("scheme"),
                    definition=summary["definition"],
                    name=summary.get("name") or None,
                    seed=seed,
                    model_version=summary.get("model_version"),
                )
            except CampaignExistsError:
                return store.get(campaign_id)

        return self.call(record)

    def record_events(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Append purchase events (canonical columns, naive local ``ts``) to the event log."""
        if not events or not self.configured:
            return 0
        return self.call(lambda store: store.events.record(events))

    # -- reads -------------------------------------------------------------------------------

    def list(self, limit: int, offset: int) -> dict[str, Any]:
        def read(store: CampaignStore) -> dict[str, Any]:
            found = store.list(limit=limit, offset=offset)
            return {
                "total": store.count(),
                "offset": offset,
                "limit": limit,
                "campaigns": [campaign_out(c) for c in found],
            }

        return self.call(read)

    def get(self, campaign_id: str) -> dict[str, Any]:
        return campaign_out(self.call(lambda store: store.get(campaign_id)))

    def report(self, campaign_id: str, window_days: int) -> dict[str, Any]:
        """The campaign's report over ``window_days`` after its send, from the purchase events
        posted to the service (docs/campaigns.md)."""
        try:
            validate_window(window_days)
        except CampaignInputError as exc:
            raise BadRequestError(
                str(exc), extra={"errors": [{"field": "query.window_days", "message": exc.message}]}
            ) from exc

        def build(store: CampaignStore) -> dict[str, Any]:
            report, _ = campaign_report(
                store,
                campaign_id,
                window_days,
                data=None,
                data_timezone=self.settings.data_timezone,
                out=None,
            )
            return report.model_dump(mode="json")

        return self.call(build)


__all__ = ["CampaignService", "campaign_out"]
