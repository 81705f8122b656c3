"""What is evaluated is what is served: for the members of a training run's test window, the
lists of the report's ``served`` row (the blend through the business rules, engine.served) are
exactly the lists the service answers from the same bundle, for the "all" variant (the default
purchased-items policy, no events) and the "new" variant (``exclude_purchased``), and
``recsys recommend`` / the bundle recommender give the blend's own ranking."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from engine.bundle_recommender import BundleRecommender
from feature_store.online.profile import MemberProfile
from feature_store.policy import load_policy
from feature_store.synthetic import SynthConfig, write_synthetic
from serving.model import Ask, PurchasedPolicy, ServingModel
from serving.model_source import resolve_model
from serving.settings import Settings
from training.config import load_config
from training.pipeline import SERVED, TrainOptions, TrainResult, train

CONFIG = """
name = "served"
[split]
test_days = 45
refit = false
[model]
kind = "als"
[model.params]
factors = 16
iterations = 6
[blend]
buy_again = 3.0
trending = 0.3
candidates = 50
trending_candidates = 20
[evaluation]
ks = [10]
max_members = 300
served_share = 0.3
[bundle]
item_index = "exact"
member_index = "none"
precomputed_candidates = 20
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    tmp = tmp_path_factory.mktemp("served")
    synthetic_data = tmp / "data"
    write_synthetic(SynthConfig(members=1500, items=300, purchases=40_000, seed=7), synthetic_data)
    path = tmp / "served.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return train(
        TrainOptions(data=synthetic_data, config=load_config(path), out=tmp / "out", track=False)
    )


def _profile(member_id: str, tier: str) -> MemberProfile:
    fields = {name: None for name in MemberProfile.__dataclass_fields__}
    fields.update(member_id=member_id, tier=tier, tags=(), top_categories=())
    return MemberProfile(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variant", "policy"),
    [("all", PurchasedPolicy.EXCLUDE_RECENT), ("new", PurchasedPolicy.EXCLUDE)],
)
def test_the_evaluated_served_lists_are_what_the_service_answers(
    run: TrainResult, variant: str, policy: PurchasedPolicy
) -> None:
    tiers = load_policy().tiers.names
    settings = Settings(model_uri=str(run.bundle), max_per_category_share=0.3)
    model = ServingModel.load(resolve_model(str(run.bundle)), settings, tiers)
    members = run.evaluated[variant]
    recommender = BundleRecommender.from_path(run.bundle)
    rows = recommender.member_ids.lookup(members)
    tier_at_cutoff = run_member_tiers(run, rows)
    asks = [
        Ask(str(m), None if t < 0 else _profile(str(m), tiers[t]), None, 10, None, policy)
        for m, t in zip(members, tier_at_cutoff, strict=True)
    ]
    answered = model.recommend_many(asks)
    evaluated = run.report.result(SERVED).rankings[variant]
    expected = [recommender.item_ids.ids_at(row[row >= 0]).tolist() for row in evaluated[:, :10]]
    assert [a.item_ids for a in answered] == expected
    # the rules changed something: the served lists are not the blend's own
    blend = run.report.result("blend").rankings[variant][:, :10]
    assert not np.array_equal(blend, evaluated[:, :10])


def run_member_tiers(run: TrainResult, rows: np.ndarray) -> np.ndarray:
    """The tier (ladder index, -1 unknown) each member had at the cutoff, as evaluation read
    it from the snapshot (members in id order, the bundle's row order)."""
    tiers = load_policy().tiers.names
    members = pl.read_parquet(run.bundle.parent / "snapshot" / "members.parquet").sort("member_id")
    names = members.get_column("tier").fill_null("").to_list()
    index = {name: i for i, name in enumerate(tiers)}
    return np.asarray([index.get(names[int(r)], -1) for r in rows], dtype=np.int64)


def test_served_row_is_reported_and_differs_only_by_the_rules(run: TrainResult) -> None:
    served = run.report.result(SERVED)
    assert ("all", 10) in served.summaries
    assert ("all", "tier", "regular") in served.breakdowns
    assert replace(run.config.evaluation).served_share == 0.3
