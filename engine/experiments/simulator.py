"""Simulated storefront: a known truth for the experiment machinery (docs/synthetic_data.md,
"Simulated storefront"). Pure numpy/polars; the HTTP driver is engine.experiments.storefront.

**Purchase model.** A member ``m`` shown a list buys each shown item ``i`` independently, once
(quantity 1, at the item's price in the dataset), with probability

    a(m, i) = preference_m . vector_i / sqrt(latent_dim)       (the generator's taste term)
    p(m, i) = clip(lift_v * base * exp(slope * a(m, i)), 0, cap)

``lift_v`` is 1 for the champion and ``challenger_lift`` for the challenger. Besides, with
probability ``background`` the member buys one item by planted popularity among the items *not*
shown, so "bought anything" exceeds "bought a recommended item" = ``1 - prod_i (1 - p(m, i))``.

**The planted better variant**, exactly known either way: ``lift`` (the default) shows both
variants the same lists and multiplies the challenger's probabilities by ``challenger_lift``
(1.2); ``lists`` sets ``challenger_lift = 1`` and shows different lists (e.g. :func:`truth_lists`
with ``taste=0``, popularity, against ``taste=1``, the planted taste). The planted difference
(:meth:`Simulator.planted_difference`) is the population mean of the challenger's expected
conversion to a recommended item minus the champion's, each from that variant's list for every
member. :func:`seeded_detection` repeats seeded offline experiments (no HTTP) and counts how often
the report's 95% interval covers it and how often the challenger is a significant win.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from engine.campaigns.stats import newcombe_interval
from engine.experiments.assignment import CHALLENGER, variants_of
from feature_store.synthetic import GROUND_TRUTH_DIR, SynthResult

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

#: rows per chunk when scoring (bounds the (rows, k, dim) and (rows, items) temporaries)
_CHUNK: Final = 8_192
#: redraws of a background item that collides with the shown list before it is dropped
_REDRAWS: Final = 64


def _lookup(order: IntArray, ids: StrArray, wanted: StrArray) -> IntArray:
    """Rows of ``wanted`` in ``ids`` (sorted by ``order``), -1 for unknown ids."""
    if ids.size == 0:
        return np.full(wanted.shape, -1, dtype=np.int64)
    ranked = ids[order]
    pos = np.minimum(np.searchsorted(ranked, wanted), ids.size - 1)
    return np.where(ranked[pos] == wanted, order[pos], -1).astype(np.int64)


class Truth:
    """What the simulator needs from a synthetic dataset's ground truth, as aligned arrays."""

    def __init__(
        self,
        member_ids: npt.ArrayLike,
        preference: npt.ArrayLike,
        item_ids: npt.ArrayLike,
        item_vectors: npt.ArrayLike,
        popularity: npt.ArrayLike,
        price: npt.ArrayLike,
    ) -> None:
        self.member_ids: StrArray = np.asarray(member_ids, dtype=np.str_)
        self.preference = np.asarray(preference, dtype=np.float32)
        self.item_ids: StrArray = np.asarray(item_ids, dtype=np.str_)
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)
        pop = np.asarray(popularity, dtype=np.float64)
        self.popularity: FloatArray = pop / pop.sum()
        self.price: FloatArray = np.asarray(price, dtype=np.float64)
        i = self.item_ids.size
        if (
            self.preference.shape[0] != self.member_ids.size
            or self.item_vectors.shape[0] != i
            or self.preference.shape[1] != self.item_vectors.shape[1]
            or self.popularity.shape != (i,)
            or self.price.shape != (i,)
        ):
            raise ValueError(
                "need one preference per member; one vector, popularity, price per item"
            )
        if not (np.isfinite(self.price).all() and (self.price >= 0).all()):
            raise ValueError("prices must be finite and >= 0")
        self._member_order: IntArray = np.argsort(self.member_ids, kind="stable")
        self._item_order: IntArray = np.argsort(self.item_ids, kind="stable")

    @classmethod
    def from_frames(cls, members: pl.DataFrame, items: pl.DataFrame, prices: pl.DataFrame) -> Truth:
        """From the ground-truth ``members`` and ``items`` tables and the dataset's items table
        (``item_id``, ``price``)."""
        joined = items.select("item_id", "popularity", "vector").join(
            prices.select("item_id", "price"), on="item_id", how="left", maintain_order="left"
        )
        if joined.get_column("price").null_count():
            raise ValueError("every ground-truth item needs a price in the dataset's items table")
        return cls(
            members.get_column("member_id").to_numpy(),
            members.get_column("preference").to_numpy(),
            joined.get_column("item_id").to_numpy(),
            joined.get_column("vector").to_numpy(),
            joined.get_column("popularity").to_numpy(),
            joined.get_column("price").to_numpy(),
        )

    @classmethod
    def from_result(cls, result: SynthResult) -> Truth:
        """From an in-memory :func:`feature_store.synthetic.generate` result."""
        return cls.from_frames(result.truth["members"], result.truth["items"], result.dataset.items)

    @classmethod
    def load(cls, folder: Path) -> Truth:
        """From a folder written by ``write_synthetic`` (Parquet or CSV tables)."""
        truth = folder / GROUND_TRUTH_DIR
        members = pl.read_parquet(truth / "members.parquet", columns=["member_id", "preference"])
        items = pl.read_parquet(truth / "items.parquet")
        if (folder / "items.parquet").is_file():
            prices = pl.read_parquet(folder / "items.parquet", columns=["item_id", "price"])
        else:
            prices = pl.read_csv(folder / "items.csv", columns=["item_id", "price"])
        return cls.from_frames(members, items, prices)

    def member_rows(self, ids: npt.ArrayLike) -> IntArray:
        """Rows of the member ids, -1 for unknown ones."""
        return _lookup(self._member_order, self.member_ids, np.asarray(ids, dtype=np.str_))

    def item_rows(self, ids: npt.ArrayLike) -> IntArray:
        """Rows of the item ids, -1 for unknown ones."""
        return _lookup(self._item_order, self.item_ids, np.asarray(ids, dtype=np.str_))

    def lists(self, member_ids: Sequence[str], item_lists: Sequence[Sequence[str]]) -> Lists:
        """Served lists by id (items the truth does not know become empty slots)."""
        if len(member_ids) != len(item_lists):
            raise ValueError("one list per member is needed")
        members = self.member_rows(list(member_ids))
        if (members < 0).any():
            unknown = [m for m, r in zip(member_ids, members, strict=True) if r < 0][:3]
            raise ValueError(f"members not in the ground truth: {unknown}")
        k = max((len(x) for x in item_lists), default=0)
        items = np.full((len(item_lists), k), -1, dtype=np.int64)
        for r, shown in enumerate(item_lists):
            if shown:
                items[r, : len(shown)] = self.item_rows(list(shown))
        return Lists(members, items)


