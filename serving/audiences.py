"""Campaign audiences in the service: :class:`AudienceService` is what the routes call.

It scores with the served model over the members of the online store's active snapshot version:
the member, item and recent-purchase tables that ``recsys features materialize`` stored with
that version (:mod:`feature_store.online.audience_data`), so a service needs no snapshot folder
and every replica reading the same store builds the same audiences. The scorer
(:func:`serving.audience_context.assemble`) is built on the first audience request and kept
until the model or the stored tables change (their content digest, read with the active version
in one round trip per request). It builds, stores, pages, exports and marks audiences sent
(:mod:`serving.audience_store`); Redis down is :class:`ServiceUnavailableError` (503).

Scoring and exclusions live in :mod:`serving.audience_context`; its public names are
re-exported here (``recsys audience build`` imports them from this module).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

from engine.audience import DefinitionError, parse_definition
from feature_store.errors import DataError
from feature_store.online import RedisOnlineStore
from feature_store.online.audience_data import (
    ColumnsChangedError,
    ColumnsMissingError,
    Loaded,
    load_columns,
    read_head,
)
from feature_store.online.errors import OnlineStoreError
from serving.audience_context import (
    BOUGHT_SEED,
    CONTACTED,
    AudienceContext,
    Runner,
    assemble,
    build_audience,
    catalogue_categories,
    direct,
    exclusion_masks,
    load_definition_text,
)
from serving.audience_store import (
    AudienceNotFoundError,
    AudienceStore,
    AudienceTooLargeError,
    SentRecord,
    StoredAudience,
    csv_chunk,
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
#: What an audience id looks like (``aud_`` + 16 hex digits; the key builder checks it again).
AUDIENCE_ID: Final = re.compile(r"aud_[0-9a-f]{16}")
#: Retry-After of a 503 that waits for a materialize run.
_RETRY_LOAD_SECONDS: Final[int] = 60


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

    def _unavailable(
        self, detail: str, retry_after: int = _RETRY_LOAD_SECONDS
    ) -> ServiceUnavailableError:
        return ServiceUnavailableError(f"audiences are unavailable: {detail}", retry_after)

    def _load(self, known: str | None) -> Loaded:
        """The active version's tables (only its head when their digest is ``known``); every
        failure is a 503 saying why."""
        try:
            return load_columns(self._call, self.gateway.keys, known=known)
        except ColumnsMissingError as exc:
            raise self._unavailable(str(exc)) from exc
        except ColumnsChangedError as exc:
            raise self._unavailable(str(exc), self._retry_after()) from exc
        except (DataError, OnlineStoreError) as exc:
            raise self._unavailable(f"the stored audience tables cannot be used: {exc}") from exc

    def context(self, model: ServingModel) -> AudienceContext:
        """The scorer of ``model`` over the active version's stored tables, built once per
        (table content, model): one small read per request while neither changes."""
        current = self._context
        if current is not None and current.bundle_id == model.id:
            try:
                found = self._call(read_head)
            except OnlineStoreError as exc:
                raise self._unavailable(str(exc)) from exc
            if found is not None and found[1] is not None and found[1].digest == current.key:
                return current
        with self._lock:
            current = self._context
            known = current.key if current is not None and current.bundle_id == model.id else None
            loaded = self._load(known)
            if loaded.columns is None and current is not None:
                return current  # another request loaded these tables meanwhile
            head, columns = loaded.head, loaded.columns
            assert columns is not None  # (no digest was known)
            log.warning(
                "audiences: loaded the members of snapshot version %s (%s, %.1f MiB) for model %s",
                head.version,
                head.snapshot,
                head.size / 2**20,
                model.id,
            )
            try:
                context = assemble(
                    model.bundle,
                    columns,
                    bundle_key=model.id,
                    categories=catalogue_categories(model.catalog),
                    known_segments=self._segments or None,
                    source=head.snapshot,
                    key=head.digest,
                )
            except DataError as exc:
                raise self._unavailable(
                    f"the stored audience tables cannot be used: {exc}"
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
            "snapshot": {"path": context.source, "as_of": context.as_of.isoformat()},
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
