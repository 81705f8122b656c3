"""UCI Online Retail importer: every rule on a hand-made sample, then the published dataset."""

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
from feature_store.dataset import load_dataset, write_dataset
from feature_store.errors import DataError
from feature_store.importers import build_online_retail, import_online_retail
from feature_store.importers.common import write_import
from tests.paths import ONLINE_RETAIL

DATASET = ONLINE_RETAIL

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
# Line numbers as in the file (the header is line 1); the expected verdict is in the comment.
SAMPLE_LINES = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",  # 2 kept
    "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850,United Kingdom",  # 3 kept
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",  # 4 dup of 2
    "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,,United Kingdom",  # 5 no customer
    "536367,POST,POSTAGE,3,2010-12-01 08:34:00,18.00,12583,France",  # 6 postage
    "C536379,85123A,WHITE HANGING HEART T-LIGHT HOLDER,-2,2010-12-02 09:41:00,2.95,17850,United Kingdom",  # 7 kept
    "536370,22728,ALARM CLOCK BAKELIKE PINK,24,2010-12-01 08:45:00,0.00,12583,France",  # 8 price 0
    "536381,85123a,CREAM HANGING HEART T-LIGHT HOLDER,1,2010-12-03 10:00:00,2.65,12583,Germany",  # 9 kept
    "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,,United Kingdom",  # 10 no customer
    "536382,gift_0001_20,Dotcomgiftshop Gift Voucher £20.00,1,2010-12-03 11:00:00,17.02,12583,France",  # 11
    "536383,22139,RETROSPOT TEA SET CERAMIC 11 PC,-3,2010-12-03 12:00:00,4.25,12583,France",  # 12 stock adj.
    "536384,DCGS0003,BOXED GLASS ASHTRAY,1,2010-12-03 13:00:00,2.46,12583,France",  # 13 odd code
    "536385,22139,RETROSPOT TEA SET CERAMIC 11 PC,3,2010-12-04 09:00:00,4.95,12583,France",  # 14 kept
    "536385,22139,RETRO SPOT TEA SET CERAMIC,3,2010-12-04 09:00:00,4.95,12583,France",  # 15 dup of 14
    "536386,22139,RETROSPOT TEA SET CERAMIC 11 PC,1,not a date,4.95,12583,France",  # 16 bad date
    "A563186,23084,RABBIT NIGHT LIGHT,1,2011-01-01 10:00:00,2.08,12583,France",  # 17 not a sale
    "536387,22139,,2,2010-12-05 09:00:00,4.25,12583.0,France",  # 18 kept
    "536388,,MYSTERY,1,2010-12-05 10:00:00,1.00,12583,France",  # 19 no stock code
]
SAMPLE = HEADER + "\n" + "\n".join(SAMPLE_LINES) + "\n"

EXPECTED_REJECTS = {  # line -> reason
    4: "exact duplicate",
    5: "missing customer id",
    6: "non-product code: postage & carriage",
    8: "non-positive unit price",
    10: "missing customer id",
    11: "non-product code: gift voucher",
    12: "stock adjustment (negative quantity on a sale invoice)",
    13: "non-product code: not a product code (5 digits + optional letters)",
    15: "duplicate purchase",
    16: "unreadable invoice date",
    17: "not a sale or cancellation invoice",
    19: "missing stock code",
}


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "online_retail.csv"
    path.write_text(SAMPLE, encoding="utf-8")
    return path


def test_sample_lines_are_kept_or_rejected_by_the_documented_rule(sample: Path) -> None:
    result = build_online_retail(sample)
    report = result.report

    assert report.rows_in == 18
    assert report.rows_kept == 6
    assert report.rows_rejected == 12
    rejects = dict(zip(result.rejects["_line"], result.rejects["_reason"], strict=True))
    assert rejects == EXPECTED_REJECTS
    details = dict(zip(result.rejects["_line"], result.rejects["_detail"], strict=True))
    assert details[4] == "exact duplicate of line 2"
    assert details[15].startswith(
        "same invoice, customer, product, time, quantity and price as line 14"
    )
    columns = dict(zip(result.rejects["_line"], result.rejects["_column"], strict=True))
    assert columns[5] == "CustomerID"
    assert columns[6] == "StockCode"
    assert columns[8] == "UnitPrice"
    # Rejected lines keep their original cells.
    line_11 = result.rejects.filter(pl.col("_line") == 11).row(0, named=True)
    assert line_11["StockCode"] == "gift_0001_20"
    assert line_11["Description"] == "Dotcomgiftshop Gift Voucher £20.00"

    counts = {k: v for k, v in report.rejects_by_reason.items() if v}
    assert counts == {
        "unreadable invoice date": 1,
        "missing customer id": 2,
        "missing stock code": 1,
        "not a sale or cancellation invoice": 1,
        "non-product code: postage & carriage": 1,
        "non-product code: gift voucher": 1,
        "non-product code: not a product code (5 digits + optional letters)": 1,
        "non-positive unit price": 1,
        "stock adjustment (negative quantity on a sale invoice)": 1,
        "exact duplicate": 1,
        "duplicate purchase": 1,
    }
    assert report.rejects_by_reason["non-product code: discount"] == 0


