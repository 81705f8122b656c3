"""A campaign's outcome report: every KPI per group, the differences with 95% intervals and
p-values, the incremental revenue and conversions, and the minimum detectable effect.

Input is plain numpy: one :class:`GroupOutcomes` per group, one entry per member (the store
and the outcome extraction of feature_store.campaigns produce the arrays; this module does not
know where they come from). :func:`build_report` calls engine.campaigns.stats for each metric
(the methods are described there and repeated in each row's ``method``) and returns a
:class:`CampaignReport` (pydantic), ready for the API and for :func:`write_report`
(engine.campaigns.report_files): a table, a CSV and plots.

How to read it: ``difference`` is treatment minus control. When its interval excludes 0 the
campaign changed that metric (at the 5% level). When it includes 0, the report says how large
an uplift in conversion the campaign *could* have detected (``detectable_effect``): a small
campaign can miss a real effect, and "not significant" then means "too small to tell", not "no
effect".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from engine.campaigns import stats
from engine.campaigns.errors import CampaignInputError

MAX_WINDOW_DAYS: Final[int] = 3_650


@dataclass(frozen=True, slots=True)
class GroupOutcomes:
    """Per-member outcomes of one group within the attribution window (aligned arrays).

    ``conversion_day``: the day (0 = the first 24 hours after the send) of the member's first
    conversion (a seed item when the campaign has seed items, else any purchase), -1 for none.
    Optional arrays are ``None`` when unknown (no seed items, window shorter than the retention
    period, no tier data); their metrics are then left out of the report.
    """

    bought_any: npt.NDArray[np.bool_]
    revenue: npt.NDArray[np.float64]
    orders: npt.NDArray[np.int64]
    bought_seed: npt.NDArray[np.bool_] | None = None
    retained_30: npt.NDArray[np.bool_] | None = None
    retained_60: npt.NDArray[np.bool_] | None = None
    retained_90: npt.NDArray[np.bool_] | None = None
    tier_upgraded: npt.NDArray[np.bool_] | None = None
    conversion_day: npt.NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n = self.n
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and np.shape(value) != (n,):
                raise CampaignInputError(f.name, f"needs one value per member ({n})")
        if not np.isfinite(self.revenue).all():
            raise CampaignInputError("revenue", "must be finite")

    @property
    def n(self) -> int:
        return int(np.shape(self.bought_any)[0])

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> GroupOutcomes:
        """From a mapping with (some of) the field names; other keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: np.asarray(v) for k, v in columns.items() if k in names and v is not None})

    @classmethod
    def empty(cls) -> GroupOutcomes:
        return cls(np.zeros(0, np.bool_), np.zeros(0), np.zeros(0, np.int64))


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """What the report needs to know about the campaign."""

    campaign_id: str
    sent_at: datetime
    window_days: int
    name: str | None = None
    #: whole days of purchase data after the send (None: the whole window is observed)
    observed_days: int | None = None


def validate_window(window_days: object, field: str = "window_days") -> int:
    """The attribution window in whole days, 1..3650; :class:`CampaignInputError` otherwise
    (a window of 0 or fewer days would end at or before the send)."""
    if isinstance(window_days, bool) or not isinstance(window_days, int | np.integer):
        raise CampaignInputError(field, f"must be a whole number of days (got {window_days!r})")
    if not 1 <= int(window_days) <= MAX_WINDOW_DAYS:
        raise CampaignInputError(
            field,
            f"must be between 1 and {MAX_WINDOW_DAYS} days after the send (got {window_days})",
        )
    return int(window_days)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GroupValue(_Model):
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


class DifferenceOut(_Model):
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str
    flags: list[str]
    #: the interval excludes 0
    significant: bool


class MetricReport(_Model):
    name: str
    label: str
    kind: Literal["proportion", "mean", "ratio"]
    treatment: GroupValue
    control: GroupValue
    difference: DifferenceOut
    #: difference / control value (None when the control value is 0 or unknown)
    relative_lift: float | None


class TotalOut(_Model):
    """A per-member difference times the treatment group's size."""

    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    method: str


class DetectableOut(_Model):
    """Minimum detectable (absolute) uplift of the primary conversion metric."""

    metric: str
    absolute: float | None
    #: absolute / baseline_rate
    relative: float | None
    control_rate: float
    #: (control conversions + 1) / (control members + 2): the rate the power calculation uses
    baseline_rate: float
    alpha: float
    power: float
    flags: list[str]


