"""Campaign audiences (engine.audience): definitions, seeds, filters, exclusions, size, order."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from engine.audience import (
    SEED_MEMBER,
    AudienceDefinition,
    AudienceScorer,
    DefinitionError,
    Filters,
    ItemSide,
    Seed,
    Size,
    TagFilter,
    parse_definition,
)
from engine.errors import InvalidInputError
from engine.ids import IdMap

TIERS = ("regular", "silver", "gold", "platinum", "diamond")
STAGES = ("new", "active", "at_risk", "churned")
SEGMENTS = ("Champions", "Lost", "Loyal")
REGIONS = ("north", "south")
MEMBER_TAGS = ("opt_out", "tea_lover", "vip")


@dataclass(frozen=True, slots=True)
class Attributes:
    member_ids: np.ndarray
    tier_codes: np.ndarray
    tier_names: tuple[str, ...]
    lifecycle_codes: np.ndarray
    lifecycle_names: tuple[str, ...]
    segment_codes: np.ndarray
    segment_names: tuple[str, ...]
    region_codes: np.ndarray
    region_names: tuple[str, ...]
    tags: sp.csr_array
    tag_names: tuple[str, ...]
    birth_month: np.ndarray
    points: np.ndarray
    joined_at: np.ndarray
    p_alive: np.ndarray
    clv: np.ndarray
    expected_spend: np.ndarray


def attributes(n: int, rng: np.random.Generator, **override: Any) -> Attributes:
    tags = rng.random((n, len(MEMBER_TAGS))) < 0.3
    points = rng.integers(0, 1000, n).astype(np.float64)
    points[rng.random(n) < 0.1] = np.nan
    base = np.datetime64("2020-01-01", "us")
    p_alive = rng.random(n)
    clv = rng.gamma(2.0, 100.0, n)
    spend = clv / 4
    unknown = rng.random(n) < 0.1  # members without purchases: no value
    p_alive[unknown] = clv[unknown] = spend[unknown] = np.nan
    fields: dict[str, Any] = {
        "member_ids": np.array([f"m{i}" for i in range(n)]),
        "tier_codes": rng.integers(-1, len(TIERS), n).astype(np.int16),
        "tier_names": TIERS,
        "lifecycle_codes": rng.integers(-1, len(STAGES), n).astype(np.int16),
        "lifecycle_names": STAGES,
        "segment_codes": rng.integers(-1, len(SEGMENTS), n).astype(np.int16),
        "segment_names": SEGMENTS,
        "region_codes": rng.integers(-1, len(REGIONS), n).astype(np.int16),
        "region_names": REGIONS,
        "tags": sp.csr_array(tags),
        "tag_names": MEMBER_TAGS,
        "birth_month": rng.integers(0, 13, n).astype(np.int8),
        "points": points,
        "joined_at": base + rng.integers(0, 4 * 365, n) * np.timedelta64(86_400_000_000, "us"),
        "p_alive": p_alive,
        "clv": clv,
        "expected_spend": spend,
    }
    fields.update(override)
    return Attributes(**fields)


# Items: 4 dims; tea items point along e0 / e3, coffee along e1, toys along e2.
ITEM_IDS = ("tea1", "tea2", "coffee1", "toy1")
ITEM_VECTORS = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
ITEM_CATEGORIES = np.array(["tea", "tea", "coffee", "toys"])
ITEM_TAG_NAMES = ("hot", "kids", "winter")
ITEM_TAGS = sp.csr_array(np.array([[1, 0, 1], [1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.bool_))


def item_side(popularity: np.ndarray | None = None) -> ItemSide:
    return ItemSide(
        ids=IdMap(list(ITEM_IDS)),
        vectors=ITEM_VECTORS,
        categories=ITEM_CATEGORIES,
        tags=ITEM_TAGS,
        tag_names=ITEM_TAG_NAMES,
        popularity=popularity,
    )


def definition(size: Size | None = None, **parts: Any) -> AudienceDefinition:
    return AudienceDefinition(
        seed=parts.pop("seed", Seed(items=("tea1",))),
        size=size or Size(top_percent=100),
        **parts,
    )


# ---- a small world with known answers ------------------------------------------------------

#: m0 tea (e0), m1 coffee, m2 toys, m3 e3, m4 looks like m3 but stronger, m5 no vector
SMALL_VECTORS = np.array(
    [[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 1], [0, 0.2, 0, 2]], dtype=np.float32
)


@pytest.fixture
def small() -> AudienceScorer:
    n = 6
    attrs = attributes(
        n,
        np.random.default_rng(0),
        tier_codes=np.array([0, 1, 2, 3, 4, 2], dtype=np.int16),
        tags=sp.csr_array(
            np.array(
                [[0, 1, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1]],
                dtype=np.bool_,
            )
        ),
    )
    model_ids = IdMap([f"m{i}" for i in range(5)])  # m5 has no vector
    return AudienceScorer(attrs, SMALL_VECTORS, model_ids, item_side())


def test_item_seed_ranks_the_matching_member_first(small: AudienceScorer) -> None:
    audience = small.build(definition(seed=Seed(items=("tea1",))))
    assert audience.member_ids[0] == "m0"
    assert audience.scores[0] == pytest.approx(3.0)


def test_category_seed_ranks_the_matching_member_first(small: AudienceScorer) -> None:
    audience = small.build(definition(seed=Seed(categories=("coffee",))))
    assert audience.member_ids[0] == "m1"
    assert audience.seed_summary["categories"] == 1


def test_item_tag_seed_ranks_the_matching_member_first(small: AudienceScorer) -> None:
    audience = small.build(definition(seed=Seed(item_tags=("kids",))))
    assert audience.member_ids[0] == "m2"
    assert audience.seed_summary["tags"] == 1


def test_lookalike_ranks_the_resembling_member_first_and_drops_the_seed(
    small: AudienceScorer,
) -> None:
    audience = small.build(definition(seed=Seed(members=("m3",))))
    assert audience.member_ids[0] == "m4"
    assert "m3" not in audience.member_ids.tolist()
    assert audience.counts[f"excluded_{SEED_MEMBER}"] == 1
    # seed = m3 / |m3| = e3: scores are the members' e3 components
    assert audience.scores.tolist() == pytest.approx([2.0, 0.0, 0.0, 0.0])


def test_a_seed_member_with_a_zero_vector_is_still_kept_out_of_the_audience() -> None:
    attrs = attributes(6, np.random.default_rng(0))
    vectors = SMALL_VECTORS.copy()
    vectors[2] = 0.0  # m2: a member the model learned nothing about
    scorer = AudienceScorer(attrs, vectors, IdMap([f"m{i}" for i in range(5)]), item_side())
    audience = scorer.build(definition(seed=Seed(members=("m3", "m2"))))
    assert "m2" not in audience.member_ids.tolist()
    assert "m3" not in audience.member_ids.tolist()
    assert audience.counts[f"excluded_{SEED_MEMBER}"] == 2
    assert audience.seed_summary["members"] == 1  # only m3 shapes the seed
    assert any("all-zero vector" in w for w in audience.warnings)
    assert audience.member_ids[0] == "m4"


def test_category_seed_is_popularity_weighted() -> None:
    attrs = attributes(2, np.random.default_rng(1))
    vectors = np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float32)
    scorer = AudienceScorer(
        attrs, vectors, IdMap(["m0", "m1"]), item_side(np.array([3.0, 1.0, 5.0, 5.0]))
    )
    # tea = tea1 (e0, weight 3) + tea2 (e3, weight 1): seed (0.75, 0, 0, 0.25)
    assert scorer.scores(Seed(categories=("tea",))).tolist() == pytest.approx([0.75, 0.25])
    uniform = AudienceScorer(attrs, vectors, IdMap(["m0", "m1"]), item_side())
    assert uniform.scores(Seed(categories=("tea",))).tolist() == pytest.approx([0.5, 0.5])


def test_seed_items_expand_categories_and_tags(small: AudienceScorer) -> None:
    seed = Seed(items=("toy1",), categories=("coffee",), item_tags=("winter",))
    assert small.seed_items(seed).tolist() == [0, 2, 3]
    assert small.seed_items(Seed(members=("m1",))).tolist() == []


def test_members_without_a_vector_are_never_in_the_audience(small: AudienceScorer) -> None:
    audience = small.build(definition())
    assert "m5" not in audience.member_ids.tolist()
    assert audience.counts["unscored"] == 1
    assert audience.counts["scored"] == 5
    assert len(audience) == 5
    assert any("no vector" in w for w in audience.warnings)


def test_tags_any_all_none(small: AudienceScorer) -> None:
    # tags: m0 tea_lover+vip, m1 vip, m2 opt_out, m3 tea_lover, m4 none, m5 (no vector)
    def members(tags: TagFilter) -> set[str]:
        return set(small.build(definition(filters=Filters(tags=tags))).member_ids.tolist())

    assert members(TagFilter(any_of=("vip", "tea_lover"))) == {"m0", "m1", "m3"}
    assert members(TagFilter(all_of=("vip", "tea_lover"))) == {"m0"}
    assert members(TagFilter(none_of=("opt_out", "vip"))) == {"m3", "m4"}
    assert members(TagFilter(any_of=("vip",), none_of=("tea_lover",))) == {"m1"}
    assert members(TagFilter(all_of=("vip", "nobody_has_it"))) == set()


def test_warnings_for_partly_unknown_seed_and_tags(small: AudienceScorer) -> None:
    d = definition(
        seed=Seed(items=("tea1", "gone")),
        filters=Filters(tags=TagFilter(none_of=("nobody_has_it",)), regions=("west",)),
    )
    warnings = small.check(d)
    assert any("seed.items" in w and "'gone'" in w for w in warnings)
    assert any("filters.tags.none" in w for w in warnings)
    assert any("filters.regions" in w for w in warnings)


# ---- filters and exclusions against a reference, on random data ---------------------------


N = 400


@pytest.fixture(scope="module")
def world() -> tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    attrs = attributes(N, rng)
    has_vector = rng.random(N) < 0.9
    model_ids = attrs.member_ids[has_vector][::-1].copy()  # another order than the attributes
    vectors = rng.standard_normal((model_ids.size, 4)).astype(np.float32)
    vectors[:20] = vectors[20:40]  # tied scores
    scorer = AudienceScorer(attrs, vectors, IdMap(model_ids), item_side())
    # reference score per attribute row (nan: no vector)
    score = np.full(N, np.nan, dtype=np.float32)
    position = {m: i for i, m in enumerate(model_ids.tolist())}
    for row, member in enumerate(attrs.member_ids.tolist()):
        if member in position:
            score[row] = vectors[position[member]] @ ITEM_VECTORS[0]
    return scorer, attrs, score, has_vector


def passes(attrs: Attributes, row: int, f: Filters) -> bool:
    def name(codes: np.ndarray, names: tuple[str, ...]) -> str | None:
        code = int(codes[row])
        return names[code] if code >= 0 else None

    tags = {MEMBER_TAGS[c] for c in attrs.tags[[row], :].indices.tolist()}
    points = float(attrs.points[row])
    joined = attrs.joined_at[row]
    checks = [
        not f.tiers or name(attrs.tier_codes, TIERS) in f.tiers,
        not f.lifecycle or name(attrs.lifecycle_codes, STAGES) in f.lifecycle,
        not f.segments or name(attrs.segment_codes, SEGMENTS) in f.segments,
        not f.regions or name(attrs.region_codes, REGIONS) in f.regions,
        not f.tags.any_of or bool(tags & set(f.tags.any_of)),
        set(f.tags.all_of) <= tags,
        not tags & set(f.tags.none_of),
        not f.birth_months or int(attrs.birth_month[row]) in f.birth_months,
        f.points_min is None or (not math.isnan(points) and points >= f.points_min),
        f.points_max is None or (not math.isnan(points) and points <= f.points_max),
        f.joined_after is None or joined >= np.datetime64(f.joined_after, "us"),
        f.joined_before is None or joined < np.datetime64(f.joined_before, "us"),
        f.p_alive_min is None or bool(attrs.p_alive[row] >= f.p_alive_min),
        f.p_alive_max is None or bool(attrs.p_alive[row] <= f.p_alive_max),
        f.clv_min is None or bool(attrs.clv[row] >= f.clv_min),
        f.clv_max is None or bool(attrs.clv[row] <= f.clv_max),
        f.clv_top_percent is None or _in_clv_top(attrs, row, f.clv_top_percent),
    ]
    return all(checks)


def _in_clv_top(attrs: Attributes, row: int, percent: float) -> bool:
    """Reference: the member is among the ceil(percent% of known) highest lifetime values."""
    known = sorted((v for v in attrs.clv.tolist() if not math.isnan(v)), reverse=True)
    k = max(1, math.ceil(len(known) * percent / 100 - 1e-9))
    return not math.isnan(attrs.clv[row]) and bool(attrs.clv[row] >= known[k - 1])


FILTERS = {
    "tiers": Filters(tiers=("gold", "diamond")),
    "lifecycle": Filters(lifecycle=("active", "at_risk")),
    "segments": Filters(segments=("Champions",)),
    "regions": Filters(regions=("north",)),
    "tags_any": Filters(tags=TagFilter(any_of=("vip", "tea_lover"))),
    "tags_all": Filters(tags=TagFilter(all_of=("vip", "tea_lover"))),
    "tags_none": Filters(tags=TagFilter(none_of=("opt_out",))),
    "birth_months": Filters(birth_months=(12, 1)),
    "points_min": Filters(points_min=500),
    "points_max": Filters(points_max=200),
    "points_range": Filters(points_min=100, points_max=800),
    "joined_after": Filters(joined_after=date(2022, 1, 1)),
    "joined_before": Filters(joined_before=date(2021, 6, 1)),
    "tier_and_lifecycle": Filters(tiers=("gold", "platinum"), lifecycle=("active",)),
    "p_alive_max": Filters(p_alive_max=0.3),
    "p_alive_range": Filters(p_alive_min=0.2, p_alive_max=0.6),
    "clv_min": Filters(clv_min=250.0),
    "clv_top_percent": Filters(clv_top_percent=10),
    "clv_top_and_tier": Filters(clv_top_percent=25, tiers=("gold",), p_alive_min=0.5),
}


@pytest.mark.parametrize("key", list(FILTERS))
def test_each_filter_matches_the_reference(
    world: tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray], key: str
) -> None:
    scorer, attrs, score, has_vector = world
    f = FILTERS[key]
    audience = scorer.build(definition(filters=f))
    inside = [row for row in range(N) if passes(attrs, row, f)]
    expected = [row for row in inside if has_vector[row]]
    assert 0 < len(expected) < N  # the filter does something
    assert sorted(audience.rows.tolist()) == expected
    assert audience.counts["eligible"] == len(inside)
    assert audience.counts["unscored"] == len(inside) - len(expected)
    # ordered by score descending, ties by attribute row
    want = sorted(expected, key=lambda row: (-float(score[row]), row))
    assert audience.rows.tolist() == want
    assert audience.member_ids.tolist() == [f"m{row}" for row in want]


def test_ordering_and_ties(
    world: tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray],
) -> None:
    scorer, _, score, has_vector = world
    audience = scorer.build(definition(size=Size(top_n=50)))
    rows = [r for r in range(N) if has_vector[r]]
    want = sorted(rows, key=lambda row: (-float(score[row]), row))[:50]
    assert audience.rows.tolist() == want
    assert np.all(np.diff(audience.scores) <= 0)
    assert audience.ranks.tolist() == list(range(1, 51))
    _, counts = np.unique(score[has_vector], return_counts=True)
    assert counts.max() >= 2  # the world has ties


def test_rank_by_expected_value(
    world: tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray],
) -> None:
    """The audience is the top N by max(score, 0) x expected spend (unknown spend = 0), and
    min_score still tests the audience score."""
    scorer, attrs, score, has_vector = world
    audience = scorer.build(
        definition(size=Size(top_n=40, min_score=-0.2, rank_by="expected_value"))
    )
    value = np.maximum(score.astype(np.float64), 0) * np.nan_to_num(attrs.expected_spend, nan=0.0)
    rows = [r for r in range(N) if has_vector[r] and score[r] >= -0.2]
    key = value.astype(np.float32)
    want = sorted(rows, key=lambda row: (-float(key[row]), row))[:40]
    assert audience.rows.tolist() == want
    assert np.all(audience.scores >= -0.2)
    # a member with a high score but no expected spend ranks below any with value
    by_score = scorer.build(definition(size=Size(top_n=40)))
    assert by_score.rows.tolist() != want


def test_exclusion_masks(world: tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray]) -> None:
    scorer, _, _, has_vector = world
    rng = np.random.default_rng(3)
    bought = rng.random(N) < 0.2
    contacted = rng.random(N) < 0.2
    audience = scorer.build(definition(), exclude={"bought_seed": bought, "contacted": contacted})
    rows = audience.rows
    assert not bought[rows].any()
    assert not contacted[rows].any()
    assert sorted(rows.tolist()) == np.flatnonzero(has_vector & ~bought & ~contacted).tolist()
    assert audience.counts["excluded_bought_seed"] == int((has_vector & bought).sum())
    assert audience.counts["excluded_contacted"] == int((has_vector & contacted).sum())
    assert audience.counts["scored"] == rows.size
    with pytest.raises(InvalidInputError, match="contacted"):
        scorer.build(definition(), exclude={"contacted": contacted[:10]})


def test_size_rules(world: tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray]) -> None:
    scorer, _, score, has_vector = world
    scored = score[has_vector]
    n = scored.size
    by_percent = scorer.build(definition(size=Size(top_percent=10)))
    assert len(by_percent) == math.ceil(n * 0.10)
    by_score = scorer.build(definition(size=Size(min_score=0.5)))
    assert len(by_score) == int((scored >= 0.5).sum())
    assert by_score.scores.min() >= 0.5
    by_n = scorer.build(definition(size=Size(top_n=7)))
    assert len(by_n) == 7
    smallest = scorer.build(definition(size=Size(top_n=30, min_score=0.5, top_percent=5)))
    assert len(smallest) == min(30, int((scored >= 0.5).sum()), math.ceil(n * 0.05))
    huge = scorer.build(definition(size=Size(top_n=10_000)))
    assert len(huge) == n
    assert any("size.top_n" in w for w in huge.warnings)


def test_percentiles_counts_and_breakdown(
    world: tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray],
) -> None:
    scorer, attrs, score, has_vector = world
    audience = scorer.build(definition(size=Size(top_n=40)))
    scored = score[has_vector]
    for s, p in zip(audience.scores.tolist(), audience.percentiles.tolist(), strict=True):
        assert p == pytest.approx(100 * float((scored <= s).mean()), abs=1e-4)
    assert audience.percentiles[0] == pytest.approx(100.0)
    assert audience.counts["selected"] == 40
    tiers = audience.breakdown["tier"]
    assert sum(tiers.values()) == 40
    codes = attrs.tier_codes[audience.rows]
    assert tiers["gold"] == int((codes == 2).sum())
    assert tiers.get("unknown", 0) == int((codes == -1).sum())
    assert audience.tiers.tolist() == [TIERS[c] if c >= 0 else "" for c in codes.tolist()]
    assert sum(audience.breakdown["segment"].values()) == 40
    assert sum(audience.breakdown["lifecycle"].values()) == 40


def test_empty_audience(world: tuple[AudienceScorer, Attributes, np.ndarray, np.ndarray]) -> None:
    scorer, *_ = world
    audience = scorer.build(definition(size=Size(min_score=1e9)))
    assert len(audience) == 0
    assert audience.percentiles.shape == (0,)
    assert audience.counts["selected"] == 0


# ---- definitions ---------------------------------------------------------------------------

FULL = {
    "name": "winter range for gold+",
    "seed": {"items": ["I1"], "categories": ["tea"], "item_tags": ["winter"]},
    "filters": {
        "tiers": ["gold", "diamond"],
        "lifecycle": ["active", "at_risk"],
        "segments": ["Champions"],
        "tags": {"any": ["vip"], "all": [], "none": ["opt_out"]},
        "regions": ["north"],
        "birth_months": [12],
        "points": {"min": 100, "max": 5000},
        "joined": {"after": "2023-01-01", "before": "2024-06-30"},
        "p_alive": {"max": 0.5},
        "clv": {"min": 50, "top_percent": 20},
    },
    "exclude": {"bought_seed_within_days": 30, "contacted_within_days": 7},
    "size": {"top_n": 100000, "min_score": 0.1, "top_percent": 10, "rank_by": "expected_value"},
}


def test_parse_full_definition_and_round_trip() -> None:
    d = parse_definition(FULL)
    assert d.name == "winter range for gold+"
    assert d.seed == Seed(items=("I1",), categories=("tea",), item_tags=("winter",))
    assert d.filters.tags == TagFilter(any_of=("vip",), none_of=("opt_out",))
    assert (d.filters.points_min, d.filters.points_max) == (100.0, 5000.0)
    assert (d.filters.joined_after, d.filters.joined_before) == (
        date(2023, 1, 1),
        date(2024, 6, 30),
    )
    assert d.exclusions.bought_seed_within_days == 30
    assert (d.filters.p_alive_min, d.filters.p_alive_max) == (None, 0.5)
    assert (d.filters.clv_min, d.filters.clv_max, d.filters.clv_top_percent) == (50.0, None, 20.0)
    assert d.size == Size(top_n=100000, min_score=0.1, top_percent=10.0, rank_by="expected_value")
    assert parse_definition(d.to_dict()) == d
    minimal = parse_definition({"seed": {"members": ["M1"]}, "size": {"top_n": 5}})
    assert parse_definition(minimal.to_dict()) == minimal


def test_parse_toml_document() -> None:
    text = """
