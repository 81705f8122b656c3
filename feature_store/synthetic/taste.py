"""Taste clusters: planted category shares and a low-rank item affinity, as sampling tables.

Cluster ``k`` buys item ``i`` of category ``c`` with probability

    p(i | k) = share[k, c] * softmax_{j in c}( log popularity_j + s * u_k . v_j / sqrt(D) )_i

where ``share[k]`` is a Dirichlet draw over categories (the planted category preference),
``u_k`` and ``v_j`` are standard normal latent vectors and ``s`` is ``taste_strength``. Items
a member's tier may not buy (min_tier above it) are removed and the rest renormalized: one
table per (eligibility level, cluster). All tables live in one flat array of offset CDFs, so
a single ``searchsorted`` draws items for any mix of levels and clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from feature_store.synthetic.catalog import Catalog
from feature_store.synthetic.config import SynthConfig

#: category share floor before renormalizing (nobody entirely ignores a category)
_SHARE_FLOOR = 1e-3
#: keeps offset + u strictly below the next table's offset in float64
_BELOW_ONE = 1.0 - 1e-12

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
    #: offset CDFs: table (level * clusters + k) holds values in [t, t + 1]
    cdf: npt.NDArray[np.float64]
    #: item indexes each eligibility level may buy
    eligible: tuple[IntArray, ...]

    @property
    def clusters(self) -> int:
        return int(self.prevalence.size)

    @property
    def items(self) -> int:
        return int(self.log_affinity.shape[1])

    def draw(self, rng: np.random.Generator, level: IntArray, cluster: IntArray) -> IntArray:
        """One item per entry from the (level, cluster) table.

        The keys are searched in sorted order: random probes into the large flat CDF miss the
        cache and run about 10x slower than sorting first.
        """
        table = level.astype(np.int64) * self.clusters + cluster
        key = table + rng.random(table.size) * _BELOW_ONE
        order = np.argsort(key)
        item = np.empty(table.size, dtype=np.int64)
        item[order] = np.searchsorted(self.cdf, key[order], side="right")
        item -= table * self.items
        return np.clip(item, 0, self.items - 1)

    def draw_uniform(self, rng: np.random.Generator, level: IntArray) -> IntArray:
        """One item per entry, uniform over the items its level may buy."""
        out = np.empty(level.size, dtype=np.int64)
        for lv, items in enumerate(self.eligible):
            where = np.flatnonzero(level == lv)
            out[where] = items[rng.integers(0, items.size, size=where.size)]
        return out


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
    prob = np.empty((K, N), dtype=np.float64)
    for k in range(K):  # one pass per cluster (K is small)
        per_category = np.bincount(catalog.category, weights=weight[k], minlength=C)
        prob[k] = share[k, catalog.category] * weight[k] / per_category[catalog.category]
    log_affinity = np.log(prob).astype(np.float32)

    levels = cfg.levels
    cdf = np.empty(levels * K * N, dtype=np.float64)
    eligible: list[IntArray] = []
    for level in range(levels):
        allowed = catalog.min_level <= level
        eligible.append(np.flatnonzero(allowed).astype(np.int64))
        tables = np.cumsum(prob * allowed[None, :], axis=1)
        tables /= tables[:, -1:]
        tables += np.arange(level * K, (level + 1) * K, dtype=np.float64)[:, None]
        cdf[level * K * N : (level + 1) * K * N] = tables.ravel()
    return Taste(prevalence, share, vectors, log_affinity, cdf, tuple(eligible))