class DailyPoint(_Model):
    """Cumulative conversion by the end of ``day`` (0-based) and the uplift with its interval."""

    day: int
    treatment_rate: float
    control_rate: float
    uplift: float
    ci_low: float
    ci_high: float


class CampaignReport(_Model):
    campaign_id: str
    name: str | None
    sent_at: datetime
    window_days: int
    window_end: datetime
    observed_days: int
    confidence: float
    counts: dict[str, int]
    primary_metric: str
    metrics: list[MetricReport]
    incremental_revenue: TotalOut
    incremental_conversions: TotalOut
    detectable_effect: DetectableOut
    daily: list[DailyPoint]
    flags: list[str]
    notes: list[str]

    def metric(self, name: str) -> MetricReport:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"the report has no metric {name!r}")


_PROPORTIONS: Final[tuple[tuple[str, str, str], ...]] = (
    ("conversion_seed", "bought_seed", "Conversion (bought a seed item)"),
    ("conversion_any", "bought_any", "Bought anything"),
    ("retention_30", "retained_30", "Retention: bought in days 0-30"),
    ("retention_60", "retained_60", "Retention: bought in days 30-60"),
    ("retention_90", "retained_90", "Retention: bought in days 60-90"),
    ("tier_upgrade", "tier_upgraded", "Tier upgrade"),
)


#: order of the metrics in a report
METRIC_ORDER: Final[tuple[str, ...]] = (
    "conversion_seed", "conversion_any", "revenue_per_member", "orders_per_member",
    "average_order_value", "retention_30", "retention_60", "retention_90", "tier_upgrade",
)  # fmt: skip


def _group(s: stats.GroupStat) -> GroupValue:
    return GroupValue(n=s.n, value=s.value, ci_low=s.ci_low, ci_high=s.ci_high)


def _difference(d: stats.Difference) -> DifferenceOut:
    significant = d.ci_low is not None and d.ci_high is not None and (d.ci_low > 0 or d.ci_high < 0)
    return DifferenceOut(
        estimate=d.estimate, ci_low=d.ci_low, ci_high=d.ci_high, p_value=d.p_value,
        method=d.method, flags=list(d.flags), significant=significant,
    )  # fmt: skip


def _row(name: str, label: str, kind: str, c: stats.Comparison) -> MetricReport:
    base = c.control.value
    est = c.difference.estimate
    relative = est / base if est is not None and base else None
    return MetricReport.model_validate(
        {
            "name": name, "label": label, "kind": kind, "treatment": _group(c.treatment),
            "control": _group(c.control), "difference": _difference(c.difference),
            "relative_lift": relative,
        }
    )  # fmt: skip


def _total(d: stats.Difference, n_t: int, what: str) -> TotalOut:
    scaled = d.scaled(float(n_t), f"{what} difference x treatment size ({n_t}); {d.method}")
    return TotalOut(
        estimate=scaled.estimate, ci_low=scaled.ci_low, ci_high=scaled.ci_high, method=scaled.method
    )


