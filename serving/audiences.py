"""Campaign audiences in the service (and the CLI): the scorer of the served model, exclusions
from the online store, and audiences kept in Redis.

* :func:`assemble` builds an :class:`AudienceContext` from a model bundle and a feature
  snapshot: the member columns of the snapshot (``feature_store.member_columns``), the item
  side of the bundle (vectors, categories, the snapshot's item tags aligned to the bundle's
  items, their distinct buyers as popularity, the bundle's buy-again history) and an
  :class:`engine.audience.AudienceScorer`.
  ``recsys audience build`` calls it too, so the CLI and the API score the same way.
* :func:`exclusion_masks` turns a definition's exclusions into boolean masks over the
  snapshot's members: "bought the seed items in the last N days" (the snapshot's recent
  purchases plus the purchase events journaled since) and "contacted in the last N days" (the
  audiences marked sent, :mod:`serving.audience_store`).
* :class:`AudienceService` is what the routes call: it loads the context lazily on the first
  audience request and caches it per (snapshot, bundle id), builds, stores, pages, exports and
  marks audiences sent.

Which snapshot: ``RECSYS_SNAPSHOT`` when set, else the folder the online store's active version
was loaded from (its meta ``snapshot`` field). The time "N days" counts back from: for
purchases, the newest known purchase time (the snapshot's ``as_of`` 00:00, or the latest
purchase event journaled since, whichever is later), so that a historical snapshot behaves as on
its day; for contacts, the wall clock (sends are recorded with it).
"""

from __future__ import annotations

import io
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import polars as pl
import scipy.sparse as sp

from engine.audience import (
    Audience,
    AudienceDefinition,
    AudienceScorer,
    DefinitionError,
    ItemSide,
    parse_definition,
)
from engine.blend import BUY_AGAIN
from engine.bundle import Bundle
from engine.ids import IdMap
from engine.ranking import ItemCatalog
from feature_store.errors import DataError
from feature_store.member_columns import (
    MemberColumns,
    read_item_columns,
    read_member_columns,
    recent_buyers,
)
from feature_store.offline import open_snapshot
from feature_store.online import RedisOnlineStore
from serving.audience_store import (
    AudienceNotFoundError,
    AudienceStore,
    AudienceTooLargeError,
    Labels,
    SentRecord,
    StoredAudience,
    csv_chunk,
    encode_ids,
    make_records,
    page_members,
    utc_now,
)
from serving.errors import BadRequestError, NotFoundError, ServiceUnavailableError
from serving.model import ServingModel
from serving.online import OnlineGateway, StoreDownError
from serving.settings import Settings

log = logging.getLogger("recsys.serving")
T = TypeVar("T")

#: Members shown in the response of a created audience.
PREVIEW: Final[int] = 20
#: Journal entries read per LRANGE when looking for purchases since the snapshot.
JOURNAL_BATCH: Final[int] = 10_000
BOUGHT_SEED, CONTACTED = "bought_seed", "contacted"
#: What an audience id looks like (``aud_`` + 16 hex digits; the key builder checks it again).
AUDIENCE_ID: Final = re.compile(r"aud_[0-9a-f]{16}")


class Runner(Protocol):
    """Runs an action on the online store: the service's circuit breaker, or a plain call."""

    def __call__(self, action: Callable[[RedisOnlineStore], T], /) -> T: ...


def direct(store: RedisOnlineStore) -> Runner:
    """A :class:`Runner` calling ``store`` directly (the CLI)."""

    class _Direct:
        def __call__(self, action: Callable[[RedisOnlineStore], T], /) -> T:
            return action(store)

    return _Direct()


