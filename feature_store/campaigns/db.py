"""The campaign database: one SQLAlchemy engine chosen by URL.

- Embedded default: SQLite in the data folder, ``sqlite:///<data_dir>/campaigns.db``
  (:func:`default_url`), in WAL mode with a busy timeout so that the service's workers and the CLI
  can share it; foreign keys on.
- Production: ``DATABASE_URL``, e.g. ``postgresql+psycopg://user:pass@host:5432/recsys``
  (psycopg 3). A bare ``postgres://`` or ``postgresql://`` URL is read as psycopg 3.

:func:`resolve_url` picks ``DATABASE_URL`` when it is set, else the embedded default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

DATABASE_URL_ENV: Final[str] = "DATABASE_URL"
SQLITE_FILE: Final[str] = "campaigns.db"
_SQLITE_BUSY_MS: Final[int] = 10_000


def default_url(data_dir: Path) -> str:
    """The embedded database of a data folder."""
    return f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"


def resolve_url(data_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """``DATABASE_URL`` if set and not empty, else the embedded SQLite file in ``data_dir``."""
    env = os.environ if environ is None else environ
    return env.get(DATABASE_URL_ENV, "").strip() or default_url(data_dir)


def normalise_url(url: str | URL) -> URL:
    """Parse ``url``; a PostgreSQL URL without a driver uses psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``url``; for a SQLite file its folder is created if missing."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, echo=echo, connect_args={"timeout": _SQLITE_BUSY_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, echo=echo, pool_pre_ping=True)