def _daily(t: GroupOutcomes, c: GroupOutcomes, days: int, confidence: float) -> list[DailyPoint]:
    if t.conversion_day is None or c.conversion_day is None or t.n == 0 or c.n == 0:
        return []

    def cumulative(day: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        counts = np.bincount(day[(day >= 0) & (day < days)], minlength=days)[:days]
        return np.cumsum(counts).astype(np.float64)

    xt, xc = cumulative(t.conversion_day), cumulative(c.conversion_day)
    low, high = stats.newcombe_interval(xt, t.n, xc, c.n, confidence)
    rt, rc = xt / t.n, xc / c.n
    return [
        DailyPoint(
            day=d,
            treatment_rate=float(rt[d]),
            control_rate=float(rc[d]),
            uplift=float(rt[d] - rc[d]),
            ci_low=float(low[d]),
            ci_high=float(high[d]),
        )
        for d in range(days)
    ]


def build_report(
    facts: CampaignFacts,
    treatment: GroupOutcomes,
    control: GroupOutcomes,
    *,
    confidence: float = 0.95,
    power: float = 0.8,
) -> CampaignReport:
    """Assemble the report (see the module docstring for how to read it)."""
    window = validate_window(facts.window_days)
    if facts.sent_at.tzinfo is None:
        raise CampaignInputError("sent_at", "must be timezone-aware (UTC)")
    observed = window if facts.observed_days is None else max(0, min(facts.observed_days, window))
    t, c = treatment, control
    found: dict[str, MetricReport] = {}
    diffs: dict[str, stats.Comparison] = {}
    for name, attr, label in _PROPORTIONS:
        xt, xc = getattr(t, attr), getattr(c, attr)
        if xt is None or xc is None:
            continue
        comp = stats.compare_proportions(int(xt.sum()), t.n, int(xc.sum()), c.n, confidence)
        diffs[name] = comp
        found[name] = _row(name, label, "proportion", comp)
    revenue = stats.compare_means(t.revenue, c.revenue, confidence)
    orders = stats.compare_means(t.orders, c.orders, confidence)
    aov = stats.compare_ratios(t.revenue, t.orders, c.revenue, c.orders, confidence)
    found["revenue_per_member"] = _row("revenue_per_member", "Revenue per member", "mean", revenue)
    found["orders_per_member"] = _row("orders_per_member", "Orders per member", "mean", orders)
    found["average_order_value"] = _row("average_order_value", "Average order value", "ratio", aov)
    rows = [found[name] for name in METRIC_ORDER if name in found]

    primary = "conversion_seed" if "conversion_seed" in diffs else "conversion_any"
    conv = diffs[primary]
    control_rate = conv.control.value if conv.control.value is not None else 0.0
    # the baseline for the power calculation adds one conversion and one non-conversion to the
    # control group (as Agresti-Caffo do): a small control group without conversions must not
    # suggest that a tiny effect would have been detected
    x_c = round(control_rate * c.n)
    baseline = (x_c + 1) / (c.n + 2)
    mde = stats.minimum_detectable_effect(t.n, c.n, baseline, 1.0 - confidence, power)
    flags = sorted({f for r in rows for f in r.difference.flags})
    if observed < window:
        flags.append("window_incomplete")
    notes = _notes(rows, primary, mde, control_rate, t.n, c.n, observed, window, confidence)
    return CampaignReport(
        campaign_id=facts.campaign_id,
        name=facts.name,
        sent_at=facts.sent_at,
        window_days=window,
        window_end=facts.sent_at + timedelta(days=window),
        observed_days=observed,
        confidence=confidence,
        counts={"treatment": t.n, "control": c.n},
        primary_metric=primary,
        metrics=rows,
        incremental_revenue=_total(revenue.difference, t.n, "revenue per member"),
        incremental_conversions=_total(conv.difference, t.n, "conversion rate"),
        detectable_effect=DetectableOut(
            metric=primary,
            absolute=mde.absolute,
            relative=mde.relative,
            control_rate=control_rate,
            baseline_rate=baseline,
            alpha=mde.alpha,
            power=mde.power,
            flags=list(mde.flags),
        ),
        daily=_daily(t, c, observed, confidence),
        flags=flags,
        notes=notes,
    )


def _notes(
    rows: list[MetricReport],
    primary: str,
    mde: stats.DetectableEffect,
    control_rate: float,
    n_t: int,
    n_c: int,
    observed: int,
    window: int,
    confidence: float,
) -> list[str]:
    """Plain-words reading of the report."""
    conf = f"{confidence:.0%}"
    notes: list[str] = []
    if n_c == 0:
        notes.append("There is no control group: the campaign's effect cannot be measured.")
        return notes
    if n_t == 0:
        notes.append("There is no treatment group: nobody was contacted.")
        return notes
    row = next(r for r in rows if r.name == primary)
    d = row.difference
    if d.significant and None not in (d.estimate, d.ci_low, d.ci_high):
        est, low, high = float(d.estimate or 0), float(d.ci_low or 0), float(d.ci_high or 0)
        p = "n/a" if d.p_value is None else f"{d.p_value:.3g}"
        direction = "raised" if est > 0 else "lowered"
        notes.append(
            f"The campaign {direction} {row.label.lower()} by {abs(est) * 100:.2f} points "
            f"({conf} interval {low * 100:+.2f} to {high * 100:+.2f}, p = {p})."
        )
    else:
        notes.append(f"No significant difference in {row.label.lower()}.")
    if mde.absolute is None:
        notes.append(
            f"With {n_t:,} treated and {n_c:,} control members no effect on conversion could be "
            "detected: the groups are too small."
        )
    else:
        notes.append(
            f"With {n_t:,} treated and {n_c:,} control members and a control conversion of "
            f"{control_rate * 100:.2f}%, the smallest uplift this campaign could detect "
            f"(power {mde.power:.0%}, two-sided {mde.alpha:.0%}) is {mde.absolute * 100:.2f} "
            "points" + ("; a smaller effect may exist undetected." if not d.significant else ".")
        )
    if observed < window:
        notes.append(f"Only {observed} of the {window} days of the window have data so far.")
    return notes
