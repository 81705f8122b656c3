"""What one request asks of the kernel (:class:`Request`), and what it answers (:class:`Ranked`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInputError
from engine.ranking.lists import RankedList, RequestRules

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
_NONE = np.zeros(0, np.int64)
_NO_WEIGHTS = np.zeros(0, np.float32)


class Purchased(StrEnum):
    """What happens to items the member already bought.

    ``keep``: they may be recommended (buy again). ``exclude_recent`` (the service's default):
    items bought since the snapshot (``Request.recent_items``) are not, older ones may be.
    ``exclude``: no purchased item is recommended (discovery only).
    """

    KEEP = "keep"
    EXCLUDE_RECENT = "exclude_recent"
    EXCLUDE = "exclude"


@dataclass(frozen=True, slots=True)
class Request:
    """One member's request, in dense ids (see the module docstring for the basis).

    Attributes:
        k: how many items.
        row: the member's row in the bundle, ``-1`` when the bundle does not know them.
        tier: the member's tier rank (0 = lowest); ``tier_known`` says a profile gave it (the
            basis of a member without candidates is then ``popular_in_tier``).
        category: category code to restrict to (:meth:`Ranker.category_code`), or None.
        purchased: the purchased-items policy.
        vector: the member's vector when it is not the bundle row's (fold-in, features), with
            ``basis`` naming which.
        recent_items, recent_weights: purchases since the snapshot (added to the history a
            vector is ranked with; excluded unless ``purchased`` is ``keep``).
        extra: the rules the request adds (exclude list, promotion), or None.
    """

    k: int
    row: int = -1
    tier: int = 0
    tier_known: bool = False
    category: int | None = None
    purchased: Purchased = Purchased.EXCLUDE_RECENT
    vector: FloatArray | None = None
    basis: str = "model"
    recent_items: IntArray = field(default_factory=lambda: _NONE)
    recent_weights: FloatArray = field(default_factory=lambda: _NO_WEIGHTS)
    extra: RequestRules | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidInputError(f"k must be at least 1, got {self.k}")

    @property
    def plain(self) -> bool:
        """Only what a precomputed list can decide: a bundle row, nothing since the snapshot,
        no category, no exclusions beyond what was bought since the snapshot (none)."""
        return (
            self.row >= 0
            and self.vector is None
            and self.recent_items.size == 0
            and self.category is None
            and self.purchased is not Purchased.EXCLUDE
            and self.extra is None
        )


@dataclass(frozen=True, slots=True)
class Ranked:
    """A served list (dense ids) and how it was made."""

    ranked: RankedList
    basis: str
    fallback: bool


__all__ = ["Purchased", "Ranked", "Request"]