@dataclass(frozen=True, slots=True)
class Lists:
    """Shown lists: row ``r`` shows member row ``members[r]`` the item rows ``items[r]`` in
    rank order; -1 is an empty slot (a shorter list or an item the truth does not know)."""

    members: IntArray
    items: IntArray

    def __post_init__(self) -> None:
        if self.items.ndim != 2 or self.items.shape[0] != self.members.shape[0]:
            raise ValueError("items must be a (rows, k) matrix with one row per member row")

    @property
    def size(self) -> int:
        return int(self.members.size)


def truth_lists(truth: Truth, member_rows: npt.ArrayLike, k: int = 10, taste: float = 1.0) -> Lists:
    """Each member's top ``k`` items by ``log popularity + taste * affinity`` (the generator's
    within-category logit): ``taste=0`` gives everyone the popularity list (a weak
    recommender), ``taste=1`` ranks by the planted taste (a strong one)."""
    members = np.asarray(member_rows, dtype=np.int64)
    k = min(k, truth.item_ids.size)
    log_pop = np.log(np.maximum(truth.popularity, 1e-300)).astype(np.float32)
    out = np.empty((members.size, k), dtype=np.int64)
    scale = np.float32(taste / math.sqrt(truth.preference.shape[1]))
    for start in range(0, members.size, _CHUNK):
        rows = members[start : start + _CHUNK]
        scores = log_pop + scale * (truth.preference[rows] @ truth.item_vectors.T)
        top = np.argpartition(scores, -k, axis=1)[:, -k:]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start : start + rows.size] = np.take_along_axis(top, order, axis=1)
    return Lists(members, out)


