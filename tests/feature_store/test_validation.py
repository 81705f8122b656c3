"""Validation of the canonical tables: each rule on a broken file names line, column and reason."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from feature_store.dataset import (
    Dataset,
    LoadOptions,
    load_dataset,
    write_dataset,
)
from feature_store.errors import DataError

NOW = datetime(2025, 1, 1)
OPTIONS = LoadOptions(now=NOW)

MEMBERS = """member_id,joined_at,tier,tags,birth_date,points_balance,region
m1,2024-01-01,gold,tea|vip,1980-05-01,10,UK
m2,2024-01-02T10:00:00,silver,,,,
m3,2024-01-03 09:30:00,,,,0,FR
"""
ITEMS = """item_id,category,price,title,tags,min_tier,active
i1,tea,3.5,Green tea,organic,,true
i2,tea,4.0,,,gold,
i3,coffee,0,Free sample,,,false
"""
PURCHASES = """order_id,member_id,item_id,ts,quantity,amount
o1,m1,i1,2024-02-01 10:00:00,2,7.0
o1,m1,i2,2024-02-01 10:00:00,1,4.0
o2,m2,i1,2024-02-02,1,3.5
o3,m2,i1,2024-02-09,-1,-3.5
o4,m3,i3,2024-03-01T08:00:00,1,0
"""


def write(
    folder: Path, members: str = MEMBERS, items: str = ITEMS, purchases: str = PURCHASES
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "members.csv").write_text(members)
    (folder / "items.csv").write_text(items)
    (folder / "purchases.csv").write_text(purchases)
    return folder


def replace_line(text: str, line: int, new: str) -> str:
    """Replace 1-based line ``line`` of a CSV text."""
    lines = text.splitlines()
    lines[line - 1] = new
    return "\n".join(lines) + "\n"


def test_valid_dataset_loads_typed_with_nothing_rejected(tmp_path: Path) -> None:
    result = load_dataset(write(tmp_path / "ds"), OPTIONS, rejects_dir=tmp_path / "rejects")
    ds = result.dataset
    assert result.report.rejected_count == 0
    assert (ds.members.height, ds.items.height, ds.purchases.height) == (3, 3, 5)
    assert ds.members.schema["joined_at"] == pl.Datetime("us")
    assert ds.members.filter(pl.col("member_id") == "m1")["tags"].to_list() == [["tea", "vip"]]
    assert ds.members.filter(pl.col("member_id") == "m2")["tags"].to_list() == [[]]
    # active defaults to true; explicit false is kept
    assert ds.items.sort("item_id")["active"].to_list() == [True, True, False]
    # returns stay as negative-quantity rows
    assert ds.purchases.filter(pl.col("quantity") < 0).height == 1
    assert not (tmp_path / "rejects").exists()
    assert "no problems found" in result.report.summary()


BROKEN_CASES = [
    # (table, line, new line, column, reason)
    ("members", 3, "m1,2024-01-02,silver,,,,", "member_id", "duplicate member_id"),
    ("members", 3, "m2,yesterday,silver,,,,", "joined_at", "not a timestamp (ISO 8601)"),
    ("members", 3, "m2,2030-01-01,silver,,,,", "joined_at", "timestamp in the future"),
    ("members", 3, "m2,2024-01-02,bronze,,,,", "tier", "unknown tier"),
    ("members", 3, "m2,2024-01-02,silver,,01/05/1980,,", "birth_date", "not a date (YYYY-MM-DD)"),
    ("members", 3, "m2,2024-01-02,silver,,,-3,", "points_balance", "negative points balance"),
    ("members", 3, "m2,2024-01-02,silver,,,1.5,", "points_balance", "not an integer"),
    ("members", 3, ",2024-01-02,silver,,,,", "member_id", "missing value"),
    ("items", 3, "i2,tea,-4.0,,,gold,", "price", "negative price"),
    ("items", 3, "i2,tea,four,,,gold,", "price", "not a number"),
    ("items", 3, "i2,tea,inf,,,gold,", "price", "not a finite number"),
    ("items", 3, "i2,tea,4.0,,,bronze,", "min_tier", "unknown tier"),
    ("items", 3, "i2,tea,4.0,,,gold,maybe", "active", "not a boolean"),
    ("items", 3, "i2,,4.0,,,gold,", "category", "missing value"),
    ("items", 3, "i1,tea,4.0,,,gold,", "item_id", "duplicate item_id"),
    ("purchases", 4, "o2,m2,i1,2024-02-02,0,0", "quantity", "zero quantity"),
    ("purchases", 4, "o2,m2,i1,2024-02-02,one,3.5", "quantity", "not an integer"),
    ("purchases", 4, "o2,m2,i1,2030-02-02,1,3.5", "ts", "timestamp in the future"),
    ("purchases", 4, "o2,m2,i1,02/02/2024,1,3.5", "ts", "not a timestamp (ISO 8601)"),
    ("purchases", 4, "o2,m2,i1,2024-02-02,1,-3.5", "amount", "amount sign disagrees with quantity"),
    ("purchases", 4, "o2,m9,i1,2024-02-02,1,3.5", "member_id", "unknown member_id"),
    ("purchases", 4, "o2,m2,i9,2024-02-02,1,3.5", "item_id", "unknown item_id"),
    ("purchases", 4, "o1,m1,i2,2024-02-01 10:00:00,1,4.0", "*", "duplicate row"),
]


@pytest.mark.parametrize(("table", "line", "new", "column", "reason"), BROKEN_CASES)
def test_each_rule_names_file_line_column_and_reason(
    tmp_path: Path, table: str, line: int, new: str, column: str, reason: str
) -> None:
    texts = {"members": MEMBERS, "items": ITEMS, "purchases": PURCHASES}
    texts[table] = replace_line(texts[table], line, new)
    folder = write(tmp_path / "ds", **texts)
    result = load_dataset(folder, OPTIONS, rejects_dir=tmp_path / "rejects")
    report = result.report

    table_report = report.tables[table]
    problems = table_report.problems.filter(pl.col("row") == line - 2)
    assert (column, reason) in set(zip(problems["column"], problems["reason"], strict=True))
    assert any(
        msg.startswith(f"{table}.csv line {line}, column {column}: {reason}")
        for msg in report.problems()
    ), report.problems()
    # nothing dropped silently: every row is valid or rejected, and every rejected row is on file
    for t in report.tables.values():
        assert t.rows_read == t.rows_valid + t.rows_rejected
    rejects = pl.read_csv(tmp_path / "rejects" / f"{table}.csv", infer_schema=False)
    assert line in rejects["_line"].cast(pl.Int64).to_list()
    row = rejects.filter(pl.col("_line") == str(line))
    assert reason in row["_reasons"].item()


def test_rejected_member_cascades_to_its_purchases_with_a_reason(tmp_path: Path) -> None:
    members = replace_line(MEMBERS, 3, "m2,not-a-date,silver,,,,")
    result = load_dataset(write(tmp_path / "ds", members=members), OPTIONS)
    purchases = result.report.tables["purchases"].problems
    assert set(purchases["reason"]) == {"member_id refers to a rejected members row"}
    assert sorted(purchases["row"].to_list()) == [2, 3]  # lines 4 and 5: both of m2's rows
    assert result.dataset.purchases.height == 3


def drop_last_column(text: str) -> str:
    return "\n".join(line.rsplit(",", 1)[0] for line in text.splitlines()) + "\n"


def test_missing_required_column_is_an_error_naming_file_and_column(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds", purchases=drop_last_column(PURCHASES))
    with pytest.raises(DataError, match=r"purchases\.csv: missing required column\(s\) amount"):
        load_dataset(folder, OPTIONS)


def test_missing_table_is_an_error_naming_the_folder(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds")
    (folder / "items.csv").unlink()
    with pytest.raises(DataError, match="no items table"):
        load_dataset(folder, OPTIONS)


def test_table_present_twice_is_an_error(tmp_path: Path) -> None:
    folder = write(tmp_path / "ds")
    (folder / "items.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="items is there twice"):
        load_dataset(folder, OPTIONS)


def test_unknown_columns_are_reported_not_silently_dropped(tmp_path: Path) -> None:
    items = "\n".join(line + ",x" for line in ITEMS.splitlines()).replace(
        "active,x", "active,colour"
    )
    result = load_dataset(write(tmp_path / "ds", items=items + "\n"), OPTIONS)
    assert result.report.rejected_count == 0
    assert result.report.tables["items"].ignored_columns == ("colour",)
    assert "ignored unknown column(s): colour" in result.report.summary()


def test_csv_parquet_round_trip_is_identical(tmp_path: Path) -> None:
    original = load_dataset(write(tmp_path / "csv"), OPTIONS).dataset
    write_dataset(original, tmp_path / "pq", fmt="parquet")
    from_parquet = load_dataset(tmp_path / "pq", OPTIONS)
    assert from_parquet.report.rejected_count == 0
    write_dataset(from_parquet.dataset, tmp_path / "csv2", fmt="csv")
    from_csv = load_dataset(tmp_path / "csv2", OPTIONS).dataset
    for name in ("members", "items", "purchases"):
        assert_frame_equal(getattr(original, name), getattr(from_parquet.dataset, name))
        assert_frame_equal(getattr(original, name), getattr(from_csv, name))


def test_parquet_with_other_types_is_cast_and_checked(tmp_path: Path) -> None:
    """Integer ids become strings; a float quantity that is not whole is rejected by row number."""
    folder = write(tmp_path / "ds")
    (folder / "purchases.csv").unlink()
    pl.DataFrame(
        {
            "order_id": [1, 2],
            "member_id": ["m1", "m2"],
            "item_id": ["i1", "i1"],
            "ts": [datetime(2024, 2, 1), datetime(2024, 2, 2)],
            "quantity": [2.0, 1.5],
            "amount": [7.0, 5.25],
        }
    ).write_parquet(folder / "purchases.parquet")
    result = load_dataset(folder, OPTIONS)
    assert result.dataset.purchases["order_id"].to_list() == ["1"]
    assert result.report.problems() == [
        "purchases.parquet row 2, column quantity: not an integer (got '1.5')"
    ]


def test_a_dataset_written_from_code_conforms(tmp_path: Path) -> None:
    ds = Dataset(
        members=pl.DataFrame({"member_id": ["a"], "joined_at": [datetime(2024, 1, 1)]}),
        items=pl.DataFrame({"item_id": ["x"], "category": ["c"], "price": [1.0]}),
        purchases=pl.DataFrame(
            {
                "order_id": ["o"],
                "member_id": ["a"],
                "item_id": ["x"],
                "ts": [datetime(2024, 1, 2)],
                "quantity": [1],
                "amount": [1.0],
            }
        ),
    )
    write_dataset(ds, tmp_path / "ds")
    loaded = load_dataset(tmp_path / "ds", OPTIONS)
    assert loaded.report.rejected_count == 0
    assert loaded.dataset.members.columns == [
        "member_id", "joined_at", "tier", "tags", "birth_date", "points_balance", "region",
    ]  # fmt: skip
