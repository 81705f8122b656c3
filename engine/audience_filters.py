"""Member filters of campaign audiences: which members of a snapshot a definition's filters let in.

:class:`MemberFilter` holds the member attribute columns (:class:`MemberAttributes`, e.g. a
feature snapshot's feature_store.member_columns.MemberColumns) and evaluates the filters of an
audience definition (engine.audience_definition.Filters) with vectorized lookups on integer
codes: tier, lifecycle stage, segment and region through a lookup table over the codes, member
tags through counts over the selected columns of the tags CSR matrix. A null attribute (code
-1, unknown birth month, nan points, p_alive or clv) never passes a filter on it.

``filters.clv.top_percent`` keeps the members whose lifetime value is among the top X% of all
members with a known value in the snapshot (before any other filter), so "our top 10%" means the
same whichever other filters are combined with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.audience_definition import DefinitionError, Filters, quote

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class MemberAttributes(Protocol):
    """Member attribute columns (feature_store.member_columns.MemberColumns satisfies it)."""

    @property
    def member_ids(self) -> npt.NDArray[np.str_]: ...
    @property
    def tier_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def tier_names(self) -> tuple[str, ...]: ...
    @property
    def lifecycle_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def lifecycle_names(self) -> tuple[str, ...]: ...
    @property
    def segment_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def segment_names(self) -> tuple[str, ...]: ...
    @property
    def region_codes(self) -> npt.NDArray[np.int16]: ...
    @property
    def region_names(self) -> tuple[str, ...]: ...
    @property
    def tags(self) -> sp.csr_array: ...
    @property
    def tag_names(self) -> tuple[str, ...]: ...
    @property
    def birth_month(self) -> npt.NDArray[np.int8]: ...
    @property
    def points(self) -> npt.NDArray[np.float64]: ...
    @property
    def joined_at(self) -> npt.NDArray[np.datetime64]: ...
    @property
    def p_alive(self) -> npt.NDArray[np.float64]: ...
    @property
    def clv(self) -> npt.NDArray[np.float64]: ...
    @property
    def expected_spend(self) -> npt.NDArray[np.float64]: ...


def lookup_table(size: int, codes: Iterable[int]) -> BoolArray:
    """A lookup table over codes -1..size-1 shifted by one (index 0 is null: never passes)."""
    table = np.zeros(size + 1, dtype=np.bool_)
    for code in codes:
        table[code + 1] = True
    return table


class MemberFilter:
    """Member attributes indexed once for filtering (one row per member, "attribute rows")."""

    def __init__(
        self, attributes: MemberAttributes, *, known_segments: Sequence[str] | None = None
    ) -> None:
        """``known_segments``: the segment names a filter may name (default: the segments
        present in ``attributes``)."""
        self._attributes = attributes
        self._n = int(np.shape(attributes.member_ids)[0])
        self._segments = (
            tuple(known_segments) if known_segments is not None else attributes.segment_names
        )
        tags = sp.csr_array(attributes.tags)
        #: attribute row of each stored tag, and its tag column: tag counts by bincount
        self._tag_rows = np.repeat(np.arange(self._n, dtype=np.int64), np.diff(tags.indptr))
        self._tag_columns = np.asarray(tags.indices, dtype=np.int64)
        self._tag_index = {name: i for i, name in enumerate(attributes.tag_names)}
        self._region_index = {name: i for i, name in enumerate(attributes.region_names)}

    def check_names(self, filters: Filters) -> None:
        """Raise :class:`DefinitionError` for a tier, lifecycle stage or segment that does not
        exist (a typo would otherwise select nobody)."""
        a = self._attributes
        for key, values, known in (
            ("tiers", filters.tiers, a.tier_names),
            ("lifecycle", filters.lifecycle, a.lifecycle_names),
            ("segments", filters.segments, self._segments),
        ):
            for i, value in enumerate(values):
                if value not in known:
                    raise DefinitionError(
                        f"filters.{key}[{i}]",
                        f"unknown {key.rstrip('s')} {value!r}; known: {', '.join(known)}",
                    )

    def warnings(self, filters: Filters) -> list[str]:
        """Warnings for filters that may be right but select nobody: tags no member has,
        regions no member is in."""
        warnings = []
        tags = filters.tags
        for key, values in (("any", tags.any_of), ("all", tags.all_of), ("none", tags.none_of)):
            unknown = [t for t in values if t not in self._tag_index]
            if unknown:
                warnings.append(f"filters.tags.{key}: no member has tag(s) {quote(unknown)}")
        unknown = [r for r in filters.regions if r not in self._region_index]
        if unknown:
            warnings.append(f"filters.regions: no member is in region(s) {quote(unknown)}")
        return warnings

    def _tag_counts(self, names: Sequence[str]) -> IntArray:
        """Per attribute row, how many of the tags ``names`` (known ones) the member has."""
        selected = np.zeros(len(self._tag_index) + 1, dtype=np.bool_)
        for name in names:
            if name in self._tag_index:
                selected[self._tag_index[name]] = True
        hit = selected[self._tag_columns]
        return np.bincount(self._tag_rows[hit], minlength=self._n).astype(np.int64)

    def eligible(self, filters: Filters) -> BoolArray:
        """Attribute rows passing every filter (vector or not)."""
        a = self._attributes
        mask = np.ones(self._n, dtype=np.bool_)
        for values, names, codes in (
            (filters.tiers, a.tier_names, a.tier_codes),
            (filters.lifecycle, a.lifecycle_names, a.lifecycle_codes),
            (filters.segments, a.segment_names, a.segment_codes),
            (filters.regions, a.region_names, a.region_codes),
        ):
            if values:
                index = {name: i for i, name in enumerate(names)}
                table = lookup_table(len(names), (index[v] for v in values if v in index))
                mask &= table[np.asarray(codes, dtype=np.int64) + 1]
        tags = filters.tags
        if tags.any_of:
            mask &= self._tag_counts(tags.any_of) > 0
        if tags.all_of:
            if all(t in self._tag_index for t in tags.all_of):
                mask &= self._tag_counts(tags.all_of) == len(tags.all_of)
            else:
                mask[:] = False
        if tags.none_of:
            mask &= self._tag_counts(tags.none_of) == 0
        if filters.birth_months:
            table = np.zeros(13, dtype=np.bool_)
            table[list(filters.birth_months)] = True
            months = np.asarray(a.birth_month, dtype=np.int64)
            valid = (months >= 1) & (months <= 12)  # anything else is unknown: never passes
            mask &= valid & table[np.where(valid, months, 0)]
        if filters.points_min is not None:
            mask &= np.asarray(a.points) >= filters.points_min  # nan (unknown) fails
        if filters.points_max is not None:
            mask &= np.asarray(a.points) <= filters.points_max
        joined = np.asarray(a.joined_at).astype("datetime64[us]")
        if filters.joined_after is not None:
            mask &= joined >= np.datetime64(filters.joined_after, "us")
        if filters.joined_before is not None:
            mask &= joined < np.datetime64(filters.joined_before, "us")
        p_alive = np.asarray(a.p_alive, dtype=np.float64)
        if filters.p_alive_min is not None:
            mask &= p_alive >= filters.p_alive_min  # nan (unknown) fails
        if filters.p_alive_max is not None:
            mask &= p_alive <= filters.p_alive_max
        clv = np.asarray(a.clv, dtype=np.float64)
        if filters.clv_min is not None:
            mask &= clv >= filters.clv_min
        if filters.clv_max is not None:
            mask &= clv <= filters.clv_max
        if filters.clv_top_percent is not None:
            mask &= clv >= clv_threshold(clv, filters.clv_top_percent)
        return mask


def clv_threshold(clv: npt.NDArray[np.float64], top_percent: float) -> float:
    """The lowest lifetime value among the top ``top_percent`` % of the members with a known
    value (ceil of the share, at least one member; ties at the threshold all pass); +inf when
    no member has a value."""
    known = clv[np.isfinite(clv)]
    if known.size == 0:
        return float("inf")
    k = max(1, math.ceil(known.size * top_percent / 100 - 1e-9))
    return float(np.partition(known, known.size - k)[known.size - k])


__all__ = ["MemberAttributes", "MemberFilter", "clv_threshold", "lookup_table"]
