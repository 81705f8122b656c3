"""The experiment report: champion vs challenger, per exposed member, with 95% intervals.

Input: :class:`~engine.experiments.outcomes.ExperimentOutcomes` (one entry per exposed member
of each variant) and :class:`ExperimentFacts` (the period, the attribution window, the
experiment). :func:`build_report` returns an :class:`ExperimentReport` (pydantic), the API's
answer and what engine.experiments.report_files writes as Markdown, CSV, JSON and a plot.

Every difference is **challenger minus champion** (engine.campaigns.stats with the challenger
as "treatment" and the champion as "control"), with a two-sided 95% interval and a p-value:

- rates (conversion, conversion to a recommended item): Wilson interval per variant, Newcombe's
  hybrid score interval of the difference, two-proportion z-test (Fisher's exact test for small
  counts);
- means (revenue and recommended revenue per exposed member): Welch's t interval and test;
- the share of revenue from recommended items (a ratio of sums over the variant's members):
  the **delta method** (no bootstrap: analytic, deterministic, and the same method as the
  campaign report's average order value).

The primary metric is **conversion to a recommended item** (:data:`PRIMARY_METRIC`): what a
recommender changes most directly, a rate (so it has far more power than revenue, whose
per-member distribution is heavy-tailed), and the metric ``recsys models promote
--require-online-win`` decides on (engine.experiments.gate). The report also states its minimum
detectable effect with 80% power, as the campaign report does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from engine.campaigns import stats
from engine.campaigns.report import DifferenceOut, GroupValue
from engine.experiments.assignment import CHALLENGER, CHAMPION, SCHEME
from engine.experiments.errors import ExperimentInputError
from engine.experiments.outcomes import ExperimentOutcomes, VariantOutcomes

PRIMARY_METRIC: Final[str] = "conversion_recommended"
#: stats' flag names speak of treatment and control; the report's of the variants
_FLAGS: Final[dict[str, str]] = {
    stats.EMPTY_TREATMENT: "no_challenger_members",
    stats.EMPTY_CONTROL: "no_champion_members",
    stats.NO_ORDERS: "no_revenue",
}
MIXED_MEMBERS: Final[str] = "mixed_members"


@dataclass(frozen=True, slots=True)
class ExperimentFacts:
    """What the report needs to know besides the outcomes."""

    experiment: str
    period_start: datetime
    period_end: datetime
    attribution_hours: float
    data_timezone: str
    challenger_uri: str | None = None
    challenger_percent: float | None = None


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VariantSummary(_Model):
    """One variant's totals in the period."""

    variant: Literal["champion", "challenger"]
    members: int
    lists_served: int
    bundle_ids: list[str]
    converted: int
    converted_recommended: int
    revenue: float
    recommended_revenue: float


class ExperimentMetric(_Model):
    name: str
    label: str
    kind: Literal["proportion", "mean", "ratio"]
    champion: GroupValue
    challenger: GroupValue
    #: challenger minus champion
    difference: DifferenceOut
    #: difference / champion value (None when the champion's value is 0 or unknown)
    relative_lift: float | None


class DetectableEffectOut(_Model):
    """Minimum detectable (absolute) uplift of the primary metric, power ``power``."""

    metric: str
    absolute: float | None
    relative: float | None
    champion_rate: float
    #: (champion conversions + 1) / (champion members + 2): the rate the power calculation uses
    baseline_rate: float
    alpha: float
    power: float
    flags: list[str]


class ExperimentReport(_Model):
    experiment: str
    assignment_scheme: str
    challenger_uri: str | None
    challenger_percent: float | None
    period_start: datetime
    period_end: datetime
    attribution_hours: float
    data_timezone: str
    confidence: float
    counts: dict[str, int]
    mixed_members: int
    variants: list[VariantSummary]
    primary_metric: str
    metrics: list[ExperimentMetric]
    detectable_effect: DetectableEffectOut
    flags: list[str]
    notes: list[str]

    def metric(self, name: str) -> ExperimentMetric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"the report has no metric {name!r}")

    def variant(self, name: str) -> VariantSummary:
        return next(v for v in self.variants if v.variant == name)


