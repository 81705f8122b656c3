"""The whole `recsys train`: wall time and peak RSS, and its ratio to a bare implicit ALS fit.

Full scale (the issue's target): the synthetic set of 1,000,000 members x 100,000 items x
20,000,000 purchase rows (shared with bench_features, generated untimed if absent). `recsys
train` runs ALS (64 factors, 15 iterations) with the weighting of training/configs/default.toml
(tier at purchase time, tag boosts, log1p quantities, BM25), evaluates the blend on a sample of
100,000 test members, writes the bundle with its FAISS indexes and logs the run, the bundle and
the registry entry to a temporary MLflow store. Target: under 180 s and 8 GiB.

A fixed config: the test window is scored once, then the model is refit on every purchase
and shipped (issue 10), so the run fits twice. The refit starts from the evaluated model's
factors with a third of the sweeps (``[split] warm_refit``, 5 of 15 here; docs/evaluation.md,
"Warm refit"); ``BENCH_WARM_REFIT=0`` measures the cold refit instead. The refit's feature snapshot (as of the day
after the last purchase) is a prerequisite built by `recsys features build` (timed here
separately and reported, not counted); train reads it with ``--snapshot``,
which also lets it skip re-validating the dataset (the snapshot's manifest records the same
source fingerprint and no rejected row).

The baseline "bare implicit fit" runs in a second child process: it rebuilds the same
confidence matrix (training.data, same config and snapshot) and times only
``implicit.cpu.als.AlternatingLeastSquares.fit`` with the same hyperparameters and threads.
The ratio total / bare fit says what everything around one fit costs (aim: under 3x, with the
evaluation, the refit and the serving precompute).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_features import dataset
from benchmarks.harness import Result, recsys, run_measured

TARGET_S = 180.0
TARGET_MIB = 8 * 1024.0
#: issue 10: evaluation, refit and the serving precompute within 3x a bare fit
RATIO_AIM = 3.0
#: the generator's data ends on 2025-12-31; the last 30 days are the test window
CUTOFF = "2025-12-02"
TEST_END = "2025-12-31"
#: the refit (shipped) model learns from everything before this date: its snapshot's as-of
REFIT_AS_OF = "2026-01-01"

CONFIG = """
name = "bench"
[split]
cutoff = "{cutoff}"
test_end = "{test_end}"
warm_refit = {warm}
[weights]
quantity = "log1p"
[weights.tier]
regular = 1.0
silver = 1.05
gold = 1.1
platinum = 1.15
diamond = 1.2
[weights.tags]
boost = 1.5
category_prefix = "loves-"
[weights.bm25]
enabled = true
[model]
kind = "als"
[model.params]
factors = 64
iterations = 15
regularization = 0.05
num_threads = {threads}
[blend]
buy_again = 10.0
trending = 0.5
[evaluation]
max_members = 100000
[bundle]
member_index = "exact"
item_index = "auto"
"""

_BARE_FIT = """
import json, sys, time
from pathlib import Path
import numpy as np
from feature_store.dataset import Dataset, read_raw, table_path
from feature_store.offline import open_snapshot
from feature_store.schema import ITEMS, MEMBERS, PURCHASES, conform
from training.config import load_config
from training.data import SnapshotFrames, prepare
from training.windows import resolve_windows
from engine.models.als import single_blas_thread
from implicit.cpu.als import AlternatingLeastSquares

data_dir, snapshot_dir, config_path, out = map(Path, sys.argv[1:5])
config = load_config(config_path)
tables = [conform(read_raw(table_path(data_dir, s), s), s) for s in (MEMBERS, ITEMS, PURCHASES)]
dataset = Dataset(*tables)
snapshot = SnapshotFrames.from_snapshot(open_snapshot(snapshot_dir))
split = resolve_windows(config.split, dataset.purchases).refit  # the shipped model's matrix
data = prepare(dataset, snapshot, split, config.weights, config.blend)
matrix = data.confidence(config.weights)
p = dict(config.model.params)
with single_blas_thread():
    model = AlternatingLeastSquares(
        factors=p["factors"], regularization=p["regularization"], iterations=p["iterations"],
        alpha=1.0, dtype=np.float32, use_cg=True, calculate_training_loss=False,
        num_threads=p["num_threads"], random_state=0,
    )
    started = time.perf_counter()
    model.fit(matrix, show_progress=False)
    fit_s = time.perf_counter() - started
