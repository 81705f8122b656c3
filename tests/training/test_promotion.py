"""The promotion gate: ``champion`` moves only to a version that beats it on the same split.

One store per module holds these registered versions (metric ``ndcg@10/all``, split):

    v1 0.30 A     v2 0.25 A     v3 0.35 A     v4 0.40 B
    v5 0.50 (no split recorded)   v6 (no metric, split A)   v7 0.30 A (ties v1)

Each test first puts the alias where its scenario needs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.mlflow_helpers import fresh_tracker, migrated_store, write_blend_bundle
from training.tracking import Tracker, TrackingError
from training.tracking_store import (
    CHAMPION,
    MODEL_NAME,
    TAG_PROMOTED_OVER,
    TAG_PROMOTION_FORCED,
    TAG_PROMOTION_REASON,
)

VERSIONS: list[tuple[float | None, str | None, float]] = [
    # (ndcg@10/all, split, ndcg@10/new)
    (0.30, "A", 0.10),
    (0.25, "A", 0.20),
    (0.35, "A", 0.05),
    (0.40, "B", 0.10),
    (0.50, None, 0.10),
    (None, "A", 0.10),
    (0.30, "A", 0.10),
]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    folder = tmp_path_factory.mktemp("promotion")
    tracker = fresh_tracker(migrated_store(), folder / "store")
    bundle = write_blend_bundle(folder / "bundle")
    for number, (all_, split, new) in enumerate(VERSIONS, start=1):
        with tracker.start_run(f"candidate-{number}") as run:
            metrics = {"ndcg@10/new": new}
            if all_ is not None:
                metrics["ndcg@10/all"] = all_
            run.log_metrics(metrics)
            if split is not None:
                run.set_split_fingerprint(split)
            assert run.log_bundle(bundle).version == number
    return tracker


def crown(tracker: Tracker, version: int | None) -> None:
    """Put the alias on ``version`` (None: remove it), bypassing the gate (test setup)."""
    if version is None:
        tracker.client.delete_registered_model_alias(MODEL_NAME, CHAMPION)
    else:
        tracker.client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))


def champion_version(tracker: Tracker) -> int | None:
    champion = tracker.champion()
    return champion.version if champion is not None else None


def test_first_version_is_promoted_when_there_is_no_champion(tracker: Tracker) -> None:
    crown(tracker, None)
    result = tracker.promote(1)
    assert result.promoted
    assert result.previous_champion is None
    assert result.value == pytest.approx(0.30)
    assert "no champion yet" in result.reason
    assert champion_version(tracker) == 1
    tags = tracker.version(1).tags
    assert tags[TAG_PROMOTION_FORCED] == "false"
    assert tags[TAG_PROMOTED_OVER] == "none"


def test_a_worse_model_does_not_take_the_alias(tracker: Tracker) -> None:
    crown(tracker, 1)
    result = tracker.promote(2)
    assert not result.promoted
    assert result.value == pytest.approx(0.25)
    assert result.champion_value == pytest.approx(0.30)
    assert result.reason == (
        "version 2 ndcg_at_10_all=0.2500 does not beat the champion (version 1) "
        "ndcg_at_10_all=0.3000"
    )
    assert champion_version(tracker) == 1


def test_a_tie_does_not_take_the_alias(tracker: Tracker) -> None:
    crown(tracker, 1)
    assert not tracker.promote(7).promoted
    assert champion_version(tracker) == 1


def test_a_better_model_takes_the_alias_and_records_why(tracker: Tracker) -> None:
    crown(tracker, 1)
    result = tracker.promote(3)
    assert result.promoted
    assert result.previous_champion == 1
    assert result.reason == (
        "version 3 ndcg_at_10_all=0.3500 beats version 1 ndcg_at_10_all=0.3000 on split A"
    )
    assert champion_version(tracker) == 3
    tags = tracker.version(3).tags
    assert tags[TAG_PROMOTED_OVER] == "1"
    assert tags[TAG_PROMOTION_REASON] == result.reason


def test_the_gate_uses_the_metric_asked_for(tracker: Tracker) -> None:
    crown(tracker, 1)
    # v2 is worse on "all" but better on "new" (0.20 vs 0.10); raw or MLflow names both work
    assert tracker.promote(2, metric="ndcg@10/new").promoted
    crown(tracker, 1)
    assert tracker.promote(2, metric="ndcg_at_10_new").promoted
    assert champion_version(tracker) == 2


def test_a_model_evaluated_on_a_different_split_is_refused(tracker: Tracker) -> None:
    crown(tracker, 1)
    result = tracker.promote(4)
    assert not result.promoted
    assert "evaluated on split B, the champion (version 1) on A" in result.reason
    assert champion_version(tracker) == 1


def test_a_model_without_a_recorded_split_is_refused(tracker: Tracker) -> None:
    crown(tracker, 1)
    result = tracker.promote(5)
    assert not result.promoted
    assert "records no evaluation split" in result.reason
    assert champion_version(tracker) == 1


def test_a_model_without_the_metric_is_refused_even_without_champion(tracker: Tracker) -> None:
    crown(tracker, None)
    result = tracker.promote(6)
    assert not result.promoted
    assert result.reason == "version 6 has no metric 'ndcg_at_10_all'; evaluate it first"
    assert champion_version(tracker) is None


def test_force_moves_the_alias_and_is_recorded_on_version_and_run(tracker: Tracker) -> None:
    crown(tracker, 1)
    result = tracker.promote(2, force=True, reason="hotfix for the spring campaign")
    assert result.promoted
    assert result.forced
    assert result.reason.startswith("forced: hotfix for the spring campaign (gate: version 2")
    assert champion_version(tracker) == 2
    version = tracker.version(2)
    run_tags = tracker.client.get_run(version.run_id).data.tags
    for tags in (version.tags, run_tags):
        assert tags[TAG_PROMOTION_FORCED] == "true"
        assert tags[TAG_PROMOTED_OVER] == "1"
        assert tags[TAG_PROMOTION_REASON] == result.reason


def test_promoting_the_champion_again_changes_nothing(tracker: Tracker) -> None:
    crown(tracker, 3)
    result = tracker.promote(3)
    assert not result.promoted
    assert result.reason == "version 3 is already the champion"


def test_unknown_version_is_named(tracker: Tracker) -> None:
    with pytest.raises(TrackingError, match="member-recs version 99 not found"):
        tracker.promote(99)


def test_compare_lines_up_split_metrics_and_best(tracker: Tracker) -> None:
    rows = {row.name: row for row in tracker.compare([1, 3, 4])}
    assert rows["split"].values == {1: "A", 3: "A", 4: "B"}
    assert rows["ndcg_at_10_all"].values == {1: 0.30, 3: 0.35, 4: 0.40}
    assert rows["ndcg_at_10_all"].best == 4
    assert rows["ndcg_at_10_new"].best == 1  # 0.10 ties with v4: the first listed wins
    only = tracker.compare([1, 2], metrics=["ndcg@10/new"])
    assert [row.name for row in only] == ["split", "ndcg_at_10_new"]


def test_list_shows_every_version_newest_first(tracker: Tracker, tmp_path: Path) -> None:
    crown(tracker, 3)
    versions = tracker.list_versions()
    assert [v.version for v in versions] == [7, 6, 5, 4, 3, 2, 1]
    assert [v.version for v in versions if v.is_champion] == [3]
    assert versions[-1].run_name == "candidate-1"
