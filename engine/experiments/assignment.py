"""Which variant a member sees: a deterministic hash of (experiment, member), so a member always
sees the same variant of one experiment, and a new experiment reshuffles everyone.

``bucket = BLAKE2b-64(experiment + "\\x1f" + member_id) mod 10,000``; the member sees the
challenger when ``bucket < percent * 100``. The scheme is named :data:`SCHEME` in reports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from engine.errors import InvalidInputError

Variant = Literal["champion", "challenger"]
CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
VARIANTS: Final[tuple[str, str]] = (CHAMPION, CHALLENGER)
SCHEME: Final = "blake2b-64/bucket-10000/v1"
BUCKETS: Final = 10_000


def check_percent(percent: float) -> float:
    if not 0.0 <= percent <= 100.0:
        raise InvalidInputError(f"the challenger percent must be in 0..100, got {percent}")
    return percent


def bucket(experiment: str, member_id: str) -> int:
    """The member's bucket in 0..9,999 for this experiment."""
    digest = hashlib.blake2b(f"{experiment}\x1f{member_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def variant_of(experiment: str, member_id: str, percent: float) -> Variant:
    """``challenger`` for ``percent`` % of the members (by bucket), else ``champion``."""
    if percent <= 0:
        return "champion"
    return "challenger" if bucket(experiment, member_id) < percent * 100 else "champion"


def variants_of(experiment: str, member_ids: Iterable[str], percent: float) -> npt.NDArray[np.str_]:
    """:func:`variant_of` for many members (reports)."""
    check_percent(percent)
    limit = percent * 100
    return np.asarray(
        [
            CHALLENGER if percent > 0 and bucket(experiment, m) < limit else CHAMPION
            for m in member_ids
        ],
        dtype=np.str_,
    )


__all__ = [
    "BUCKETS",
    "CHALLENGER",
    "CHAMPION",
    "SCHEME",
    "VARIANTS",
    "Variant",
    "bucket",
    "check_percent",
    "variant_of",
    "variants_of",
]