out.write_text(json.dumps({"fit_s": fit_s, "nnz": int(matrix.nnz), "shape": list(matrix.shape)}))
"""


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def run(scale: str) -> list[Result]:
    data = dataset(scale)
    threads = int(os.environ.get("BENCH_TRAIN_THREADS", "0"))  # 0: every core, for both fits
    env = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": str(threads or os.cpu_count() or 1)}
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        config = root / "bench.toml"
        warm = "false" if os.environ.get("BENCH_WARM_REFIT", "1") == "0" else "true"
        text = CONFIG.format(cutoff=CUTOFF, test_end=TEST_END, threads=threads, warm=warm)
        config.write_text(text, encoding="utf-8")
        snapshot = root / "snapshot"
        load_before = _load()
        built = run_measured(
            recsys(
                "features",
                "build",
                "--data",
                str(data),
                "--as-of",
                REFIT_AS_OF,
                "--out",
                str(snapshot),
            ),
            env=env,
        )
        results.append(
            Result(
                name=f"features build as of {REFIT_AS_OF} (prerequisite, not counted)",
                seconds=built.median,
                peak_rss_mib=built.peak_rss_mib,
                target="informational",
                extra={"load_avg_1m_before": load_before},
            )
        )
        out = root / "run"
        tracking = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
        load_before = _load()
        started = time.perf_counter()
        measured = run_measured(
            recsys(
                "train",
                "--data", str(data),
                "--config", str(config),
                "--snapshot", str(snapshot),
                "--out", str(out),
                "--tracking-uri", tracking,
            ),
            env=env,
        )  # fmt: skip
        wall = time.perf_counter() - started
        summary = json.loads((out / "run.json").read_text(encoding="utf-8"))
        bare_json = root / "bare.json"
        bare = run_measured(
            [
                sys.executable,
                "-c",
                _BARE_FIT,
                str(data),
                str(snapshot),
                str(config),
                str(bare_json),
            ],
            env=env,
        )
        fit = json.loads(bare_json.read_text(encoding="utf-8"))
        ratio = measured.median / fit["fit_s"]
        passed = measured.median < TARGET_S and measured.peak_rss_mib < TARGET_MIB
        timings = summary["timings_s"]
        results.append(
            Result(
                name=f"recsys train {data.name} (ALS 64f/15it, eval 100k, bundle, MLflow)",
                seconds=measured.median,
                peak_rss_mib=measured.peak_rss_mib,
                target=f"< {TARGET_S:.0f} s, < 8 GiB",
                passed=passed,
                extra={
                    "steps_s": {k: v for k, v in timings.items() if k.endswith("_s")},
                    "ratio_total_to_bare_fit": round(ratio, 2),
                    "ratio_aim": f"< {RATIO_AIM}",
                    "ratio_ok": ratio < RATIO_AIM,
                    "refit_start": summary["facts"].get("refit_start"),
                    "shipped_iterations": summary["facts"].get("shipped_iterations"),
                    "members_evaluated": summary["facts"].get("evaluated_all"),
                    "confidence_nnz": summary["facts"].get("confidence_nnz"),
                    "load_avg_1m_before": load_before,
                    "wall_incl_process_start_s": round(wall, 2),
                },
            )
        )
        results.append(
            Result(
                name="bare implicit ALS fit, same matrix and threads",
                seconds=fit["fit_s"],
                peak_rss_mib=bare.peak_rss_mib,
                target="baseline of the ratio",
                extra={"nnz": fit["nnz"], "shape": fit["shape"]},
            )
        )
        shutil.rmtree(out, ignore_errors=True)
    return results