def test_sample_purchases_orders_and_returns(sample: Path) -> None:
    result = build_online_retail(sample)
    expected = pl.DataFrame(
        {
            "order_id": ["536365", "536365", "C536379", "536381", "536385", "536387"],
            "member_id": ["17850", "17850", "17850", "12583", "12583", "12583"],
            "item_id": ["85123A", "71053", "85123A", "85123A", "22139", "22139"],
            "ts": [
                dt("2010-12-01 08:26:00"),
                dt("2010-12-01 08:26:00"),
                dt("2010-12-02 09:41:00"),
                dt("2010-12-03 10:00:00"),
                dt("2010-12-04 09:00:00"),
                dt("2010-12-05 09:00:00"),
            ],
            "quantity": [6, 6, -2, 1, 3, 2],
            "amount": [15.3, 20.34, -5.9, 2.65, 14.85, 8.5],
        },
        schema_overrides={"ts": pl.Datetime("us")},
    )
    assert_frame_equal(result.dataset.purchases, expected)
    assert result.report.orders == 4
    assert result.report.return_rows == 1
    assert result.report.return_orders == 1


def test_sample_members_first_invoice_and_most_frequent_country(sample: Path) -> None:
    members = build_online_retail(sample).dataset.members
    assert members.select("member_id", "joined_at", "region").to_dicts() == [
        # 12583: first line 6 (08:34); France on 10 lines, Germany on 1. Line 16 (bad date) is
        # not used for joined_at.
        {"member_id": "12583", "joined_at": dt("2010-12-01 08:34:00"), "region": "France"},
        {"member_id": "17850", "joined_at": dt("2010-12-01 08:26:00"), "region": "United Kingdom"},
    ]
    assert members["tier"].null_count() == 2
    assert members["tags"].to_list() == [[], []]


def test_sample_items_title_median_price_category_and_tags(sample: Path) -> None:
    items = build_online_retail(sample).dataset.items
    rows = {r["item_id"]: r for r in items.to_dicts()}
    # Product codes with a positive price on any line (rejected lines included: they are
    # catalogue facts); 22728 (only price 0), POST, gift_0001_20 and DCGS0003 are not items.
    assert sorted(rows) == ["22139", "22633", "23084", "71053", "85123A"]
    heart = rows["85123A"]  # 85123a upper-cased into 85123A
    assert heart["title"] == "WHITE HANGING HEART T-LIGHT HOLDER"  # 3 of 4 lines
    assert heart["price"] == pytest.approx(2.6)  # median of 2.55, 2.55, 2.95, 2.65
    assert heart["category"] == "candles & lights"
    assert heart["tags"] == ["heart"]
    tea = rows["22139"]
    assert tea["title"] == "RETROSPOT TEA SET CERAMIC 11 PC"
    assert tea["price"] == pytest.approx(4.95)  # median of 4.25, 4.95, 4.95, 4.95, 4.25
    assert tea["category"] == "kitchen & dining"
    assert tea["tags"] == ["set", "spots"]
    assert rows["71053"]["category"] == "candles & lights"
    assert rows["22633"]["category"] == "home decor"  # HAND WARMER
    assert all(r["active"] for r in rows.values())


def test_sample_report_facts_and_files(sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    report = import_online_retail(sample, out, "csv")
    facts = report.facts["source"]
    assert isinstance(facts, dict)
    assert facts["lines"] == 18
    assert facts["invoices"] == 15
    assert facts["cancellation_lines"] == 1
    assert facts["lines_without_customer_id"] == 2
    assert facts["exact_duplicate_lines"] == 1
    assert facts["customers"] == 2
    assert report.facts["items_categorized_share"] == 1.0
    assert report.facts["purchase_rows_categorized_share"] == 1.0

    saved = json.loads((out / "import_report.json").read_text())
    assert saved["rows_in"] == 18
    assert saved["rows_kept"] + saved["rows_rejected"] == 18
    rejects = pl.read_csv(out / "rejects" / "import_rejects.csv", infer_schema=False)
    assert rejects.columns[:4] == ["_line", "_column", "_reason", "_detail"]
    assert rejects.height == 12
    loaded = load_dataset(out)
    assert loaded.report.rejected_count == 0


def test_parquet_source_with_typed_columns_gives_the_same_dataset(
    sample: Path, tmp_path: Path
) -> None:
    # The common Parquet conversion: Quantity int, InvoiceDate datetime, CustomerID float.
    typed = pl.read_csv(sample, schema_overrides={"InvoiceNo": pl.String, "StockCode": pl.String})
    typed = typed.with_columns(
        pl.col("InvoiceDate").str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False),
        pl.col("CustomerID").cast(pl.Float64),
    )
    parquet = tmp_path / "online_retail.parquet"
    typed.write_parquet(parquet)
    from_csv = build_online_retail(sample)
    from_parquet = build_online_retail(parquet)
    for table in ("members", "items", "purchases"):
        assert_frame_equal(getattr(from_parquet.dataset, table), getattr(from_csv.dataset, table))
    assert "_row" in from_parquet.rejects.columns  # Parquet rows are numbered from 1
    assert from_parquet.report.rejects_by_reason == from_csv.report.rejects_by_reason


