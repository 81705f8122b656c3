"""Model fitting speed: build the confidence matrix and fit each model kind on synthetic purchases.

Each (kind, scale) runs in its own child process (``python -m benchmarks.bench_train_fit child
KIND SCALE OUT.json``) so that wall time and peak RSS belong to that model alone. The child times
its phases itself (confidence build, fit, export, scoring 1,000 members through the export) and
writes them to OUT.json; the parent adds the whole process's wall time and peak RSS.

Scales: ``full`` = 100k members x 20k items x 2M purchase lines (the sizes ARCHITECTURE.md quotes:
ALS 64 factors / 15 iterations about 5 s); ``small`` = 5k x 2k x 100k (smoke run).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Result, run_measured

SCALES: dict[str, tuple[int, int, int]] = {
    "full": (100_000, 20_000, 2_000_000),
    "small": (5_000, 2_000, 100_000),
}
#: Hyperparameters per kind: production-like sizes, LightFM with few epochs to bound the run.
KINDS: dict[str, dict[str, object]] = {
    "als": {"factors": 64, "iterations": 15},
    "bpr": {"factors": 64, "iterations": 30},
    "lightfm": {"components": 32, "epochs": 5},
    "item_knn": {"neighbours": 50},
    "popularity": {},
    "popular_in_tier": {},
}
SCORED_MEMBERS = 1_000


def run(scale: str) -> list[Result]:
    results = []
    n_members, n_items, n_lines = SCALES[scale]
    for kind in KINDS:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "phases.json"
            argv = [
                sys.executable,
                "-m",
                "benchmarks.bench_train_fit",
                "child",
                kind,
                scale,
                str(out),
            ]
            measured = run_measured(argv, env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
            phases = json.loads(out.read_text())
        results.append(
            Result(
                name=f"train_fit {kind} {n_members // 1000}k x {n_items // 1000}k x {n_lines:,}",
                seconds=phases["fit_s"],
                peak_rss_mib=measured.peak_rss_mib,
                target="informational (fit seconds)",
                extra={**phases, "process_s": round(measured.median, 2)},
            )
        )
    return results


def _child(kind: str, scale: str, out: Path) -> None:
    import numpy as np

    from engine.interactions import InteractionWeights, PurchaseLines, build_confidence
    from engine.models import TrainData, create_model

    n_members, n_items, n_lines = SCALES[scale]
    rng = np.random.default_rng(42)
    # power-law item popularity, uniform members; 3% returns; one year of timestamps
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    item = rng.choice(n_items, size=n_lines, p=popularity / popularity.sum())
    member = rng.integers(0, n_members, n_lines)
    quantity = np.where(rng.random(n_lines) < 0.03, -1, rng.integers(1, 4, n_lines))
    ts = 1_700_000_000 - rng.integers(0, 365 * 86_400, n_lines)
    member_tier = rng.integers(0, 5, n_members)
    lines = PurchaseLines(
        member=member,
        item=item,
        quantity=quantity,
        amount=rng.uniform(1.0, 200.0, n_lines),
        ts=ts,
        tier=member_tier[member],
        tag_match=rng.random(n_lines) < 0.05,
    )
    weights = InteractionWeights(
        amount_weight=0.1,
        half_life_days=90.0,
        tier_multipliers=(1.0, 1.1, 1.2, 1.3, 1.5),
        tag_boost=1.5,
    )
    started = time.perf_counter()
    confidence = build_confidence(lines, n_members, n_items, weights)
    build_s = time.perf_counter() - started

    eye = np.eye(5, dtype=np.float32)
    import scipy.sparse as sp

    data = TrainData(
        confidence=confidence,
        member_features=sp.csr_matrix(eye[member_tier]),
        item_features=sp.csr_matrix(eye[np.arange(n_items) % 5]),
        member_tiers=member_tier,
        n_tiers=5,
    )
    model = create_model(kind, **KINDS[kind])  # type: ignore[arg-type]
    started = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    artifacts = model.export()
    export_s = time.perf_counter() - started
    rows = rng.choice(n_members, SCORED_MEMBERS, replace=False)
    started = time.perf_counter()
    artifacts.score(rows, confidence[rows])
    score_s = time.perf_counter() - started
    phases = {
        "confidence_build_s": round(build_s, 3),
        "confidence_nnz": int(confidence.nnz),
        "fit_s": round(fit_s, 3),
        "export_s": round(export_s, 3),
        f"score_{SCORED_MEMBERS}_members_s": round(score_s, 3),
    }
    out.write_text(json.dumps(phases))


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "child":
        sys.exit("usage: python -m benchmarks.bench_train_fit child KIND SCALE OUT.json")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _child(sys.argv[2], sys.argv[3], Path(sys.argv[4]))
