"""`recsys data validate` through the real console entry: exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl

from tests.feature_store.test_validation import ITEMS, MEMBERS, PURCHASES, replace_line, write


def recsys(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, check=False
    )


def test_clean_dataset_exits_0_and_prints_summary(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds")
    done = recsys("data", "validate", str(folder))
    assert done.returncode == 0, done.stderr
    assert "no problems found" in done.stdout
    assert "purchases" in done.stdout


def test_rejected_rows_exit_1_with_one_line_reason_and_rejects_file(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds", purchases=replace_line(PURCHASES, 4, "o2,m2,i1,2024-02-02,0,0"))
    done = recsys("data", "validate", str(folder), "--out", str(tmp_path / "clean"))
    assert done.returncode == 1
    assert "1 row(s) rejected" in done.stderr
    assert "purchases.csv line 4, column quantity: zero quantity" in done.stdout
    rejects = pl.read_csv(folder / "rejects" / "purchases.csv", infer_schema=False)
    assert rejects["_line"].to_list() == ["4"]
    clean = pl.read_parquet(tmp_path / "clean" / "purchases.parquet")
    assert clean.height == 4


def test_missing_folder_exits_1_with_reason(tmp_path: Path) -> None:
    done = recsys("data", "validate", str(tmp_path / "nope"))
    assert done.returncode == 1
    assert "dataset folder not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_column_exits_1_naming_it(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds", members=MEMBERS.replace("member_id,", "id,"), items=ITEMS)
    done = recsys("data", "validate", str(folder))
    assert done.returncode == 1
    assert "missing required column(s) member_id" in done.stderr
