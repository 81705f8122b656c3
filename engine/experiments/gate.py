"""The online promotion gate: may the challenger replace the champion, on the experiment's
evidence? (``recsys models promote VERSION --require-online-win``; docs/experiments.md).

The challenger **wins** when, in the current experiment report:

1. each variant has at least ``min_members`` exposed members (default
   :data:`DEFAULT_MIN_MEMBERS`): a handful of members can produce a "significant" interval by
   luck of the approximation, and too small a test cannot see a realistic effect anyway;
2. the **primary metric**, conversion to a recommended item, is significantly higher for the
   challenger: the lower end of the 95% interval of (challenger - champion) is above 0;
3. as a guardrail, revenue per exposed member is **not** significantly lower (the upper end of
   its interval is not below 0): a model that sells more recommended items by cannibalising
   the rest of the basket does not win;
4. when the version's bundle id is given, the challenger's lists in the period were served by
   that bundle: the evidence must be about the model being promoted.

:func:`online_verdict` returns the decision and a one-line reason either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from engine.experiments.assignment import CHALLENGER, CHAMPION
from engine.experiments.report import PRIMARY_METRIC, ExperimentReport

#: Exposed members each variant needs before the gate considers the result.
DEFAULT_MIN_MEMBERS: Final[int] = 1_000
GUARDRAIL_METRIC: Final[str] = "revenue_per_member"


@dataclass(frozen=True, slots=True)
class OnlineVerdict:
    """Whether the challenger won the experiment, and why (or why not)."""

    passed: bool
    reason: str


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.2f}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.4g}"


def online_verdict(
    report: ExperimentReport,
    *,
    min_members: int = DEFAULT_MIN_MEMBERS,
    challenger_bundle: str | None = None,
) -> OnlineVerdict:
    """The gate of the module docstring on ``report``."""
    n_champion, n_challenger = report.counts[CHAMPION], report.counts[CHALLENGER]
    period = f"{report.period_start:%Y-%m-%d %H:%M} to {report.period_end:%Y-%m-%d %H:%M} UTC"
    if min(n_champion, n_challenger) < min_members:
        return OnlineVerdict(
            False,
            f"too few exposed members in experiment {report.experiment!r} ({period}): champion "
            f"{n_champion:,}, challenger {n_challenger:,}; each variant needs at least "
            f"{min_members:,} (--min-members)",
        )
    served = report.variant(CHALLENGER).bundle_ids
    if challenger_bundle is not None and challenger_bundle not in served:
        return OnlineVerdict(
            False,
            f"the challenger of experiment {report.experiment!r} was served by bundle(s) "
            f"{', '.join(served) or 'none'} in {period}, not by this version's bundle "
            f"{challenger_bundle}: the experiment says nothing about this version",
        )
    primary = report.metric(PRIMARY_METRIC).difference
    conf = f"{report.confidence:.0%}"
    summary = (
        f"{PRIMARY_METRIC} challenger - champion {_points(primary.estimate)} pts "
        f"({conf} interval {_points(primary.ci_low)} .. {_points(primary.ci_high)}, "
        f"p = {'n/a' if primary.p_value is None else f'{primary.p_value:.3g}'}; "
        f"{n_challenger:,} vs {n_champion:,} members, {period})"
    )
    if primary.ci_low is None or primary.ci_low <= 0:
        return OnlineVerdict(False, f"the challenger is not significantly better: {summary}")
    guard = report.metric(GUARDRAIL_METRIC).difference
    if guard.ci_high is not None and guard.ci_high < 0:
        return OnlineVerdict(
            False,
            f"the challenger raised {PRIMARY_METRIC} ({summary}) but lowered "
            f"{GUARDRAIL_METRIC} significantly ({_number(guard.estimate)}, {conf} interval "
            f"{_number(guard.ci_low)} .. {_number(guard.ci_high)})",
        )
    return OnlineVerdict(True, f"online win in experiment {report.experiment!r}: {summary}")


__all__ = ["DEFAULT_MIN_MEMBERS", "GUARDRAIL_METRIC", "OnlineVerdict", "online_verdict"]
