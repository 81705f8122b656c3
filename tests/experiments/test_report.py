"""The experiment report's statistics against values computed by hand from their formulas
(engine/experiments/report.py), the member outcomes from exposures and purchases
(engine/experiments/outcomes.py), the report files and the promotion gate's rules.

Members (challenger minus champion throughout)::

    champion    n = 10  converted to a recommended item 2, converted 4
                revenue              10 0 0 5 20 0 0 0 3 0    (sum 38)
                recommended revenue  10 0 0 0 20 0 0 0 0 0    (sum 30)
    challenger  n = 8   converted to a recommended item 5, converted 5
                revenue              12 8 0 30 4 0 6 0         (sum 60)
                recommended revenue  12 8 0 15 4 0 6 0         (sum 45)
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from engine.experiments.gate import online_verdict
from engine.experiments.outcomes import ExperimentOutcomes, VariantOutcomes, member_outcomes
from engine.experiments.report import ExperimentFacts, ExperimentReport, build_report
from engine.experiments.report_files import FILES, write_report

Z = 1.959963984540054
START = datetime(2024, 6, 3, tzinfo=UTC)
END = datetime(2024, 6, 10, tzinfo=UTC)
FACTS = ExperimentFacts("exp-1", START, END, 24.0, "UTC", "models:/member-recs@challenger", 50.0)


def variant(revenue: list[float], recommended: list[float], lists: int = 0) -> VariantOutcomes:
    r, a = np.asarray(revenue, dtype=np.float64), np.asarray(recommended, dtype=np.float64)
    return VariantOutcomes(
        converted=r > 0, converted_recommended=a > 0, revenue=r, recommended_revenue=a,
        lists_served=lists, bundle_ids=("b1",),
    )  # fmt: skip


CHAMPION = variant([10, 0, 0, 5, 20, 0, 0, 0, 3, 0], [10, 0, 0, 0, 20, 0, 0, 0, 0, 0], 30)
CHALLENGER = variant([12, 8, 0, 30, 4, 0, 6, 0], [12, 8, 0, 15, 4, 0, 6, 0], 20)


@pytest.fixture(scope="module")
def report() -> ExperimentReport:
    return build_report(FACTS, ExperimentOutcomes(CHAMPION, CHALLENGER))


def wilson(x: int, n: int) -> tuple[float, float]:
    p = x / n
    denom = 1 + Z * Z / n
    center = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return center - half, center + half


def fisher_two_sided(x_t: int, n_t: int, x_c: int, n_c: int) -> float:
    """Sum of the hypergeometric probabilities of every table as or less likely."""
    total, ones = n_t + n_c, x_t + x_c

    def prob(k: int) -> float:
        return math.comb(n_t, k) * math.comb(n_c, ones - k) / math.comb(total, ones)

    observed = prob(x_t)
    ks = range(max(0, ones - n_c), min(n_t, ones) + 1)
    return sum(prob(k) for k in ks if prob(k) <= observed * (1 + 1e-7))


def test_conversion_to_a_recommended_item_newcombe(report: ExperimentReport) -> None:
    m = report.metric("conversion_recommended")
    assert report.primary_metric == "conversion_recommended"
    assert m.champion.value == pytest.approx(0.2)
    assert m.challenger.value == pytest.approx(5 / 8)
    lc, uc = wilson(2, 10)
    lt, ut = wilson(5, 8)
    assert (m.champion.ci_low, m.champion.ci_high) == pytest.approx((lc, uc))
    assert (m.challenger.ci_low, m.challenger.ci_high) == pytest.approx((lt, ut))
    d = 5 / 8 - 0.2
    low = d - math.sqrt((5 / 8 - lt) ** 2 + (uc - 0.2) ** 2)
    high = d + math.sqrt((ut - 5 / 8) ** 2 + (0.2 - lc) ** 2)
    assert m.difference.estimate == pytest.approx(d)
    assert (m.difference.ci_low, m.difference.ci_high) == pytest.approx((low, high))
    # 7 conversions in 18: an expected count below 5, so Fisher's exact test
    assert "Fisher" in m.difference.method
    assert m.difference.p_value == pytest.approx(fisher_two_sided(5, 8, 2, 10))
    assert m.difference.significant is (low > 0)
    assert m.relative_lift == pytest.approx(d / 0.2)


def test_revenue_per_member_welch(report: ExperimentReport) -> None:
    m = report.metric("revenue_per_member")
    yt, yc = CHALLENGER.revenue, CHAMPION.revenue
    vt, vc = yt.var(ddof=1) / 8, yc.var(ddof=1) / 10
    df = (vt + vc) ** 2 / (vt**2 / 7 + vc**2 / 9)
    d = 60 / 8 - 38 / 10
    half = sps.t.ppf(0.975, df) * math.sqrt(vt + vc)
    assert m.champion.value == pytest.approx(3.8)
    assert m.challenger.value == pytest.approx(7.5)
    assert m.difference.estimate == pytest.approx(d)
    assert (m.difference.ci_low, m.difference.ci_high) == pytest.approx((d - half, d + half))
    assert m.difference.p_value == pytest.approx(2 * sps.t.sf(d / math.sqrt(vt + vc), df))
    assert "Welch" in m.difference.method


def _delta(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    r = y.sum() / x.sum()
    cov = np.cov(y, x, ddof=1)
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (len(y) * x.mean() ** 2)
    return float(r), float(var)


def test_revenue_share_delta_method(report: ExperimentReport) -> None:
    m = report.metric("recommended_revenue_share")
    rt, var_t = _delta(CHALLENGER.recommended_revenue, CHALLENGER.revenue)
    rc, var_c = _delta(CHAMPION.recommended_revenue, CHAMPION.revenue)
    assert rt == pytest.approx(45 / 60)
    assert rc == pytest.approx(30 / 38)
    assert m.challenger.value == pytest.approx(rt)
    assert m.champion.value == pytest.approx(rc)
    se = math.sqrt(var_t + var_c)
    assert m.difference.estimate == pytest.approx(rt - rc)
    assert m.difference.ci_low == pytest.approx(rt - rc - Z * se)
    assert m.difference.ci_high == pytest.approx(rt - rc + Z * se)
    assert m.difference.p_value == pytest.approx(2 * sps.norm.sf(abs(rt - rc) / se))
    assert "delta method" in m.difference.method


def test_counts_totals_and_minimum_detectable_effect(report: ExperimentReport) -> None:
    assert report.counts == {"champion": 10, "challenger": 8}
    champion, challenger = report.variant("champion"), report.variant("challenger")
    assert (champion.members, champion.converted, champion.converted_recommended) == (10, 4, 2)
    assert (challenger.members, challenger.converted, challenger.converted_recommended) == (8, 5, 5)
    assert (champion.revenue, champion.recommended_revenue) == (38.0, 30.0)
    assert (challenger.lists_served, challenger.bundle_ids) == (20, ["b1"])
    mde = report.detectable_effect
    baseline = 3 / 12  # (2 + 1) / (10 + 2)
    assert mde.baseline_rate == pytest.approx(baseline)
    k = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)

    def gap(d: float) -> float:
        pt = baseline + d
        return float(d - k * math.sqrt(baseline * (1 - baseline) / 10 + pt * (1 - pt) / 8))

    low, high = 1e-9, 1 - baseline
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if gap(mid) < 0 else (low, mid)
    assert mde.absolute == pytest.approx(low, abs=1e-7)
    assert report.period_start == START
    assert report.challenger_percent == 50.0


def test_empty_variant_gives_no_comparison(tmp_path: Path) -> None:
    report = build_report(FACTS, ExperimentOutcomes(CHAMPION, VariantOutcomes.empty()))
    write_report(report, tmp_path)  # no warning (the tests turn warnings into errors)
    empty = ExperimentOutcomes(VariantOutcomes.empty(), VariantOutcomes.empty())
    write_report(build_report(FACTS, empty), tmp_path)
    primary = report.metric("conversion_recommended").difference
    assert primary.estimate is None
    assert "no_challenger_members" in primary.flags
    assert "no_challenger_members" in report.flags
    assert any("No member was served the challenger" in n for n in report.notes)
    json.loads(report.model_dump_json())  # no NaN anywhere


def test_files(report: ExperimentReport, tmp_path: Path) -> None:
    paths = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == sorted(FILES)
    assert all(p.stat().st_size > 0 for p in paths.values())
    assert ExperimentReport.model_validate_json(paths["report.json"].read_text()) == report
    csv = pl.read_csv(paths["report.csv"])
    assert csv["metric"].to_list()[0] == "conversion_recommended"
    assert (
        "| Conversion to a recommended item | 20.00% | 62.50% |" in paths["report.md"].read_text()
    )


# -- member outcomes from exposures and purchases -------------------------------------------


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def test_member_outcomes_from_frames() -> None:
    """Members are the unit; lines before a member's first exposure do not count; a member
    served both variants is left out; lists of no experiment are ignored."""
    t0 = START + timedelta(days=1)
    rows = [
        ("r1", "c1", "champion", ["a"], t0),
        ("r2", "c1", "champion", ["a"], t0 + timedelta(hours=1)),
        ("r3", "c2", "champion", ["b"], t0),
        ("r4", "h1", "challenger", ["a"], t0),
        ("r5", "mix", "champion", ["a"], t0),
        ("r6", "mix", "challenger", ["a"], t0 + timedelta(hours=2)),
        ("r7", "none", "", ["a"], t0),
        ("r8", "late", "challenger", ["a"], END + timedelta(hours=1)),
    ]
    exposures = pl.DataFrame(
        {
            "recommendation_id": [r[0] for r in rows],
            "member_id": [r[1] for r in rows],
            "variant": [r[2] for r in rows],
            "bundle_id": ["b"] * len(rows),
            "items": [r[3] for r in rows],
            "served_ms": [ms(r[4]) for r in rows],
        }
    )
    naive = t0.replace(tzinfo=None)
    lines = pl.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e4", "e5", "e6"],
            "member_id": ["c1", "c1", "c2", "h1", "mix", "none"],
            "order_id": ["o1", "o2", "o3", "o4", "o5", "o6"],
            "item_id": ["a", "z", "z", "a", "a", "a"],
            "ts": [
                naive + timedelta(hours=2),  # c1: recommended
                naive - timedelta(hours=1),  # c1: before the first exposure, not counted
                naive + timedelta(hours=3),  # c2: bought something else
                naive + timedelta(days=2),  # h1: outside the 24 h window
                naive + timedelta(hours=3),
                naive + timedelta(hours=3),
            ],
            "quantity": [1, 1, 1, 1, 1, 1],
            "amount": [10.0, 99.0, 4.0, 6.0, 1.0, 1.0],
        }
    )
    out = member_outcomes(
        exposures, lines, start_ms=ms(START), end_ms=ms(END), data_timezone="UTC", window_hours=24
    )
    assert out.mixed_members == 1
    assert out.champion.n == 2  # c1, c2 (sorted by member id)
    assert out.champion.revenue.tolist() == [10.0, 4.0]
    assert out.champion.converted_recommended.tolist() == [True, False]
    assert out.champion.converted.tolist() == [True, True]
    assert out.champion.lists_served == 3
    assert out.challenger.n == 1  # h1; "late" was served after the period
    assert out.challenger.converted.tolist() == [True]
    assert out.challenger.converted_recommended.tolist() == [False]


# -- the promotion gate ------------------------------------------------------------------------


def _world(x_t: int, n_t: int, x_c: int, n_c: int, revenue_t: float = 1.0) -> ExperimentReport:
    def arm(x: int, n: int, money: float) -> VariantOutcomes:
        rec = np.zeros(n)
        rec[:x] = money
        return variant(list(rec), list(rec))

    return build_report(FACTS, ExperimentOutcomes(arm(x_c, n_c, 1.0), arm(x_t, n_t, revenue_t)))


def test_gate_rules() -> None:
    win = online_verdict(_world(300, 1000, 200, 1000), min_members=1000)
    assert win.passed, win.reason
    assert "online win" in win.reason
    tie = online_verdict(_world(205, 1000, 200, 1000), min_members=1000)
    assert not tie.passed
    assert "not significantly better" in tie.reason
    few = online_verdict(_world(300, 1000, 200, 999), min_members=1000)
    assert not few.passed
    assert "too few exposed members" in few.reason
    other = online_verdict(_world(300, 1000, 200, 1000), min_members=10, challenger_bundle="b9")
    assert not other.passed
    assert "not by this version's bundle b9" in other.reason
    assert online_verdict(_world(300, 1000, 200, 1000), challenger_bundle="b1").passed
    # more recommended conversions, but much less revenue per member: refused
    loss = online_verdict(_world(300, 1000, 200, 1000, revenue_t=0.01), min_members=1000)
    assert not loss.passed
    assert "lowered revenue_per_member" in loss.reason
