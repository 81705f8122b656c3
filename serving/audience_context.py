"""Scoring campaign audiences: the scorer of a model over a snapshot's members, and exclusions.

* :func:`assemble` builds an :class:`AudienceContext` from a model bundle and the audience
  columns of a snapshot (:class:`feature_store.member_columns.AudienceColumns`: members, items,
  recent purchase lines), read from the online store (what the service does,
  :mod:`feature_store.online.audience_data`) or from a snapshot folder (``recsys audience
  build --snapshot``): the item side of the bundle (vectors, categories, the snapshot's item
  tags aligned to the bundle's items, their distinct buyers as popularity, the bundle's
  buy-again history) and an :class:`engine.audience.AudienceScorer`. The CLI and the API
  assemble the same way, so they score the same.
* :func:`exclusion_masks` turns a definition's exclusions into boolean masks over the
  snapshot's members: "bought the seed items in the last N days" (the snapshot's recent
  purchases plus the purchase events journaled since) and "contacted in the last N days" (the
  audiences marked sent, :mod:`serving.audience_store`).

The time "N days" counts back from: for purchases, the newest known purchase time (the
snapshot's ``as_of`` 00:00, or the latest purchase event journaled since, whichever is later), so
that a historical snapshot behaves as on its day; for contacts, the wall clock (sends are
recorded with it).
"""

from __future__ import annotations

import io
import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

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
    UpliftScorer,
    parse_definition,
)
from engine.blend import BUY_AGAIN
from engine.bundle import Bundle
from engine.campaigns.uplift import UpliftModel
from engine.ids import IdMap
from engine.ranking.catalog import ItemCatalog
from feature_store.member_columns import (
    AudienceColumns,
    MemberColumns,
    RecentPurchases,
    read_audience_columns,
)
from feature_store.online import RedisOnlineStore
from feature_store.online.audience_data import Runner
from serving.audience_store import AudienceStore, Labels, encode_ids, make_records

T = TypeVar("T")

#: Journal entries read per LRANGE when looking for purchases since the snapshot.
JOURNAL_BATCH: Final[int] = 10_000
BOUGHT_SEED, CONTACTED = "bought_seed", "contacted"


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

    #: the snapshot folder the columns come from (where it was materialized from, for the
    #: online store), shown with each audience
    source: str
    #: what identifies the columns: the online store's content digest, or the folder
    key: str
    bundle_id: str
    as_of: date
    columns: MemberColumns
    recent: RecentPurchases
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
    snapshot: Path | AudienceColumns,
    *,
    bundle_key: str,
    categories: npt.NDArray[np.str_] | None = None,
    known_segments: tuple[str, ...] | None = None,
    source: str | None = None,
    key: str | None = None,
) -> AudienceContext:
    """The :class:`AudienceContext` of ``bundle`` over a snapshot's members: ``snapshot`` is a
    folder, or its columns read from the online store (then ``source`` names the snapshot and
    ``key`` identifies the columns).

    ``categories`` (bundle item order) default to the snapshot's item categories; item tags
    always come from the snapshot, aligned to the bundle's items (items the snapshot does not
    know have none); popularity is each item's distinct buyers in the snapshot; the bundle's
    buy-again history adds the member's own purchases of the seed to the score.
    """
    if isinstance(snapshot, Path):
        data = read_audience_columns(snapshot)
        source = source or str(snapshot)
        key = key or f"folder:{snapshot.resolve()}"
    else:
        data = snapshot
    columns, items = data.members, data.items
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
        source=source or "",
        key=key or "",
        bundle_id=bundle_key,
        as_of=columns.as_of,
        columns=columns,
        recent=data.recent,
        scorer=scorer,
        item_ids=bundle.item_ids,
        member_index=IdMap(columns.member_ids),
        id_bytes=encode_ids(columns.member_ids),
    )


# -- exclusions -------------------------------------------------------------------------------


def journal_purchases(store: RedisOnlineStore) -> pl.DataFrame:
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
    mask = np.zeros(len(context.columns), dtype=np.bool_)
    if not seed_ids.size:
        return mask, warnings
    events = None
    if run is not None:
        events = run(journal_purchases).with_columns(pl.col("ts").str.to_datetime(time_unit="us"))
        newest = events.get_column("ts").max() if events.height else None
        if isinstance(newest, datetime) and newest > reference:
            reference = newest
    since = reference - timedelta(days=days)
    mask[context.recent.buyer_rows(seed_ids.tolist(), since)] = True
    if events is not None and events.height:
        recent = events.filter(
            pl.col("item_id").is_in(seed_ids.tolist())
            & (pl.col("quantity") > 0)
            & (pl.col("ts") >= since)
        )
        mask |= context.mask_of(recent.get_column("member_id").to_numpy().astype(np.str_))
    return mask, warnings


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
    uplift: UpliftModel | None = None,
) -> Audience:
    """Check the definition, compute its exclusions and build the audience (``uplift``: the
    model ``size.rank_by = "uplift"`` ranks by)."""
    context.scorer.check(definition)  # DefinitionError before any Redis read
    masks, warnings = exclusion_masks(context, definition, run, audiences, now=now)
    scorer = None if uplift is None else uplift_scorer(uplift, context.columns)
    audience = context.scorer.build(definition, exclude=masks, uplift=scorer)
    if warnings:
        audience = replace(audience, warnings=(*audience.warnings, *warnings))
    return audience


def uplift_scorer(model: UpliftModel, columns: MemberColumns) -> UpliftScorer:
    """The predicted uplift of attribute rows of ``columns`` (with their audience scores), on
    the features the model was fitted with (engine.campaigns.features, one definition)."""
    from engine.campaigns.features import uplift_features

    def predict(rows: npt.NDArray[np.int64], scores: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        return model.predict(uplift_features(columns, rows, scores))

    return predict


def load_definition_text(text: str, suffix: str, where: str) -> AudienceDefinition:
    """A definition document from JSON or TOML text; DefinitionError naming ``where``."""
    try:
        data: Any = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DefinitionError(where, f"not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise DefinitionError(where, "the definition must be an object (a table)")
    return parse_definition(data)


__all__ = [
    "BOUGHT_SEED",
    "CONTACTED",
    "AudienceContext",
    "Runner",
    "assemble",
    "bought_seed_members",
    "build_audience",
    "catalogue_categories",
    "direct",
    "exclusion_masks",
    "journal_purchases",
    "load_definition_text",
]