name = "tea lovers"
[seed]
categories = ["tea"]
[filters]
tiers = ["gold"]
joined = { after = 2023-01-01 }
[size]
top_percent = 5
"""
    d = parse_definition(tomllib.loads(text))
    assert d.filters.joined_after == date(2023, 1, 1)
    assert d.size.top_percent == 5.0


def with_(path: str, value: Any) -> dict[str, Any]:
    """FULL with one dotted key set (``None`` deletes it)."""
    import copy

    doc: dict[str, Any] = copy.deepcopy(FULL)
    keys = path.split(".")
    node = doc
    for key in keys[:-1]:
        node = node[key]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


BAD = [
    (with_("filters.p_alive", {"min": 1.5}), "filters.p_alive.min"),
    (with_("filters.p_alive", {"min": 0.8, "max": 0.2}), "filters.p_alive"),
    (with_("filters.p_alive", {"top_percent": 5}), "filters.p_alive.top_percent"),
    (with_("filters.clv", {"top_percent": 0}), "filters.clv.top_percent"),
    (with_("filters.clv", {"min": "high"}), "filters.clv.min"),
    (with_("size.rank_by", "clv"), "size.rank_by"),
    (with_("colour", "red"), "colour"),
    (with_("filters.tier", ["gold"]), "filters.tier"),
    (with_("filters.tags.some", ["x"]), "filters.tags.some"),
    (with_("size.top", 3), "size.top"),
    (with_("seed", {}), "seed"),
    (with_("seed", None), "seed"),
    (with_("seed", {"items": []}), "seed"),
    (with_("seed.items", "I1"), "seed.items"),
    (with_("seed.items", ["I1", ""]), "seed.items[1]"),
    (with_("seed.members", ["M1"]), "seed.members"),
    (with_("size", None), "size"),
    (with_("size", {}), "size"),
    (with_("size.top_n", 0), "size.top_n"),
    (with_("size.top_n", -5), "size.top_n"),
    (with_("size.top_n", 2.5), "size.top_n"),
    (with_("size.top_n", True), "size.top_n"),
    (with_("size.top_percent", 0), "size.top_percent"),
    (with_("size.top_percent", 101), "size.top_percent"),
    (with_("size.min_score", "high"), "size.min_score"),
    (with_("filters.birth_months", [12, 13]), "filters.birth_months[1]"),
    (with_("filters.birth_months", [0]), "filters.birth_months[0]"),
    (with_("filters.points", {"min": 10, "max": 5}), "filters.points"),
    (with_("filters.joined", {"after": "2024-01-01", "before": "2023-01-01"}), "filters.joined"),
    (with_("filters.joined.after", "yesterday"), "filters.joined.after"),
    (with_("filters.tags", {"all": ["vip"], "none": ["vip"]}), "filters.tags"),
    (with_("exclude.contacted_within_days", 0), "exclude.contacted_within_days"),
    (with_("filters", ["gold"]), "filters"),
    (with_("name", 5), "name"),
]


@pytest.mark.parametrize(("doc", "field"), BAD, ids=[f for _, f in BAD])
def test_bad_definitions_name_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(doc)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, InvalidInputError)


def test_not_a_mapping() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_definition(["seed"])  # type: ignore[arg-type]
    assert info.value.field == "definition"


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        (Filters(tiers=("gold", "bronze")), "filters.tiers[1]"),
        (Filters(lifecycle=("sleeping",)), "filters.lifecycle[0]"),
        (Filters(segments=("Loyal", "Whales")), "filters.segments[1]"),
    ],
)
def test_unknown_names_against_the_data(
    small: AudienceScorer, filters: Filters, field: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        small.build(definition(filters=filters))
    assert info.value.field == field


def test_known_segments_come_from_the_policy() -> None:
    attrs = attributes(3, np.random.default_rng(2))
    scorer = AudienceScorer(
        attrs,
        SMALL_VECTORS[:3],
        IdMap(["m0", "m1", "m2"]),
        item_side(),
        known_segments=(*SEGMENTS, "Hibernating"),
    )
    # a policy segment nobody is in: valid, and nobody matches
    assert len(scorer.build(definition(filters=Filters(segments=("Hibernating",))))) == 0
    with pytest.raises(DefinitionError):
        scorer.check(definition(filters=Filters(segments=("Whales",))))


@pytest.mark.parametrize(
    "seed",
    [
        Seed(items=("gone", "also_gone")),
        Seed(categories=("garden",)),
        Seed(item_tags=("summer",)),
        Seed(members=("nobody",)),
        Seed(members=("m5",)),  # a member without a vector
    ],
)
def test_seed_nothing_of_which_is_in_the_model(small: AudienceScorer, seed: Seed) -> None:
    with pytest.raises(DefinitionError) as info:
        small.check(definition(seed=seed))
    assert info.value.field == "seed"


def test_scorer_rejects_misaligned_inputs() -> None:
    attrs = attributes(3, np.random.default_rng(4))
    with pytest.raises(InvalidInputError, match="member_vectors"):
        AudienceScorer(attrs, SMALL_VECTORS, IdMap(["m0", "m1"]), item_side())
    bad = replace(attrs, points=np.zeros(2))
    with pytest.raises(InvalidInputError, match="points"):
        AudienceScorer(bad, SMALL_VECTORS[:3], IdMap(["m0", "m1", "m2"]), item_side())


# ---- the member's own history with the seed items -------------------------------------------


def history_scorer(history: Any, weight: float = 2.0) -> AudienceScorer:
    """m0 and m1 have the same vector (along tea1); only m1 bought tea1 before; m2 points along
    tea2, m3 along toys; m4 has no vector (not in the model)."""
    vectors = np.array([[2, 0, 0, 0], [2, 0, 0, 0], [0, 0, 0, 1], [0, 0, 4, 0]], dtype=np.float32)
    return AudienceScorer(
        attributes(5, np.random.default_rng(5)),
        vectors,
        IdMap(["m0", "m1", "m2", "m3"]),
        item_side(),
        history=history,
        history_weight=weight,
    )


#: model members x items (tea1, tea2, coffee1, toy1), recency-weighted purchase lines
HISTORY = sp.csr_array(
    np.array(
        [
            [0.0, 0.0, 0.0, 0.0],  # m0: nothing
            [3.0, 0.0, 0.0, 0.0],  # m1: tea1
            [0.0, 1.0, 0.0, 0.0],  # m2: tea2
            [0.0, 0.0, 0.0, 5.0],  # m3: toys only
        ]
    )
)


def test_history_lifts_the_member_who_bought_the_seed_over_an_equal_one() -> None:
    scorer = history_scorer(HISTORY)
    audience = scorer.build(definition(seed=Seed(items=("tea1",))))
    assert audience.member_ids.tolist()[:2] == ["m1", "m0"]
    # model / max|model| (max 2 over m0..m3) + 2 * log1p(h) / max log1p(h) (only m1 has h > 0)
    scores = scorer.scores(Seed(items=("tea1",)))
    assert scores[:4].tolist() == pytest.approx([1.0, 1.0 + 2.0, 0.0, 0.0])
    assert math.isnan(scores[4])
    # without a history: the two are tied and the lower row wins
    plain = history_scorer(None).build(definition(seed=Seed(items=("tea1",))))
    assert plain.member_ids.tolist()[:2] == ["m0", "m1"]
    assert plain.scores[:2].tolist() == pytest.approx([2.0, 2.0])


def test_history_of_a_category_seed_sums_its_items() -> None:
    history = sp.csr_array(
        np.array([[0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0, 0, 0, 5.0]])
    )
    # tea = tea1 + tea2 (uniform): seed (0.5, 0, 0, 0.5); m0, m1 score 1, m2 0.5, m3 0
    scores = history_scorer(history, weight=1.0).scores(Seed(categories=("tea",)))
    peak = math.log1p(3.0)
    assert scores[:4].tolist() == pytest.approx([1.0, 1.0 + 1.0, 0.5 + math.log1p(1.0) / peak, 0.0])


def test_history_edge_cases_are_safe() -> None:
    # returns (negative history) count as nothing; a seed nobody bought adds nothing
    history = sp.csr_array(
        np.array([[0.0, 0.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0], [0, 0, 0, 0], [0, 0, 0, 5.0]])
    )
    scorer = history_scorer(history)
    assert scorer.scores(Seed(items=("tea1",)))[:4].tolist() == pytest.approx([1, 1, 0, 0])
    assert scorer.scores(Seed(items=("coffee1",)))[:4].tolist() == pytest.approx([0, 0, 0, 0])
    assert scorer.seed_history(np.array([0, 3])).tolist() == pytest.approx([0, 0, 0, 5.0])
    assert scorer.seed_history(np.empty(0, np.int64)).tolist() == [0, 0, 0, 0]


def test_history_weight_zero_gives_the_pure_vector_scores() -> None:
    rng = np.random.default_rng(9)
    vectors = rng.standard_normal((4, 4)).astype(np.float32)
    history = sp.random_array((4, 4), density=0.5, format="csr", rng=rng)
    attrs = attributes(5, rng)
    ids = IdMap(["m0", "m1", "m2", "m3"])
    plain = AudienceScorer(attrs, vectors, ids, item_side())
    off = AudienceScorer(attrs, vectors, ids, item_side(), history=history, history_weight=0.0)
    assert off.history_weight == 0.0
    assert plain.history_weight == 0.0  # no history, no term
    on = AudienceScorer(attrs, vectors, ids, item_side(), history=history)
    assert on.history_weight == 2.0
    for seed in (Seed(items=("tea1",)), Seed(categories=("tea",)), Seed(item_tags=("hot",))):
        expected = plain.scores(seed)
        np.testing.assert_array_equal(off.scores(seed), expected)
        np.testing.assert_array_equal(
            off.build(definition(seed=seed)).scores, plain.build(definition(seed=seed)).scores
        )
        assert not np.array_equal(on.scores(seed)[:4], expected[:4])


def test_lookalike_scores_ignore_the_history() -> None:
    """Rule: a lookalike seed names members, not items, so there is no "bought the seed"
    history; its score stays member . seed with or without a history matrix."""
    seed = Seed(members=("m2",))
    with_history = history_scorer(HISTORY).build(definition(seed=seed))
    without = history_scorer(None).build(definition(seed=seed))
    assert with_history.member_ids.tolist() == without.member_ids.tolist()
    np.testing.assert_array_equal(with_history.scores, without.scores)
    assert "m2" not in with_history.member_ids.tolist()


def test_history_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="history has shape"):
        history_scorer(sp.csr_array((4, 3)))
    with pytest.raises(InvalidInputError, match="history must be a scipy sparse"):
        history_scorer(np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="history_weight"):
        history_scorer(HISTORY, weight=-1.0)
    with pytest.raises(InvalidInputError, match="history_weight"):
        history_scorer(HISTORY, weight=math.inf)