def _group(s: stats.GroupStat) -> GroupValue:
    return GroupValue(n=s.n, value=s.value, ci_low=s.ci_low, ci_high=s.ci_high)


def _row(name: str, label: str, kind: str, c: stats.Comparison) -> ExperimentMetric:
    d = c.difference
    significant = d.ci_low is not None and d.ci_high is not None and (d.ci_low > 0 or d.ci_high < 0)
    base = c.control.value
    relative = d.estimate / base if d.estimate is not None and base else None
    difference = DifferenceOut(
        estimate=d.estimate, ci_low=d.ci_low, ci_high=d.ci_high, p_value=d.p_value,
        method=d.method, flags=[_FLAGS.get(f, f) for f in d.flags], significant=significant,
    )  # fmt: skip
    return ExperimentMetric.model_validate(
        {
            "name": name, "label": label, "kind": kind, "champion": _group(c.control),
            "challenger": _group(c.treatment), "difference": difference,
            "relative_lift": relative,
        }
    )  # fmt: skip


def _summary(name: Literal["champion", "challenger"], v: VariantOutcomes) -> VariantSummary:
    return VariantSummary(
        variant=name,
        members=v.n,
        lists_served=v.lists_served,
        bundle_ids=list(v.bundle_ids),
        converted=int(v.converted.sum()),
        converted_recommended=int(v.converted_recommended.sum()),
        revenue=float(v.revenue.sum()),
        recommended_revenue=float(v.recommended_revenue.sum()),
    )


def compare(
    champion: VariantOutcomes, challenger: VariantOutcomes, confidence: float = 0.95
) -> list[ExperimentMetric]:
    """Every metric of both variants and their difference, primary metric first."""
    t, c = challenger, champion
    rows = [
        _row(
            PRIMARY_METRIC, "Conversion to a recommended item", "proportion",
            stats.compare_proportions(
                int(t.converted_recommended.sum()), t.n, int(c.converted_recommended.sum()), c.n,
                confidence,
            ),
        ),
        _row(
            "conversion", "Conversion (any purchase after the first exposure)", "proportion",
            stats.compare_proportions(
                int(t.converted.sum()), t.n, int(c.converted.sum()), c.n, confidence
            ),
        ),
        _row(
            "revenue_per_member", "Revenue per exposed member", "mean",
            stats.compare_means(t.revenue, c.revenue, confidence),
        ),
        _row(
            "recommended_revenue_per_member", "Revenue from recommended items per member", "mean",
            stats.compare_means(t.recommended_revenue, c.recommended_revenue, confidence),
        ),
        _row(
            "recommended_revenue_share", "Share of revenue from recommended items", "ratio",
            stats.compare_ratios(
                t.recommended_revenue, t.revenue, c.recommended_revenue, c.revenue, confidence
            ),
        ),
    ]  # fmt: skip
    return rows


