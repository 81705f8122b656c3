"""The registered model as MLflow pyfunc: load ``models:/member-recs@champion``, predict ids.

The bundle (tests.training.mlflow_helpers.write_blend_bundle) has a known answer: member
``m<u>`` scores 1.0 on item ``i<u>`` and 0.0 on every other item (ties in item order); unknown
members get the popular fallback by trending (i1 0.5, i3 0.4, i2 0.2, i0 0.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from tests.training.mlflow_helpers import fresh_tracker, migrated_store, write_blend_bundle
from training.pyfunc_model import OUTPUT_COLUMNS
from training.tracking import Tracker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    folder = tmp_path_factory.mktemp("pyfunc")
    tracker = fresh_tracker(migrated_store(), folder / "store")
    with tracker.start_run("known-answer") as run:
        run.log_metrics({"ndcg@10/all": 0.5})
        version = run.log_bundle(write_blend_bundle(folder / "bundle")).version
    assert tracker.promote(version).promoted
    return tracker


@pytest.fixture(scope="module")
def model(store: Tracker) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)
        yield mlflow.pyfunc.load_model("models:/member-recs@champion")


def rows(frame: pd.DataFrame) -> list[tuple[str, int, str, float, str]]:
    assert list(frame.columns) == list(OUTPUT_COLUMNS)
    return [
        (str(m), int(r), str(i), round(float(s), 4), str(src))
        for m, r, i, s, src in frame.itertuples(index=False)
    ]


def test_predict_on_member_ids_returns_ranked_recommendations(model: Any) -> None:
    frame = model.predict(pd.DataFrame({"member_id": ["m2", "m0"]}), params={"k": 2})
    assert rows(frame) == [
        ("m2", 1, "i2", 1.0, "model"),
        ("m2", 2, "i0", 0.0, "model"),
        ("m0", 1, "i0", 1.0, "model"),
        ("m0", 2, "i1", 0.0, "model"),
    ]


def test_unknown_members_get_the_popular_fallback(model: Any) -> None:
    frame = model.predict(pd.DataFrame({"member_id": ["stranger"]}), params={"k": 3})
    assert rows(frame) == [
        ("stranger", 1, "i1", 0.5, "popular"),
        ("stranger", 2, "i3", 0.4, "popular"),
        ("stranger", 3, "i2", 0.2, "popular"),
    ]


def test_default_k_and_exclude_purchased(model: Any) -> None:
    everything = model.predict(pd.DataFrame({"member_id": ["m0"]}))
    assert list(everything["item_id"]) == ["i0", "i1", "i2", "i3", "i4"]  # 5 items < k=10
    new_only = model.predict(
        pd.DataFrame({"member_id": ["m0"]}), params={"k": 10, "exclude_purchased": True}
    )
    assert list(new_only["item_id"]) == ["i0", "i1", "i2", "i3"]  # m0 bought i4


def test_a_plain_list_of_ids_is_accepted(model: Any) -> None:
    frame = model.predict(["m3"], params={"k": 1})
    assert rows(frame) == [("m3", 1, "i3", 1.0, "model")]


def test_input_without_member_id_column_is_refused(model: Any) -> None:
    with pytest.raises(MlflowException, match="member_id"):
        model.predict(pd.DataFrame({"customer": ["m1"]}))


def test_tracker_loads_the_same_model_without_the_environment(
    store: Tracker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    loaded = store.load_model("models:/member-recs@champion")
    frame = loaded.predict(pd.DataFrame({"member_id": ["m1"]}), params={"k": 1})
    assert rows(frame) == [("m1", 1, "i1", 1.0, "model")]
