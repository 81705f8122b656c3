"""Weighted member x item confidence matrices built from purchase lines.

Every purchase line (one row of the ``purchases`` table, already mapped to dense member and item
indexes) contributes one *signed weight* to the cell ``(member, item)``; the weights of all lines
of a cell are summed, negative sums are clipped to 0 and zero cells are removed. The result is a
``scipy.sparse.csr_matrix`` of float32 confidences (rows: members, columns: items) with sorted,
duplicate-free int32 indices: the input of every model in :mod:`engine.models`.

The weight of one line is the product of the factors below (see :class:`InteractionWeights`)::

    weight = sign(quantity)
             * (quantity_term(|quantity|) + amount_weight * log1p(|amount|))
             * 0.5 ** (age_days / half_life_days)          # recency
             * tier_multipliers[tier]                       # member tier of the line
             * (tag_boost if tag_match else 1)              # item matches a member tag

Returns and cancellations (negative quantity) therefore subtract what a purchase of the same size
at the same time would add. Because each line is weighted on its own, a return cancels a purchase
exactly when both lines have the same size, tier, tag flag and time; a later return of the same
size (recency weighting) weighs more and removes the cell entirely.

Everything is vectorized over the lines: no Python loop over purchases or members.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from engine.errors import InvalidInputError

SECONDS_PER_DAY = 86_400.0


class QuantityTransform(StrEnum):
    """How the number of units of a line becomes its base weight."""

    #: Every line weighs 1, whatever the quantity (a purchase is a purchase).
    NONE = "none"
    #: ``log1p(|quantity|)``: more units count, with diminishing returns (1 unit: 0.693).
    LOG1P = "log1p"
    #: ``|quantity|``: every unit counts the same.
    LINEAR = "linear"


@dataclass(frozen=True, slots=True)
class InteractionWeights:
    """How purchase lines turn into confidences. The defaults give ``log1p(quantity)`` per line.

    Attributes:
        quantity: base weight of a line from its unit count (:class:`QuantityTransform`).
        amount_weight: adds ``amount_weight * log1p(|amount|)`` to the base weight, so that
            spending matters (0 ignores the amount; the log keeps big tickets from dominating).
        half_life_days: recency decay. A line ``age_days`` before the reference time is multiplied
            by ``0.5 ** (age_days / half_life_days)``: a line one half-life old weighs half as much.
            Lines after the reference time count as age 0. ``None`` disables the decay.
        tier_multipliers: multiplier per tier index (lowest tier first), applied to each line
            with that line's tier (for instance the member's tier when buying). Lines with tier
            ``-1`` (unknown) or without a tier array get 1. Empty: no tier weighting.
        tag_boost: multiplier for lines flagged ``tag_match`` (the item carries one of the
            member's tags). 1 disables it.
    """

    quantity: QuantityTransform = QuantityTransform.LOG1P
    amount_weight: float = 0.0
    half_life_days: float | None = None
    tier_multipliers: tuple[float, ...] = ()
    tag_boost: float = 1.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "quantity", QuantityTransform(self.quantity))
        except ValueError:
            allowed = ", ".join(t.value for t in QuantityTransform)
            raise InvalidInputError(
                f"interaction weights: quantity transform {self.quantity!r} is unknown; "
                f"use one of {allowed}"
            ) from None
        _require_finite_at_least("amount_weight", self.amount_weight, 0.0)
        if self.half_life_days is not None:
            _require_finite_at_least("half_life_days", self.half_life_days, 0.0, strict=True)
        for position, multiplier in enumerate(self.tier_multipliers):
            _require_finite_at_least(f"tier_multipliers[{position}]", multiplier, 0.0)
        _require_finite_at_least("tag_boost", self.tag_boost, 0.0)


def _require_finite_at_least(name: str, value: float, low: float, *, strict: bool = False) -> None:
    ok = np.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        relation = ">" if strict else ">="
        raise InvalidInputError(
            f"interaction weights: {name} is {value!r}; it must be a finite number {relation} {low}"
        )


@dataclass(frozen=True, slots=True)
class PurchaseLines:
    """Purchase lines as parallel arrays (one entry per line), ids already mapped to indexes.

    Attributes:
        member: member row index of each line (``0 <= member < n_members``).
        item: item column index of each line (``0 <= item < n_items``).
        quantity: units; negative for a return or cancellation.
        amount: money of the line (its sign is ignored; the quantity's sign decides). Needed only
            when ``amount_weight > 0``.
        ts: when, as int64 epoch seconds or ``datetime64``. Needed only with ``half_life_days``.
        tier: tier index of each line, ``-1`` when unknown. Needed only with tier multipliers.
        tag_match: whether the item matches one of the member's tags. Optional.
        multiplier: an extra non-negative factor per line computed by the caller (e.g. per-tag
            boosts, where each matching tag has its own multiplier). Optional; None means 1.
    """

    member: NDArray[np.integer]
    item: NDArray[np.integer]
    quantity: NDArray[np.number]
    amount: NDArray[np.floating] | None = None
    ts: NDArray[np.int64] | NDArray[np.datetime64] | None = None
    tier: NDArray[np.integer] | None = None
    tag_match: NDArray[np.bool_] | None = None
    multiplier: NDArray[np.floating] | None = None

    def __len__(self) -> int:
        return int(np.asarray(self.member).shape[0])


def build_confidence(
    lines: PurchaseLines,
    n_members: int,
    n_items: int,
    weights: InteractionWeights,
    *,
    reference_time: np.datetime64 | int | None = None,
) -> sp.csr_matrix:
    """Sum the weighted purchase lines into a ``n_members x n_items`` float32 CSR matrix.

    ``reference_time`` (epoch seconds or ``datetime64``) anchors the recency decay; by default it
    is the latest ``ts`` of the lines. Cells whose weights sum to 0 or less are absent from the
    result. Raises :class:`~engine.errors.InvalidInputError` naming the array and the first bad
    line when the arrays are inconsistent.
    """
    if n_members < 0 or n_items < 0:
        raise InvalidInputError(
            f"build_confidence: matrix shape ({n_members}, {n_items}) must not be negative"
        )
    member = _index_array("member", lines.member, n_members, len(lines))
    item = _index_array("item", lines.item, n_items, len(lines))
    quantity = _float_array("quantity", lines.quantity, len(lines))

    weight = np.sign(quantity) * _base_weight(quantity, lines.amount, weights, len(lines))
    if weights.half_life_days is not None:
        weight *= _recency_factor(lines.ts, weights.half_life_days, reference_time, len(lines))
    if weights.tier_multipliers:
        weight *= _tier_factor(lines.tier, weights.tier_multipliers, len(lines))
    if weights.tag_boost != 1.0 and lines.tag_match is not None:
        tag_match = _bool_array("tag_match", lines.tag_match, len(lines))
        weight *= np.where(tag_match, weights.tag_boost, 1.0)
    if lines.multiplier is not None:
        weight *= _multiplier_array(lines.multiplier, len(lines))

    summed = sp.coo_matrix((weight, (member, item)), shape=(n_members, n_items)).tocsr()
    summed.sum_duplicates()
    summed.data[summed.data < 0] = 0.0
    summed.eliminate_zeros()
    result = sp.csr_matrix(
        (
            summed.data.astype(np.float32),
            summed.indices.astype(np.int32),
            summed.indptr.astype(np.int32),
        ),
        shape=(n_members, n_items),
    )
    # float64 sums that round to 0 in float32 are not entries either
    result.eliminate_zeros()
    return result


def _base_weight(
    quantity: NDArray[np.float64],
    amount: NDArray[np.floating] | None,
    weights: InteractionWeights,
    n: int,
) -> NDArray[np.float64]:
    units = np.abs(quantity)
    if weights.quantity is QuantityTransform.NONE:
        base = np.ones(n, dtype=np.float64)
    elif weights.quantity is QuantityTransform.LOG1P:
        base = np.log1p(units)
    else:
        base = units.copy()
    if weights.amount_weight > 0.0:
        if amount is None:
            raise InvalidInputError(
                "build_confidence: amount_weight > 0 needs the purchase amounts; "
                "pass PurchaseLines.amount or set amount_weight to 0"
            )
        money = _float_array("amount", amount, n)
        base += weights.amount_weight * np.log1p(np.abs(money))
    return base


def _recency_factor(
    ts: NDArray[np.int64] | NDArray[np.datetime64] | None,
    half_life_days: float,
    reference_time: np.datetime64 | int | None,
    n: int,
) -> NDArray[np.float64]:
    if ts is None:
        raise InvalidInputError(
            "build_confidence: half_life_days needs the purchase times; "
            "pass PurchaseLines.ts or set half_life_days to None"
        )
    seconds = _epoch_seconds("ts", ts)
    if seconds.shape != (n,):
        raise InvalidInputError(
            f"build_confidence: array 'ts' has shape {seconds.shape}; expected ({n},), "
            "one entry per purchase line"
        )
    if reference_time is None:
        reference = float(seconds.max()) if n else 0.0
    else:
        reference = float(_epoch_seconds("reference_time", np.asarray(reference_time))[()])
    age_days = np.maximum(reference - seconds, 0.0) / SECONDS_PER_DAY
    factor: NDArray[np.float64] = np.exp2(-age_days / half_life_days)
    return factor


def _tier_factor(
    tier: NDArray[np.integer] | None, multipliers: tuple[float, ...], n: int
) -> NDArray[np.float64]:
    if tier is None:
        raise InvalidInputError(
            "build_confidence: tier_multipliers need the tier of each line; "
            "pass PurchaseLines.tier (-1 for unknown) or leave tier_multipliers empty"
        )
    tiers = _int_array("tier", tier, n)
    bad = np.flatnonzero((tiers < -1) | (tiers >= len(multipliers)))
    if bad.size:
        row = int(bad[0])
        raise InvalidInputError(
            f"build_confidence: array 'tier' line {row} holds {int(tiers[row])}, outside "
            f"[-1, {len(multipliers)}) ({bad.size} bad lines); give one multiplier per tier"
        )
    table = np.append(np.asarray(multipliers, dtype=np.float64), 1.0)  # index -1 -> 1.0
    factor: NDArray[np.float64] = table[tiers]
    return factor


def _epoch_seconds(name: str, values: NDArray[np.generic]) -> NDArray[np.float64]:
    array = np.asarray(values)
    if np.issubdtype(array.dtype, np.datetime64):
        if np.isnat(array).any():
            row = int(np.flatnonzero(np.isnat(array).ravel())[0])
            raise InvalidInputError(
                f"build_confidence: array {name!r} line {row} is NaT (missing time)"
            )
        return array.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float64)
    raise InvalidInputError(
        f"build_confidence: array {name!r} has dtype {array.dtype}; "
        "use int64 epoch seconds or datetime64"
    )


def _checked(name: str, values: NDArray[np.generic], n: int) -> NDArray[np.generic]:
    array = np.asarray(values)
    if array.shape != (n,):
        raise InvalidInputError(
            f"build_confidence: array {name!r} has shape {array.shape}; expected ({n},), "
            "one entry per purchase line"
        )
    return array


def _index_array(name: str, values: NDArray[np.integer], size: int, n: int) -> NDArray[np.int64]:
    array = _int_array(name, values, n)
    bad = np.flatnonzero((array < 0) | (array >= size))
    if bad.size:
        row = int(bad[0])
        raise InvalidInputError(
            f"build_confidence: array {name!r} line {row} holds index {int(array[row])}, "
            f"outside [0, {size}) ({bad.size} bad lines); map ids with the same id map "
            "that sized the matrix"
        )
    return array


def _int_array(name: str, values: NDArray[np.integer], n: int) -> NDArray[np.int64]:
    array = _checked(name, values, n)
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(
            f"build_confidence: array {name!r} has dtype {array.dtype}; expected integers"
        )
    return array.astype(np.int64, copy=False)


def _float_array(name: str, values: NDArray[np.number], n: int) -> NDArray[np.float64]:
    array = _checked(name, values, n)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidInputError(
            f"build_confidence: array {name!r} has dtype {array.dtype}; expected numbers"
        )
    as_float = array.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(as_float))
    if bad.size:
        row = int(bad[0])
        raise InvalidInputError(
            f"build_confidence: array {name!r} line {row} is {as_float[row]!r}; "
            f"values must be finite ({bad.size} bad lines)"
        )
    return as_float


def _bool_array(name: str, values: NDArray[np.bool_], n: int) -> NDArray[np.bool_]:
    array = _checked(name, values, n)
    if array.dtype != np.bool_:
        raise InvalidInputError(
            f"build_confidence: array {name!r} has dtype {array.dtype}; expected booleans"
        )
    flags: NDArray[np.bool_] = array.astype(np.bool_, copy=False)
    return flags


def _multiplier_array(values: NDArray[np.floating], n: int) -> NDArray[np.float64]:
    factor = _float_array("multiplier", values, n)
    bad = np.flatnonzero(factor < 0)
    if bad.size:
        row = int(bad[0])
        raise InvalidInputError(
            f"build_confidence: array 'multiplier' line {row} is {factor[row]!r}; "
            f"multipliers must be >= 0 ({bad.size} bad lines)"
        )
    return factor


def bm25_weight(matrix: sp.csr_matrix, k1: float = 100.0, b: float = 0.8) -> sp.csr_matrix:
    """Okapi BM25 re-weighting of a members x items confidence matrix (float32 CSR).

    The same formula as ``implicit.nearest_neighbours.bm25_weight`` (members are the
    "documents", items the "terms")::

        idf[i]   = log(n_members) - log1p(members with item i)
        norm[u]  = (1 - b) + b * row_sum[u] / mean(row_sum)
        c'[u, i] = c[u, i] * (k1 + 1) / (k1 * norm[u] + c[u, i]) * idf[i]

    Very popular items (low idf) and heavy buyers (long rows) weigh less. Cells whose weight is
    not positive (an item bought by nearly every member has idf <= 0) are dropped, so the result
    is a valid confidence matrix.
    """
    _require_finite_at_least("bm25 k1", k1, 0.0)
    _require_finite_at_least("bm25 b", b, 0.0)
    if b > 1.0:
        raise InvalidInputError(f"interaction weights: bm25 b is {b!r}; it must be at most 1")
    csr = sp.csr_matrix(matrix, dtype=np.float64)
    n_members = csr.shape[0]
    if csr.nnz == 0 or n_members == 0:
        return sp.csr_matrix(csr, dtype=np.float32)
    document_frequency = np.bincount(csr.indices, minlength=csr.shape[1])
    idf = np.log(float(n_members)) - np.log1p(document_frequency)
    row_sums = np.asarray(csr.sum(axis=1)).ravel()
    length_norm = (1.0 - b) + b * row_sums / row_sums.mean()
    rows = np.repeat(np.arange(n_members), np.diff(csr.indptr))
    data = csr.data * (k1 + 1.0) / (k1 * length_norm[rows] + csr.data) * idf[csr.indices]
    result = sp.csr_matrix(
        (
            np.maximum(data, 0.0).astype(np.float32),
            csr.indices.astype(np.int32),
            csr.indptr.astype(np.int32),
        ),
        shape=csr.shape,
    )
    result.eliminate_zeros()
    return result
