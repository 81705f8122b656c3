"""Purchase lines: staples vocabularies, baskets, seasonal timestamps, amounts and returns.

Everything is vectorized over lines, orders or members; the only Python loops run over a
handful of lags or rounds, never over rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from feature_store.synthetic.calendar import SECONDS_PER_DAY, Calendar
from feature_store.synthetic.catalog import Catalog
from feature_store.synthetic.config import SynthConfig
from feature_store.synthetic.population import Population
from feature_store.synthetic.taste import Taste

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

#: rounds of moving a repeated staple to the next slot, then of redrawing from the taste,
#: before drawing uniformly
_SHIFT_ROUNDS = 6
_TASTE_ROUNDS = 4
_MAX_ROUNDS = 500
_MAX_EXTRA_UNITS = 11
#: fractional part of the golden ratio: spreads the slot uniforms of one basket
_GOLDEN = 0.6180339887498949


@dataclass(frozen=True, slots=True)
class Staples:
    """Each member's vocabulary: slot s of member m is re-bought with share ``share``."""

    member: IntArray
    slot: IntArray
    item: IntArray
    #: expected share of the member's sale lines that buy this slot
    share: FloatArray


@dataclass(frozen=True, slots=True)
class Purchases:
    """Purchase rows in output order (chronological by order), returns included."""

    member: IntArray
    item: IntArray
    #: seconds since the epoch
    ts: IntArray
    quantity: IntArray
    amount: FloatArray
    #: chronological order number (0-based) of each row
    order: IntArray
    orders: int
    return_orders: int
    returns: int
    #: sale lines allocated to each member
    lines_per_member: IntArray
    staples: Staples


@dataclass(frozen=True, slots=True)
class _Vocab:
    """Flat staples vocabularies: member m owns item[start[m] : start[m] + size[m]]."""

    item: IntArray
    start: IntArray
    size: IntArray


@dataclass(frozen=True, slots=True)
class _Basket:
    """Sale lines grouped into orders: each order's lines are contiguous."""

    #: order index of each line
    order: IntArray
    #: first line of each order
    starts: IntArray
    #: position of each line within its order
    pos: IntArray


@dataclass(frozen=True, slots=True)
class _Context:
    cfg: SynthConfig
    catalog: Catalog
    taste: Taste
    people: Population
    calendar: Calendar