# -- assembly ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudienceContext:
    """A model's audience scorer over a snapshot's members, and what exclusions need."""

    snapshot: Path
    bundle_id: str
    as_of: date
    columns: MemberColumns
    scorer: AudienceScorer
    item_ids: IdMap
    #: snapshot member id -> attribute row (for contact and purchase lookups)
    member_index: IdMap
    #: member ids as fixed-width UTF-8 (the stored records)
    id_bytes: npt.NDArray[np.bytes_]

    @property
    def labels(self) -> Labels:
        c = self.columns
        return Labels(c.tier_names, c.segment_names, c.lifecycle_names)

    def records(self, audience: Audience) -> npt.NDArray[np.void]:
        rows = audience.rows
        c = self.columns
        return make_records(
            self.id_bytes[rows],
            audience.scores,
            audience.percentiles,
            c.tier_codes[rows],
            c.segment_codes[rows],
            c.lifecycle_codes[rows],
        )

    def mask_of(self, member_ids: npt.NDArray[np.str_]) -> npt.NDArray[np.bool_]:
        """Bool mask over the snapshot's members: True for those in ``member_ids``."""
        mask = np.zeros(len(self.columns), dtype=np.bool_)
        if member_ids.size:
            rows = self.member_index.lookup(member_ids)
            mask[rows[rows >= 0]] = True
        return mask


def catalogue_categories(catalog: ItemCatalog) -> npt.NDArray[np.str_]:
    """The category of every item of a serving catalogue ("" for none), in bundle order."""
    names = np.asarray([*catalog.categories, ""], dtype=np.str_)
    codes = np.asarray(catalog.category_codes)
    return names[np.where(codes < 0, len(catalog.categories), codes)]


def assemble(
    bundle: Bundle,
    snapshot: Path,
    *,
    bundle_key: str,
    categories: npt.NDArray[np.str_] | None = None,
    known_segments: tuple[str, ...] | None = None,
) -> AudienceContext:
    """The :class:`AudienceContext` of ``bundle`` over ``snapshot``'s members.

    ``categories`` (bundle item order) default to the snapshot's item categories; item tags
    always come from the snapshot, aligned to the bundle's items (items the snapshot does not
    know have none); popularity is each item's distinct buyers in the snapshot; the bundle's
    buy-again history adds the member's own purchases of the seed to the score.
    """
    snap = open_snapshot(snapshot)
    columns = read_member_columns(snap)
    items = read_item_columns(snap)
    n_items = len(bundle.item_ids)
    positions = bundle.item_ids.lookup(items.item_ids)
    known = positions >= 0
    # selection matrix: bundle item <- snapshot item, then the snapshot's tags through it
    select = sp.csr_array(
        (np.ones(int(known.sum()), dtype=np.float32), (positions[known], np.flatnonzero(known))),
        shape=(n_items, len(items)),
    )
    tags = sp.csr_array((select @ items.tags.astype(np.float32)) > 0)
    if categories is None:
        categories = np.full(n_items, "", dtype=items.categories.dtype)
        categories[positions[known]] = items.categories[known]
    # a category's or tag's items weigh by their distinct buyers before the snapshot, as in
    # the offline evaluation (training/audience_eval.py) and docs/audiences.md
    buyers = np.zeros(n_items, dtype=np.float64)
    buyers[positions[known]] = items.buyers[known]
    side = ItemSide(
        ids=bundle.item_ids,
        vectors=np.asarray(bundle.arrays["item_vectors"], dtype=np.float32),
        categories=np.asarray(categories, dtype=np.str_),
        tags=tags,
        tag_names=items.tag_names,
        popularity=buyers,
    )
    scorer = AudienceScorer(
        columns,
        np.asarray(bundle.arrays["member_vectors"], dtype=np.float32),
        bundle.member_ids,
        side,
        known_segments=known_segments,
        history=bundle.sparse.get(BUY_AGAIN),  # the member's own purchases of the seed
    )
    return AudienceContext(
        snapshot=snapshot,
        bundle_id=bundle_key,
        as_of=columns.as_of,
        columns=columns,
        scorer=scorer,
        item_ids=bundle.item_ids,
        member_index=IdMap(columns.member_ids),
        id_bytes=encode_ids(columns.member_ids),
    )


# -- exclusions -------------------------------------------------------------------------------


