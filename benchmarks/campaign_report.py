"""Campaign outcome report over a 1M-member campaign with 90 days of purchases (issue 13).

Data: the synthetic set of the issue (1,000,000 members x 100,000 items x 20,000,000 purchase
lines over two years, ``feature_store.synthetic``), written once as Parquet to a temporary
folder (or reused from BENCH_CAMPAIGN_DATA, a canonical dataset folder). The campaign: every
member, 10% held out by the production hash (engine.campaigns.holdout), sent 90 days before the
data ends, window 90 days, 20 seed items.

Timed (median of ``repeat`` runs, in this process, after a warm-up run):

- **report**: purchases scanned from Parquet -> per-member outcomes (polars) -> the report
  (engine.campaigns.build_report) -> report.md / .csv / .json and two PNG plots. Target < 10 s.
- the holdout split of 1M members and, for reference, the bulk insert of the campaign's 1M
  members into the SQLite store (and PostgreSQL when BENCH_CAMPAIGN_PG_URL names an admin URL;
  a database of its own is created and dropped).

``BENCH_SCALE=small``: 50k members, 1M lines. Register: ``benchmarks/bench_campaign_report.py``
containing ``from benchmarks.campaign_report import run`` (``python -m benchmarks
campaign_report``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from benchmarks.harness import Result

if TYPE_CHECKING:
    from engine.campaigns import HoldoutSplit

SCALES = {
    "full": {"members": 1_000_000, "items": 100_000, "purchases": 20_000_000, "repeat": 3},
    "small": {"members": 50_000, "items": 5_000, "purchases": 1_000_000, "repeat": 3},
}
TARGET_S = 10.0
WINDOW_DAYS = 90
HOLDOUT_PERCENT = 10.0


def _median(fn: Callable[[], object], repeat: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def _dataset(cfg: dict[str, int], folder: Path) -> Path:
    given = os.environ.get("BENCH_CAMPAIGN_DATA")
    if given:
        return Path(given)
    from feature_store.synthetic import SynthConfig, write_synthetic

    out = folder / "synth"
    synth = SynthConfig(
        members=cfg["members"], items=cfg["items"], purchases=cfg["purchases"], seed=1
    )
    write_synthetic(synth, out, "parquet")
    return out


@dataclass(frozen=True)
class ReportTiming:
    median_s: float
    runs: list[float]
    holdout_s: float
    members: int
    lines_from_send: int
    split: HoldoutSplit
    sent_at: datetime


def time_report(data: Path, out_dir: Path, repeat: int = 3) -> ReportTiming:
    """Time the 90-day report of a campaign to every member of the dataset in ``data``."""
    from engine.campaigns import (
        CampaignFacts,
        GroupOutcomes,
        build_report,
        split_holdout,
        write_report,
    )
    from feature_store.campaigns import group_frame, member_outcomes

    purchases = data / "purchases.parquet"
    ids = pl.read_parquet(data / "members.parquet", columns=["member_id"]).get_column("member_id")
    last = pl.scan_parquet(purchases).select(pl.col("ts").max()).collect().item()
    sent_at = (last - timedelta(days=WINDOW_DAYS)).replace(tzinfo=UTC)
    started = time.perf_counter()
    split = split_holdout("bench-campaign", ids.to_list(), HOLDOUT_PERCENT)
    holdout_s = time.perf_counter() - started
    members = group_frame(split.treatment, split.control)
    seeds = [f"I{i:06d}" for i in range(1, 21)]

    def report() -> object:
        out = member_outcomes(
            pl.scan_parquet(purchases), members, sent_at=sent_at, window_days=WINDOW_DAYS,
            seed_items=seeds,
        )  # fmt: skip
        facts = CampaignFacts(
            "bench-campaign", sent_at, WINDOW_DAYS, observed_days=out.observed_days
        )
        built = build_report(
            facts,
            GroupOutcomes.from_columns(out.columns("treatment")),
            GroupOutcomes.from_columns(out.columns("control")),
        )
        return write_report(built, out_dir)

    report()  # warm-up (imports, file cache)
    median, runs = _median(report, repeat)
    lines = (
        pl.scan_parquet(purchases)
        .filter(pl.col("ts") >= sent_at.replace(tzinfo=None))
        .select(pl.len())
        .collect()
        .item()
    )
    return ReportTiming(median, runs, holdout_s, len(ids), int(lines), split, sent_at)


def time_bulk_insert(url: str, split: HoldoutSplit, sent_at: datetime) -> float:
    """Seconds to record the campaign (1 row + every member) in a fresh store at ``url``."""
    from feature_store.campaigns import CampaignStore

    store = CampaignStore.from_url(url)
    try:
        store.migrate()
        started = time.perf_counter()
        store.record_campaign(
            campaign_id=f"bench-{uuid.uuid4().hex[:8]}", treatment=split.treatment,
            control=split.control, sent_at=sent_at, holdout_percent=HOLDOUT_PERCENT,
            definition={"bench": True},
        )  # fmt: skip
        return time.perf_counter() - started
    finally:
        store.dispose()


def _postgres_insert(admin_url: str, split: HoldoutSplit, sent_at: datetime) -> float:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"recsys_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = admin.url.set(database=name).render_as_string(hide_password=False)
        return time_bulk_insert(url, split, sent_at)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run(scale: str) -> list[Result]:
    cfg = SCALES[scale]
    repeat = int(os.environ.get("BENCH_REPEAT", cfg["repeat"]))
    folder = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    try:
        data = _dataset(cfg, folder)
        timing = time_report(data, folder / "report", repeat)
        sqlite_s = time_bulk_insert(
            f"sqlite:///{folder / 'campaigns.db'}", timing.split, timing.sent_at
        )
        pg_admin = os.environ.get("BENCH_CAMPAIGN_PG_URL")
        pg_s = _postgres_insert(pg_admin, timing.split, timing.sent_at) if pg_admin else None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n = timing.members
    results = [
        Result(
            name=f"campaign report {n:,} members, {WINDOW_DAYS} d",
            seconds=timing.median_s,
            target=f"< {TARGET_S:.0f} s" if scale == "full" else "",
            passed=(timing.median_s < TARGET_S) if scale == "full" else None,
            extra={
                "runs (s)": ", ".join(f"{s:.2f}" for s in timing.runs),
                "purchase lines from the send on": timing.lines_from_send,
                "control members": timing.split.counts["control"],
                "load average (1 min)": round(os.getloadavg()[0], 2),
            },
        ),
        Result(name=f"holdout split {n:,} members", seconds=timing.holdout_s),
        Result(name=f"record campaign {n:,} members (SQLite)", seconds=sqlite_s),
    ]
    if pg_s is not None:
        results.append(Result(name=f"record campaign {n:,} members (PostgreSQL)", seconds=pg_s))
    return results


if __name__ == "__main__":
    from benchmarks.harness import print_table

    print_table(run(os.environ.get("BENCH_SCALE", "full")))
