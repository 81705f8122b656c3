"""Member tags from declarative rules (the policy's ``[[tags]]``), merged with CRM tags.

Each rule was validated when the policy was loaded (feature_store.policy); here it is compiled
to one boolean polars expression over a member feature frame whose columns are named after
the features (:data:`feature_store.policy.TAG_FEATURES`); ``category_share`` conditions read the
column :func:`share_column` of their category and ``crm_tags`` the imported tags.

A condition on a missing value (null) is false, whatever the operator. ``tier`` compares by
position in the tier ladder, so ``tier >= "gold"`` means gold or higher.

This module also derives the category features: spend per category over the RFM window,
``top_categories`` and the category shares the rules need.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import polars as pl

from feature_store.policy import Condition, FeatureKind, TagRule, TierPolicy
from feature_store.schema import Col
from feature_store.transforms import Feat, collect, position_in_run

TOP_CATEGORIES = 3
_NUMERIC = (FeatureKind.NUMBER, FeatureKind.TIER)
_SPEND = "__category_spend"


def share_column(category: str) -> str:
    """Feature-frame column of the net-spend share of ``category``."""
    return f"category_share:{category}"


def rule_categories(rules: Sequence[TagRule]) -> tuple[str, ...]:
    """Categories whose spend share some rule tests, in first-use order."""
    seen: dict[str, None] = {}
    for rule in rules:
        for c in rule.conditions:
            if c.category is not None:
                seen.setdefault(c.category, None)
    return tuple(seen)


def category_spend(purchases: pl.DataFrame, window_days: int, as_of: datetime) -> pl.DataFrame:
    """member_id, category, net spend of rows with ``as_of - W < ts < as_of``.

    ``purchases`` needs member_id, ts, amount and the item's category.
    """
    since = as_of - timedelta(days=window_days)
    return collect(
        purchases.lazy()
        .filter((pl.col(Col.TS) > since) & (pl.col(Col.TS) < as_of))
        .group_by(Col.MEMBER_ID, Col.CATEGORY)
        .agg(pl.col(Col.AMOUNT).sum().alias(_SPEND))
    )


def top_categories(spend: pl.DataFrame, k: int = TOP_CATEGORIES) -> pl.DataFrame:
    """member_id, top_categories: up to ``k`` categories with the highest positive net spend
    (ties by category name)."""
    # stable single-key sorts: by category, then spend descending, then member (cheaper than
    # sorting inside each of a million groups)
    ranked = (
        spend.filter(pl.col(_SPEND) > 0)
        .sort(Col.CATEGORY)
        .sort(_SPEND, descending=True, maintain_order=True)
        .sort(Col.MEMBER_ID, maintain_order=True)
    )
    return (
        ranked.filter(position_in_run(pl.col(Col.MEMBER_ID)) < k)
        .group_by(Col.MEMBER_ID, maintain_order=True)
        .agg(pl.col(Col.CATEGORY).alias(Feat.TOP_CATEGORIES))
    )


def category_shares(spend: pl.DataFrame, categories: Sequence[str]) -> pl.DataFrame:
    """member_id and one share column per category: its net spend / the member's total net
    spend in the window (0 when the total is not positive)."""
    total = pl.col(_SPEND).sum()
    return spend.group_by(Col.MEMBER_ID).agg(
        pl.when(total > 0)
        .then(pl.col(_SPEND).filter(pl.col(Col.CATEGORY) == c).sum() / total)
        .otherwise(0.0)
        .alias(share_column(c))
        for c in categories
    )


def compile_condition(condition: Condition, tiers: TierPolicy) -> pl.Expr:
    """One condition as a boolean expression (null -> false)."""
    kind = condition.kind
    value = condition.value
    if kind is FeatureKind.CATEGORY_SHARE:
        column = pl.col(share_column(condition.category or ""))
    elif kind is FeatureKind.TIER:
        ladder = {name: i for i, name in enumerate(tiers.names)}
        column = pl.col(Col.TIER).replace_strict(ladder, default=None, return_dtype=pl.Float64)
        if isinstance(value, tuple):
            value = tuple(float(ladder[str(v)]) for v in value)
        else:
            value = float(ladder[str(value)])
    elif kind is FeatureKind.TAGS:
        column = pl.col(Feat.CRM_TAGS)
    else:
        column = pl.col(condition.feature)

    op = condition.op
    expr: pl.Expr
    if op == "contains":
        expr = column.list.contains(pl.lit(value, dtype=pl.String))
    elif op == "not_contains":
        expr = ~column.list.contains(pl.lit(value, dtype=pl.String))
    elif op in ("in", "not_in"):
        values = pl.Series(value if isinstance(value, tuple) else (value,)).implode()
        inside = (column.cast(pl.Float64) if kind in _NUMERIC else column).is_in(values)
        expr = inside if op == "in" else ~inside
    else:
        literal = pl.lit(value)
        expr = {
            "==": column == literal,
            "!=": column != literal,
            "<": column < literal,
            "<=": column <= literal,
            ">": column > literal,
            ">=": column >= literal,
        }[op]
    return expr.fill_null(False)


def compile_rule(rule: TagRule, tiers: TierPolicy) -> pl.Expr:
    """True where every ``all`` condition and (if given) at least one ``any`` condition holds."""
    parts: list[pl.Expr] = []
    if rule.all:
        parts.append(pl.all_horizontal(compile_condition(c, tiers) for c in rule.all))
    if rule.any:
        parts.append(pl.any_horizontal(compile_condition(c, tiers) for c in rule.any))
    return pl.all_horizontal(parts).alias(rule.name)


def apply_tags(features: pl.DataFrame, rules: Sequence[TagRule], tiers: TierPolicy) -> pl.DataFrame:
    """Add ``tags``: the CRM tags (column ``crm_tags``, may be null) then the names of the rules
    that hold, in rule order, without duplicates.

    The rules are evaluated as one boolean column each; the list of names is built once per
    distinct combination of outcomes (a handful) and joined back, which is far cheaper than
    building a list per member.
    """
    crm = pl.col(Feat.CRM_TAGS).fill_null(pl.lit([], dtype=pl.List(pl.String)))
    features = features.with_columns(crm.alias(Feat.CRM_TAGS))
    if not rules:
        return features.with_columns(crm.list.unique(maintain_order=True).alias(Col.TAGS))
    flags = [f"__rule{i}" for i in range(len(rules))]
    outcomes = features.select(
        compile_rule(rule, tiers).alias(flag) for rule, flag in zip(rules, flags, strict=True)
    )
    combinations = outcomes.unique().with_columns(
        pl.concat_list(
            pl.when(pl.col(flag)).then(pl.lit(rule.name)).otherwise(pl.lit(None, dtype=pl.String))
            for rule, flag in zip(rules, flags, strict=True)
        )
        .list.drop_nulls()
        .alias("__matched")
    )
    matched = outcomes.join(combinations, on=flags, how="left", maintain_order="left")
    return features.with_columns(
        crm.list.concat(matched.get_column("__matched"))
        .list.unique(maintain_order=True)
        .alias(Col.TAGS)
    )


__all__ = [
    "apply_tags",
    "category_shares",
    "category_spend",
    "compile_condition",
    "compile_rule",
    "rule_categories",
    "share_column",
    "top_categories",
]