def _journal_purchases(store: RedisOnlineStore) -> pl.DataFrame:
    """Purchase events journaled in the active version (member_id, item_id, ts, quantity)."""
    schema = {"member_id": pl.String, "item_id": pl.String, "ts": pl.String, "quantity": pl.Int64}
    version = store.active_version()
    if version is None:
        return pl.DataFrame(schema=schema)
    key = store.keys.journal(version)
    frames = []
    start = 0
    while True:
        batch: list[bytes] = [
            _as_bytes(raw) for raw in store.client.lrange(key, start, start + JOURNAL_BATCH - 1)
        ]
        if not batch:
            break
        frames.append(pl.read_ndjson(io.BytesIO(b"\n".join(batch)), schema=schema))
        start += len(batch)
    if not frames:
        return pl.DataFrame(schema=schema)
    return pl.concat(frames)


def _as_bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode()


def bought_seed_members(
    context: AudienceContext,
    definition: AudienceDefinition,
    days: int,
    run: Runner | None,
) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """Members who bought any seed item in the ``days`` before the newest known purchase time
    (module docstring): the snapshot's recent purchases plus, with ``run``, the purchase
    events journaled since the snapshot."""
    warnings: list[str] = []
    rows = context.scorer.seed_items(definition.seed)
    seed_ids = context.item_ids.ids_at(rows)
    reference = datetime.combine(context.as_of, time())
    if run is None:
        warnings.append(
            "exclude.bought_seed_within_days: purchases reported since the snapshot are not "
            "known without the online store; only the snapshot's purchases were checked"
        )
    if not seed_ids.size:
        return context.mask_of(np.empty(0, dtype="<U1")), warnings
    events = None
    if run is not None:
        events = run(_journal_purchases).with_columns(pl.col("ts").str.to_datetime(time_unit="us"))
        newest = events.get_column("ts").max() if events.height else None
        if isinstance(newest, datetime) and newest > reference:
            reference = newest
    since = reference - timedelta(days=days)
    buyers = [recent_buyers(context.snapshot, seed_ids.tolist(), since)]
    if events is not None and events.height:
        recent = events.filter(
            pl.col("item_id").is_in(seed_ids.tolist())
            & (pl.col("quantity") > 0)
            & (pl.col("ts") >= since)
        )
        buyers.append(recent.get_column("member_id").to_numpy().astype(np.str_))
    return context.mask_of(np.concatenate(buyers)), warnings


def exclusion_masks(
    context: AudienceContext,
    definition: AudienceDefinition,
    run: Runner | None,
    audiences: AudienceStore | None,
    *,
    now: datetime,
) -> tuple[dict[str, npt.NDArray[np.bool_]], list[str]]:
    """The exclusion masks of ``definition`` ("bought_seed", "contacted") and warnings.

    The contact cap needs the audience history in Redis (``run`` and ``audiences``); without
    them it is an error naming the field, never silently skipped."""
    masks: dict[str, npt.NDArray[np.bool_]] = {}
    warnings: list[str] = []
    exclusions = definition.exclusions
    if exclusions.bought_seed_within_days is not None:
        mask, notes = bought_seed_members(
            context, definition, exclusions.bought_seed_within_days, run
        )
        masks[BOUGHT_SEED] = mask
        warnings += notes
    if exclusions.contacted_within_days is not None:
        if run is None or audiences is None:
            raise DefinitionError(
                "exclude.contacted_within_days",
                "the contact history is kept in the online store; give a Redis URL",
            )
        since = now - timedelta(days=exclusions.contacted_within_days)
        store = audiences
        contacted = run(lambda s: store.contacted_since(s.client, since))
        masks[CONTACTED] = context.mask_of(contacted)
    return masks, warnings


def build_audience(
    context: AudienceContext,
    definition: AudienceDefinition,
    run: Runner | None,
    audiences: AudienceStore | None,
    *,
    now: datetime,
) -> Audience:
    """Check the definition, compute its exclusions and build the audience."""
    context.scorer.check(definition)  # DefinitionError before any Redis read
    masks, warnings = exclusion_masks(context, definition, run, audiences, now=now)
    audience = context.scorer.build(definition, exclude=masks)
    if warnings:
        audience = _with_warnings(audience, warnings)
    return audience


def _with_warnings(audience: Audience, warnings: list[str]) -> Audience:
    return replace(audience, warnings=(*audience.warnings, *warnings))


