"""Recommendation requests answered in batches: one thread hop, two Redis round trips and one
vectorized blend call (one FAISS batch) for all the requests that arrived together.

The route hands its request to :meth:`RecommendationBatcher.submit` and awaits the answer. A
single task per worker takes whatever requests are waiting (up to ``max_batch``) and processes
them in a worker thread while the event loop keeps accepting new ones, which queue for the next
batch. Under light load a batch holds one request (no added wait: the batch starts at once);
under heavy load batches grow, so the fixed per-call costs (numpy calls, Redis round trips,
thread hand-offs) are paid once per batch instead of once per request. Each request keeps the
model it started with: a batch is split by model, so a reload never mixes models in one answer.

For each batch: (1) one pipeline reads the cached responses and fold-in overlays of all its
members; (2) one script call reads the profiles of the members not answered from the cache;
(3) :meth:`ServingModel.recommend_many` ranks them; (4) one pipeline stores the new responses in
the cache; (5) every answer gets its own ``recommendation_id`` and, with the exposure log on,
one pipeline appends the served lists to it (feature_store/online/exposures.py). Redis failures
degrade the batch (answers from the bundle alone, ``degraded: true``) and never fail it; a
failed exposure write is counted and logged, never fails an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pydantic_core import from_json, to_json

from engine.ranking.query import ListQuery
from feature_store.online.errors import OnlineStoreError
from feature_store.online.exposures import Exposure
from feature_store.online.profile import MemberProfile
from serving.metrics import Metrics
from serving.model import Ask, PurchasedPolicy, Recommended, ServingModel
from serving.model_types import item_rows
from serving.online import OnlineGateway, StoreDownError, decode_overlay

log = logging.getLogger("recsys.serving")
Answer = tuple[bytes, str]


@dataclass(slots=True)
class Pending:
    """One request waiting in the queue."""

    model: ServingModel
    member_id: str
    query: ListQuery
    policy: PurchasedPolicy
    variant: str | None
    future: asyncio.Future[Answer] = field(repr=False)
    #: the experiment variant the member sees (engine.experiments.assignment)
    arm: str = "champion"


class RecommendationBatcher:
    """Queues recommendation requests and answers them in batches (module docstring)."""

    def __init__(
        self,
        gateway: OnlineGateway,
        metrics: Metrics,
        max_batch: int = 64,
        *,
        log_exposures: bool = False,
    ) -> None:
        self.gateway = gateway
        self.metrics = metrics
        self.max_batch = max_batch
        #: append every served list to the exposure log (RECSYS_EXPOSURE_LOG)
        self.log_exposures = log_exposures
        self._queue: asyncio.Queue[Pending] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        # one thread of its own: batches run one after another, off the event loop, without
        # the per-call bookkeeping of anyio's shared pool
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recsys-batch")
        self._task = asyncio.create_task(self._run(), name="recsys-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None

    async def submit(
        self,
        model: ServingModel,
        member_id: str,
        *,
        query: ListQuery,
        policy: PurchasedPolicy,
        variant: str | None,
        arm: str = "champion",
    ) -> Answer:
        """The response body and the cache outcome (``hit``, ``miss`` or ``off``)."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running (the app's lifespan starts it)")
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Pending(model, member_id, query, policy, variant, future, arm))
        return await future

    async def _run(self) -> None:
        queue, pool = self._queue, self._pool
        if queue is None or pool is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                answers = await loop.run_in_executor(pool, self._process, batch)
            except Exception as exc:  # delivered to every waiting request; the loop carries on
                log.error("a recommendation batch failed: %s", exc, exc_info=exc)
                answers = [exc] * len(batch)
            for pending, answer in zip(batch, answers, strict=True):
                if pending.future.done():
                    continue  # the client went away
                if isinstance(answer, BaseException):
                    pending.future.set_exception(answer)
                else:
                    pending.future.set_result(answer)

    # -- in the worker thread ----------------------------------------------------------------

    def _process(self, batch: Sequence[Pending]) -> list[Answer | BaseException]:
        """One batch, whatever models its requests use (champion and challenger): one read of
        the cache and overlays, one of the profiles, one ranking call per model, one cache
        write and one exposure-log write."""
        gateway, metrics = self.gateway, self.metrics
        degraded = False
        try:
            states = gateway.member_states([(p.model.id, p.member_id, p.variant) for p in batch])
        except StoreDownError:
            states = [(None, None)] * len(batch)
            degraded = True
        answers: list[Answer | BaseException] = [RuntimeError("not processed")] * len(batch)
        items_of: list[list[str] | None] = [None] * len(batch)
        todo: list[int] = []
        for i, (pending, (cached, _)) in enumerate(zip(batch, states, strict=True)):
            if pending.variant is not None:
                metrics.cache.labels("error" if degraded else "hit" if cached else "miss").inc()
            if cached is not None:
                answers[i] = (cached, "hit")
            else:
                todo.append(i)
        if todo:
            degraded = self._answer(batch, states, todo, answers, items_of, degraded)
        self._stamp_and_log(batch, answers, items_of)
        return answers

    def _answer(
        self,
        batch: Sequence[Pending],
        states: Sequence[tuple[bytes | None, bytes | None]],
        todo: list[int],
        answers: list[Answer | BaseException],
        items_of: list[list[str] | None],
        degraded: bool,
    ) -> bool:
        """Rank the requests not answered from the cache (``todo``), one call per model; fills
        ``answers`` and ``items_of``; returns whether the batch was degraded."""
        gateway, metrics = self.gateway, self.metrics
        profiles: dict[str, MemberProfile | None] = {}
        if not degraded:
            wanted = list(dict.fromkeys(batch[i].member_id for i in todo))
            try:
                found = gateway.call(lambda store: store.get_profiles(wanted))
                profiles = dict(zip(wanted, found, strict=True))
            except (StoreDownError, OnlineStoreError) as exc:
                log.warning("profiles not read, serving without them: %s", exc)
                degraded = True
        metrics.degraded.set(1 if gateway.degraded else 0)
        by_model: dict[int, list[int]] = {}
        for i in todo:
            by_model.setdefault(id(batch[i].model), []).append(i)
        to_cache: list[tuple[str, str, str, bytes]] = []
        for positions in by_model.values():
            model = batch[positions[0]].model
            asks = [self._ask(batch[i], states[i][1], profiles) for i in positions]
            for i, result in zip(positions, self._recommend(model, asks), strict=True):
                pending = batch[i]
                if isinstance(result, BaseException):
                    answers[i] = result
                    continue
                if result.fallback:
                    metrics.fallbacks.labels(result.basis).inc()
                payload = _body(model, pending.member_id, pending.arm, result, degraded)
                answers[i] = (payload, "off" if pending.variant is None else "miss")
                items_of[i] = result.item_ids
                if pending.variant is not None and not degraded:
                    to_cache.append((model.id, pending.member_id, pending.variant, payload))
        if to_cache:
            try:
                gateway.cache_put_many(to_cache)
            except StoreDownError:
                metrics.cache.labels("error").inc(len(to_cache))
        return degraded

    @staticmethod
    def _ask(pending: Pending, raw: bytes | None, profiles: dict[str, MemberProfile | None]) -> Ask:
        model = pending.model
        overlay = (
            None if raw is None else decode_overlay(raw, model.fold.dim, model.catalog.n_items)
        )
        query = pending.query
        return Ask(
            pending.member_id,
            profiles.get(pending.member_id),
            overlay,
            query.k,
            query.category,
            pending.policy,
            query if query.rules_beyond_k else None,
        )

    def _stamp_and_log(
        self,
        batch: Sequence[Pending],
        answers: list[Answer | BaseException],
        items_of: list[list[str] | None],
    ) -> None:
        """Give every answer its own recommendation id and append the served lists to the
        exposure log (one write per batch); a failed write is counted, never fails an answer."""
        served_ms = int(time.time() * 1000)
        exposures: list[Exposure] = []
        for i, (pending, answer) in enumerate(zip(batch, answers, strict=True)):
            if isinstance(answer, BaseException):
                continue
            payload, cache = answer
            rid = os.urandom(8).hex()
            answers[i] = (b'{"recommendation_id":"' + rid.encode() + b'",' + payload[1:], cache)
            self.metrics.exposures.labels(pending.arm).inc()
            if self.log_exposures:
                items = items_of[i]
                if items is None:  # a cached answer: its items are in the body
                    items = [item["item_id"] for item in from_json(payload)["items"]]
                exposures.append(
                    Exposure(
                        rid,
                        pending.member_id,
                        pending.arm,
                        pending.model.id,
                        tuple(items),
                        served_ms,
                    )
                )
        if exposures:
            try:
                self.gateway.log_exposures(exposures)
            except StoreDownError as exc:
                self.metrics.exposure_errors.inc(len(exposures))
                log.warning("%d served lists not logged for attribution: %s", len(exposures), exc)

    @staticmethod
    def _recommend(model: ServingModel, asks: list[Ask]) -> list[Recommended | BaseException]:
        try:
            return list(model.recommend_many(asks))
        except Exception:  # one bad request must not fail the others: answer them one by one
            out: list[Recommended | BaseException] = []
            for ask in asks:
                try:
                    out.append(model.recommend_many([ask])[0])
                except Exception as exc:
                    out.append(exc)
            return out


def _body(
    model: ServingModel, member_id: str, arm: str, ranked: Recommended, degraded: bool
) -> bytes:
    """The :class:`~serving.schemas.Recommendations` document, serialized by pydantic-core
    from plain values: the fields are built here from typed domain values, so validating them
    again through the model would only cost time on the hottest path (tests check that bodies
    parse as the documented model)."""
    body = {
        "member_id": member_id,
        "variant": arm,
        "model_version": model.info.label,
        "bundle_id": model.id,
        "tier": ranked.tier,
        "basis": ranked.basis,
        "fallback": ranked.fallback,
        "degraded": degraded,
        "items": item_rows(ranked),
    }
    return to_json(body)


__all__ = ["RecommendationBatcher"]
