"""notebooks/train_and_evaluate.ipynb runs top to bottom on a small synthetic dataset.

The notebook reads its inputs from the environment: a tmp dataset, a tmp output folder and a
tmp MLflow store (never the repository's mlflow/ folder).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from feature_store.synthetic import SynthConfig, write_synthetic
from tests.training.mlflow_helpers import fresh_tracker, migrated_store

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "train_and_evaluate.ipynb"


def test_train_and_evaluate_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "synth"
    write_synthetic(SynthConfig(members=800, items=150, purchases=16_000, seed=5), data)
    tracker = fresh_tracker(migrated_store(), tmp_path / "store")
    monkeypatch.setenv("RECSYS_NB_DATA", str(data))
    monkeypatch.setenv("RECSYS_NB_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()

    outputs = {
        i: "".join(
            o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs
        )
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    }
    text = "\n".join(outputs.values())
    assert f"tracking: {tracker.tracking_uri}" in text
    assert "nb-blend: version 1, promoted" in text
    assert "nb-embedding-only: version 2" in text
    figures = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(figures) == 1  # the per-tier plot
    versions = tracker.list_versions()
    assert [v.version for v in versions] == [2, 1]
    assert tracker.champion() is not None
    assert "ndcg_at_10_all" in text
