"""Each exposed member's outcomes in an experiment's report period. Pure polars/numpy, no I/O.

The unit is the **member**, not the served list: a member who was served many lists counts
once, in the variant they were served. Per member of a variant (``first_ms`` = the member's
first exposure in the period):

- ``converted``: a purchase line (``quantity > 0``) at or after ``first_ms``, before the end;
- ``converted_recommended``: an item bought within the attribution window of a list that
  showed it, and not returned (engine.experiments.attribution, rules 3 and 4);
- ``revenue``: the net amount of every line at or after ``first_ms`` (returns subtract);
- ``recommended_revenue``: the attributed part of it (net of returns, clipped at zero per list
  and item).

Members whose lists in the period came from **both** variants (the challenger share or the
experiment name changed during the period) are left out of both and counted in
``mixed_members``: neither variant may claim them. Exposures of any other variant label (lists
served with no experiment running) are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from engine.experiments.assignment import CHALLENGER, CHAMPION, VARIANTS
from engine.experiments.attribution import (
    EXPOSURE_SCHEMA,
    attribute,
    attributed_by_member,
)
from engine.experiments.errors import ExperimentInputError

_EMPTY_BOOL: Final = np.zeros(0, dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class VariantOutcomes:
    """One variant's exposed members (aligned arrays, one entry per member) and its lists."""

    converted: npt.NDArray[np.bool_]
    converted_recommended: npt.NDArray[np.bool_]
    revenue: npt.NDArray[np.float64]
    recommended_revenue: npt.NDArray[np.float64]
    #: lists served to these members in the period
    lists_served: int = 0
    #: the bundles (models) that served them
    bundle_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.n
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) and value.shape != (n,):
                raise ExperimentInputError(f.name, f"needs one value per member ({n})")
        if not (np.isfinite(self.revenue).all() and np.isfinite(self.recommended_revenue).all()):
            raise ExperimentInputError("revenue", "must be finite")

    @property
    def n(self) -> int:
        return int(self.converted.shape[0])

    @classmethod
    def empty(cls) -> VariantOutcomes:
        return cls(_EMPTY_BOOL, _EMPTY_BOOL, np.zeros(0), np.zeros(0))


@dataclass(frozen=True, slots=True)
class ExperimentOutcomes:
    """Both variants' member outcomes, and the members left out."""

    champion: VariantOutcomes
    challenger: VariantOutcomes
    mixed_members: int = 0

    def variant(self, name: str) -> VariantOutcomes:
        return self.challenger if name == CHALLENGER else self.champion


def _exposed_members(exposures: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Per member: variant, first exposure, lists; and how many members were in both."""
    per = exposures.group_by("member_id").agg(
        pl.col("variant").first(),
        pl.col("variant").n_unique().alias("n_variants"),
        pl.col("served_ms").min().alias("first_ms"),
        pl.len().alias("lists"),
    )
    mixed = per.filter(pl.col("n_variants") > 1).height
    return per.filter(pl.col("n_variants") == 1).drop("n_variants"), mixed


def member_outcomes(
    exposures: pl.DataFrame,
    purchases: pl.DataFrame,
    *,
    start_ms: int,
    end_ms: int,
    data_timezone: str,
    window_hours: float,
) -> ExperimentOutcomes:
    """Each variant's members exposed in ``[start_ms, end_ms)`` and their outcomes from the
    purchase lines up to ``end_ms`` (module docstring)."""
    if end_ms <= start_ms:
        raise ExperimentInputError("period", "must end after it starts")
    missing = [c for c in EXPOSURE_SCHEMA if c not in exposures.columns]
    if missing:
        raise ExperimentInputError("exposures", f"missing column(s) {', '.join(missing)}")
    served = exposures.select(pl.col(c).cast(t) for c, t in EXPOSURE_SCHEMA.items()).filter(
        pl.col("served_ms") >= start_ms,
        pl.col("served_ms") < end_ms,
        pl.col("variant").is_in(list(VARIANTS)),
    )
    members, mixed = _exposed_members(served)
    served = served.join(members.select("member_id"), on="member_id", how="semi")
    lines = attribute(served, purchases, data_timezone=data_timezone, window_hours=window_hours)
    counted = lines.join(members.select("member_id", "first_ms"), on="member_id").filter(
        pl.col("ts_ms") >= pl.col("first_ms"), pl.col("ts_ms") < end_ms
    )
    bought = counted.group_by("member_id").agg(
        (pl.col("quantity") > 0).any().alias("converted"),
        pl.col("amount").sum().alias("revenue"),
    )
    table = (
        members.join(bought, on="member_id", how="left")
        .join(attributed_by_member(counted), on="member_id", how="left")
        .with_columns(
            pl.col("converted").fill_null(False),
            pl.col("revenue").fill_null(0.0),
            pl.col("attributed_revenue").fill_null(0.0),
            (pl.col("attributed_items").fill_null(0) > 0).alias("converted_recommended"),
        )
        .sort("member_id")
    )

    def outcomes(variant: str) -> VariantOutcomes:
        rows = table.filter(pl.col("variant") == variant)
        lists = served.filter(pl.col("variant") == variant)
        return VariantOutcomes(
            converted=rows["converted"].to_numpy().astype(np.bool_),
            converted_recommended=rows["converted_recommended"].to_numpy().astype(np.bool_),
            revenue=rows["revenue"].to_numpy().astype(np.float64),
            recommended_revenue=rows["attributed_revenue"].to_numpy().astype(np.float64),
            lists_served=lists.height,
            bundle_ids=tuple(sorted(lists["bundle_id"].drop_nulls().unique().to_list())),
        )

    return ExperimentOutcomes(outcomes(CHAMPION), outcomes(CHALLENGER), mixed)


__all__ = ["ExperimentOutcomes", "VariantOutcomes", "member_outcomes"]
