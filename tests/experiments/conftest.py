"""Fixtures of the experiment tests: the serving tests' bundle and snapshot, and a PostgreSQL
database of their own (``recsys_test_<8 hex>`` on the machine's server at
CAMPAIGN_TEST_PG_URL, dropped at the end; skipped when the server is not reachable)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.serving.conftest import write_test_bundle, write_test_snapshot

PG_ADMIN_URL = os.environ.get(
    "CAMPAIGN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_bundle(tmp_path_factory.mktemp("exp-bundle") / "b")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_snapshot(tmp_path_factory.mktemp("exp-snapshot") / "snap")


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