@dataclass(frozen=True, slots=True)
class PurchaseModel:
    """p(m, i) = clip(lift * base * exp(slope * affinity), 0, cap), plus one background purchase
    with probability ``background`` (see the module docstring)."""

    #: probability of buying a shown item of neutral affinity (a = 0)
    base: float = 0.02
    #: how steeply the probability grows with the planted affinity
    slope: float = 0.5
    #: upper bound of one item's probability
    cap: float = 0.5
    #: probability of one purchase unrelated to the list (an item not shown, by popularity)
    background: float = 0.05
    #: the challenger's multiplier of every shown item's probability (1: an A/A test)
    challenger_lift: float = 1.2

    def __post_init__(self) -> None:
        for name in ("base", "cap", "background"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.challenger_lift < 0 or not math.isfinite(self.slope):
            raise ValueError("challenger_lift must be >= 0 and slope finite")


@dataclass(frozen=True, slots=True)
class Purchases:
    """Drawn purchase lines (quantity 1 each), aligned arrays."""

    #: the row of the :class:`Lists` (one exposure) the purchase belongs to
    row: IntArray
    member: IntArray
    item: IntArray
    price: FloatArray
    #: the item was in the shown list (else a background purchase)
    recommended: BoolArray


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Per exposure (row of the lists): what the report counts."""

    converted: BoolArray  # bought a recommended item
    converted_any: BoolArray
    revenue: FloatArray


class Simulator:
    """The purchase model on a truth: exact expectations and seeded draws."""

    def __init__(self, truth: Truth, model: PurchaseModel | None = None) -> None:
        self.truth = truth
        self.model = model or PurchaseModel()
        self._cdf = np.cumsum(truth.popularity)
        self._pop_revenue = float(truth.popularity @ truth.price)

    def affinity(self, lists: Lists) -> FloatArray:
        """a(m, i) for every slot (0 in empty slots)."""
        out = np.zeros(lists.items.shape, dtype=np.float64)
        scale = 1.0 / math.sqrt(self.truth.preference.shape[1])
        for start in range(0, lists.size, _CHUNK):
            stop = min(start + _CHUNK, lists.size)
            items = lists.items[start:stop]
            vectors = self.truth.item_vectors[np.maximum(items, 0)]
            pref = self.truth.preference[lists.members[start:stop]]
            out[start:stop] = np.einsum("nkd,nd->nk", vectors, pref, dtype=np.float64) * scale
        out[lists.items < 0] = 0.0
        return out

    def probabilities(self, lists: Lists, challenger: bool | npt.ArrayLike = False) -> FloatArray:
        """p(m, i) per slot; ``challenger`` (one flag, or one per row) applies the lift."""
        m = self.model
        lift = np.broadcast_to(
            np.where(np.asarray(challenger, dtype=np.bool_), m.challenger_lift, 1.0), (lists.size,)
        )
        p = np.clip(lift[:, None] * m.base * np.exp(m.slope * self.affinity(lists)), 0.0, m.cap)
        p[lists.items < 0] = 0.0
        return p

    def expected_conversion(
        self, lists: Lists, challenger: bool | npt.ArrayLike = False
    ) -> FloatArray:
        """Per row: the probability of buying at least one shown item, 1 - prod(1 - p)."""
        miss: FloatArray = np.prod(1.0 - self.probabilities(lists, challenger), axis=1)
        return 1.0 - miss

    def expected_any_conversion(
        self, lists: Lists, challenger: bool | npt.ArrayLike = False
    ) -> FloatArray:
        """Per row: the probability of buying anything (a shown item or the background one)."""
        miss = 1.0 - self.expected_conversion(lists, challenger)
        return 1.0 - miss * (1.0 - self.model.background)

    def expected_revenue(
        self, lists: Lists, challenger: bool | npt.ArrayLike = False
    ) -> FloatArray:
        """Per row: expected revenue, shown items plus the background purchase (the mean price
        of the items not shown, weighted by popularity; a list's items are distinct)."""
        items = np.maximum(lists.items, 0)
        p = self.probabilities(lists, challenger)
        shown = (p * self.truth.price[items]).sum(axis=1)
        valid = lists.items >= 0
        pop = np.where(valid, self.truth.popularity[items], 0.0)
        rest_pop = np.maximum(1.0 - pop.sum(axis=1), 1e-300)
        rest_rev = self._pop_revenue - (pop * self.truth.price[items]).sum(axis=1)
        expected: FloatArray = shown + self.model.background * rest_rev / rest_pop
        return expected

    def planted_difference(self, champion: Lists, challenger: Lists) -> float:
        """Population difference (challenger minus champion) of conversion to a recommended
        item: both lists must cover the same members, in the same order."""
        champion, challenger = _same_width(champion, challenger)
        q_challenger = self.expected_conversion(challenger, True)
        return float(q_challenger.mean() - self.expected_conversion(champion, False).mean())

    def draw(
        self,
        lists: Lists,
        rng: np.random.Generator,
        challenger: bool | npt.ArrayLike = False,
        probabilities: FloatArray | None = None,
    ) -> Purchases:
        """Seeded purchases: each shown item with its probability (``probabilities`` when
        already computed for these lists), then the background one."""
        p = self.probabilities(lists, challenger) if probabilities is None else probabilities
        rows, cols = np.nonzero(rng.random(p.shape) < p)
        items = lists.items[rows, cols]
        bg_rows = np.flatnonzero(rng.random(lists.size) < self.model.background)
        bg_items = self._background_items(lists, bg_rows, rng)
        keep = bg_items >= 0
        row = np.concatenate([rows, bg_rows[keep]]).astype(np.int64)
        item = np.concatenate([items, bg_items[keep]]).astype(np.int64)
        recommended = np.concatenate([np.ones(rows.size, bool), np.zeros(int(keep.sum()), bool)])
        order = np.argsort(row, kind="stable")
        row, item, recommended = row[order], item[order], recommended[order]
        return Purchases(row, lists.members[row], item, self.truth.price[item], recommended)

    def _background_items(self, lists: Lists, rows: IntArray, rng: np.random.Generator) -> IntArray:
        """Items by popularity among those not shown in each row (rejection; -1 if it fails)."""
        last = self.truth.item_ids.size - 1
        picks = np.full(rows.size, -1, dtype=np.int64)
        todo = np.arange(rows.size)
        for _ in range(_REDRAWS):
            if todo.size == 0:
                break
            draw = np.minimum(
                np.searchsorted(self._cdf, rng.random(todo.size) * self._cdf[-1]), last
            )
            clash = (lists.items[rows[todo]] == draw[:, None]).any(axis=1)
            picks[todo[~clash]] = draw[~clash]
            todo = todo[clash]
        return picks

    def outcomes(self, lists: Lists, purchases: Purchases) -> Outcomes:
        n = lists.size
        rec = np.bincount(purchases.row[purchases.recommended], minlength=n) > 0
        any_ = np.bincount(purchases.row, minlength=n) > 0
        revenue = np.bincount(purchases.row, weights=purchases.price, minlength=n)
        return Outcomes(rec, any_, revenue.astype(np.float64))


# -- offline experiments (no HTTP) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arm:
    """One variant of one simulated experiment."""

    exposed: int
    converted: int  # to a recommended item
    converted_any: int
    revenue: float


@dataclass(frozen=True, slots=True)
class OfflineRun:
    champion: Arm
    challenger: Arm


def _same_width(champion: Lists, challenger: Lists) -> tuple[Lists, Lists]:
    """Both variants' lists over the same members, padded to the same number of slots."""
    if not np.array_equal(champion.members, challenger.members):
        raise ValueError("both variants' lists must cover the same members in the same order")
    k = max(champion.items.shape[1], challenger.items.shape[1])

    def pad(lists: Lists) -> Lists:
        gap = k - lists.items.shape[1]
        filler = np.full((lists.size, gap), -1, dtype=np.int64)
        return Lists(lists.members, np.hstack([lists.items, filler]) if gap else lists.items)

    return pad(champion), pad(challenger)


def simulate_offline(
    sim: Simulator,
    champion: Lists,
    challenger: Lists,
    members: int,
    rng: np.random.Generator,
    experiment: str,
    percent: float = 50.0,
    probabilities: tuple[FloatArray, FloatArray] | None = None,
) -> OfflineRun:
    """One experiment: ``members`` drawn from the population without replacement, assigned
    with :func:`~engine.experiments.assignment.variants_of` under ``experiment``, shown their
    variant's list, purchases drawn. ``probabilities``: both variants' p over the whole
    population (champion's, challenger's; lists of the same width), when already computed."""
    champion, challenger = _same_width(champion, challenger)
    p_c, p_t = probabilities or (
        sim.probabilities(champion, False),
        sim.probabilities(challenger, True),
    )
    rows = np.sort(rng.choice(champion.size, size=min(members, champion.size), replace=False))
    ids = sim.truth.member_ids[champion.members[rows]]
    is_challenger = variants_of(experiment, ids.tolist(), percent) == CHALLENGER
    pick = is_challenger[:, None]
    items = np.where(pick, challenger.items[rows], champion.items[rows])
    lists = Lists(champion.members[rows], items)
    p = np.where(pick, p_t[rows], p_c[rows])
    out = sim.outcomes(lists, sim.draw(lists, rng, is_challenger, probabilities=p))

    def arm(mask: BoolArray) -> Arm:
        return Arm(
            int(mask.sum()),
            int(out.converted[mask].sum()),
            int(out.converted_any[mask].sum()),
            float(out.revenue[mask].sum()),
        )

    return OfflineRun(arm(~is_challenger), arm(is_challenger))


@dataclass(frozen=True, slots=True)
class Detection:
    """Seeded offline experiments against the planted difference."""

    runs: int
    members_per_run: int
    planted: float
    #: share of runs whose interval of the difference covers the planted difference
    coverage: float
    #: share of runs where the challenger is a significant win (the interval is above 0)
    detected: float
    #: share of runs where the champion is a significant win (wrong-way errors)
    reversed: float
    mean_estimate: float
    mean_half_width: float
    confidence: float


def seeded_detection(
    sim: Simulator,
    champion: Lists,
    challenger: Lists,
    *,
    runs: int = 200,
    members_per_run: int = 4_000,
    seed: int = 0,
    percent: float = 50.0,
    confidence: float = 0.95,
    experiment: str = "simulated",
) -> Detection:
    """``runs`` experiments (run ``r`` draws from ``default_rng([seed, r])`` and assigns under
    the experiment name ``{experiment}-{seed}-{r}``, so each run reshuffles the variants), each
    judged with the report's method: the Newcombe interval of challenger minus champion
    conversion to a recommended item (:func:`engine.campaigns.stats.newcombe_interval`, what
    ``compare_proportions`` computes)."""
    if runs < 1:
        raise ValueError("runs must be >= 1")
    champion, challenger = _same_width(champion, challenger)
    planted = sim.planted_difference(champion, challenger)
    probabilities = (sim.probabilities(champion, False), sim.probabilities(challenger, True))
    counts = np.zeros((runs, 4), dtype=np.int64)  # x_t, n_t, x_c, n_c
    for r in range(runs):
        rng = np.random.default_rng([seed, r])
        run = simulate_offline(
            sim, champion, challenger, members_per_run, rng, f"{experiment}-{seed}-{r}", percent,
            probabilities,
        )  # fmt: skip
        t, c = run.challenger, run.champion
        counts[r] = (t.converted, t.exposed, c.converted, c.exposed)
    x_t, n_t, x_c, n_c = counts.T
    if (n_t == 0).any() or (n_c == 0).any():
        raise ValueError("a run left a variant without members: draw more members per run")
    low, high = newcombe_interval(x_t, n_t, x_c, n_c, confidence)
    estimate = x_t / n_t - x_c / n_c
    return Detection(
        runs=runs,
        members_per_run=members_per_run,
        planted=planted,
        coverage=float(((low <= planted) & (planted <= high)).mean()),
        detected=float((low > 0.0).mean()),
        reversed=float((high < 0.0).mean()),
        mean_estimate=float(estimate.mean()),
        mean_half_width=float(((high - low) / 2.0).mean()),
        confidence=confidence,
    )
