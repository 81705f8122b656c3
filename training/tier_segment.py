"""Tier segment model: a second, small ALS fitted on the purchases of the top tiers' members
alone, whose score is added to the main model's for those members.

Why (docs/synthetic_data.md, "Tier-specific taste"; ``python -m benchmarks tier_taste``): the
main model is fitted on every member, and its factors are mostly spent on what all tiers share.
A model of the top tiers' own purchases learns what they buy together; adding its score for
them raised platinum + diamond NDCG@10 on the "new" list (items never bought before) on
synthetic data with tier-specific tastes, at no cost to the other tiers (they get the main
model's score unchanged). Tier multipliers on the interaction weights, tier-conditioned
popularity and a shift of member vectors toward their tier's centroid did not.

How it serves for free: the segment is *concatenated* to the main model's vectors::

    member u:  [ main_u , segment_u if tier(u) in the segment else 0 ]
    item i:    [ main_i , weight * scale * segment_i ]
    member . item = main score + weight * scale * segment score      (segment members only)

so the bundle, FAISS retrieval, the blend, the precompute, the kernel and audiences read the
same ``member . item`` as before, with ``factors`` more dimensions. ``scale`` puts the segment's
scores on the main model's scale (the median ratio of the two models' best scores over a sample
of segment members; about 1 when the main model is ALS too), so ``weight`` means the same for
every family. Members whose tier changes keep the part they had at fit time until the next fit.

Approximations (documented, not measured): ALS fold-in of purchases since the snapshot
(``engine.foldin``) solves over the concatenated item vectors, so a folded-in member's segment
part moves too; "similar items" (cosine over item vectors) sees the segment part scaled by
``weight``; LightFM cold-start feature vectors get zeros in the segment dimensions.

Inert (the artifacts come back unchanged, and :func:`inert_reason` says why) when the weight is
0, the model exports no vectors, the members hold fewer than two tiers, the segment's tiers hold
no member with purchases, or every member with a tier is in the segment (it would then be a
second model of everyone, not a tier-aware one).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from engine.models import ModelArtifacts, TrainData, create_model

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

#: parameter names recorded in ``ModelArtifacts.params`` (JSON-able, logged with the model)
P_TIERS: Final[str] = "tier_segment_tiers"
P_WEIGHT: Final[str] = "tier_segment_weight"
P_FACTORS: Final[str] = "tier_segment_factors"
P_SCALE: Final[str] = "tier_segment_scale"
P_MEMBERS: Final[str] = "tier_segment_members"
#: columns appended to the main model's vectors (what :func:`main_part` removes)
P_DIMS: Final[str] = "tier_segment_dims"
#: segment members whose best scores set ``scale`` (evenly spaced over the segment)
SCALE_SAMPLE: Final[int] = 512
#: ALS settings of the segment fit when the main model is not ALS
_ALS_DEFAULTS: Final[dict[str, Any]] = {"regularization": 0.05, "alpha": 1.0, "iterations": 15}
#: main-model parameters the segment's ALS reuses when the main model is ALS
_SHARED: Final[tuple[str, ...]] = (
    "regularization",
    "alpha",
    "iterations",
    "use_cg",
    "random_state",
    "num_threads",
)


@dataclass(frozen=True, slots=True)
class TierSegment:
    """Settings of the tier segment model (a training-config table, ``[tier_segment]``).

    Attributes:
        weight: how much of the segment's score is added (0 turns the segment off).
        tiers: the tiers whose members form the segment; empty: the top two tiers of the
            feature policy's ladder (platinum and diamond on the default ladder).
        factors: dimensions of the segment's ALS (and of the columns added to the vectors).
    """

    weight: float = 0.5
    tiers: tuple[str, ...] = ()
    factors: int = 16

    def __post_init__(self) -> None:
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"tier_segment.weight is {weight!r}; expected a number >= 0")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"tier_segment.weight is {weight!r}; expected a number >= 0")
        factors = self.factors
        if isinstance(factors, bool) or not isinstance(factors, int) or factors < 1:
            raise ValueError(f"tier_segment.factors is {factors!r}; expected an integer >= 1")
        names = tuple(self.tiers)
        if any(not isinstance(t, str) or not t for t in names) or len(set(names)) != len(names):
            raise ValueError(f"tier_segment.tiers is {list(names)!r}; expected distinct tier names")
        object.__setattr__(self, "tiers", names)

    @property
    def enabled(self) -> bool:
        return self.weight > 0


OFF: Final[TierSegment] = TierSegment(weight=0.0)


def segment_tiers(settings: TierSegment, ladder: Sequence[str]) -> tuple[int, ...]:
    """Ladder indexes of the segment's tiers (the top two when none are named).

    Raises:
        ValueError: a named tier is not on the ladder.
    """
    if not settings.tiers:
        return tuple(range(max(0, len(ladder) - 2), len(ladder)))
    unknown = [t for t in settings.tiers if t not in ladder]
    if unknown:
        raise ValueError(
            f"tier_segment.tiers names {unknown}, not on the feature policy's tier ladder "
            f"{list(ladder)}"
        )
    return tuple(sorted(ladder.index(t) for t in settings.tiers))


def segment_mask(
    settings: TierSegment, ladder: Sequence[str], member_tiers: npt.ArrayLike
) -> npt.NDArray[np.bool_]:
    """Which members (dense rows) are in the segment: their tier at the cutoff is one of the
    segment's tiers (members of unknown tier, ``-1``, never are)."""
    tiers = np.asarray(member_tiers, dtype=np.int64)
    return np.isin(tiers, np.asarray(segment_tiers(settings, ladder), dtype=np.int64))


