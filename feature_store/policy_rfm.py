"""The RFM section of the feature policy: the scoring window and the named segments of the
R x FM score map (docs/features.md, "RFM").

:meth:`RfmPolicy.segment` is the pure scalar rule the batch transform
(feature_store.transforms.rfm) and the online updates share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from feature_store.policy_toml import PolicySection

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


def _score_list(sec: PolicySection, key: str) -> tuple[int, ...]:
    value = sec.raw(key) if sec.has(key) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= SCORE_LEVELS for v in value
        )
    ):
        raise sec.error(
            key, f"must be a score or list of scores from 1 to {SCORE_LEVELS}, got {value!r}"
        )
    return tuple(sorted(set(value)))


def parse_rfm(sec: PolicySection) -> RfmPolicy:
    """The ``[rfm]`` table; every (r, fm) cell must belong to exactly one segment."""
    window_days = sec.integer("window_days", 365, minimum=1)
    rules: list[RfmSegmentRule] = []
    owner: dict[tuple[int, int], str] = {}
    for s in sec.table_list("segments"):
        name = s.string("name")
        if name in {r.name for r in rules}:
            raise s.error("name", f"segment {name!r} is defined twice")
        rule = RfmSegmentRule(name=name, r=_score_list(s, "r"), fm=_score_list(s, "fm"))
        s.finish()
        for r in rule.r:
            for fm in rule.fm:
                if (r, fm) in owner:
                    raise s.error(
                        "", f"segment {name!r} overlaps {owner[r, fm]!r} at r={r}, fm={fm}"
                    )
                owner[r, fm] = name
        rules.append(rule)
    missing = [
        f"r={r},fm={fm}"
        for r in range(1, SCORE_LEVELS + 1)
        for fm in range(1, SCORE_LEVELS + 1)
        if (r, fm) not in owner
    ]
    if missing:
        raise sec.error(
            "segments", f"the R x FM map leaves cells without a segment: {', '.join(missing)}"
        )
    sec.finish()
    return RfmPolicy(window_days=window_days, segments=tuple(rules))


__all__ = ["RFM_SEGMENTS", "SCORE_LEVELS", "RfmPolicy", "RfmSegmentRule", "parse_rfm"]
