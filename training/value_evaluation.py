"""Member value in the training report: the holdout check of the value model on the test window.

The test stage's feature snapshot (as of the test cutoff) holds a BG/NBD + Gamma-Gamma model
fitted on the purchases before the cutoff (feature_store.value). Here it predicts each member's
purchase days in the test window, which the run then observes: the standard holdout calibration
(mean predicted vs actual by calibration-period frequency), MAE and rank correlation against the
simple past-rate baselines, and the churn flags; plus the snapshot's p_alive per tier. Written
to ``evaluation/value/`` of the run folder (feature_store.value.holdout, .report).
"""

from __future__ import annotations

import json
from pathlib import Path

from feature_store.dataset import Dataset
from feature_store.value.holdout import evaluate_holdout, write_holdout_report
from feature_store.value.report import write_value_report
from feature_store.value.snapshot_columns import manifest_value
from training.data import Split


def write_value_evaluation(out: Path, snapshot: Path, dataset: Dataset, split: Split) -> Path:
    """Write the member-value part of the report into ``out``; returns its Markdown file.

    Without a value model in the snapshot (policy off, data too thin) the page says why."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((snapshot / "manifest.json").read_text())
    recorded = manifest_value(manifest, str(snapshot / "manifest.json"))
    page = out / "README.md"
    if recorded.params is None:
        page.write_text(
            f"# Member value\n\nNo value model in the test snapshot: {recorded.note}.\n"
        )
        return page
    horizon = max(1, (split.test_end - split.cutoff).days)
    result = evaluate_holdout(
        dataset, split.cutoff.date(), horizon, params=recorded.params, rfm_baseline=False
    )
    files = write_holdout_report(result, out)
    tiers = write_value_report(snapshot, out)
    page.write_text(
        "# Member value\n\n"
        f"* Holdout check on the test window: [{files['markdown'].name}]({files['markdown'].name})"
        f" (calibration plot {files['png'].name})\n"
        f"* p_alive per tier at the test cutoff: [{tiers['markdown'].name}]"
        f"({tiers['markdown'].name})\n"
    )
    return page


__all__ = ["write_value_evaluation"]