def inert_reason(
    settings: TierSegment,
    ladder: Sequence[str],
    member_tiers: npt.ArrayLike,
    confidence: sp.csr_matrix,
) -> str | None:
    """Why the segment cannot change anything on this data (None: it applies)."""
    if not settings.enabled:
        return "tier segment: weight 0 (off)"
    tiers = np.asarray(member_tiers, dtype=np.int64)
    held = np.unique(tiers[tiers >= 0])
    if held.size < 2:
        return (
            "tier segment: the members hold fewer than two tiers, so no tier can be modelled apart"
        )
    inside = segment_mask(settings, ladder, tiers)
    names = ", ".join(ladder[t] for t in segment_tiers(settings, ladder))
    buyers = np.diff(confidence.indptr) > 0
    if not bool((inside & buyers).any()):
        return f"tier segment: no member of the segment's tiers ({names}) has purchases"
    if bool(inside[tiers >= 0].all()):
        return f"tier segment: every member with a tier is in the segment ({names})"
    return None


def add_tier_segment(
    artifacts: ModelArtifacts,
    confidence: sp.csr_matrix,
    member_tiers: npt.ArrayLike,
    ladder: Sequence[str],
    settings: TierSegment,
) -> ModelArtifacts:
    """The main model's artifacts with the segment's columns appended (module docstring), or
    ``artifacts`` unchanged when the segment is inert here or the model has no vectors.

    ``confidence`` is the matrix the main model was fitted on; ``member_tiers`` each member's
    ladder index at the cutoff (``-1`` unknown), in the matrix's row order.
    """
    members, items = artifacts.member_vectors, artifacts.item_vectors
    if members is None or items is None:
        return artifacts
    if inert_reason(settings, ladder, member_tiers, confidence) is not None:
        return artifacts
    if P_DIMS in artifacts.params:
        raise ValueError("add_tier_segment: these artifacts already carry a tier segment")
    inside = segment_mask(settings, ladder, member_tiers)
    segment = _fit_segment(artifacts, confidence, inside, settings.factors)
    seg_members, seg_items = segment.member_vectors, segment.item_vectors
    if seg_members is None or seg_items is None:  # ALS always exports both
        return artifacts
    scale = _scale(members, items, seg_members, seg_items, np.flatnonzero(inside))
    seg_members = np.where(inside[:, None], seg_members, 0.0).astype(np.float32)
    seg_items = (settings.weight * scale * seg_items).astype(np.float32)
    dims = int(seg_items.shape[1])
    params: dict[str, Any] = dict(artifacts.params)
    params.update(
        {
            P_TIERS: ",".join(ladder[t] for t in segment_tiers(settings, ladder)),
            P_WEIGHT: float(settings.weight),
            P_FACTORS: int(settings.factors),
            P_SCALE: round(float(scale), 6),
            P_MEMBERS: int(inside.sum()),
            P_DIMS: dims,
        }
    )
    return replace(
        artifacts,
        params=params,
        member_vectors=_concat(members, seg_members),
        item_vectors=_concat(items, seg_items),
        member_feature_vectors=_pad(artifacts.member_feature_vectors, dims),
        member_feature_offset=_pad(artifacts.member_feature_offset, dims),
        item_feature_vectors=_pad(artifacts.item_feature_vectors, dims),
        item_feature_offset=_pad(artifacts.item_feature_offset, dims),
    )


