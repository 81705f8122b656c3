"""The Redis key layout of the online store: the only module that builds key names.

Every key starts with ``{prefix}:s{SCHEMA_VERSION}:``. The prefix (default ``recsys``) lets
several stores share one Redis; the schema version changes whenever a key's name, type or value
encoding changes, so code of one schema never reads data written by another (a new schema starts
empty: materialize a snapshot again). Data of one loaded snapshot lives under
``...:v:{version}:`` where ``version`` is a load id; the ``active`` key names the version readers
use. docs/redis_layout.md describes every key, its type and the version switch.

Bulk writers build many keys at once as ``<key prefix> + member_id`` (vectorized); the
``*_key_prefix`` methods return those prefixes so that this module stays the only place that
knows the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: Bump when the name, type or encoding of any key changes (docs/redis_layout.md).
SCHEMA_VERSION: Final[int] = 2

#: Default key prefix; override with ``connect(..., prefix=...)`` or REDIS_PREFIX.
DEFAULT_PREFIX: Final[str] = "recsys"

_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9_.\-]+(?::[A-Za-z0-9_.\-]+)*$")
_VERSION_RE: Final = re.compile(r"^[A-Za-z0-9_.\-]+$")
_GLOB_SPECIAL: Final = re.compile(r"([*?\[\]\\])")
_AUDIENCE_RE: Final = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_TABLE_RE: Final = re.compile(r"^[a-z_]{1,32}$")


def _glob_escape(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names under one prefix, for schema :data:`SCHEMA_VERSION`."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(
                f"invalid Redis key prefix {self.prefix!r}: use letters, digits, '_', '-', '.', "
                "optionally in ':'-separated parts (e.g. 'recsys' or 'shop:recsys')"
            )

    @property
    def root(self) -> str:
        """``{prefix}:s{schema}``: every key of this store starts with it."""
        return f"{self.prefix}:s{SCHEMA_VERSION}"

    # ---- store-wide keys ----------------------------------------------------------------

    @property
    def active(self) -> str:
        """STRING: the version id readers use (absent until the first load finishes)."""
        return f"{self.root}:active"

    @property
    def loading(self) -> str:
        """STRING: the version id being loaded right now (absent otherwise)."""
        return f"{self.root}:loading"

    @property
    def sequence(self) -> str:
        """STRING (integer): counter that numbers loads; INCR gives the next version id."""
        return f"{self.root}:seq"

    @property
    def versions(self) -> str:
        """SET: version ids that may still have keys (loaded, loading or left by a failed load)."""
        return f"{self.root}:versions"

    # ---- per-version keys ---------------------------------------------------------------

    def version_root(self, version: str) -> str:
        if not _VERSION_RE.match(version):
            raise ValueError(f"invalid snapshot version id {version!r}")
        return f"{self.root}:v:{version}"

    def version_pattern(self, version: str) -> str:
        """SCAN MATCH pattern of every key of ``version`` (glob characters escaped)."""
        return _glob_escape(self.version_root(version)) + ":*"

    def meta(self, version: str) -> str:
        """HASH: what was loaded (snapshot path and id, as_of, counts, loaded_at, state)."""
        return f"{self.version_root(version)}:meta"

    def profile_key_prefix(self, version: str) -> str:
        """Profile key = this + member_id."""
        return f"{self.version_root(version)}:p:"

    def profile(self, version: str, member_id: str) -> str:
        """STRING: the member profile, a JSON array in PROFILE_FIELDS order."""
        return self.profile_key_prefix(version) + member_id

    def recent_key_prefix(self, version: str) -> str:
        """Recent-purchases key = this + member_id."""
        return f"{self.version_root(version)}:r:"

    def recent(self, version: str, member_id: str) -> str:
        """STRING: the member's last purchase lines, newest first, a JSON array of objects."""
        return self.recent_key_prefix(version) + member_id

    def event(self, version: str, event_id: str) -> str:
        """STRING with TTL: marks an event id as applied to ``version`` (idempotency)."""
        return f"{self.version_root(version)}:e:{event_id}"

    def journal(self, version: str) -> str:
        """LIST: every event applied to ``version``, in order (JSON objects). A new load replays
        the events after its snapshot's as_of from the active version's journal."""
        return f"{self.version_root(version)}:journal"

    def audience_columns(self, version: str) -> str:
        """HASH: what audiences read of ``version``'s snapshot (member, item and recent-purchase
        tables as chunked Parquet, below): format, as_of, tier ladder, each table's chunk count,
        bytes, rows and SHA-256, and the digest of all of them. Written after the chunks, so the
        tables exist once it does."""
        return f"{self.version_root(version)}:cols"

    def audience_columns_chunk(self, version: str, table: str, index: int) -> str:
        """STRING: piece ``index`` (0-based) of ``table``'s Parquet file (``members``, ``items``
        or ``recent``); the pieces concatenated in index order are the file."""
        if not _TABLE_RE.match(table) or index < 0:
            raise ValueError(f"invalid audience table chunk {table!r} #{index}")
        return f"{self.audience_columns(version)}:{table}:{index}"

    # ---- the same prefixes as parts, for Lua scripts that read the active version ----------

    def profile_key_parts(self) -> tuple[str, str]:
        """``(head, tail)`` with ``profile_key_prefix(v) == head + v + tail``."""
        return f"{self.root}:v:", ":p:"

    def recent_key_parts(self) -> tuple[str, str]:
        """``(head, tail)`` with ``recent_key_prefix(v) == head + v + tail``."""
        return f"{self.root}:v:", ":r:"

    def audience_columns_key_parts(self) -> tuple[str, str]:
        """``(head, tail)`` with ``audience_columns(v) == head + v + tail``."""
        return f"{self.root}:v:", ":cols"

    # ---- keys of the API service (serving/), per served model, not per snapshot version ----

    def serving_results(self, model_id: str, member_id: str) -> str:
        """HASH with TTL: cached recommendation responses of a member under one model (a field
        per request variant: k, category, purchased-item policy)."""
        return f"{self.root}:srv:{_checked_model(model_id)}:c:{member_id}"

    def serving_fold(self, model_id: str, member_id: str) -> str:
        """STRING with TTL: the member's folded-in vector and the items bought since the
        snapshot, under one model (binary, serving/online.py)."""
        return f"{self.root}:srv:{_checked_model(model_id)}:f:{member_id}"

    @property
    def serving_model(self) -> str:
        """STRING: the model every serving worker should run (JSON), set by a model reload."""
        return f"{self.root}:srv:model"

    def serving_model_of(self, role: str) -> str:
        """STRING: :attr:`serving_model` of one role (``champion``: that key; ``challenger``:
        the experiment's second model)."""
        if role == "champion":
            return self.serving_model
        if role != "challenger":
            raise ValueError(f"invalid model role {role!r}")
        return f"{self.root}:srv:model:challenger"

    @property
    def exposures(self) -> str:
        """STREAM, capped (XADD MAXLEN ~): every served recommendation list (id, member,
        variant, model, items), written by the service for experiment attribution
        (feature_store/online/exposures.py)."""
        return f"{self.root}:srv:exposures"

    # ---- campaign audiences (serving/audiences.py): not per snapshot version or model -------

    def audience_meta(self, audience_id: str) -> str:
        """HASH with TTL: an audience's summary (JSON) and the layout of its member records."""
        return f"{self.root}:aud:{_checked_audience(audience_id)}:meta"

    def audience_rows(self, audience_id: str) -> str:
        """STRING with TTL: the audience's ranked members, fixed-width binary records best
        first (read a page with GETRANGE)."""
        return f"{self.root}:aud:{_checked_audience(audience_id)}:rows"

    def audience_control(self, audience_id: str) -> str:
        """STRING with TTL: the audience's control group (its holdout), records like ``rows``;
        absent when the audience has no holdout."""
        return f"{self.root}:aud:{_checked_audience(audience_id)}:control"

    def audience_contacts(self, audience_id: str) -> str:
        """HASH with TTL: the contacts of an audience marked sent (member ids as fixed-width
        records, their count and the sent time), kept for the contact frequency cap."""
        return f"{self.root}:aud:{_checked_audience(audience_id)}:sent"

    @property
    def audience_sends(self) -> str:
        """ZSET: ids of the audiences marked sent, scored by the sent time (epoch seconds)."""
        return f"{self.root}:aud:sends"


def _checked_audience(audience_id: str) -> str:
    if not _AUDIENCE_RE.match(audience_id):
        raise ValueError(f"invalid audience id {audience_id!r}")
    return audience_id


def _checked_model(model_id: str) -> str:
    if not _VERSION_RE.match(model_id):
        raise ValueError(f"invalid served model id {model_id!r}")
    return model_id


__all__ = ["DEFAULT_PREFIX", "SCHEMA_VERSION", "RedisKeys"]
