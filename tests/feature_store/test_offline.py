"""Point-in-time snapshots: cut-offs, CRM tiers, the folder contract and `recsys features build`."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cli.main import app
from feature_store import schema
from feature_store.dataset import Dataset
from feature_store.errors import DataError
from feature_store.offline import (
    FILES,
    MEMBER_COLUMNS,
    build_features,
    build_snapshot,
    open_snapshot,
)
from feature_store.policy import DEFAULT_POLICY_PATH, load_policy

AS_OF = date(2024, 1, 1)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "feature_snapshot.md"

MEMBERS = """member_id,joined_at,tier,tags,birth_date,points_balance,region
m1,2022-01-01,,,,120,north
m2,2022-06-01,gold,,,,
m3,2024-01-01,,,,,
m4,2023-05-01,regular,staff,1990-01-15,0,south
"""
ITEMS = """item_id,category,price,title,tags,min_tier,active
i1,coffee,10,,,,
i2,tea,20,,,gold,false
"""
PURCHASES = """order_id,member_id,item_id,ts,quantity,amount
o1,m1,i1,2023-06-01T10:00:00,60,600
o2,m1,i2,2024-01-01T00:00:00,1,5000
o3,m2,i2,2023-12-31T23:59:59.999999,1,20
"""


def write(folder: Path, purchases: str = PURCHASES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "members.csv").write_text(MEMBERS)
    (folder / "items.csv").write_text(ITEMS)
    (folder / "purchases.csv").write_text(purchases)
    return folder


@pytest.fixture
def built(tmp_path: Path) -> Path:
    result = build_snapshot(write(tmp_path / "data"), AS_OF, tmp_path / "snap")
    return result.snapshot.path


def test_manifest(built: Path, tmp_path: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["format_version"] == 2
    assert manifest["as_of"] == "2024-01-01"
    assert manifest["tiers"] == ["regular", "silver", "gold", "platinum", "diamond"]
    assert manifest["policy_sha256"] == hashlib.sha256(DEFAULT_POLICY_PATH.read_bytes()).hexdigest()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", manifest["source_fingerprint"])
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    # m3 joined at as_of: not a member yet. m1: 2 history rows, m2 and m4: 1.
    assert manifest["row_counts"] == {
        "members": 3,
        "items": 2,
        "tier_history": 4,
        "recent_purchases": 2,
    }
    assert manifest["rejected_rows"] == 0
    assert manifest["purchases_used"] == 2
    # m2: CRM gold, policy regular; m4: CRM regular = policy regular
    assert manifest["tier_agreement"] == {"crm_members": 2, "agreeing": 1, "rate": 0.5}
    assert manifest["files"] == FILES
    # three members, one purchase day each: too few to fit the value model, said so
    assert manifest["value_model"]["params"] is None
    assert "not fitted" in manifest["value_model"]["note"]
    assert manifest["value_policy"]["clv_months"] == 12
    assert manifest["source"]["files"] == {
        "members": "members.csv",
        "items": "items.csv",
        "purchases": "purchases.csv",
    }


def test_purchase_at_as_of_is_excluded(built: Path) -> None:
    members = {
        r["member_id"]: r for r in pl.read_parquet(built / "members.parquet").iter_rows(named=True)
    }
    m1, m2 = members["m1"], members["m2"]
    # o2 (5000 at 2024-01-01 00:00) is not counted; o1 gives 600 + 10 points per order -> silver
    assert (m1["spend_window"], m1["orders_window"], m1["growth_points"]) == (600.0, 1, 610.0)
    assert (m1["frequency"], m1["monetary"], m1["n_orders"]) == (1, 600.0, 1)
    assert m1["policy_tier"] == "silver"
    assert m1["tier_since"] == datetime(2023, 6, 1, 10)
    assert m1["top_categories"] == ["coffee"]
    assert m1["last_purchase_at"] == datetime(2023, 6, 1, 10)
    # the last microsecond before as_of counts
    assert m2["last_purchase_at"] == datetime(2023, 12, 31, 23, 59, 59, 999999)
    assert m2["days_since_last_purchase"] == 0
    recent = pl.read_parquet(built / "recent_purchases.parquet")
    assert recent["order_id"].to_list() == ["o1", "o3"]


def test_crm_tier_is_the_source_of_truth(built: Path) -> None:
    members = pl.read_parquet(built / "members.parquet").sort("member_id")
    got = members.select("member_id", "tier", "tier_source", "policy_tier", "tier_since").rows()
    assert got == [
        ("m1", "silver", "policy", "silver", datetime(2023, 6, 1, 10)),
        ("m2", "gold", "crm", "regular", None),  # disagrees: no known tier_since
        ("m4", "regular", "crm", "regular", datetime(2023, 5, 1)),
    ]


def test_member_columns_tags_and_profile(built: Path) -> None:
    members = pl.read_parquet(built / "members.parquet").sort("member_id")
    assert tuple(members.columns) == MEMBER_COLUMNS
    m4 = members.filter(pl.col("member_id") == "m4").row(0, named=True)
    # CRM tag, then the default rule "birthday_month" (born in January, as-of month January)
    assert m4["tags"] == ["staff", "birthday_month"]
    assert (m4["birth_month"], m4["region"], m4["points_balance"]) == (1, "south", 0)
    assert m4["lifecycle"] == "churned"  # joined 245 days ago, never bought
    assert (m4["r_score"], m4["rfm_segment"]) == (None, None)


def test_items_and_tier_history_files(built: Path) -> None:
    items = pl.read_parquet(built / "items.parquet")
    assert items.select("item_id", "min_tier", "active", "buyers", "pop_7d").rows() == [
        ("i1", "regular", True, 1, 0),
        ("i2", "gold", False, 1, 1),  # o3 counts; o2 at as_of does not
    ]
    history = pl.read_parquet(built / "tier_history.parquet")
    assert history.filter(pl.col("member_id") == "m1").select("tier", "reason").rows() == [
        ("regular", "joined"),
        ("silver", "upgrade"),
    ]


def test_every_member_column_is_documented() -> None:
    text = DOCS.read_text()
    missing = [c for c in MEMBER_COLUMNS if f"`{c}`" not in text]
    assert missing == []


def test_fingerprint_follows_the_data(tmp_path: Path) -> None:
    data = write(tmp_path / "data")
    first = build_snapshot(data, AS_OF, tmp_path / "a").snapshot.manifest["source_fingerprint"]
    again = build_snapshot(data, AS_OF, tmp_path / "b").snapshot.manifest["source_fingerprint"]
    (data / "purchases.csv").write_text(PURCHASES.replace("600", "601"))
    changed = build_snapshot(data, AS_OF, tmp_path / "c").snapshot.manifest["source_fingerprint"]
    assert first == again != changed


def test_existing_snapshot_is_replaced_other_folders_are_refused(tmp_path: Path) -> None:
    data = write(tmp_path / "data")
    out = tmp_path / "snap"
    build_snapshot(data, AS_OF, out)
    result = build_snapshot(data, date(2023, 7, 1), out)
    assert open_snapshot(out).as_of == date(2023, 7, 1)
    assert result.row_counts["members"] == 3  # m1, m2 and m4 joined before 2023-07-01
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "snap"]  # no temporary left
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="exists and is not a feature snapshot"):
        build_snapshot(data, AS_OF, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_open_snapshot_errors(tmp_path: Path, built: Path) -> None:
    assert open_snapshot(built).tiers[0] == "regular"
    with pytest.raises(DataError, match="not a feature snapshot"):
        open_snapshot(tmp_path)
    (built / "items.parquet").unlink()
    with pytest.raises(DataError, match=r"missing items\.parquet"):
        open_snapshot(built)


def test_cli_build_reports_rejected_rows(tmp_path: Path) -> None:
    data = write(tmp_path / "data", PURCHASES + "o9,m1,i1,2023-07-01,0,0\n")  # zero quantity
    out = tmp_path / "snap"
    done = CliRunner().invoke(
        app, ["features", "build", "--data", str(data), "--as-of", "2024-01-01", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert "1 dataset row(s) rejected by validation" in done.output
    assert "CRM tier agrees with the policy for 1 of 2 members (50.0%)" in done.output
    assert json.loads((out / "manifest.json").read_text())["rejected_rows"] == 1


def test_cli_errors(tmp_path: Path) -> None:
    data = write(tmp_path / "data")
    runner = CliRunner()
    bad_date = runner.invoke(
        app, ["features", "build", "--data", str(data), "--as-of", "01/01/2024", "--out", "x"]
    )
    assert bad_date.exit_code == 2
    policy = tmp_path / "bad.toml"
    policy.write_text(DEFAULT_POLICY_PATH.read_text().replace("new_days = 30", "new_days = -3"))
    bad_policy = runner.invoke(
        app,
        [
            "features",
            "build",
            "--data",
            str(data),
            "--as-of",
            "2024-01-01",
            "--out",
            str(tmp_path / "s"),
            "--policy",
            str(policy),
        ],
    )
    assert bad_policy.exit_code == 1
    assert "lifecycle.new_days: must be >= 0" in bad_policy.output
    assert not (tmp_path / "s").exists()


def test_recent_purchases_keep_the_newest_50_rows_per_member() -> None:
    base = datetime(2023, 1, 1)
    newest = base + timedelta(days=60)
    rows = [(f"o{i}", "a", "i1", base + timedelta(days=i), 1, 1.0) for i in range(50)]
    rows += [("t", "a", "i2", newest, 1, 2.0), ("t", "a", "i1", newest, -1, -1.0)]  # a tie
    rows += [("b1", "b", "i1", base, 1, 1.0), ("late", "b", "i1", datetime(2024, 1, 1), 1, 1.0)]
    columns = ["order_id", "member_id", "item_id", "ts", "quantity", "amount"]
    dataset = Dataset(
        members=schema.conform(
            pl.DataFrame({"member_id": ["b", "a"], "joined_at": [base, base]}), schema.MEMBERS
        ),
        items=schema.conform(
            pl.DataFrame({"item_id": ["i1", "i2"], "category": ["c", "c"], "price": [1.0, 2.0]}),
            schema.ITEMS,
        ),
        purchases=schema.conform(
            pl.DataFrame(rows, schema=columns, orient="row"), schema.PURCHASES
        ),
    )
    recent = build_features(dataset, load_policy(), AS_OF).recent_purchases
    a = recent.filter(pl.col("member_id") == "a")
    assert a.height == 50
    # newest first; the two lines of the tie in file order; o0 and o1 (the oldest) dropped
    assert a["order_id"].to_list()[:4] == ["t", "t", "o49", "o48"]
    assert a["item_id"].to_list()[:2] == ["i2", "i1"]
    assert a["order_id"].to_list()[-1] == "o2"
    assert recent["member_id"].to_list() == ["a"] * 50 + ["b"]  # sorted by member; late excluded


def test_no_purchases_and_no_members_yet() -> None:
    base = datetime(2023, 1, 1)
    dataset = Dataset(
        members=schema.conform(
            pl.DataFrame({"member_id": ["a"], "joined_at": [base]}), schema.MEMBERS
        ),
        items=schema.conform(
            pl.DataFrame({"item_id": ["i"], "category": ["c"], "price": [1.0]}), schema.ITEMS
        ),
        purchases=schema.empty_frame(schema.PURCHASES),
    )
    tables = build_features(dataset, load_policy(), AS_OF)
    row = tables.members.row(0, named=True)
    assert (row["tier"], row["lifecycle"], row["rfm_segment"], row["tags"]) == (
        "regular",
        "churned",
        None,
        [],
    )
    assert tables.recent_purchases.height == 0
    before_anyone = build_features(dataset, load_policy(), date(2022, 1, 1))
    assert (before_anyone.members.height, before_anyone.tier_history.height) == (0, 0)