def segment_dims(artifacts: ModelArtifacts) -> int:
    """Columns a tier segment appended to these artifacts' vectors (0: none)."""
    value = artifacts.params.get(P_DIMS, 0)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def main_part(artifacts: ModelArtifacts) -> ModelArtifacts:
    """The artifacts without the segment's columns: the main model alone, exactly as fitted
    (what a warm refit starts from, and the tier-blind comparison of the evaluation)."""
    dims = segment_dims(artifacts)
    if dims == 0:
        return artifacts
    params = {k: v for k, v in artifacts.params.items() if not k.startswith("tier_segment_")}

    def cut(values: FloatArray | None) -> FloatArray | None:
        if values is None:
            return None
        return np.ascontiguousarray(values[..., :-dims], dtype=np.float32)

    return replace(
        artifacts,
        params=params,
        member_vectors=cut(artifacts.member_vectors),
        item_vectors=cut(artifacts.item_vectors),
        member_feature_vectors=cut(artifacts.member_feature_vectors),
        member_feature_offset=cut(artifacts.member_feature_offset),
        item_feature_vectors=cut(artifacts.item_feature_vectors),
        item_feature_offset=cut(artifacts.item_feature_offset),
    )


def tier_blind_members(artifacts: ModelArtifacts) -> FloatArray | None:
    """Member vectors with the segment's columns zeroed: against the same item vectors (and
    index) they score exactly as the main model alone (the tier-blind blend)."""
    vectors = artifacts.member_vectors
    dims = segment_dims(artifacts)
    if vectors is None or dims == 0:
        return vectors
    blind = vectors.copy()
    blind[:, -dims:] = 0.0
    return blind


def describe(artifacts: ModelArtifacts) -> Mapping[str, Any]:
    """The segment's recorded facts (empty when the artifacts carry none)."""
    return {k: v for k, v in artifacts.params.items() if k.startswith("tier_segment_")}


# -- pieces ----------------------------------------------------------------------------------


def _fit_segment(
    artifacts: ModelArtifacts,
    confidence: sp.csr_matrix,
    inside: npt.NDArray[np.bool_],
    factors: int,
) -> ModelArtifacts:
    """ALS on the segment members' rows of ``confidence`` (every other row emptied, so those
    members get zero vectors and the items are learnt from the segment alone)."""
    params: dict[str, Any] = dict(_ALS_DEFAULTS)
    if artifacts.kind == "als":
        params.update({k: artifacts.params[k] for k in _SHARED if k in artifacts.params})
    elif "random_state" in artifacts.params:
        params["random_state"] = artifacts.params["random_state"]
    params["factors"] = factors
    keep = sp.diags(inside.astype(np.float32))
    matrix = sp.csr_matrix(keep @ confidence, dtype=np.float32)
    matrix.eliminate_zeros()
    model = create_model("als", **params)
    model.fit(TrainData(confidence=matrix))
    return model.export()


def _scale(
    members: FloatArray,
    items: FloatArray,
    seg_members: FloatArray,
    seg_items: FloatArray,
    rows: IntArray,
) -> float:
    """Median over a sample of segment members of (main model's best score) / (segment's best
    score): what puts the segment's scores on the main model's scale (1 when undefined)."""
    if rows.size > SCALE_SAMPLE:
        rows = rows[np.linspace(0, rows.size - 1, SCALE_SAMPLE).astype(np.int64)]
    main = (members[rows] @ items.T).max(axis=1)
    seg = (seg_members[rows] @ seg_items.T).max(axis=1)
    ok = (main > 0) & (seg > 0)
    if not bool(ok.any()):
        return 1.0
    return float(np.median(main[ok] / seg[ok]))


def _concat(left: FloatArray, right: FloatArray) -> FloatArray:
    return np.ascontiguousarray(np.hstack([left, right]), dtype=np.float32)


def _pad(values: FloatArray | None, dims: int) -> FloatArray | None:
    if values is None:
        return None
    pad = np.zeros((*values.shape[:-1], dims), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate([values, pad], axis=-1), dtype=np.float32)


__all__ = [
    "OFF",
    "P_DIMS",
    "TierSegment",
    "add_tier_segment",
    "describe",
    "inert_reason",
    "main_part",
    "segment_dims",
    "segment_mask",
    "segment_tiers",
    "tier_blind_members",
]
