"""The warm refit (``[split] warm_refit``): an ALS refit that starts from the evaluated model's
factors with a third of the sweeps costs no quality.

The refit itself cannot be scored (nothing comes after the refit date), so the protocol moves
one window back, where both starts can be scored honestly on the validation window:

* **cold**: the configured model fitted from scratch, all its sweeps, on purchases before the
  validation window (what the search and the evaluated model do);
* **warm**: the same configuration first fitted on an *earlier* window (purchases before
  ``validation start - window length``: the evaluated model's position relative to the refit),
  then fitted again on purchases before the validation window starting from those factors
  (members and items matched by id, newcomers at the seeded init) for
  :func:`training.fitting.warm_iterations` sweeps.

Both are scored on the validation window: NDCG@10 all / new of the blend (what ships) and of
the model's own ranking. The fast test runs it on the tiny synthetic set; the slow one on
Online Retail and prints the table (docs/evaluation.md, "Warm refit"). As a script it prints
the table for any dataset and sweep counts::

    python -m tests.training.test_warm_refit DATA [CONFIG.toml] [--iterations 2,3,5,8]
        [--seeds 0,1,2,3,4] [--set regularization=8.15 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from engine.models.als import ALSWarmStart
from feature_store.policy import DEFAULT_POLICY_PATH, load_policy
from tests.paths import ONLINE_RETAIL
from training.config import CONFIG_DIR, TrainConfig, load_config
from training.data import PreparedData, Split
from training.evaluate import EvalSet, blend_ranker, evaluate_ranker, model_ranker
from training.fitting import (
    build_blender,
    fit_config,
    headline_k,
    warm_iterations,
    warm_refit_start,
)
from training.pipeline import TrainOptions, train
from training.stage import Stage, build_stage, load_source
from training.windows import resolve_windows


@dataclass(frozen=True, slots=True)
class StartRow:
    """One start scored on the validation window (means over the seeds, and their spread)."""

    start: str  # "cold" | "warm"
    iterations: int
    fit_s: float
    blend_all: float
    blend_new: float
    model_all: float
    model_new: float
    #: largest minus smallest value over the seeds, per metric (0 with one seed)
    spread: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


def compare_starts(
    data_dir: Path,
    config: TrainConfig,
    out: Path,
    iterations: tuple[int, ...] = (),
    seeds: tuple[int, ...] = (0,),
) -> list[StartRow]:
    """Cold fits (all configured sweeps, and each of ``iterations``) against warm fits (each
    of ``iterations``, default: :func:`warm_iterations`) on the validation window, each with
    every seed of ``seeds`` (the factor init; a warm row's earlier fit uses the same seed)."""
    policy = load_policy(config.policy)
    dataset, source = load_source(data_dir, policy)
    validation = resolve_windows(config.split, dataset.purchases).validation
    length = validation.test_end - validation.cutoff
    earlier = Split(cutoff=validation.cutoff - length, test_end=validation.cutoff)
    stage_early = build_stage("earlier", dataset, earlier, source, out / "earlier")
    stage = build_stage("validation", dataset, validation, source, out / "validation")
    data_early, data = stage_early.prepared(config), stage.prepared(config)
    eval_set = stage.eval_set(data, config.evaluation)
    configured = int(config.model.params.get("iterations", 15) or 15)
    counts = iterations or (warm_iterations(configured),)
    plan = [("cold", configured)]
    for n in counts:
        plan += [("warm", n)] + ([("cold", n)] if n != configured else [])
    scores: dict[tuple[str, int], list[tuple[float, ...]]] = {key: [] for key in plan}
    for seed in seeds:
        seeded = _with_params(config, random_state=seed)
        previous = fit_config(seeded, data_early, stage_early.snapshot)
        start = warm_refit_start(seeded, previous, data_early, data)
        assert start is not None, "the warm start needs an ALS configuration"
        for name, n in plan:
            warm = replace(start, iterations=n) if name == "warm" else None
            scores[(name, n)].append(_scored(seeded, n, stage, data, eval_set, warm))
    rows = []
    for (name, n), runs in scores.items():
        columns = list(zip(*runs, strict=True))
        m = [sum(c) / len(c) for c in columns]
        d = [max(c) - min(c) for c in columns]
        spread = (d[1], d[2], d[3], d[4])
        rows.append(StartRow(name, n, m[0], m[1], m[2], m[3], m[4], spread=spread))
    return rows


def _with_params(config: TrainConfig, **params: int | float) -> TrainConfig:
    merged = {**config.model.params, **params}
    return config.replace(model=replace(config.model, params=merged))


def _scored(
    config: TrainConfig,
    iterations: int,
    stage: Stage,
    data: PreparedData,
    eval_set: EvalSet,
    warm: ALSWarmStart | None,
) -> tuple[float, ...]:
    """(fit seconds, blend NDCG all, new, model NDCG all, new) of one fit."""
    fitted = _with_params(config, iterations=iterations)
    started = time.perf_counter()
    artifacts = fit_config(fitted, data, stage.snapshot, warm)
    fit_s = time.perf_counter() - started
    ks, k = config.evaluation.ks, headline_k(config.evaluation.metric)
    _, blender = build_blender(artifacts, data, config)
    blend = evaluate_ranker("blend", blend_ranker(blender), eval_set, ks, k)
    ranker = model_ranker(artifacts, data.confidence(config.weights), data.history)
    model = evaluate_ranker("model", ranker, eval_set, ks, k)
    return (
        fit_s,
        blend.value("ndcg", k, "all"),
        blend.value("ndcg", k, "new"),
        model.value("ndcg", k, "all"),
        model.value("ndcg", k, "new"),
    )


def table(rows: list[StartRow]) -> str:
    """Markdown; with several seeds each NDCG is "mean ±spread/2"."""
    lines = [
        "| start | sweeps | fit s | blend all | blend new | model all | model new |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        values = (r.blend_all, r.blend_new, r.model_all, r.model_new)
        cells = [
            f"{v:.4f}" + (f" ±{d / 2:.4f}" if d else "")
            for v, d in zip(values, r.spread, strict=True)
        ]
        lines.append(f"| {r.start} | {r.iterations} | {r.fit_s:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _row(rows: list[StartRow], start: str, iterations: int) -> StartRow:
    return next(r for r in rows if (r.start, r.iterations) == (start, iterations))


# -- tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    """The default config with the member-value model off in its feature policy (the value
    fit is most of a tiny snapshot's build and plays no part in the model)."""
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")
    head, value, tail = text.partition("\n[value]\n")
    tail = tail.replace("enabled = true", "enabled = false", 1)
    policy = tmp_path_factory.mktemp("policy") / "no_value.toml"
    policy.write_text(head + value + tail, encoding="utf-8")
    return load_config().replace(policy=policy)


def test_warm_start_with_a_third_of_the_sweeps_costs_no_quality(
    synthetic_data: Path, tmp_path: Path, config: TrainConfig
) -> None:
    rows = compare_starts(synthetic_data, config, tmp_path, seeds=(0, 1, 2))
    print(f"\n{table(rows)}")
    cold, warm = _row(rows, "cold", 15), _row(rows, "warm", warm_iterations(15))
    assert warm.iterations == 5
    # measured (seeds 0-4): blend 0.6240 / 0.1184 cold, 0.6247 / 0.1251 warm; the tiny set's
    # "new" moves by about +-0.01 between seeds, hence the tolerance
    assert warm.blend_all >= cold.blend_all - 0.005
    assert warm.blend_new >= cold.blend_new - 0.01
    assert warm.model_all >= cold.model_all - 0.01
    assert warm.model_new >= cold.model_new - 0.01


def test_warm_iterations_rule() -> None:
    assert [warm_iterations(n) for n in (1, 2, 3, 6, 15, 25, 40)] == [1, 2, 2, 2, 5, 9, 14]


@pytest.fixture(scope="module")
def runs(
    synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory, config: TrainConfig
) -> dict[bool, tuple[dict[str, Any], dict[str, Any]]]:
    """run.json facts and bundle manifest of a warm and a cold refit (no MLflow)."""
    found = {}
    for warm in (True, False):
        out = tmp_path_factory.mktemp(f"warm-{warm}")
        chosen = config.replace(split=replace(config.split, warm_refit=warm))
        result = train(TrainOptions(data=synthetic_data, config=chosen, out=out, track=False))
        manifest = json.loads((result.bundle / "manifest.json").read_text(encoding="utf-8"))
        found[warm] = (result.facts, manifest)
    return found


def test_the_refit_starts_warm_by_default_and_records_it(
    runs: dict[bool, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    facts, manifest = runs[True]
    assert facts["refit_start"] == "warm"
    assert facts["shipped_iterations"] == 5
    params = manifest["model"]["params"]
    assert params["warm_start"] is True
    assert params["iterations"] == 5
    assert 0 < params["warm_start_members"] <= facts["shipped_members"]
    assert params["warm_start_items"] > 0


def test_warm_refit_false_refits_from_scratch(
    runs: dict[bool, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    facts, manifest = runs[False]
    assert facts["refit_start"] == "cold"
    assert facts["shipped_iterations"] == 15
    params = manifest["model"]["params"]
    assert "warm_start" not in params
    assert params["iterations"] == 15
    # the evaluation is the same either way: only the shipped model differs
    assert runs[True][0]["evaluated_all"] == facts["evaluated_all"]


@pytest.mark.slow
@pytest.mark.skipif(not ONLINE_RETAIL.is_file(), reason=f"no Online Retail at {ONLINE_RETAIL}")
def test_online_retail_warm_start_costs_no_quality(tmp_path: Path) -> None:
    from feature_store.importers import import_online_retail

    data = tmp_path / "online_retail"
    import_online_retail(ONLINE_RETAIL, data)
    config = load_config(CONFIG_DIR / "online_retail.toml")
    rows = compare_starts(data, config, tmp_path / "stages")
    print(f"\n{table(rows)}")
    cold, warm = _row(rows, "cold", 15), _row(rows, "warm", 5)
    assert warm.blend_all >= cold.blend_all - 0.005
    assert warm.blend_new >= cold.blend_new - 0.005


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("config", type=Path, nargs="?")
    parser.add_argument("--iterations", default="", help="warm sweep counts, e.g. 1,2,3,5")
    parser.add_argument("--seeds", default="0", help="factor-init seeds, e.g. 0,1,2,3,4")
    parser.add_argument("--set", action="append", default=[], help="model param NAME=VALUE")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    for item in args.set:
        name, _, value = item.partition("=")
        config = _with_params(config, **{name: float(value) if "." in value else int(value)})
    counts = tuple(int(n) for n in args.iterations.split(",") if n)
    seeds = tuple(int(n) for n in args.seeds.split(",") if n)
    with tempfile.TemporaryDirectory(prefix="warm-refit-") as tmp:
        rows = compare_starts(args.data, config, Path(tmp), counts, seeds)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
