"""The campaign store suite, run against SQLite (a file in tmp_path) and PostgreSQL.

PostgreSQL: the machine's server at CAMPAIGN_TEST_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres) is the admin connection; the suite
creates its own database ``recsys_test_<8 hex>``, migrates it, empties the tables before each
test and drops only that database at the end. Skipped, with the reason, when the server is not
reachable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from feature_store.campaigns import (
    CampaignExistsError,
    CampaignNotFoundError,
    CampaignStore,
    InvalidCampaignInputError,
    StoreUnavailableError,
    default_url,
    resolve_url,
)
from feature_store.campaigns.models import Base

PG_ADMIN_URL = os.environ.get(
    "CAMPAIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SENT = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
TABLES = ("campaign_reports", "campaign_members", "campaigns", "purchase_events")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    admin = sa.create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc.orig}")
    name = f"recsys_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def migrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CampaignStore]:
    if request.param == "sqlite":
        url = default_url(tmp_path_factory.mktemp("campaign-store"))
    else:
        url = request.getfixturevalue("pg_url")
    store = CampaignStore.from_url(url)
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture
def store(migrated: CampaignStore) -> CampaignStore:
    with migrated.engine.begin() as conn:
        for table in TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))
    return migrated


def _record(store: CampaignStore, cid: str, treatment: list[str], control: list[str], **kw: object):
    args = {"sent_at": SENT, "holdout_percent": 10.0, "definition": {"seed": {"items": ["I1"]}}}
    args.update(kw)
    return store.record_campaign(campaign_id=cid, treatment=treatment, control=control, **args)  # type: ignore[arg-type]


def test_migrations_are_idempotent_and_match_the_models(store: CampaignStore) -> None:
    store.migrate()
    assert store.current_revision() == store.head_revision() == "0002_purchase_events"
    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": "campaign_alembic_version"}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_record_and_read_back(store: CampaignStore) -> None:
    berlin = timezone(timedelta(hours=2))
    campaign = _record(
        store, "c1", ["M3", "M1", "M2"], ["M9"], sent_at=datetime(2025, 6, 2, 11, tzinfo=berlin),
        audience_id="a1", name="Spring", seed={"items": ["I1", "I2"]}, salt="s",
        holdout_scheme="blake2b-64/v1", model_version="als@7",
    )  # fmt: skip
    assert campaign == store.get("c1")
    assert campaign.sent_at == SENT
    assert campaign.sent_at.tzinfo is not None
    assert campaign.counts == {"treatment": 3, "control": 1, "total": 4}
    assert campaign.seed_items == ("I1", "I2")
    assert campaign.definition == {"seed": {"items": ["I1"]}}
    assert (campaign.salt, campaign.model_version, campaign.audience_id) == ("s", "als@7", "a1")
    assert store.members("c1", "treatment").tolist() == ["M1", "M2", "M3"]
    assert store.members("c1", "control").tolist() == ["M9"]
    groups = store.groups("c1")
    assert groups.rows() == [
        ("M1", "treatment", None),
        ("M2", "treatment", None),
        ("M3", "treatment", None),
        ("M9", "control", None),
    ]
    assert groups.schema["score"] == pl.Float64
    assert store.groups("c1", "control").height == 1


def test_scores_at_send_time_are_stored_per_member(store: CampaignStore) -> None:
    import numpy as np

    _record(
        store, "c1", ["M3", "M1", "M2"], ["M9", "M8"],
        treatment_scores=np.array([0.3, 0.125, np.nan], dtype=np.float32),
        control_scores=[-1.5, 2.0],
    )  # fmt: skip
    groups = store.groups("c1")
    # float32 scores come back exactly (as float64); NaN is null
    assert groups.rows() == [
        ("M1", "treatment", 0.125),
        ("M2", "treatment", None),
        ("M3", "treatment", float(np.float32(0.3))),
        ("M8", "control", 2.0),
        ("M9", "control", -1.5),
    ]
    assert store.groups("c1", "control")["score"].to_list() == [2.0, -1.5]
    with pytest.raises(InvalidCampaignInputError, match="treatment_scores"):
        _record(store, "c2", ["M1", "M2"], [], treatment_scores=[0.1])
    with pytest.raises(InvalidCampaignInputError, match="control_scores"):
        _record(store, "c2", ["M1"], ["M2"], control_scores=[float("inf")])
    assert store.count() == 1


def test_duplicate_campaign_is_refused_and_leaves_nothing_behind(store: CampaignStore) -> None:
    _record(store, "c1", ["M1"], ["M2"])
    with pytest.raises(CampaignExistsError):
        _record(store, "c1", ["M5", "M6"], [])
    assert store.members("c1", "treatment").tolist() == ["M1"]
    assert store.count() == 1


def test_unknown_campaign(store: CampaignStore) -> None:
    for call in (
        lambda: store.get("nope"),
        lambda: store.members("nope", "treatment"),
        lambda: store.groups("nope"),
        lambda: store.save_report("nope", 30, "events", {}),
    ):
        with pytest.raises(CampaignNotFoundError, match="nope"):
            call()


def test_invalid_input_names_the_field(store: CampaignStore) -> None:
    with pytest.raises(InvalidCampaignInputError, match="sent_at"):
        _record(store, "c1", ["M1"], [], sent_at=datetime(2025, 1, 1))
    with pytest.raises(InvalidCampaignInputError, match="members"):
        _record(store, "c1", ["M1", "M2"], ["M2"])
    with pytest.raises(InvalidCampaignInputError, match="campaign_id"):
        _record(store, "", ["M1"], [])
    with pytest.raises(InvalidCampaignInputError, match="group"):
        store.members("c1", "everyone")  # type: ignore[arg-type]
    assert store.count() == 0


def test_list_newest_first(store: CampaignStore) -> None:
    for i in range(3):
        _record(
            store,
            f"c{i}",
            [f"M{i}"],
            [],
            sent_at=SENT + timedelta(days=i),
            audience_id="a" if i else "b",
        )
    assert [c.id for c in store.list()] == ["c2", "c1", "c0"]
    assert [c.id for c in store.list(limit=1, offset=1)] == ["c1"]
    assert [c.id for c in store.list(audience_id="b")] == ["c0"]


def test_contacted_since_counts_only_the_treatment_group(store: CampaignStore) -> None:
    _record(store, "old", ["M1", "M2"], ["M3"], sent_at=SENT - timedelta(days=40))
    _record(store, "c1", ["M1", "M4"], ["M2"], sent_at=SENT)
    _record(store, "c2", ["M1", "M3"], ["M4"], sent_at=SENT + timedelta(days=1))
    since = SENT - timedelta(days=30)
    assert store.contacted_since(since) == {"M1": 2, "M4": 1, "M3": 1}
    assert store.contacted_since(since, ["M2", "M3", "M9"]) == {"M3": 1}
    assert store.contacted_since(SENT - timedelta(days=60))["M2"] == 1
    with pytest.raises(InvalidCampaignInputError, match="since"):
        store.contacted_since(datetime(2025, 1, 1))


def test_report_cache(store: CampaignStore) -> None:
    _record(store, "c1", ["M1"], ["M2"])
    assert store.cached_report("c1", 30, "events") is None
    store.save_report("c1", 30, "events", {"lift": 0.1})
    store.save_report("c1", 30, "events", {"lift": 0.2})
    store.save_report("c1", 60, "events", {"lift": 0.3})
    assert store.cached_report("c1", 30, "events") == {"lift": 0.2}
    assert store.cached_report("c1", 60, "events") == {"lift": 0.3}


def test_bulk_members_and_awkward_ids(store: CampaignStore) -> None:
    treatment = [f"M{i:06d}" for i in range(50_000)] + [
        "tab\there",
        "back\\slash",
        "new\nline",
        "ü-ñ",
    ]
    control = [f"C{i:06d}" for i in range(5_000)]
    scores = [i / 7 for i in range(len(treatment))]
    campaign = _record(store, "bulk", treatment, control, treatment_scores=scores)
    assert campaign.counts["treatment"] == 50_004
    assert store.members("bulk", "treatment").tolist() == sorted(treatment)
    assert store.members("bulk", "control").size == 5_000
    read = store.groups("bulk", "treatment")
    expected = dict(zip(treatment, scores, strict=True))
    assert read["score"].to_list() == [expected[m] for m in read["member_id"].to_list()]
    assert store.groups("bulk", "control")["score"].null_count() == 5_000


def test_url_resolution(tmp_path: Path) -> None:
    assert resolve_url(tmp_path, {}) == f"sqlite:///{(tmp_path / 'campaigns.db').resolve()}"
    assert resolve_url(tmp_path, {"DATABASE_URL": "postgresql://u@h/db"}) == "postgresql://u@h/db"
    store = CampaignStore.for_data_dir(tmp_path / "data", {})
    store.migrate()
    assert (tmp_path / "data" / "campaigns.db").exists()
    store.dispose()
    pg = CampaignStore.from_url("postgresql://user:secret@127.0.0.1:1/db")
    assert pg.engine.dialect.driver == "psycopg"
    assert "secret" not in pg.url


def test_unreachable_database_is_reported() -> None:
    store = CampaignStore.from_url(
        "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    )
    with pytest.raises(StoreUnavailableError, match="cannot"):
        store.migrate()
    with pytest.raises(StoreUnavailableError):
        store.get("c1")
    store.dispose()


def _event(event_id: str, member: str, day: int, quantity: int = 1) -> dict[str, object]:
    return {
        "event_id": event_id,
        "member_id": member,
        "order_id": f"o-{event_id}",
        "item_id": "I1",
        "ts": datetime(2025, 6, day, 12, 30),
        "quantity": quantity,
        "amount": 4.5 * quantity,
    }


def test_purchase_events_are_stored_once_and_read_by_time_range(store: CampaignStore) -> None:
    log = store.events
    assert log.record([_event("e1", "m1", 3), _event("e2", "m2", 5), _event("e3", "m1", 9)]) == 3
    # a batch resent after a failure is stored once
    assert log.record([_event("e2", "m2", 5), _event("e4", "m3", 4, quantity=-1)]) == 1
    window = log.purchases(datetime(2025, 6, 3, 12, 30), datetime(2025, 6, 9, 12, 30))
    assert window["event_id"].to_list() == ["e1", "e4", "e2"]  # start inclusive, stop exclusive
    assert window.schema["ts"] == pl.Datetime("us")
    assert window.row(1, named=True)["amount"] == -4.5
    only = log.purchases(datetime(2025, 6, 1), datetime(2025, 7, 1), member_ids=["m1"])
    assert only["event_id"].to_list() == ["e1", "e3"]
    assert log.prune(datetime(2025, 6, 5)) == 2
    assert log.purchases(datetime(2025, 6, 1), datetime(2025, 7, 1))["event_id"].to_list() == [
        "e2",
        "e3",
    ]


def test_purchase_events_bad_input_names_the_field(store: CampaignStore) -> None:
    bad = _event("e1", "m1", 3) | {"ts": datetime(2025, 6, 3, tzinfo=UTC)}
    with pytest.raises(InvalidCampaignInputError, match=r"events\[0\]\.ts"):
        store.events.record([bad])
    missing = {k: v for k, v in _event("e1", "m1", 3).items() if k != "amount"}
    with pytest.raises(InvalidCampaignInputError, match="amount"):
        store.events.record([missing])