def load_definition_text(text: str, suffix: str, where: str) -> AudienceDefinition:
    """A definition document from JSON or TOML text; DefinitionError naming ``where``."""
    import json
    import tomllib

    try:
        data: Any = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DefinitionError(where, f"not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise DefinitionError(where, "the definition must be an object (a table)")
    return parse_definition(data)


# -- the service ------------------------------------------------------------------------------


def new_audience_id() -> str:
    return "aud_" + secrets.token_hex(8)


class AudienceService:
    """Audiences of the served model (module docstring). Thread-safe."""

    def __init__(
        self, settings: Settings, gateway: OnlineGateway, policy_segments: tuple[str, ...]
    ):
        self.settings = settings
        self.gateway = gateway
        self.store = AudienceStore(
            gateway.keys,
            ttl_days=settings.audience_ttl_days,
            history_days=settings.contact_history_days,
        )
        self._segments = policy_segments
        self._lock = threading.Lock()
        self._context: AudienceContext | None = None

    # -- helpers -----------------------------------------------------------------------------

    def _retry_after(self) -> int:
        return max(1, int(self.settings.redis_retry_seconds))

    def _down(self, exc: StoreDownError) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"audiences are unavailable while the online store is down ({exc})",
            retry_after_seconds=self._retry_after(),
        )

    def _call(self, action: Callable[[RedisOnlineStore], T]) -> T:
        try:
            return self.gateway.call(action)
        except StoreDownError as exc:
            raise self._down(exc) from exc

    def _snapshot(self) -> Path:
        if self.settings.snapshot is not None:
            folder = self.settings.snapshot
            if not (folder / "manifest.json").is_file():
                raise ServiceUnavailableError(
                    f"audiences need the feature snapshot RECSYS_SNAPSHOT={folder}, and it is "
                    "not a snapshot folder (no manifest.json)",
                    retry_after_seconds=60,
                )
            return folder
        info = self._call(lambda store: store.snapshot_info())
        if info is None:
            raise ServiceUnavailableError(
                "audiences need a feature snapshot: the online store has no active snapshot "
                "(run `recsys features materialize`) and RECSYS_SNAPSHOT is not set",
                retry_after_seconds=60,
            )
        folder = Path(info.snapshot)
        if not (folder / "manifest.json").is_file():
            raise ServiceUnavailableError(
                f"audiences need the feature snapshot {folder} that the online store's active "
                "version was loaded from, and it is not readable here; set RECSYS_SNAPSHOT to "
                "its folder",
                retry_after_seconds=60,
            )
        return folder

    def context(self, model: ServingModel) -> AudienceContext:
        """The scorer of ``model`` over the current snapshot, built once per (snapshot, bundle)."""
        snapshot = self._snapshot().resolve()
        current = self._context
        if current is not None and (current.snapshot, current.bundle_id) == (snapshot, model.id):
            return current
        with self._lock:
            current = self._context
            if current is not None and (current.snapshot, current.bundle_id) == (
                snapshot,
                model.id,
            ):
                return current
            log.warning("audiences: loading members of %s for model %s", snapshot, model.id)
            try:
                context = assemble(
                    model.bundle,
                    snapshot,
                    bundle_key=model.id,
                    categories=catalogue_categories(model.catalog),
                    known_segments=self._segments or None,
                )
            except DataError as exc:
                raise ServiceUnavailableError(
                    f"audiences cannot read the feature snapshot {snapshot}: {exc}",
                    retry_after_seconds=60,
                ) from exc
            self._context = context
            return context

    def _stored(self, audience_id: str) -> StoredAudience:
        _check_id(audience_id)
        try:
            return self._call(lambda store: self.store.load(store.client, audience_id))
        except AudienceNotFoundError as exc:
            raise NotFoundError(f"audience {audience_id!r} does not exist (or expired)") from exc

    # -- operations --------------------------------------------------------------------------

    def create(self, document: Mapping[str, Any], model: ServingModel) -> dict[str, Any]:
        """Parse, build and store an audience; its summary (the API's response body)."""
        definition = parse_definition(document)
        context = self.context(model)
        now = utc_now()
        try:
            audience = build_audience(context, definition, self.gateway.call, self.store, now=now)
        except StoreDownError as exc:
            raise self._down(exc) from exc
        limit = self.settings.audience_max_members
        if len(audience) > limit:
            raise DefinitionError(
                "size",
                f"the audience would hold {len(audience):,} members, more than the "
                f"{limit:,} allowed (RECSYS_AUDIENCE_MAX_MEMBERS); set size.top_n, "
                "size.top_percent or size.min_score",
            )
        audience_id = new_audience_id()
        records = context.records(audience)
        info = model.info
        summary: dict[str, Any] = {
            "id": audience_id,
            "name": definition.name,
            "size": len(audience),
            "counts": audience.counts,
            "breakdown": audience.breakdown,
            "seed": audience.seed_summary,
            "preview": page_members(context.labels, records[:PREVIEW], 1),
            "model_version": info.label,
            "bundle_id": info.bundle_id,
            "snapshot": {"path": str(context.snapshot), "as_of": context.as_of.isoformat()},
            "definition": definition.to_dict(),
            "created_at": now.isoformat(timespec="seconds"),
            "expires_at": (now + timedelta(days=self.settings.audience_ttl_days)).isoformat(
                timespec="seconds"
            ),
            "warnings": list(audience.warnings),
        }
        try:
            self._call(
                lambda store: self.store.save(
                    store.client, audience_id, records, context.labels, summary
                )
            )
        except AudienceTooLargeError as exc:
            raise BadRequestError(f"size: {exc}; make the audience smaller") from exc
        return summary | {"sent": None}

    def get(self, audience_id: str) -> dict[str, Any]:
        stored = self._stored(audience_id)
        sent = self._call(lambda store: self.store.sent(store.client, audience_id))
        return stored.summary | {"sent": _sent_out(sent)}

    def page(self, audience_id: str, offset: int, limit: int) -> dict[str, Any]:
        stored = self._stored(audience_id)
        try:
            records = self._call(lambda store: self.store.read(store.client, stored, offset, limit))
        except AudienceNotFoundError as exc:
            raise NotFoundError(f"audience {audience_id!r} expired") from exc
        following = offset + records.shape[0]
        return {
            "audience_id": audience_id,
            "size": stored.size,
            "offset": offset,
            "limit": limit,
            "next_offset": following if following < stored.size else None,
            "members": page_members(stored.labels, records, offset + 1),
        }

    def export(self, audience_id: str, chunk_rows: int) -> Iterator[bytes]:
        """The audience as CSV chunks. The audience is looked up now (404 before streaming);
        each chunk is then one GETRANGE."""
        stored = self._stored(audience_id)
        return self._chunks(stored, chunk_rows)

    def _chunks(self, stored: StoredAudience, chunk_rows: int) -> Iterator[bytes]:
        yield csv_chunk(np.empty(0, dtype=stored.dtype), stored.labels, 1, header=True)
        for offset in range(0, stored.size, chunk_rows):

            def read(store: RedisOnlineStore, start: int = offset) -> npt.NDArray[np.void]:
                return self.store.read(store.client, stored, start, chunk_rows)

            yield csv_chunk(self._call(read), stored.labels, offset + 1, header=False)

    def mark_sent(self, audience_id: str) -> dict[str, Any]:
        _check_id(audience_id)
        try:
            record = self._call(
                lambda store: self.store.mark_sent(store.client, audience_id, utc_now())
            )
        except AudienceNotFoundError as exc:
            raise NotFoundError(f"audience {audience_id!r} does not exist (or expired)") from exc
        return {
            "audience_id": audience_id,
            "contacts": record.contacts,
            "sent_at": record.sent_at.isoformat(timespec="seconds"),
            "recorded": record.recorded,
        }


def _check_id(audience_id: str) -> None:
    if not AUDIENCE_ID.fullmatch(audience_id):
        raise NotFoundError(f"audience {audience_id!r} does not exist")


def _sent_out(record: SentRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"sent_at": record.sent_at.isoformat(timespec="seconds"), "contacts": record.contacts}


__all__ = [
    "BOUGHT_SEED",
    "CONTACTED",
    "AudienceContext",
    "AudienceService",
    "Runner",
    "assemble",
    "build_audience",
    "catalogue_categories",
    "direct",
    "exclusion_masks",
    "load_definition_text",
]
