"""The assembled report: metrics in order, totals, MDE and notes, files, and edge cases."""

from __future__ import annotations

import csv
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from engine.campaigns import (
    CampaignFacts,
    CampaignInputError,
    GroupOutcomes,
    build_report,
    write_report,
)
from engine.campaigns.report import validate_window

SENT = datetime(2025, 3, 1, 10, tzinfo=UTC)


def _group(n: int, conversions: int, seed: int, days: int = 30) -> GroupOutcomes:
    rng = np.random.default_rng(seed)
    converted = np.zeros(n, dtype=bool)
    converted[:conversions] = True
    orders = np.where(converted, 1 + rng.poisson(0.5, n), rng.poisson(0.2, n)).astype(np.int64)
    return GroupOutcomes(
        bought_any=orders > 0,
        revenue=orders * rng.uniform(5, 15, n),
        orders=orders,
        bought_seed=converted,
        retained_30=orders > 0,
        conversion_day=np.where(converted, rng.integers(0, days, n), -1).astype(np.int64),
    )


def test_report_rows_totals_and_notes() -> None:
    t, c = _group(9_000, 900, 1), _group(1_000, 70, 2)
    report = build_report(CampaignFacts("c1", SENT, 30, name="Spring"), t, c)
    names = [m.name for m in report.metrics]
    assert names == [
        "conversion_seed", "conversion_any", "revenue_per_member", "orders_per_member",
        "average_order_value", "retention_30",
    ]  # fmt: skip
    conv = report.metric("conversion_seed")
    assert conv.treatment.value == pytest.approx(0.1)
    assert conv.control.value == pytest.approx(0.07)
    assert conv.difference.significant
    assert conv.difference.estimate == pytest.approx(0.03)
    inc = report.incremental_conversions
    assert inc.estimate == pytest.approx(0.03 * 9_000)
    assert inc.ci_low == pytest.approx(conv.difference.ci_low * 9_000)  # type: ignore[operator]
    rev = report.metric("revenue_per_member").difference
    assert report.incremental_revenue.estimate == pytest.approx(rev.estimate * 9_000)  # type: ignore[operator]
    assert report.detectable_effect.absolute is not None
    assert report.primary_metric == "conversion_seed"
    assert len(report.daily) == 30
    assert report.daily[-1].treatment_rate == pytest.approx(0.1)
    assert report.notes[0].startswith("The campaign raised conversion")
    assert report.window_end == datetime(2025, 3, 31, 10, tzinfo=UTC)


def test_small_campaign_states_its_detectable_effect() -> None:
    report = build_report(CampaignFacts("tiny", SENT, 30), _group(90, 5, 1), _group(10, 0, 2))
    assert not report.metric("conversion_seed").difference.significant
    assert report.detectable_effect.absolute is not None
    assert report.detectable_effect.absolute > 0.1
    assert any("smallest uplift this campaign could detect" in n for n in report.notes)
    assert any("may exist undetected" in n for n in report.notes)


def _no_nan(value: object) -> None:
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        for v in value.values():
            _no_nan(v)
    elif isinstance(value, list):
        for v in value:
            _no_nan(v)


@pytest.mark.parametrize(
    ("treatment", "control", "flag"),
    [
        (_group(100, 10, 1), GroupOutcomes.empty(), "empty_control"),
        (_group(100, 0, 1), _group(50, 0, 2), "no_conversions"),
        (_group(100, 100, 1), _group(50, 50, 2), "all_converted"),
    ],
)
def test_edge_cases_are_flagged_without_nan(
    treatment: GroupOutcomes, control: GroupOutcomes, flag: str
) -> None:
    report = build_report(CampaignFacts("edge", SENT, 30), treatment, control)
    assert flag in report.flags
    _no_nan(json.loads(report.model_dump_json()))
    if flag == "empty_control":
        assert report.notes == [
            "There is no control group: the campaign's effect cannot be measured."
        ]
        assert report.daily == []
        assert report.incremental_revenue.estimate is None


def test_partial_window_is_flagged() -> None:
    report = build_report(
        CampaignFacts("p", SENT, 30, observed_days=12), _group(500, 50, 1), _group(500, 30, 2)
    )
    assert "window_incomplete" in report.flags
    assert report.observed_days == 12
    assert len(report.daily) == 12


@pytest.mark.parametrize("bad", [0, -1, 3_651, 1.5, "30", True])
def test_window_validation_names_the_field(bad: object) -> None:
    with pytest.raises(CampaignInputError) as info:
        validate_window(bad)
    assert info.value.field == "window_days"


def test_group_outcomes_validate_lengths() -> None:
    with pytest.raises(CampaignInputError, match="orders"):
        GroupOutcomes(np.zeros(3, bool), np.zeros(3), np.zeros(2, np.int64))
    with pytest.raises(CampaignInputError, match="sent_at"):
        build_report(
            CampaignFacts("x", datetime(2025, 1, 1), 30), _group(10, 1, 1), _group(10, 1, 2)
        )


def test_write_report_files(tmp_path: Path) -> None:
    report = build_report(
        CampaignFacts("c1", SENT, 30, name="Spring"), _group(900, 90, 1), _group(100, 5, 2)
    )
    paths = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == sorted(
        ["report.md", "report.csv", "report.json", "conversion_by_day.png", "uplift.png"]
    )
    for path in paths.values():
        assert path.stat().st_size > 0
    assert paths["uplift.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["report.md"].read_text()
    assert "| Conversion (bought a seed item) |" in markdown
    assert "Newcombe" in markdown
    rows = list(csv.DictReader(paths["report.csv"].read_text().splitlines()))
    assert [r["metric"] for r in rows][-2:] == ["incremental_revenue", "incremental_conversions"]
    assert float(rows[0]["treatment"]) == pytest.approx(0.1)
    assert json.loads(paths["report.json"].read_text())["campaign_id"] == "c1"
