"""The simulated storefront against a running service: members ask for their list, buy with
the simulator's probabilities, and the purchases are reported as events.

:func:`run_storefront` is synchronous and simple (one HTTP/1.1 keep-alive connection, the
standard library only): for each member ``GET /v1/members/{id}/recommendations``, then the
purchases of all shown lists are drawn at once (:meth:`Simulator.draw`) and posted with
``POST /v1/events`` in batches, each timestamped 1..60 s (``delay_seconds``) after the time its
list was served. The variant is the response's ``variant`` when it carries one; otherwise the
one :func:`~engine.experiments.assignment.variant_of` gives (when ``experiment`` and
``percent`` are passed), else ``champion``; so the driver works before and after the service
serves experiments. The challenger's planted lift applies to whichever variant was decided.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import polars as pl

from engine.experiments.assignment import CHALLENGER, CHAMPION, variant_of
from engine.experiments.simulator import Lists, Simulator

#: the service's limit of events per request is 1,000
EVENTS_PER_REQUEST = 500


class Transport(Protocol):
    """One HTTP call: (method, path with query, headers, body) -> (status, body)."""

    def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, bytes]: ...


class HttpTransport:
    """A keep-alive HTTP/1.1 connection to ``base_url`` (reopened once when it was dropped;
    retrying is safe: GETs are reads and events are applied once per event id)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = url.scheme == "https"
        self._host, self._port = url.hostname, url.port
        self._root = url.path.rstrip("/")
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout)

    def __call__(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        for attempt in range(2):
            conn = self._conn or self._connect()
            try:
                conn.request(method, self._root + path, body=body, headers=dict(headers))
                response = conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._conn = None
                if attempt:
                    raise
                continue
            self._conn = conn
            return response.status, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass(frozen=True, slots=True)
class StorefrontRun:
    """What the storefront did: one row per served list and one per reported purchase."""

    #: member_id, variant, variant_source (response / assigned / default), recommendation_id,
    #: model_version, bundle_id, items, served_at (UTC), expected (conversion to a recommended
    #: item under the variant served), expected_champion, expected_challenger (the same list
    #: under each variant's purchase probabilities)
    exposures: pl.DataFrame
    #: event_id, order_id, member_id, item_id, ts, quantity, amount (the event's fields), then
    #: recommended (the item was in the list), variant, recommendation_id, row (of exposures)
    purchases: pl.DataFrame
    applied: int
    duplicates: int
    before_snapshot: int

    @property
    def lift_difference(self) -> float:
        """Mean over the exposed members of the challenger's expected conversion minus the
        champion's on the same lists: the planted difference when both variants serve the same
        lists (scheme ``lift``)."""
        if self.exposures.is_empty():
            return 0.0
        diff = self.exposures["expected_challenger"] - self.exposures["expected_champion"]
        return float(diff.mean())  # type: ignore[arg-type]

    def summary(self) -> dict[str, dict[str, float]]:
        """Per variant: exposed members, their conversion to a recommended item, any
        conversion, revenue per exposed member, and the expected conversion."""
        bought = self.purchases.group_by("row", "variant").agg(
            rec=pl.col("recommended").any(), revenue=pl.col("amount").sum()
        )
        out: dict[str, dict[str, float]] = {}
        for variant in (CHAMPION, CHALLENGER):
            shown = self.exposures.filter(pl.col("variant") == variant)
            if shown.is_empty():
                continue
            mine = bought.filter(pl.col("variant") == variant)
            n = shown.height
            out[variant] = {
                "exposed": float(n),
                "conversion": mine.filter("rec").height / n,
                "any_conversion": mine.height / n,
                "revenue_per_member": float(mine["revenue"].sum()) / n,
                "expected_conversion": float(shown["expected"].mean()),  # type: ignore[arg-type]
            }
        return out


def _iso(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _call(
    transport: Transport, method: str, path: str, key: str | None, payload: Any = None
) -> Any:
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = None
    if payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    status, data = transport(method, path, headers, body)
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {path} answered {status}: {data[:500]!r}")
    return json.loads(data)


def run_storefront(
    base_url: str,
    api_key: str | None,
    members: Sequence[str],
    rng: np.random.Generator,
    *,
    simulator: Simulator,
    k: int = 10,
    ingest_key: str | None = None,
    experiment: str | None = None,
    percent: float | None = None,
    delay_seconds: tuple[float, float] = (1.0, 60.0),
    transport: Transport | None = None,
    clock: Callable[[], float] = time.time,
    run_id: str | None = None,
) -> StorefrontRun:
    """Serve ``members`` (ids of the simulator's truth) one request each, draw and report
    their purchases. ``api_key`` needs the storefront role, ``ingest_key`` (default
    ``api_key``) the ingest role; an admin key does both; ``None``: open mode."""
    low, high = delay_seconds
    if not 0.0 < low <= high:
        raise ValueError("delay_seconds must be (low, high) with 0 < low <= high")
    own = transport is None
    call: Transport = HttpTransport(base_url) if transport is None else transport
    run = run_id or uuid.UUID(int=int(rng.integers(0, 2**63))).hex[:12]
    rows: list[dict[str, Any]] = []
    try:
        for member in members:
            path = f"/v1/members/{urllib.parse.quote(member, safe='')}/recommendations?k={k}"
            body = _call(call, "GET", path, api_key)
            served = clock()
            variant, source = body.get("variant"), "response"
            if variant not in (CHAMPION, CHALLENGER):
                if experiment is not None and percent is not None:
                    variant, source = variant_of(experiment, member, percent), "assigned"
                else:
                    variant, source = CHAMPION, "default"
            rows.append(
                {
                    "member_id": member,
                    "variant": variant,
                    "variant_source": source,
                    "recommendation_id": body.get("recommendation_id"),
                    "model_version": body.get("model_version"),
                    "bundle_id": body.get("bundle_id"),
                    "items": [str(item["item_id"]) for item in body.get("items", [])],
                    "served": served,
                }
            )
        exposures, purchases = _purchases(simulator, rows, rng, run, low, high)
        counts = {"applied": 0, "duplicates": 0, "before_snapshot": 0}
        events = purchases.drop("recommended", "variant", "recommendation_id", "row").to_dicts()
        for start in range(0, len(events), EVENTS_PER_REQUEST):
            batch = {"events": events[start : start + EVENTS_PER_REQUEST]}
            answer = _call(call, "POST", "/v1/events", ingest_key or api_key, batch)
            for name in counts:
                counts[name] += int(answer.get(name, 0))
    finally:
        if own and isinstance(call, HttpTransport):
            call.close()
    return StorefrontRun(exposures, purchases, **counts)


def _purchases(
    simulator: Simulator,
    rows: list[dict[str, Any]],
    rng: np.random.Generator,
    run: str,
    low: float,
    high: float,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The exposures frame and the drawn purchases as event rows."""
    truth = simulator.truth
    lists: Lists = truth.lists([r["member_id"] for r in rows], [r["items"] for r in rows])
    challenger = np.asarray([r["variant"] == CHALLENGER for r in rows], dtype=np.bool_)
    served = np.asarray([r["served"] for r in rows], dtype=np.float64)
    exposures = pl.DataFrame(
        {
            "member_id": [r["member_id"] for r in rows],
            "variant": [r["variant"] for r in rows],
            "variant_source": [r["variant_source"] for r in rows],
            "recommendation_id": [r["recommendation_id"] for r in rows],
            "model_version": [r["model_version"] for r in rows],
            "bundle_id": [r["bundle_id"] for r in rows],
            "items": [r["items"] for r in rows],
            "served_at": [datetime.fromtimestamp(s, tz=UTC) for s in served],
            "expected": simulator.expected_conversion(lists, challenger),
            "expected_champion": simulator.expected_conversion(lists, False),
            "expected_challenger": simulator.expected_conversion(lists, True),
        },
        schema_overrides={
            "recommendation_id": pl.Utf8, "model_version": pl.Utf8, "bundle_id": pl.Utf8,
            "items": pl.List(pl.Utf8), "served_at": pl.Datetime("us", "UTC"),
        },
    )  # fmt: skip
    drawn = simulator.draw(lists, rng, challenger)
    ts = served[drawn.row] + rng.uniform(low, high, drawn.row.size)
    line = np.zeros(drawn.row.size, dtype=np.int64)  # the purchase's number within its order
    if drawn.row.size:
        starts = np.flatnonzero(np.r_[True, drawn.row[1:] != drawn.row[:-1]])
        sizes = np.diff(np.r_[starts, drawn.row.size])
        line = np.arange(drawn.row.size) - np.repeat(starts, sizes)
    purchases = pl.DataFrame(
        {
            "event_id": [f"sim-{run}-{r}-{j}" for r, j in zip(drawn.row, line, strict=True)],
            "order_id": [f"sim-{run}-{r}" for r in drawn.row],
            "member_id": truth.member_ids[drawn.member].tolist(),
            "item_id": truth.item_ids[drawn.item].tolist(),
            "ts": [_iso(t) for t in ts],
            "quantity": np.ones(drawn.row.size, dtype=np.int64),
            "amount": np.round(drawn.price, 2),
            "recommended": drawn.recommended,
            "variant": exposures["variant"].gather(drawn.row),
            "recommendation_id": exposures["recommendation_id"].gather(drawn.row),
            "row": drawn.row,
        },
        schema_overrides={
            "event_id": pl.Utf8, "order_id": pl.Utf8, "member_id": pl.Utf8, "item_id": pl.Utf8,
            "ts": pl.Utf8,
        },
    )  # fmt: skip
    return exposures, purchases


__all__ = ["EVENTS_PER_REQUEST", "HttpTransport", "StorefrontRun", "Transport", "run_storefront"]
