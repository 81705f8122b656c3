"""Taste clusters: planted category shares and a low-rank item affinity, as sampling tables.

Cluster ``k`` buys item ``i`` of category ``c`` with probability

    p(i | k) = share[k, c] * softmax_{j in c}( log popularity_j + s * u_k . v_j / sqrt(D) )_i

where ``share[k]`` is a Dirichlet draw over categories (the planted category preference),
``u_k`` and ``v_j`` are standard normal latent vectors and ``s`` is ``taste_strength``. Items
a member's tier may not buy (min_tier above it) are removed and the rest renormalized: one
table per (eligibility level, cluster). All tables live in one flat array of offset CDFs, so
a single ``searchsorted`` draws items for any mix of levels and clusters.

With ``tier_taste`` > 0 the tables are per (tier, cluster) instead, and tier ``t`` adds
``tilt[t] * bonus_j`` to the logits inside the softmax, where ``bonus_j`` counts whether item
``j`` is premium-tagged and whether it is exclusive (0, 1 or 2) and ``tilt`` grows linearly
from 0 (lowest tier) to ``tier_taste * TIER_TILT_MAX`` (highest tier); the category shares
stay exactly as planted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.synthetic.catalog import ITEM_TAGS, Catalog
from feature_store.synthetic.config import SynthConfig

#: category share floor before renormalizing (nobody entirely ignores a category)
_SHARE_FLOOR = 1e-3
#: keeps offset + u strictly below the next table's offset in float64
_BELOW_ONE = 1.0 - 1e-12
#: log-weight per bonus unit for the highest tier at tier_taste = 1 (e ** 3 ~ 20 x)
TIER_TILT_MAX = 3.0
#: column of the "premium" tag in Catalog.tags (catalog.ITEM_TAGS)
_PREMIUM = ITEM_TAGS.index("premium")

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Taste:
    #: share of members whose primary cluster is k
    prevalence: npt.NDArray[np.float64]
    #: planted category shares, shape (clusters, categories), rows sum to 1
    category_share: npt.NDArray[np.float64]
    #: latent cluster vectors, shape (clusters, latent_dim)
    vectors: npt.NDArray[np.float32]
    #: log p(item | cluster) over the whole catalogue, shape (clusters, items)
    log_affinity: npt.NDArray[np.float32]
    #: offset CDFs: table (group * clusters + k) holds values in [t, t + 1]
    cdf: npt.NDArray[np.float64]
    #: item indexes each eligibility level may buy
    eligible: tuple[IntArray, ...]
    #: table group of each tier: its eligibility level, or the tier itself with tier_taste
    group_of_tier: IntArray
    #: log-weight added per bonus unit, by tier (all 0 without tier_taste)
    tier_tilt: npt.NDArray[np.float64]
    #: bonus units per item: premium tag + exclusive (0, 1 or 2)
    bonus: npt.NDArray[np.int8]

    @property
    def clusters(self) -> int:
        return int(self.prevalence.size)

    @property
    def items(self) -> int:
        return int(self.log_affinity.shape[1])

    def draw(self, rng: np.random.Generator, tier: IntArray, cluster: IntArray) -> IntArray:
        """One item per entry from the table of its tier's group and its cluster.

        The keys are searched in sorted order: random probes into the large flat CDF miss the
        cache and run about 10x slower than sorting first.
        """
        table = self.group_of_tier[tier] * self.clusters + cluster
        key = table + rng.random(table.size) * _BELOW_ONE
        order = np.argsort(key)
        item = np.empty(table.size, dtype=np.int64)
        item[order] = np.searchsorted(self.cdf, key[order], side="right")
        item -= table * self.items
        return np.clip(item, 0, self.items - 1)

    def table(self, group: int) -> npt.NDArray[np.float64]:
        """Item probabilities of each cluster in table ``group``, shape (clusters, items)."""
        K, N = self.clusters, self.items
        offsets = np.arange(group * K, (group + 1) * K, dtype=np.float64)[:, None]
        cdf = self.cdf[group * K * N : (group + 1) * K * N].reshape(K, N) - offsets
        probabilities: npt.NDArray[np.float64] = np.diff(cdf, axis=1, prepend=0.0)
        return probabilities

    def draw_uniform(self, rng: np.random.Generator, level: IntArray) -> IntArray:
        """One item per entry, uniform over the items its level may buy."""
        out = np.empty(level.size, dtype=np.int64)
        for lv, items in enumerate(self.eligible):
            where = np.flatnonzero(level == lv)
            out[where] = items[rng.integers(0, items.size, size=where.size)]
        return out


def tier_tilts(cfg: SynthConfig) -> npt.NDArray[np.float64]:
    """Log-weight per bonus unit for each tier: 0 for the lowest, linear up to the highest."""
    ramp = np.linspace(0.0, 1.0, len(cfg.tiers)) if len(cfg.tiers) > 1 else np.zeros(1)
    tilts: npt.NDArray[np.float64] = cfg.tier_taste * TIER_TILT_MAX * ramp
    return tilts


def build_taste(cfg: SynthConfig, catalog: Catalog, rng: np.random.Generator) -> Taste:
    K, C, N, D = cfg.clusters, len(cfg.categories), catalog.size, cfg.latent_dim
    prevalence = rng.dirichlet(np.full(K, 2.0))
    share = rng.dirichlet(np.full(C, cfg.category_concentration), size=K) + _SHARE_FLOOR
    present = np.bincount(catalog.category, minlength=C) > 0
    share[:, ~present] = 0.0
    share /= share.sum(axis=1, keepdims=True)
    vectors = rng.standard_normal((K, D)).astype(np.float32)

    logits = np.log(catalog.popularity)[None, :] + cfg.taste_strength * (
        (vectors @ catalog.vectors.T).astype(np.float64) / np.sqrt(D)
    )
    weight = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = _category_softmax(share, weight, catalog.category)
    log_affinity = np.log(prob).astype(np.float32)

    bonus = (catalog.tags[:, _PREMIUM].astype(np.int8) + (catalog.min_level > 0)).astype(np.int8)
    tilt = tier_tilts(cfg)
    tier_levels = np.asarray(cfg.tier_levels, dtype=np.int64)
    eligible = tuple(
        np.flatnonzero(catalog.min_level <= level).astype(np.int64) for level in range(cfg.levels)
    )
    if cfg.tier_taste > 0:
        # One table group per tier: its eligibility, its tilt toward the bonus items.
        group_of_tier = np.arange(len(cfg.tiers), dtype=np.int64)
        groups = [
            (int(level), _category_softmax(share, weight * np.exp(t * bonus), catalog.category))
            for level, t in zip(tier_levels, tilt, strict=True)
        ]
    else:
        group_of_tier = tier_levels
        groups = [(level, prob) for level in range(cfg.levels)]

    cdf = np.empty(len(groups) * K * N, dtype=np.float64)
    for g, (level, p) in enumerate(groups):
        allowed = catalog.min_level <= level
        tables = np.cumsum(p * allowed[None, :], axis=1)
        tables /= tables[:, -1:]
        tables += np.arange(g * K, (g + 1) * K, dtype=np.float64)[:, None]
        cdf[g * K * N : (g + 1) * K * N] = tables.ravel()
    return Taste(
        prevalence, share, vectors, log_affinity, cdf, eligible, group_of_tier, tilt, bonus
    )


def _category_softmax(
    share: npt.NDArray[np.float64],
    weight: npt.NDArray[np.float64],
    category: npt.NDArray[np.int32],
) -> npt.NDArray[np.float64]:
    """p[k, i] = share[k, category i] * weight[k, i] / (weight[k] summed over that category)."""
    K, C = share.shape
    prob = np.empty(weight.shape, dtype=np.float64)
    for k in range(K):  # one pass per cluster (K is small)
        per_category = np.bincount(category, weights=weight[k], minlength=C)
        prob[k] = share[k, category] * weight[k] / per_category[category]
    return prob
