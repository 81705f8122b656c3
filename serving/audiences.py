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
from engine.campaigns.holdout import HOLDOUT_SCHEME, control_mask
from engine.campaigns.uplift import load_model
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
    decode_ids,
    page_members,
    utc_now,
)
from serving.campaigns import CampaignService
from serving.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
)
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
        self,
        settings: Settings,
        gateway: OnlineGateway,
        policy_segments: tuple[str, ...],
        campaigns: CampaignService | None = None,
    ):
        self.settings = settings
        self.gateway = gateway
        self.campaigns = campaigns
        #: the uplift model of ``size.rank_by = "uplift"`` (RECSYS_UPLIFT_MODEL)
        self.uplift = None if settings.uplift_model is None else load_model(settings.uplift_model)
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

    def call(self, action: Callable[[RedisOnlineStore], T]) -> T:
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
            return load_columns(self.call, self.gateway.keys, known=known)
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
                found = self.call(read_head)
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
            return self.call(lambda store: self.store.load(store.client, audience_id))
        except AudienceNotFoundError as exc:
            raise NotFoundError(f"audience {audience_id!r} does not exist (or expired)") from exc

    # -- operations --------------------------------------------------------------------------

    def create(self, document: Mapping[str, Any], model: ServingModel) -> dict[str, Any]:
        """Parse, build and store an audience; its summary (the API's response body)."""
        definition = parse_definition(document)
        if definition.size.rank_by == "uplift" and self.uplift is None:
            raise ConflictError(
                "size.rank_by: no uplift model is loaded: fit one on past campaigns with "
                "control groups (`recsys campaign uplift fit`) and start the service with "
                "RECSYS_UPLIFT_MODEL=PATH"
            )
        context = self.context(model)
        now = utc_now()
        try:
            audience = build_audience(
                context, definition, self.gateway.call, self.store, now=now, uplift=self.uplift
            )
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
        control: npt.NDArray[np.void] | None = None
        counts = dict(audience.counts)
        holdout: dict[str, Any] | None = None
        if definition.holdout is not None:
            in_control = control_mask(
                audience_id,
                audience.member_ids,
                definition.holdout.percent,
                definition.holdout.salt,
            )
            records, control = records[~in_control], records[in_control]
            counts |= {"treatment": int(records.shape[0]), "control": int(control.shape[0])}
            holdout = {
                "percent": definition.holdout.percent,
                "salt": definition.holdout.salt,
                "scheme": HOLDOUT_SCHEME,
            }
        info = model.info
        summary: dict[str, Any] = {
            "id": audience_id,
            "name": definition.name,
            "size": int(records.shape[0]),
            "counts": counts,
            "holdout": holdout,
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
            self.call(
                lambda store: self.store.save(
                    store.client, audience_id, records, context.labels, summary, control
                )
            )
        except AudienceTooLargeError as exc:
            raise BadRequestError(f"size: {exc}; make the audience smaller") from exc
        return summary | {"sent": None}

    def get(self, audience_id: str) -> dict[str, Any]:
        stored = self._stored(audience_id)
        sent = self.call(lambda store: self.store.sent(store.client, audience_id))
        return stored.summary | {"sent": _sent_out(sent)}

    def page(self, audience_id: str, offset: int, limit: int) -> dict[str, Any]:
        stored = self._stored(audience_id)
        try:
            records = self.call(lambda store: self.store.read(store.client, stored, offset, limit))
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

    def export(
        self, audience_id: str, chunk_rows: int, *, control: bool = False
    ) -> Iterator[bytes]:
        """The audience (its treatment group) or, with ``control``, its control group as CSV
        chunks. The audience is looked up now (404 before streaming; 404 for the control group
        of an audience without a holdout); each chunk is then one GETRANGE."""
        stored = self._stored(audience_id)
        if control and stored.summary.get("holdout") is None:
            raise NotFoundError(
                f"audience {audience_id!r} has no control group: give its definition a "
                "holdout (holdout.percent)"
            )
        return self._chunks(stored, chunk_rows, control)

    def _chunks(self, stored: StoredAudience, chunk_rows: int, control: bool) -> Iterator[bytes]:
        yield csv_chunk(np.empty(0, dtype=stored.dtype), stored.labels, 1, header=True)
        total = stored.control_size if control else stored.size
        for offset in range(0, total, chunk_rows):

            def read(store: RedisOnlineStore, start: int = offset) -> npt.NDArray[np.void]:
                return self.store.read(store.client, stored, start, chunk_rows, control=control)

            yield csv_chunk(self.call(read), stored.labels, offset + 1, header=False)

    def _recorded_seed(self, summary: Mapping[str, Any], model: ServingModel) -> dict[str, Any]:
        """The seed recorded with a campaign: the definition's, with ``items`` expanded to every
        item its categories and tags stand for in the served model (a report's "bought a seed
        item" then counts them all). A lookalike seed is recorded as it is."""
        seed = dict(summary["definition"].get("seed") or {})
        definition = parse_definition(summary["definition"])
        if definition.seed.is_lookalike:
            return seed
        context = self.context(model)
        rows = context.scorer.seed_items(definition.seed)
        return seed | {"items": context.item_ids.ids_at(rows).tolist()}

    def mark_sent(self, audience_id: str, model: ServingModel) -> dict[str, Any]:
        """Record the treatment group as contacted now (the contact frequency cap) and the
        campaign, both groups with their scores, in the campaign database. The database is
        written first: when it fails nothing is recorded and the call can be repeated."""
        _check_id(audience_id)
        now = utc_now()
        campaign_id, held_out = None, 0
        if self.campaigns is not None and self.campaigns.configured:
            stored = self._stored(audience_id)
            held_out = stored.control_size
            previous = self.call(lambda store: self.store.sent(store.client, audience_id))
            sent_at = previous.sent_at if previous is not None else now
            treatment = self._all(stored, control=False)
            control = self._all(stored, control=True)
            campaign = self.campaigns.record_send(
                campaign_id=audience_id,
                summary=stored.summary,
                seed=self._recorded_seed(stored.summary, model),
                treatment=decode_ids(treatment["id"]),
                control=decode_ids(control["id"]),
                treatment_scores=treatment["score"],
                control_scores=control["score"],
                sent_at=sent_at,
            )
            campaign_id, now = campaign.id, campaign.sent_at
        try:
            record = self.call(lambda store: self.store.mark_sent(store.client, audience_id, now))
        except AudienceNotFoundError as exc:
            raise NotFoundError(f"audience {audience_id!r} does not exist (or expired)") from exc
        return {
            "audience_id": audience_id,
            "campaign_id": campaign_id,
            "contacts": record.contacts,
            "control": held_out,
            "sent_at": record.sent_at.isoformat(timespec="seconds"),
            "recorded": record.recorded,
        }

    def _all(self, stored: StoredAudience, *, control: bool) -> npt.NDArray[np.void]:
        total = stored.control_size if control else stored.size
        try:
            return self.call(
                lambda store: self.store.read(store.client, stored, 0, total, control=control)
            )
        except AudienceNotFoundError as exc:
            raise NotFoundError(f"audience {stored.audience_id!r} expired") from exc


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
