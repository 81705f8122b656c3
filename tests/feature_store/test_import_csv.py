"""Generic purchase-log importer: small hand-written files whose right answer is known."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from cli.main import app
from feature_store.dataset import LoadOptions, load_dataset
from feature_store.errors import DataError
from feature_store.importers import build_csv_log, import_csv_log

NOW = datetime(2025, 1, 1)

# Line numbers as in the file (the header is line 1); the expected verdict is in the comment.
FULL = """member_id,item_id,ts,quantity,amount,order_id
m1,i1,2024-01-05 10:00:00,2,7.0,o1
m1,i2,2024-01-05 10:00:00,1,4.0,o1
m2,i1,2024-01-06T09:30:00,1,3.0,
m2,i1,2024-01-20,-1,-3.0,r1
,i1,2024-01-07,1,3.5,o3
m3,,2024-01-07,1,3.5,o3
m3,i1,yesterday,1,3.5,o4
m3,i1,2024-01-08,two,3.5,o5
m3,i1,2024-01-08,0,0,o6
m3,i3,2024-01-08,1,abc,o7
m3,i3,2024-01-09,1,-2.0,o8
m1,i1,2024-01-05 10:00:00,2,7.0,o1
m3,i3,2030-01-01,1,5.0,o9
m3,i3,2024-02-01,,,
m1,i2,2024-02-02,3,15.0,o10
"""
# 2-5 kept; 6 empty member_id; 7 empty item_id; 8 bad ts; 9 bad quantity; 10 zero quantity;
# 11 bad amount; 12 amount sign; 13 duplicate of 2; 14 future; 15-16 kept (15 with defaults).
FULL_REJECTS = {
    6: ("member_id", "empty id"),
    7: ("item_id", "empty id"),
    8: ("ts", "unparseable timestamp"),
    9: ("quantity", "not an integer"),
    10: ("quantity", "zero quantity"),
    11: ("amount", "not a finite number"),
    12: ("amount", "amount sign disagrees with quantity"),
    13: ("", "duplicate row"),
    14: ("ts", "timestamp in the future"),
}

MINIMAL = """member_id,item_id,ts
a,x,2024-03-01 12:00
a,y,2024-03-01 12:00
b,x,2024-03-02
"""


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_bad_rows_are_rejected_with_line_column_and_reason(tmp_path: Path) -> None:
    result = build_csv_log(write(tmp_path, FULL), now=NOW)
    rejects = {
        line: (column, reason)
        for line, column, reason in result.rejects.select("_line", "_column", "_reason").rows()
    }
    assert rejects == FULL_REJECTS
    detail = dict(result.rejects.select("_line", "_detail").rows())
    assert detail[8] == "ts is 'yesterday'"
    assert detail[9] == "quantity is 'two'"
    assert detail[13] == "same purchase as line 2 in every column"
    # The original cells travel with the reject.
    assert result.rejects.filter(pl.col("_line") == 11)["amount"].item() == "abc"

    report = result.report
    assert report.rows_in == 15
    assert report.rows_kept == 6
    assert report.rows_rejected == 9
    assert report.rejects_by_reason == {
        "empty id": 2,
        "unparseable timestamp": 1,
        "timestamp in the future": 1,
        "not an integer": 1,
        "zero quantity": 1,
        "not a finite number": 1,
        "amount sign disagrees with quantity": 1,
        "duplicate row": 1,
    }


def test_kept_rows_become_purchases_with_defaults_for_empty_cells(tmp_path: Path) -> None:
    result = build_csv_log(write(tmp_path, FULL), now=NOW)
    expected = pl.DataFrame(
        {
            "order_id": [
                "o1",
                "o1",
                "m2@2024-01-06T09:30:00",
                "r1",
                "m3@2024-02-01T00:00:00",
                "o10",
            ],
            "member_id": ["m1", "m1", "m2", "m2", "m3", "m1"],
            "item_id": ["i1", "i2", "i1", "i1", "i3", "i2"],
            "ts": [
                dt("2024-01-05 10:00:00"),
                dt("2024-01-05 10:00:00"),
                dt("2024-01-06 09:30:00"),
                dt("2024-01-20 00:00:00"),
                dt("2024-02-01 00:00:00"),
                dt("2024-02-02 00:00:00"),
            ],
            "quantity": [2, 1, 1, -1, 1, 3],
            "amount": [7.0, 4.0, 3.0, -3.0, 0.0, 15.0],
        },
        schema_overrides={"ts": pl.Datetime("us")},
    )
    assert_frame_equal(result.dataset.purchases, expected)
    assert result.report.orders == 4  # o1, m2@..., m3@..., o10
    assert result.report.return_rows == 1
    assert result.report.return_orders == 1


def test_members_and_items_from_kept_rows(tmp_path: Path) -> None:
    dataset = build_csv_log(write(tmp_path, FULL), now=NOW).dataset
    assert dataset.members.select("member_id", "joined_at").rows() == [
        ("m1", dt("2024-01-05 10:00:00")),
        ("m2", dt("2024-01-06 09:30:00")),
        ("m3", dt("2024-02-01 00:00:00")),  # m3's only kept row is line 15
    ]
    assert dataset.items.select("item_id", "category", "price", "active").rows() == [
        ("i1", "uncategorized", 3.0, True),  # median of 7/2, 3/1, -3/-1
        ("i2", "uncategorized", 4.5, True),  # median of 4/1, 15/3
        ("i3", "uncategorized", 0.0, True),  # its only kept row gave no amount
    ]


def test_minimal_columns_take_documented_defaults(tmp_path: Path) -> None:
    result = build_csv_log(write(tmp_path, MINIMAL), now=NOW)
    purchases = result.dataset.purchases
    assert purchases["order_id"].to_list() == [
        "a@2024-03-01T12:00:00",
        "a@2024-03-01T12:00:00",
        "b@2024-03-02T00:00:00",
    ]
    assert purchases["quantity"].to_list() == [1, 1, 1]
    assert purchases["amount"].to_list() == [0.0, 0.0, 0.0]
    assert result.dataset.items["price"].to_list() == [0.0, 0.0]
    assert result.report.orders == 2
    assert result.report.rows_rejected == 0


def test_written_dataset_loads_without_rejects_in_both_formats(tmp_path: Path) -> None:
    log = write(tmp_path, FULL)
    loaded = {}
    for fmt in ("parquet", "csv"):
        out = tmp_path / fmt
        report = import_csv_log(log, out, fmt, now=NOW)
        assert report.rows_kept == 6
        result = load_dataset(out, LoadOptions(now=NOW))
        assert result.report.rejected_count == 0
        loaded[fmt] = result.dataset
        saved = json.loads((out / "import_report.json").read_text())
        assert saved["rows_rejected"] == 9
        rejects = pl.read_csv(out / "rejects" / "import_rejects.csv", infer_schema=False)
        assert rejects["_line"].to_list() == [str(n) for n in FULL_REJECTS]
    for table in ("members", "items", "purchases"):
        assert_frame_equal(getattr(loaded["csv"], table), getattr(loaded["parquet"], table))


def test_extra_columns_are_an_error_unless_ignored(tmp_path: Path) -> None:
    log = write(tmp_path, "member_id,item_id,ts,store,channel\na,x,2024-03-01,s1,web\n")
    with pytest.raises(DataError, match=r"unexpected column\(s\) store, channel"):
        build_csv_log(log, now=NOW)
    result = build_csv_log(log, ignore_extra=True, now=NOW)
    assert result.report.rows_kept == 1
    assert result.report.facts["columns_ignored"] == ["store", "channel"]


def test_missing_column_and_missing_file_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing column\(s\) ts"):
        build_csv_log(write(tmp_path, "member_id,item_id\na,x\n"), now=NOW)
    # A file without a header: its first row is read as the header, so the columns are missing.
    with pytest.raises(DataError, match="must be a header"):
        build_csv_log(write(tmp_path, "a,x,2024-03-01\n", "noheader.csv"), now=NOW)
    with pytest.raises(DataError, match="file not found"):
        build_csv_log(tmp_path / "absent.csv", now=NOW)


def test_cli_summary_and_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    log = write(tmp_path, MINIMAL)
    out = tmp_path / "out"
    ok = runner.invoke(
        app, ["data", "import", "csv", str(log), "--out", str(out), "--format", "csv"]
    )
    assert ok.exit_code == 0, ok.output
    assert re.search(r"rows kept\s+3\n", ok.output)
    assert re.search(r"members\s+2\n", ok.output)
    assert (out / "purchases.csv").is_file()

    extra = write(tmp_path, "member_id,item_id,ts,store\na,x,2024-03-01,s1\n", "extra.csv")
    bad = runner.invoke(app, ["data", "import", "csv", str(extra), "--out", str(out)])
    assert bad.exit_code == 1
    assert "unexpected column(s) store" in bad.output
    ignored = runner.invoke(
        app, ["data", "import", "csv", str(extra), "--out", str(out), "--ignore-extra"]
    )
    assert ignored.exit_code == 0, ignored.output
    missing = runner.invoke(app, ["data", "import", "csv", str(tmp_path / "no.csv"), "--out", str(out)])  # fmt: skip
    assert missing.exit_code == 1
    assert "file not found" in missing.output
