"""Deterministic holdout (control group) assignment for a campaign.

A member is in the **control** group (not contacted) when a number drawn from a hash of the
campaign, an optional salt and the member falls below ``percent / 100``; everyone else is in the
**treatment** group (contacted). Nothing random is stored: anyone can recompute a member's group
from the three strings, in any process, on any machine, in any Python version.

The draw, exactly (:func:`holdout_draw` in one line of Python)::

    message = b"recsys-holdout/v1:" + ns(campaign_id) + ns(salt or "") + member_id.encode()
    ns(s)   = f"{len(s.encode())}:".encode() + s.encode() + b","      # a netstring
    u64     = int.from_bytes(hashlib.blake2b(message, digest_size=8).digest(), "big")
    draw    = (u64 >> 11) / 2**53                                   # uniform in [0, 1)
    control = draw < percent / 100

The netstrings make the message unambiguous (campaign "a1" + salt "" differs from campaign "a"
+ salt "1"); the member id comes last, so it needs no length. A salt gives a campaign that is
re-sent to the same audience a fresh, independent split. Python's ``hash()`` is never used: it
is randomised per process.

Speed: one BLAKE2b call per member, about 0.7 s per million members on this machine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.campaigns.errors import CampaignInputError

#: Name and version of the assignment scheme; stored with a campaign so it can be audited.
HOLDOUT_SCHEME: Final[str] = "blake2b-64/v1"
_PREFIX: Final[bytes] = b"recsys-holdout/v1:"
_FIELD: Final[str] = "holdout.percent"

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]
MemberIds = Sequence[str] | npt.NDArray[np.str_] | npt.NDArray[np.object_]


def validate_percent(percent: float, field: str = _FIELD) -> float:
    """``percent`` as a float, if it is a finite number strictly between 0 and 100.

    0 % (no control group) and 100 % (nobody contacted) are both refused: neither measures
    anything. Raises :class:`CampaignInputError` naming ``field``.
    """
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise CampaignInputError(field, f"must be a number (got {percent!r})")
    value = float(percent)
    if not math.isfinite(value) or not 0.0 < value < 100.0:
        raise CampaignInputError(
            field, f"must be greater than 0 and less than 100 (got {percent!r})"
        )
    return value


def _netstring(text: str) -> bytes:
    raw = text.encode("utf-8")
    return f"{len(raw)}:".encode() + raw + b","


def _prefix(campaign_id: str, salt: str | None) -> bytes:
    if not isinstance(campaign_id, str) or not campaign_id:
        raise CampaignInputError("campaign_id", "must be a non-empty string")
    if salt is not None and not isinstance(salt, str):
        raise CampaignInputError("holdout.salt", f"must be a string (got {salt!r})")
    return _PREFIX + _netstring(campaign_id) + _netstring(salt or "")


def _as_strings(member_ids: MemberIds | Iterable[str]) -> list[str]:
    if isinstance(member_ids, np.ndarray):
        if member_ids.dtype.kind not in "UO":
            raise CampaignInputError(
                "member_ids", f"must be strings (got an array of {member_ids.dtype})"
            )
        values: list[str] = member_ids.tolist()
    else:
        values = list(member_ids)
    for value in values[:1]:
        if not isinstance(value, str):
            raise CampaignInputError("member_ids", f"must be strings (got {type(value).__name__})")
    return values


def holdout_draws(
    campaign_id: str, member_ids: MemberIds | Iterable[str], salt: str | None = None
) -> FloatArray:
    """Each member's draw in [0, 1), float64, in the order given (see the module docstring)."""
    return _draws(_prefix(campaign_id, salt), _as_strings(member_ids))


def _draws(prefix: bytes, ids: list[str]) -> FloatArray:
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(prefix + m.encode(), digest_size=8).digest() for m in ids])
    words = np.frombuffer(digests, dtype=">u8").astype(np.uint64)
    return (words >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def holdout_draw(campaign_id: str, member_id: str, salt: str | None = None) -> float:
    """One member's draw in [0, 1): the reference definition, for audits."""
    digest = hashlib.blake2b(_prefix(campaign_id, salt) + member_id.encode(), digest_size=8)
    return (int.from_bytes(digest.digest(), "big") >> 11) / 2**53


def control_mask(
    campaign_id: str,
    member_ids: MemberIds | Iterable[str],
    percent: float,
    salt: str | None = None,
) -> BoolArray:
    """True where the member is in the control group (held out, not contacted)."""
    share = validate_percent(percent) / 100.0
    return holdout_draws(campaign_id, member_ids, salt) < share


def is_control(campaign_id: str, member_id: str, percent: float, salt: str | None = None) -> bool:
    """Whether one member is in the control group."""
    return holdout_draw(campaign_id, member_id, salt) < validate_percent(percent) / 100.0


@dataclass(frozen=True, slots=True)
class HoldoutSplit:
    """A campaign's audience split into treatment (contacted) and control (held out).

    Both id arrays keep the order of the input (an audience's best-first order).
    """

    campaign_id: str
    percent: float
    salt: str | None
    treatment: StrArray
    control: StrArray
    scheme: str = HOLDOUT_SCHEME

    @property
    def counts(self) -> dict[str, int]:
        """``{"treatment": ..., "control": ..., "total": ...}``."""
        t, c = int(self.treatment.size), int(self.control.size)
        return {"treatment": t, "control": c, "total": t + c}


def split_holdout(
    campaign_id: str,
    member_ids: MemberIds | Iterable[str],
    percent: float,
    salt: str | None = None,
) -> HoldoutSplit:
    """Split an audience into treatment and control groups (order kept within each group)."""
    share = validate_percent(percent) / 100.0
    values = _as_strings(member_ids)
    mask = _draws(_prefix(campaign_id, salt), values) < share
    ids = np.asarray(values, dtype=np.str_)
    return HoldoutSplit(
        campaign_id=campaign_id,
        percent=float(percent),
        salt=salt,
        treatment=ids[~mask],
        control=ids[mask],
    )
