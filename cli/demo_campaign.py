"""The demo's campaign: an audience with a control group is sent, simulated members answer it, and
its report measures the lift (`recsys demo` calls :func:`run_campaign_demo` after training).

1. **Audience.** Seed: the snapshot's most popular category (most distinct buyers); the best
   half of the members by the champion bundle's audience score (the scorer of ``recsys audience
   build``, serving.audience_context.assemble); ``holdout: {percent: 20}``, split by
   engine.campaigns.split_holdout under the campaign id ``cmp_demo_<as_of>``.
2. **Send.** Recorded in the campaign database of the demo folder (``<out>/campaigns.db``, or
   ``DATABASE_URL``) as sent at the snapshot's ``as_of`` 00:00 UTC, with every member's audience
   score and the seed's items (what "bought a seed item" counts).
3. **Responses.** The planted-effect simulator (feature_store.synthetic.campaigns) gives every
   audience member a response segment from their RFM scores, tier and lifecycle (persuadable,
   sure thing, lost cause, sleeping dog); treatment members then buy with their segment's
   contacted probability, control members with the not-contacted one. The purchases of the 30
   days from the send (conversions of seed items, background orders of other items, some
   returns) are appended to the database's purchase-event log, as the service does with
   ``POST /v1/events``; event ids are ``<campaign>-<n>``, deterministic.
4. **Report.** From those events, with the code of ``recsys campaign report`` (printed, and
   written to ``<out>/campaigns/<id>/``).

Idempotent: when the campaign is already recorded, steps 1-3 are skipped. The events are
appended before the campaign row, so a run interrupted between the two re-simulates the same
events (stored once, by id) and then records the campaign.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import typer

if TYPE_CHECKING:
    import polars as pl

    from feature_store.campaigns import CampaignStore

DEMO_HOLDOUT_PERCENT: Final[float] = 20.0
DEMO_TOP_PERCENT: Final[float] = 50.0
DEMO_WINDOW_DAYS: Final[int] = 30
POPULATION_COLUMNS: Final[tuple[str, ...]] = (
    "member_id", "r_score", "f_score", "m_score", "tier", "lifecycle",
)  # fmt: skip


def demo_campaign_id(as_of: Any) -> str:
    return f"cmp_demo_{as_of:%Y%m%d}"


def population_from_snapshot(snapshot: Path) -> pl.DataFrame:
    """The simulator's population (member_id, r/f/m scores, tier, lifecycle) from a snapshot's
    member table; members who never purchased have null scores (the simulator reads them as 1)."""
    from feature_store.offline import open_snapshot

    return open_snapshot(snapshot).scan("members").select(POPULATION_COLUMNS).collect()


def simulated_purchases(
    population: pl.DataFrame,
    treatment: Sequence[str] | npt.NDArray[np.str_],
    control: Sequence[str] | npt.NDArray[np.str_],
    *,
    campaign_id: str,
    sent_local: datetime,
    seed_items: Sequence[str],
    item_ids: Sequence[str],
    tiers: tuple[str, ...],
    window_days: int = DEMO_WINDOW_DAYS,
    seed: int = 0,
) -> pl.DataFrame:
    """The purchase events of the window ``[sent_local, + window_days)`` (naive local times)
    of a campaign's members under the planted-effect model (module docstring), as
    feature_store.campaigns.EVENT_COLUMNS with deterministic event ids."""
    import polars as pl

    from feature_store.synthetic.campaigns import (
        CampaignSimConfig,
        SimulatedCampaigns,
        campaign_purchases,
        simulate_campaigns,
    )

    ids = [str(m) for m in treatment] + [str(m) for m in control]
    treated = np.r_[np.ones(len(treatment), np.bool_), np.zeros(len(control), np.bool_)]
    audience = pl.DataFrame({"member_id": ids}, schema={"member_id": pl.String}).join(
        population, on="member_id", how="left", maintain_order="left"
    )
    cfg = CampaignSimConfig(
        campaigns=1, seed=seed, audience_share=1.0, tiers=tiers, window_days=window_days,
        first_send=sent_local.replace(tzinfo=UTC), items=len(item_ids),
        seed_items=min(5, len(item_ids) - 1),
    )  # fmt: skip
    # the segments (and their response probabilities) of the simulator; the groups are ours
    drawn = simulate_campaigns(audience, cfg).members
    p = np.where(treated, drawn["p_treated"].to_numpy(), drawn["p_control"].to_numpy())
    converted = np.random.default_rng([seed, 1]).random(len(ids)) < p
    members = drawn.with_columns(
        pl.lit(campaign_id).alias("campaign_id"),
        pl.Series("group", np.where(treated, "treatment", "control")),
        pl.Series("treated", treated),
        pl.Series("converted", converted),
    )
    campaigns = pl.DataFrame(
        {
            "campaign_id": [campaign_id],
            "sent_at": [sent_local.replace(tzinfo=None)],
            "window_days": [window_days],
            "seed_items": [list(seed_items)],
        },
        schema_overrides={"sent_at": pl.Datetime("us")},
    )
    sim = SimulatedCampaigns(campaigns, members, tuple(str(i) for i in item_ids))
    lines = campaign_purchases(sim, cfg, population=audience, seed=seed + 1)
    start = sent_local.replace(tzinfo=None)
    window = lines.filter(
        (pl.col("ts") >= start) & (pl.col("ts") < start + timedelta(days=window_days))
    ).sort("ts", "order_id", "item_id", "quantity", "amount", "member_id", maintain_order=True)
    prefix = pl.lit(f"{campaign_id}-")
    return window.with_row_index("n").select(
        (prefix + pl.col("n").cast(pl.String).str.zfill(7)).alias("event_id"),
        "member_id",
        (prefix + pl.col("order_id")).alias("order_id"),
        "item_id",
        pl.col("ts").cast(pl.Datetime("us")),
        pl.col("quantity").cast(pl.Int64),
        pl.col("amount").cast(pl.Float64),
    )


def _popular_category(snapshot: Path) -> str:
    import polars as pl

    from feature_store.errors import DataError
    from feature_store.offline import open_snapshot

    top = (
        open_snapshot(snapshot)
        .scan("items")
        .filter(pl.col("category").is_not_null() & (pl.col("category") != ""))
        .group_by("category")
        .agg(pl.col("buyers").sum())
        .sort(["buyers", "category"], descending=[True, False])
        .first()
        .collect()
    )
    if top.height == 0:
        raise DataError(f"{snapshot}: the snapshot's items have no category to seed a campaign")
    return str(top.item(0, "category"))


def _send(
    store: CampaignStore, campaign_id: str, snapshot: Path, model_bundle: Path, timezone: str
) -> None:
    """Steps 1-3 of the module docstring."""
    from engine.audience import parse_definition
    from engine.bundle import read_bundle
    from engine.campaigns import HOLDOUT_SCHEME, split_holdout
    from feature_store.campaigns.outcomes import local_send_time
    from serving.audience_context import assemble, build_audience
    from serving.model_types import bundle_id

    context = assemble(
        read_bundle(model_bundle, mmap=True), snapshot, bundle_key=bundle_id(model_bundle)
    )
    category = _popular_category(snapshot)
    document = {
        "name": f"Demo: {category}",
        "seed": {"categories": [category]},
        "size": {"top_percent": DEMO_TOP_PERCENT},
        "holdout": {"percent": DEMO_HOLDOUT_PERCENT},
    }
    definition = parse_definition(document)
    sent_at = datetime.combine(context.as_of, time(), tzinfo=UTC)
    audience = build_audience(context, definition, None, None, now=sent_at)
    split = split_holdout(campaign_id, audience.member_ids, DEMO_HOLDOUT_PERCENT)
    is_control = np.isin(audience.member_ids, split.control)
    seed_ids = context.item_ids.ids_at(context.scorer.seed_items(definition.seed)).tolist()
    seed = int.from_bytes(hashlib.blake2b(campaign_id.encode(), digest_size=4).digest(), "big")
    events = simulated_purchases(
        population_from_snapshot(snapshot), split.treatment, split.control,
        campaign_id=campaign_id, sent_local=local_send_time(sent_at, timezone),
        seed_items=seed_ids, item_ids=context.item_ids.ids.tolist(),
        tiers=context.columns.tier_names, seed=seed,
    )  # fmt: skip
    stored = store.events.record(events.to_dicts())
    store.record_campaign(
        campaign_id=campaign_id, treatment=split.treatment, control=split.control,
        sent_at=sent_at, holdout_percent=DEMO_HOLDOUT_PERCENT, definition=document,
        audience_id=campaign_id, name=definition.name,
        seed={"categories": [category], "items": seed_ids}, holdout_scheme=HOLDOUT_SCHEME,
        model_version=context.bundle_id, treatment_scores=audience.scores[~is_control],
        control_scores=audience.scores[is_control],
    )  # fmt: skip
    typer.echo(
        f"campaign {campaign_id} ({definition.name}, {len(seed_ids)} seed items) sent at "
        f"{sent_at.isoformat()}: {split.counts['treatment']:,} contacted, "
        f"{split.counts['control']:,} held out; {stored:,} simulated purchase events recorded"
    )


def run_campaign_demo(dataset: Path, snapshot: Path, model_bundle: Path, out: Path) -> None:
    """Send the demo campaign, simulate its 30 days and print its report (module docstring).

    ``dataset`` is the demo's dataset folder (kept for the record; the outcomes come from the
    simulated purchase events, as they would from the service's events)."""
    import os

    from cli.campaign import print_report, store_url
    from feature_store.campaigns import CampaignNotFoundError, CampaignStore
    from feature_store.offline import open_snapshot
    from serving.campaign_report import campaign_report

    timezone = os.environ.get("RECSYS_DATA_TIMEZONE", "").strip() or "UTC"
    campaign_id = demo_campaign_id(open_snapshot(snapshot).as_of)
    store = CampaignStore.from_url(store_url(out, None))
    try:
        store.migrate()
        typer.echo(f"\ncampaign demo: {campaign_id} (campaign database {store.url})")
        try:
            store.get(campaign_id)
            typer.echo(f"campaign {campaign_id} already recorded: reporting it again")
        except CampaignNotFoundError:
            _send(store, campaign_id, snapshot, model_bundle, timezone)
        folder = out / "campaigns" / campaign_id
        report, source = campaign_report(
            store, campaign_id, DEMO_WINDOW_DAYS, data=None, data_timezone=timezone, out=folder
        )
        print_report(report, source, folder)
        typer.echo(f"dataset {dataset}; try: recsys campaign list --data-dir {out}")
    finally:
        store.dispose()