def test_missing_file_and_missing_columns_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        build_online_retail(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("InvoiceNo,StockCode,Quantity\n1,2,3\n")
    with pytest.raises(DataError, match=r"missing column\(s\) Description, InvoiceDate"):
        build_online_retail(bad)


def test_cli_prints_summary_and_exits_0_or_1(sample: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    ok = runner.invoke(app, ["data", "import", "online-retail", str(sample), "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert re.search(r"rows in\s+18\n", ok.output)
    assert re.search(r"rows kept\s+6\n", ok.output)
    assert "missing customer id" in ok.output
    assert (out / "purchases.parquet").is_file()
    bad = runner.invoke(app, ["data", "import", "online-retail", str(tmp_path / "x.csv"), "--out", str(out)])  # fmt: skip
    assert bad.exit_code == 1
    assert "file not found" in bad.output


# --------------------------------------------------------------------------- published dataset

needs_dataset = pytest.mark.skipif(not DATASET.is_file(), reason=f"{DATASET} not present")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory):
    result = build_online_retail(DATASET)
    folder = tmp_path_factory.mktemp("online_retail")
    write_import(result, folder / "parquet", "parquet")
    write_dataset(result.dataset, folder / "csv", "csv")
    return result, folder


@needs_dataset
def test_published_facts_of_the_dataset(imported) -> None:
    result, _ = imported
    facts = result.report.facts["source"]
    assert facts["lines"] == 541_909
    assert facts["customers"] == 4_372
    assert facts["invoices"] == 25_900
    assert facts["cancellation_lines"] == 9_288
    assert facts["lines_without_customer_id"] == 135_080
    assert facts["exact_duplicate_lines"] == 5_268
    assert facts["stock_codes"] == 4_070
    assert facts["first_invoice_date"] == "2010-12-01 08:26:00"
    assert facts["last_invoice_date"] == "2011-12-09 12:50:00"


@needs_dataset
def test_every_line_is_kept_or_rejected_with_known_counts(imported) -> None:
    result, folder = imported
    report = result.report
    assert report.rows_in == 541_909
    assert report.rows_kept + report.rows_rejected == 541_909
    assert report.rows_kept == 399_555
    assert {k: v for k, v in report.rejects_by_reason.items() if v} == {
        "missing customer id": 135_080,
        "non-product code: postage & carriage": 1_426,
        "non-product code: manual entry": 465,
        "non-product code: discount": 77,
        "non-product code: fees & charges": 44,
        "non-product code: cushion pad filler": 4,
        "non-product code: image service": 3,
        "non-positive unit price": 33,
        # 5,268 exact duplicates in all; an earlier rule rejects 48 of them (43 lack a customer
        # id, 5 are manual entries), like the lines they repeat.
        "exact duplicate": 5_220,
        "duplicate purchase": 2,
    }
    assert report.members == 4_372
    assert report.items == 3_802
    assert report.orders == 18_399
    assert report.return_rows == 8_503
    assert report.return_orders == 3_381
    rejects = pl.read_csv(folder / "parquet" / "rejects" / "import_rejects.csv", infer_schema=False)
    assert rejects.height == 142_354
    # Cancellations stay as negative rows on their customer.
    purchases = result.dataset.purchases
    returns = purchases.filter(pl.col("quantity") < 0)
    assert returns["order_id"].str.starts_with("C").all()
    assert (returns["amount"] <= 0).all()
    assert purchases.filter(pl.col("quantity") > 0)["order_id"].str.starts_with("C").sum() == 0


@needs_dataset
def test_category_coverage(imported) -> None:
    facts = imported[0].report.facts
    assert facts["items_categorized_share"] == 0.9645
    assert facts["purchase_rows_categorized_share"] == 0.9741
    assert facts["items_per_category"]["other"] == 135


@needs_dataset
def test_imported_dataset_loads_without_rejects_and_round_trips(imported) -> None:
    result, folder = imported
    from_parquet = load_dataset(folder / "parquet")
    from_csv = load_dataset(folder / "csv")
    assert from_parquet.report.rejected_count == 0
    assert from_csv.report.rejected_count == 0
    for table in ("members", "items", "purchases"):
        assert_frame_equal(getattr(from_csv.dataset, table), getattr(from_parquet.dataset, table))
        assert_frame_equal(getattr(from_parquet.dataset, table), getattr(result.dataset, table))
