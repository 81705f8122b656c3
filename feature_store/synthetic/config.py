"""Every knob of the synthetic generator, in one frozen dataclass with checked values.

The defaults describe a mid-sized grocery-and-general-merchandise retailer with a five-tier
loyalty programme. docs/synthetic_data.md explains what each knob plants in the data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

from feature_store.errors import ConfigError
from feature_store.schema import DEFAULT_TIERS


@dataclass(frozen=True, slots=True)
class Category:
    """One retail category: its share of the catalogue, its price law and its basket habits."""

    name: str
    #: share of the catalogue's items in this category
    item_share: float
    #: median list price; prices are lognormal around it
    price_median: float
    #: sigma of log(price)
    price_sigma: float
    #: mean extra units per line (quantity = 1 + Poisson(extra_units))
    extra_units: float
    #: food categories may carry the "organic" item tag
    food: bool
    #: nouns for item titles
    nouns: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category("fresh-produce", 0.07, 2.5, 0.5, 0.6, True, ("Apples", "Bananas", "Tomatoes", "Spinach", "Carrots", "Avocados", "Berries")),
    Category("dairy-eggs", 0.05, 3.2, 0.45, 0.5, True, ("Milk", "Yogurt", "Cheddar", "Butter", "Eggs", "Cream", "Kefir")),
    Category("bakery", 0.04, 3.5, 0.4, 0.3, True, ("Sourdough", "Bagels", "Croissants", "Rye Bread", "Muffins", "Baguette")),
    Category("meat-seafood", 0.05, 9.0, 0.5, 0.3, True, ("Chicken Breast", "Salmon Fillet", "Ground Beef", "Pork Chops", "Shrimp", "Sausages")),
    Category("pantry", 0.10, 4.0, 0.6, 0.4, True, ("Pasta", "Rice", "Olive Oil", "Tomato Sauce", "Lentils", "Flour", "Cereal", "Coffee Beans")),
    Category("snacks-sweets", 0.07, 3.0, 0.5, 0.5, True, ("Crisps", "Chocolate", "Cookies", "Pretzels", "Mixed Nuts", "Popcorn")),
    Category("beverages", 0.07, 3.0, 0.6, 0.7, True, ("Sparkling Water", "Orange Juice", "Cola", "Green Tea", "Lemonade", "Kombucha")),
    Category("frozen", 0.05, 5.0, 0.5, 0.3, True, ("Pizza", "Ice Cream", "Peas", "Dumplings", "Fish Fingers", "Fries")),
    Category("household", 0.06, 6.0, 0.6, 0.2, False, ("Detergent", "Dish Soap", "Paper Towels", "Trash Bags", "Sponges", "Toilet Paper")),
    Category("personal-care", 0.07, 6.5, 0.6, 0.15, False, ("Shampoo", "Toothpaste", "Body Wash", "Deodorant", "Razors", "Hand Soap")),
    Category("beauty", 0.07, 18.0, 0.8, 0.05, False, ("Serum", "Lipstick", "Mascara", "Foundation", "Perfume", "Face Mask")),
    Category("baby", 0.03, 12.0, 0.7, 0.4, False, ("Diapers", "Baby Wipes", "Formula", "Baby Food", "Bottle")),
    Category("pet", 0.03, 14.0, 0.8, 0.3, False, ("Dog Food", "Cat Litter", "Cat Food", "Dog Treats", "Chew Toy")),
    Category("home-kitchen", 0.06, 24.0, 0.9, 0.05, False, ("Frying Pan", "Mug Set", "Towels", "Candle", "Storage Box", "Knife Set")),
    Category("apparel", 0.07, 28.0, 0.7, 0.1, False, ("T-Shirt", "Jeans", "Socks", "Hoodie", "Sneakers", "Jacket")),
    Category("electronics", 0.04, 80.0, 1.0, 0.02, False, ("Headphones", "Charger", "Speaker", "Smartwatch", "Power Bank", "Keyboard")),
    Category("toys-games", 0.03, 20.0, 0.8, 0.05, False, ("Puzzle", "Board Game", "Building Set", "Plush Toy", "Card Game")),
    Category("sports-outdoors", 0.02, 30.0, 0.9, 0.05, False, ("Yoga Mat", "Water Bottle", "Running Shorts", "Dumbbells", "Tent")),
    Category("books-stationery", 0.02, 10.0, 0.6, 0.1, False, ("Notebook", "Novel", "Pens", "Cookbook", "Planner", "Sketchbook")),
)  # fmt: skip

TITLE_ADJECTIVES: tuple[str, ...] = (
    "Classic", "Organic", "Fresh", "Premium", "Everyday", "Deluxe", "Family", "Mini", "Value",
    "Signature", "Natural", "Original", "Gourmet", "Essential", "Ultra", "Smart",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SynthConfig:
    """Sizes, seed and the knobs of every planted structure (see docs/synthetic_data.md)."""

    # sizes and time
    members: int = 10_000
    items: int = 2_000
    #: total purchase rows, returns included
    purchases: int = 200_000
    seed: int = 0
    #: last day of the data (inclusive); fixed so that output never depends on the clock
    end_date: date = date(2025, 12, 31)
    #: length of the purchase history in days, ending on end_date
    span_days: int = 730

    # catalogue
    categories: tuple[Category, ...] = CATEGORIES
    #: item popularity weight = rank ** -popularity_exponent (rank 1 = most popular)
    popularity_exponent: float = 0.9
    #: share of items only visible from a tier up (items.min_tier), by tier
    exclusive_items: tuple[tuple[str, float], ...] = (("gold", 0.03), ("platinum", 0.015))
    #: share of discontinued items (items.active = false)
    inactive_item_share: float = 0.03
    private_label_share: float = 0.2
    organic_share: float = 0.12
    #: items in the top `bestseller_share` by planted popularity get the "bestseller" tag
    bestseller_share: float = 0.01
    #: items in the top `premium_share` of prices within their category get the "premium" tag
    premium_share: float = 0.1

    # taste
    clusters: int = 24
    latent_dim: int = 16
    #: Dirichlet concentration of each cluster's category shares (small = focused tastes)
    category_concentration: float = 0.2
    #: weight of the low-rank cluster x item term against log popularity within a category
    taste_strength: float = 1.0
    #: a member's weight on the primary cluster is uniform in this range
    primary_weight: tuple[float, float] = (0.55, 0.85)
    #: tier-specific taste in [0, 1]: higher tiers tilt their picks (within each category)
    #: toward premium-tagged and exclusive (min_tier) items, the more so the higher the tier;
    #: 0 = the same taste in every tier (see docs/synthetic_data.md and taste.tier_tilts)
    tier_taste: float = 0.0

    # members
    tiers: tuple[str, ...] = DEFAULT_TIERS
    #: share of members in each tier, by planned activity (lowest tier first)
    tier_shares: tuple[float, ...] = (0.50, 0.25, 0.15, 0.07, 0.03)
    #: sigma of the lognormal purchase rate per active day
    activity_sigma: float = 1.2
    #: share of members who joined before the history starts (active over the whole span)
    joined_before_share: float = 0.55
    #: share of members who joined in the last `new_member_days`
    new_member_share: float = 0.08
    new_member_days: int = 90
    #: share of the other members (who have been active for long enough) who churn
    churn_share: float = 0.15
    #: a churned member's last purchase day is at least this many days before end_date
    churn_gap_days: int = 90
    #: a member "loves" a category (tag loves-<category>) when the planted share reaches this
    loves_threshold: float = 0.2
    #: CRM tags: (tag, base probability, extra probability at the highest activity)
    crm_tags: tuple[tuple[str, float, float], ...] = (
        ("app-user", 0.15, 0.5),
        ("newsletter", 0.35, 0.0),
        ("sms-optin", 0.12, 0.0),
    )
    regions: tuple[tuple[str, float], ...] = (
        ("north", 0.22),
        ("south", 0.24),
        ("east", 0.18),
        ("west", 0.2),
        ("central", 0.16),
    )
    #: mean and standard deviation of members' age (years) at end_date, clipped to 18..90
    age_mean: float = 44.0
    age_sd: float = 14.0
    #: points balance = net spend x points_per_unit x U(unspent range)
    points_per_unit: float = 1.0

    # repeat purchases
    #: vocabulary (staples) size = 1 + ceil(vocab_scale * lines ** vocab_exponent)
    vocab_scale: float = 0.6
    vocab_exponent: float = 0.8
    #: staple slot weights fall like slot ** -staple_exponent
    staple_exponent: float = 1.0
    #: share of lines that are one-off picks from the member's taste instead of a staple
    explore_share: float = 0.15

    # orders and time
    #: mean lines per order (geometric), at most basket_cap
    basket_mean: float = 3.0
    basket_cap: int = 40
    #: relative volume by month, January first
    month_factors: tuple[float, ...] = (0.88, 0.86, 0.95, 0.97, 1.0, 0.98, 0.97, 0.98, 0.95, 1.0, 1.12, 1.45)  # fmt: skip
    #: relative volume by weekday, Monday first
    weekday_factors: tuple[float, ...] = (0.92, 0.9, 0.95, 1.0, 1.12, 1.25, 0.86)
    #: relative volume on 25 December (most shops closed)
    christmas_day_factor: float = 0.1
    #: yearly growth of the programme's volume
    annual_growth: float = 0.06
    #: relative weight of each opening hour, from opening_hour on
    opening_hour: int = 8
    hour_weights: tuple[float, ...] = (3, 5, 7, 8, 10, 9, 7, 7, 8, 10, 10, 8, 5, 3)
    #: share of orders moved to within birthday_window_days of the member's birthday
    birthday_order_share: float = 0.03
    birthday_window_days: int = 3
    #: share of lines bought on promotion, and the discounts drawn from
    promo_share: float = 0.15
    promo_discounts: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3)

    # returns
    #: share of purchase rows that are returns (negative quantity, own order id)
    return_rate: float = 0.02
    return_max_days: int = 30

    def __post_init__(self) -> None:
        self._check()

    # ------------------------------------------------------------------ derived values

    @property
    def exclusive_tiers(self) -> tuple[str, ...]:
        """Tiers that have exclusive items, lowest first (eligibility level i+1)."""
        names = {t for t, _ in self.exclusive_items}
        return tuple(t for t in self.tiers if t in names)

    @property
    def levels(self) -> int:
        """Number of eligibility levels: everyone, plus one per tier with exclusive items."""
        return 1 + len(self.exclusive_tiers)

    @property
    def tier_levels(self) -> tuple[int, ...]:
        """Eligibility level of each tier (lowest tier first)."""
        ranks = [self.tiers.index(t) for t in self.exclusive_tiers]
        return tuple(sum(1 for r in ranks if t >= r) for t in range(len(self.tiers)))

    def to_json(self) -> dict[str, Any]:
        """All parameters as JSON-ready values (for ground_truth/synth.json).

        ``tier_taste`` is left out while it is 0, so that outputs at the defaults stay
        byte-identical to those of generators that predate the knob.
        """
        out = dataclasses.asdict(self)
        out["end_date"] = self.end_date.isoformat()
        if not self.tier_taste:
            del out["tier_taste"]
        return out

    # ------------------------------------------------------------------ checks

    def _check(self) -> None:
        def bad(name: str, rule: str, value: object) -> ConfigError:
            return ConfigError(f"synthetic data: {name} must be {rule} (got {value!r})")

        for name in ("members", "items", "span_days", "clusters", "latent_dim", "basket_cap"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1", getattr(self, name))
        if self.purchases < 0:
            raise bad("purchases", ">= 0", self.purchases)
        if self.seed < 0:
            raise bad("seed", ">= 0", self.seed)
        if not self.categories:
            raise bad("categories", "non-empty", self.categories)
        if len(self.tier_shares) != len(self.tiers) or abs(sum(self.tier_shares) - 1) > 1e-9:
            raise bad("tier_shares", f"{len(self.tiers)} shares summing to 1", self.tier_shares)
        for tier, share in self.exclusive_items:
            if tier not in self.tiers[1:]:
                raise bad("exclusive_items", f"tiers among {self.tiers[1:]}", tier)
            if not 0 <= share < 1:
                raise bad(f"exclusive_items[{tier}]", "in [0, 1)", share)
        if sum(s for _, s in self.exclusive_items) >= 0.5:
            raise bad("exclusive_items", "shares summing below 0.5", self.exclusive_items)
        if not 0 <= self.return_rate < 0.5:
            raise bad("return_rate", "in [0, 0.5)", self.return_rate)
        if self.basket_mean < 1:
            raise bad("basket_mean", ">= 1", self.basket_mean)
        if len(self.month_factors) != 12 or min(self.month_factors) <= 0:
            raise bad("month_factors", "12 positive numbers", self.month_factors)
        if len(self.weekday_factors) != 7 or min(self.weekday_factors) <= 0:
            raise bad("weekday_factors", "7 positive numbers", self.weekday_factors)
        if self.opening_hour < 0 or self.opening_hour + len(self.hour_weights) > 23:
            raise bad("hour_weights", "opening hours ending before 23:00", self.hour_weights)
        lo, hi = self.primary_weight
        if not 0.5 <= lo <= hi <= 1:
            raise bad("primary_weight", "a range within [0.5, 1]", self.primary_weight)
        for name in (
            "explore_share", "new_member_share", "churn_share", "joined_before_share",
            "birthday_order_share", "promo_share", "inactive_item_share", "private_label_share",
            "organic_share", "bestseller_share", "premium_share", "tier_taste",
        ):  # fmt: skip
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "in [0, 1]", getattr(self, name))
        if self.new_member_share + self.joined_before_share > 1:
            raise bad("new_member_share + joined_before_share", "<= 1", self.new_member_share)
        if not 0 < self.new_member_days < self.span_days:
            raise bad(
                "new_member_days", f"in (0, span_days={self.span_days})", self.new_member_days
            )
        if not 0 <= self.churn_gap_days < self.span_days:
            raise bad("churn_gap_days", f"in [0, span_days={self.span_days})", self.churn_gap_days)
        if not self.promo_discounts or not all(0 <= d < 1 for d in self.promo_discounts):
            raise bad("promo_discounts", "one or more discounts in [0, 1)", self.promo_discounts)
        if self.return_max_days < 1:
            raise bad("return_max_days", ">= 1", self.return_max_days)