def build_report(
    facts: ExperimentFacts,
    outcomes: ExperimentOutcomes,
    *,
    confidence: float = 0.95,
    power: float = 0.8,
) -> ExperimentReport:
    """Assemble the report (module docstring)."""
    if facts.period_start.tzinfo is None or facts.period_end.tzinfo is None:
        raise ExperimentInputError("period", "must be timezone-aware (UTC)")
    if facts.period_end <= facts.period_start:
        raise ExperimentInputError("period", "must end after it starts")
    champion, challenger = outcomes.champion, outcomes.challenger
    metrics = compare(champion, challenger, confidence)
    primary = metrics[0]
    champion_rate = primary.champion.value if primary.champion.value is not None else 0.0
    x_c = int(champion.converted_recommended.sum())
    # as in the campaign report: one conversion and one non-conversion added to the baseline,
    # so that a small champion group without conversions does not claim a tiny effect visible
    baseline = (x_c + 1) / (champion.n + 2)
    mde = stats.minimum_detectable_effect(
        challenger.n, champion.n, baseline, 1.0 - confidence, power
    )
    flags = sorted({f for m in metrics for f in m.difference.flags})
    if outcomes.mixed_members:
        flags.append(MIXED_MEMBERS)
    return ExperimentReport(
        experiment=facts.experiment,
        assignment_scheme=SCHEME,
        challenger_uri=facts.challenger_uri,
        challenger_percent=facts.challenger_percent,
        period_start=facts.period_start,
        period_end=facts.period_end,
        attribution_hours=facts.attribution_hours,
        data_timezone=facts.data_timezone,
        confidence=confidence,
        counts={CHAMPION: champion.n, CHALLENGER: challenger.n},
        mixed_members=outcomes.mixed_members,
        variants=[_summary("champion", champion), _summary("challenger", challenger)],
        primary_metric=PRIMARY_METRIC,
        metrics=metrics,
        detectable_effect=DetectableEffectOut(
            metric=PRIMARY_METRIC,
            absolute=mde.absolute,
            relative=mde.relative,
            champion_rate=champion_rate,
            baseline_rate=baseline,
            alpha=mde.alpha,
            power=mde.power,
            flags=[_FLAGS.get(f, f) for f in mde.flags],
        ),
        flags=flags,
        notes=_notes(facts, outcomes, primary, mde, champion_rate, confidence),
    )


def _notes(
    facts: ExperimentFacts,
    outcomes: ExperimentOutcomes,
    primary: ExperimentMetric,
    mde: stats.DetectableEffect,
    champion_rate: float,
    confidence: float,
) -> list[str]:
    """Plain-words reading of the report."""
    n_c, n_t = outcomes.champion.n, outcomes.challenger.n
    notes: list[str] = []
    if facts.challenger_uri is None and n_t == 0:
        notes.append("No challenger is configured (RECSYS_CHALLENGER_URI): nothing to compare.")
    if n_t == 0 or n_c == 0:
        which = "challenger" if n_t == 0 else "champion"
        notes.append(f"No member was served the {which} in the period: no comparison is possible.")
        return notes
    d = primary.difference
    conf = f"{confidence:.0%}"
    if d.significant and d.estimate is not None and d.ci_low is not None and d.ci_high is not None:
        p = "n/a" if d.p_value is None else f"{d.p_value:.3g}"
        verb = "raised" if d.estimate > 0 else "lowered"
        notes.append(
            f"The challenger {verb} conversion to a recommended item by "
            f"{abs(d.estimate) * 100:.2f} points ({conf} interval {d.ci_low * 100:+.2f} to "
            f"{d.ci_high * 100:+.2f}, p = {p})."
        )
    else:
        notes.append("No significant difference in conversion to a recommended item.")
    if mde.absolute is None:
        notes.append(
            f"With {n_t:,} challenger and {n_c:,} champion members no effect could be detected: "
            "the variants are too small."
        )
    else:
        notes.append(
            f"With {n_t:,} challenger and {n_c:,} champion members and a champion rate of "
            f"{champion_rate * 100:.2f}%, the smallest uplift this experiment could detect "
            f"(power {mde.power:.0%}, two-sided {mde.alpha:.0%}) is {mde.absolute * 100:.2f} "
            "points" + ("; a smaller effect may exist undetected." if not d.significant else ".")
        )
    if outcomes.mixed_members:
        notes.append(
            f"{outcomes.mixed_members:,} member(s) were served both variants in the period (the "
            "challenger share or the experiment name changed) and are left out of both."
        )
    return notes


__all__ = [
    "PRIMARY_METRIC",
    "DetectableEffectOut",
    "ExperimentFacts",
    "ExperimentMetric",
    "ExperimentReport",
    "VariantSummary",
    "build_report",
    "compare",
]
