"""The RFM section of the feature policy: the scoring window and the named segments of the
R x FM score map (docs/features.md, "RFM").

:meth:`RfmPolicy.segment` is the pure scalar rule the batch transform
(feature_store.transforms.rfm) and the online updates share. :class:`RfmTable` is the ``[rfm]``
table of the policy file (feature_store.config_model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import BeforeValidator, Field, field_validator

from feature_store.config_model import ConfigModel, ConfigValueError, Items, Text

#: The standard RFM segment names (docs/features.md shows the default R x FM map).
RFM_SEGMENTS: Final[tuple[str, ...]] = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Cannot Lose Them",
    "Hibernating",
    "Lost",
)

#: RFM scores run from 1 to SCORE_LEVELS (quintiles).
SCORE_LEVELS: Final[int] = 5


@dataclass(frozen=True, slots=True)
class RfmSegmentRule:
    """A segment covers the cells (r, fm) with r in ``r`` and fm in ``fm``."""

    name: str
    r: tuple[int, ...]
    fm: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RfmPolicy:
    """RFM over the trailing ``window_days``; segments from an R x FM score map.

    ``fm = (f_score + m_score + 1) // 2`` (the mean, rounded half up). Every one of the 25
    (r, fm) cells belongs to exactly one segment.
    """

    window_days: int
    segments: tuple[RfmSegmentRule, ...]

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    @property
    def segment_grid(self) -> tuple[str, ...]:
        """Segment of each cell, row-major: index ``(r - 1) * 5 + (fm - 1)``."""
        grid = [""] * (SCORE_LEVELS * SCORE_LEVELS)
        for seg in self.segments:
            for r in seg.r:
                for fm in seg.fm:
                    grid[(r - 1) * SCORE_LEVELS + fm - 1] = seg.name
        return tuple(grid)

    @staticmethod
    def fm_score(f_score: int, m_score: int) -> int:
        return (f_score + m_score + 1) // 2

    def segment(self, r_score: int, f_score: int, m_score: int) -> str:
        """The named segment of a member with these 1-5 scores."""
        for score in (r_score, f_score, m_score):
            if not 1 <= score <= SCORE_LEVELS:
                raise ValueError(f"RFM scores run from 1 to {SCORE_LEVELS}, got {score}")
        fm = self.fm_score(f_score, m_score)
        return self.segment_grid[(r_score - 1) * SCORE_LEVELS + fm - 1]


def _one_or_more(value: object) -> object:
    """A single score stands for a list of one."""
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


#: A score or a list of scores from 1 to SCORE_LEVELS.
Scores = Annotated[
    Items[Annotated[int, Field(ge=1, le=SCORE_LEVELS)]],
    Field(min_length=1),
    BeforeValidator(_one_or_more),
]


class RfmSegmentTable(ConfigModel):
    """A ``[[rfm.segments]]`` table: the cells (r, fm) of a named segment."""

    name: Text
    r: Scores
    fm: Scores

    def build(self) -> RfmSegmentRule:
        return RfmSegmentRule(
            name=self.name, r=tuple(sorted(set(self.r))), fm=tuple(sorted(set(self.fm)))
        )


class RfmTable(ConfigModel):
    """The ``[rfm]`` table; every (r, fm) cell must belong to exactly one segment."""

    window_days: int = Field(default=365, ge=1)
    segments: Items[RfmSegmentTable]

    @field_validator("segments")
    @classmethod
    def _cover_the_map(cls, segments: tuple[RfmSegmentTable, ...]) -> tuple[RfmSegmentTable, ...]:
        owner: dict[tuple[int, int], str] = {}
        for i, segment in enumerate(segments):
            if any(segment.name == other.name for other in segments[:i]):
                raise ConfigValueError(f"segment {segment.name!r} is defined twice", i, "name")
            for r in sorted(set(segment.r)):
                for fm in sorted(set(segment.fm)):
                    if (r, fm) in owner:
                        raise ConfigValueError(
                            f"segment {segment.name!r} overlaps {owner[r, fm]!r} at r={r}, fm={fm}",
                            i,
                        )
                    owner[r, fm] = segment.name
        missing = [
            f"r={r},fm={fm}"
            for r in range(1, SCORE_LEVELS + 1)
            for fm in range(1, SCORE_LEVELS + 1)
            if (r, fm) not in owner
        ]
        if missing:
            raise ConfigValueError(
                f"the R x FM map leaves cells without a segment: {', '.join(missing)}"
            )
        return segments

    def build(self) -> RfmPolicy:
        return RfmPolicy(
            window_days=self.window_days, segments=tuple(s.build() for s in self.segments)
        )


__all__ = [
    "RFM_SEGMENTS",
    "SCORE_LEVELS",
    "RfmPolicy",
    "RfmSegmentRule",
    "RfmSegmentTable",
    "RfmTable",
]
