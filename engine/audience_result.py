"""A built campaign audience: its members best first, their scores, ranks and percentiles, the
counts of every step and breakdowns by tier, segment and lifecycle stage.

The size rules (top N, minimum score, top percent; all given apply) keep a prefix of the scored
members ordered by score descending, ties by attribute row: :func:`audience_size` and
:func:`top_positions`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from engine.audience_definition import Size

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

#: Breakdown key of members whose tier / segment / lifecycle is null.
UNKNOWN: Final[str] = "unknown"


@dataclass(frozen=True, slots=True)
class Audience:
    """Members of an audience, best first."""

    #: attribute rows (int64)
    rows: IntArray
    member_ids: npt.NDArray[np.str_]
    #: float32, descending
    scores: FloatArray
    #: 1-based
    ranks: IntArray
    #: share (in %) of the scored eligible members scoring <= this one, in (0, 100]
    percentiles: FloatArray
    #: names per member ("" when null), for export
    tiers: npt.NDArray[np.str_]
    segments: npt.NDArray[np.str_]
    lifecycles: npt.NDArray[np.str_]
    #: members, eligible, unscored, excluded_<reason>..., excluded, scored, selected
    counts: dict[str, int]
    #: "tier" / "segment" / "lifecycle" -> name -> members in the audience
    breakdown: dict[str, dict[str, int]]
    warnings: tuple[str, ...]
    #: items / categories / tags / members of the seed found in the model, item_rows expanded
    seed_summary: dict[str, int]

    def __len__(self) -> int:
        return int(self.rows.shape[0])


def labels(names: Sequence[str]) -> npt.NDArray[np.str_]:
    """Names with "" appended, so that code -1 (null) indexes ""."""
    return np.array([*names, ""], dtype=np.str_)


def audience_size(size: Size, scores: FloatArray) -> int:
    """How many of the members scoring ``scores`` the size rules keep (all rules given apply,
    so the smallest wins)."""
    k = int(scores.size)
    if size.top_n is not None:
        k = min(k, size.top_n)
    if size.top_percent is not None:
        k = min(k, math.ceil(scores.size * size.top_percent / 100 - 1e-9))
    if size.min_score is not None:
        k = min(k, int(np.count_nonzero(scores.astype(np.float64) >= size.min_score)))
    return k


def top_positions(scores: FloatArray, k: int) -> IntArray:
    """Positions of the ``k`` best scores, best first; ties by position (stable)."""
    n = int(scores.size)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    negative = -scores
    if k < n:
        threshold = np.partition(negative, k - 1)[k - 1]
        better = np.flatnonzero(negative < threshold)
        tied = np.flatnonzero(negative == threshold)[: k - better.size]
        part = np.concatenate([better, tied])
    else:
        part = np.arange(n, dtype=np.int64)
    order = np.lexsort((part, negative[part]))
    return part[order].astype(np.int64)


def percentiles(top_scores: FloatArray, n_scored: int) -> FloatArray:
    """Share (%) of the ``n_scored`` members scoring <= each of ``top_scores`` (a best-first
    prefix of them): members above a score are exactly those before its first tie."""
    if top_scores.size == 0:
        return np.empty(0, dtype=np.float32)
    ascending = -top_scores  # best-first scores, negated, ascend
    above = np.searchsorted(ascending, ascending, side="left")
    return ((n_scored - above) / n_scored * 100.0).astype(np.float32)


def breakdown(codes: npt.NDArray[Any], names: Sequence[str]) -> dict[str, int]:
    """Members per name of the attribute coded ``codes`` (-1, null, under :data:`UNKNOWN`)."""
    counts = np.bincount(np.asarray(codes, dtype=np.int64) + 1, minlength=len(names) + 1)
    out = {name: int(counts[i + 1]) for i, name in enumerate(names)}
    if counts[0]:
        out[UNKNOWN] = int(counts[0])
    return out


__all__ = [
    "UNKNOWN",
    "Audience",
    "audience_size",
    "breakdown",
    "labels",
    "percentiles",
    "top_positions",
]