def generate_purchases(
    cfg: SynthConfig,
    catalog: Catalog,
    taste: Taste,
    people: Population,
    calendar: Calendar,
    rngs: dict[str, np.random.Generator],
    progress: Callable[[str], None],
) -> Purchases:
    ctx = _Context(cfg, catalog, taste, people, calendar)
    n_returns = min(round(cfg.return_rate * cfg.purchases), cfg.purchases // 2)
    n_sales = cfg.purchases - n_returns

    progress("purchases: staples and lines")
    rng = rngs["lines"]
    lines = rng.multinomial(n_sales, people.planned).astype(np.int64)
    line_member = np.repeat(np.arange(people.size, dtype=np.int64), lines)
    staples, vocab = _staples(ctx, rng, lines)
    basket = _baskets(ctx, rngs["baskets"], lines)
    item, slot = _pick_items(ctx, rng, line_member, vocab, basket)
    _remove_duplicates(ctx, rngs["baskets"], basket, line_member, item, slot, vocab)
    order_of_line, order_start = basket.order, basket.starts

    progress("purchases: timestamps, quantities, amounts")
    rng = rngs["time"]
    order_member = line_member[order_start]
    order_day = _order_days(ctx, rng, order_member)
    order_ts = (
        calendar.start_seconds
        + order_day * SECONDS_PER_DAY
        + calendar.draw_seconds_of_day(rng, order_member.size)
    )
    quantity, amount = _quantities_and_amounts(ctx, rngs["amounts"], item)

    progress("purchases: returns")
    rng = rngs["returns"]
    ret = (
        np.sort(rng.choice(n_sales, size=n_returns, replace=False))
        if n_returns
        else np.zeros(0, np.int64)
    )
    ret_sale_order, ret_order_of_line = np.unique(order_of_line[ret], return_inverse=True)
    ret_order_member = order_member[ret_sale_order]
    delay = rng.integers(1, cfg.return_max_days + 1, size=ret_sale_order.size)
    ret_day = np.minimum(order_day[ret_sale_order] + delay, people.last_day[ret_order_member])
    ret_ts = np.maximum(
        calendar.start_seconds
        + ret_day * SECONDS_PER_DAY
        + calendar.draw_seconds_of_day(rng, ret_sale_order.size),
        order_ts[ret_sale_order] + 60,  # a return always follows its sale
    )
    ret_quantity = -rng.integers(1, quantity[ret] + 1)
    ret_amount = -np.maximum(np.round(amount[ret] * -ret_quantity / quantity[ret], 2), 0.01)

    progress("purchases: chronological order ids")
    sale_count = np.diff(np.append(order_start, n_sales))
    ret_count = np.bincount(ret_order_of_line, minlength=ret_sale_order.size)
    all_order_ts = np.concatenate((order_ts, ret_ts))
    layout = _Layout.build(all_order_ts, np.concatenate((sale_count, ret_count)))
    sale_pos = layout.positions(order_of_line, order_start)
    ret_start = np.concatenate(([0], np.cumsum(ret_count)[:-1])).astype(np.int64)
    ret_pos = layout.positions(order_start.size + ret_order_of_line, ret_start, ret_order_of_line)
    return Purchases(
        member=layout.per_line(np.concatenate((order_member, ret_order_member))),
        item=_scatter(sale_pos, item, ret_pos, item[ret]),
        ts=layout.per_line(all_order_ts),
        quantity=_scatter(sale_pos, quantity, ret_pos, ret_quantity),
        amount=_scatter(sale_pos, amount, ret_pos, ret_amount),
        order=np.repeat(np.arange(all_order_ts.size, dtype=np.int64), layout.count),
        orders=int(all_order_ts.size),
        return_orders=int(ret_sale_order.size),
        returns=int(n_returns),
        lines_per_member=lines,
        staples=staples,
    )


def draw_for_members(ctx: _Context, rng: np.random.Generator, member: IntArray) -> IntArray:
    """One item per entry from the member's taste (primary or secondary cluster, by weight),
    as seen from the member's tier (eligibility, and the tilt of ``tier_taste``)."""
    p = ctx.people
    cluster = np.where(
        rng.random(member.size) < p.primary_weight[member], p.primary[member], p.secondary[member]
    )
    return ctx.taste.draw(rng, p.tier[member].astype(np.int64), cluster)


def _staples(ctx: _Context, rng: np.random.Generator, lines: IntArray) -> tuple[Staples, _Vocab]:
    cfg = ctx.cfg
    size = np.where(
        lines > 0, 1 + np.ceil(cfg.vocab_scale * lines.astype(np.float64) ** cfg.vocab_exponent), 0
    ).astype(np.int64)
    start = np.concatenate(([0], np.cumsum(size)[:-1])).astype(np.int64)
    member = np.repeat(np.arange(lines.size, dtype=np.int64), size)
    slot = np.arange(member.size, dtype=np.int64) - start[member]
    item = draw_for_members(ctx, rng, member)
    s, v = cfg.staple_exponent, size[member].astype(np.float64)
    x = slot.astype(np.float64)
    share = (_slot_cdf(x + 2, v, s) - _slot_cdf(x + 1, v, s)) * (1 - cfg.explore_share)
    return Staples(member, slot, item, share), _Vocab(item, start, size)


def _slot_cdf(x: FloatArray, v: FloatArray, s: float) -> FloatArray:
    """CDF of the continuous power law x ** -s on [1, v + 1]; slot j covers [j + 1, j + 2)."""
    cdf: FloatArray
    if abs(s - 1) < 1e-9:
        cdf = np.log(x) / np.log(v + 1)
    else:
        cdf = (x ** (1 - s) - 1) / ((v + 1) ** (1 - s) - 1)
    return cdf


def _slot_inverse(u: FloatArray, v: FloatArray, s: float) -> IntArray:
    """Staple slot (0-based, < v) for uniforms ``u``: the inverse of :func:`_slot_cdf`."""
    x = (v + 1) ** u if abs(s - 1) < 1e-9 else (1 + u * ((v + 1) ** (1 - s) - 1)) ** (1 / (1 - s))
    return np.clip(np.floor(x).astype(np.int64) - 1, 0, v.astype(np.int64) - 1)


def _pick_items(
    ctx: _Context,
    rng: np.random.Generator,
    line_member: IntArray,
    vocab: _Vocab,
    basket: _Basket,
) -> tuple[IntArray, IntArray]:
    """Most lines re-buy a staple (skewed slot weights); explore_share are one-off picks.

    The uniforms that pick the staple slots of one order are spread over [0, 1) (a random
    start plus multiples of the golden ratio): each line keeps the planted slot weights, but
    one basket rarely holds the same staple twice. Returns the item and the staple slot of
    each line (-1 for a one-off pick).
    """
    explore = rng.random(line_member.size) < ctx.cfg.explore_share
    u = (rng.random(basket.starts.size)[basket.order] + basket.pos * _GOLDEN) % 1.0
    size = vocab.size[line_member]
    slot = _slot_inverse(u, size.astype(np.float64), ctx.cfg.staple_exponent)
    item = vocab.item[vocab.start[line_member] + slot]
    where = np.flatnonzero(explore)
    item[where] = draw_for_members(ctx, rng, line_member[where])
    slot[where] = -1
    return item, slot


def _baskets(ctx: _Context, rng: np.random.Generator, lines: IntArray) -> _Basket:
    """Split each member's lines into orders (geometric sizes, at most the basket cap)."""
    n = int(lines.sum())
    new_order = rng.random(n) < 1.0 / ctx.cfg.basket_mean
    member_start = np.concatenate(([0], np.cumsum(lines)[:-1]))[lines > 0]
    new_order[member_start] = True
    basket = _orders_from_flags(new_order)
    # Half the smallest eligible catalogue at most, so distinct items always fit in a basket.
    cap = max(1, min(ctx.cfg.basket_cap, ctx.taste.eligible[0].size // 2))
    if n and basket.pos.max() >= cap:
        new_order |= (basket.pos % cap) == 0
        basket = _orders_from_flags(new_order)
    return basket


def _orders_from_flags(new_order: npt.NDArray[np.bool_]) -> _Basket:
    order = np.cumsum(new_order, dtype=np.int64) - 1
    starts = np.flatnonzero(new_order).astype(np.int64)
    pos = np.arange(new_order.size, dtype=np.int64) - starts[order]
    return _Basket(order, starts, pos)


def _remove_duplicates(
    ctx: _Context,
    rng: np.random.Generator,
    basket: _Basket,
    line_member: IntArray,
    item: IntArray,
    slot: IntArray,
    vocab: _Vocab,
) -> None:
    """Replace (in place) items that repeat an earlier line of the same order.

    A repeated staple moves on to the member's next staple slot; one-off picks, and staples
    still repeated after a few shifts, are drawn again from the member's taste, and after a
    few more rounds uniformly from the items the member may buy.
    """
    lines = np.flatnonzero(basket.pos > 0)
    for round_ in range(_MAX_ROUNDS):
        dup = _repeated_lines(item, basket.pos, lines)
        if dup.size == 0:
            return
        member = line_member[dup]
        if round_ < _SHIFT_ROUNDS:
            staple = slot[dup] >= 0
            shifted, fresh = dup[staple], dup[~staple]
            m = line_member[shifted]
            slot[shifted] = (slot[shifted] + 1) % vocab.size[m]
            item[shifted] = vocab.item[vocab.start[m] + slot[shifted]]
            item[fresh] = draw_for_members(ctx, rng, line_member[fresh])
            slot[fresh] = -1
        elif round_ < _SHIFT_ROUNDS + _TASTE_ROUNDS:
            item[dup] = draw_for_members(ctx, rng, member)
            slot[dup] = -1
        else:
            item[dup] = ctx.taste.draw_uniform(rng, ctx.people.level[member])
            slot[dup] = -1
        touched = np.zeros(basket.starts.size, dtype=np.bool_)
        touched[basket.order[dup]] = True
        lines = np.flatnonzero(touched[basket.order])
    raise RuntimeError(  # pragma: no cover - the basket cap makes this vanishingly unlikely
        f"synthetic data: could not make the items of {dup.size} order lines distinct"
    )


def _repeated_lines(item: IntArray, pos: IntArray, lines: IntArray) -> IntArray:
    """Lines among ``lines`` whose item equals that of an earlier line in their order."""
    repeated = np.zeros(item.size, dtype=np.bool_)
    lag = 1
    idx = lines[pos[lines] >= lag]
    while idx.size:
        repeated[idx[item[idx] == item[idx - lag]]] = True
        lag += 1
        idx = idx[pos[idx] >= lag]
    return np.flatnonzero(repeated)


def _order_days(ctx: _Context, rng: np.random.Generator, order_member: IntArray) -> IntArray:
    """Seasonal days within each member's active window; some orders moved near birthdays."""
    p, cal = ctx.people, ctx.calendar
    lo, hi = p.first_day[order_member], p.last_day[order_member]
    day = cal.draw_days(rng, lo, hi)
    moved = np.flatnonzero(rng.random(day.size) < ctx.cfg.birthday_order_share)
    date = cal.start + day[moved]
    birth = p.birth_date[order_member[moved]]
    month_of_year = birth.astype("datetime64[M]") - birth.astype("datetime64[Y]")
    day_of_month = birth - birth.astype("datetime64[M]")
    birthday = (date.astype("datetime64[Y]") + month_of_year).astype("datetime64[D]") + day_of_month
    w = ctx.cfg.birthday_window_days
    near = (birthday - cal.start).astype(np.int64) + rng.integers(-w, w + 1, size=moved.size)
    ok = (near >= lo[moved]) & (near <= hi[moved])
    day[moved[ok]] = near[ok]
    return day


def _quantities_and_amounts(
    ctx: _Context, rng: np.random.Generator, item: IntArray
) -> tuple[IntArray, FloatArray]:
    cfg, cat = ctx.cfg, ctx.catalog
    extra = np.array([c.extra_units for c in cfg.categories])[cat.category[item]]
    quantity = 1 + np.minimum(rng.poisson(extra), _MAX_EXTRA_UNITS).astype(np.int64)
    discounts = np.asarray(cfg.promo_discounts, dtype=np.float64)
    promo = rng.random(item.size) < cfg.promo_share
    discount = np.where(promo, discounts[rng.integers(0, discounts.size, size=item.size)], 0.0)
    amount = np.round(cat.price[item] * quantity * (1 - discount), 2)
    return quantity, amount


@dataclass(frozen=True, slots=True)
class _Layout:
    """Orders numbered by time; their lines laid out contiguously in that order."""

    #: orders (sales then returns) sorted by time
    by_time: IntArray
    #: line count of each order, in time order
    count: IntArray
    #: first output row of each order (original order index)
    out_start: IntArray

    @classmethod
    def build(cls, order_ts: IntArray, count: IntArray) -> _Layout:
        by_time = np.argsort(order_ts, kind="stable")
        sorted_count = count[by_time]
        out_start = np.empty(order_ts.size, dtype=np.int64)
        out_start[by_time] = np.concatenate(([0], np.cumsum(sorted_count)[:-1]))
        return cls(by_time, sorted_count, out_start)

    def positions(
        self, order: IntArray, block_start: IntArray, local: IntArray | None = None
    ) -> IntArray:
        """Output row of each line of a block (sales or returns) whose lines are contiguous.

        ``order`` is each line's order index, ``block_start`` the first line of each order of
        the block, ``local`` each line's order index within the block (default: ``order``).
        """
        local = order if local is None else local
        shift = self.out_start[order] - block_start[local]
        return shift + np.arange(order.size, dtype=np.int64)

    def per_line(self, per_order: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """Repeat a per-order value (original order index) over the order's output rows."""
        return np.repeat(per_order[self.by_time], self.count)


def _scatter(
    sale_pos: IntArray,
    sale: npt.NDArray[Any],
    ret_pos: IntArray,
    ret: npt.NDArray[Any],
) -> npt.NDArray[Any]:
    out = np.empty(sale.size + ret.size, dtype=sale.dtype)
    out[sale_pos] = sale
    out[ret_pos] = ret
    return out
