"""One ranking path: for the members of a training run's test window, the lists of the report's
``served`` row (evaluation through the ranking kernel, engine.ranking.kernel) are exactly the
lists the service answers from the same bundle, the bundle recommender's, ``recsys
recommend``'s and the MLflow pyfunc's, for the "all" variant (the default purchased-items
policy, no events) and the "new" variant (``exclude_purchased``); with an exclude list and a
promotion, the service, the bundle recommender, the CLI and the pyfunc still agree."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from cli.main import app as cli_app
from engine.bundle_recommender import BundleRecommender
from engine.ranking.query import ListQuery
from feature_store.online.profile import MemberProfile
from feature_store.policy import load_policy
from feature_store.synthetic import SynthConfig, write_synthetic
from serving.model import Ask, PurchasedPolicy, ServingModel
from serving.model_source import resolve_model
from serving.settings import Settings
from training.config import load_config
from training.pipeline import SERVED, TrainOptions, TrainResult, train
from training.pyfunc_model import MemberRecsModel
from training.tracking_store import BUNDLE_ARTIFACT

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
    exported = recommender.recommend(members, 10, exclude_purchased=variant == "new")
    assert [[i for i in row if i] for row in exported.item_ids.tolist()] == expected
    predicted = _pyfunc(run).predict(
        None, pd.DataFrame({"member_id": members}), {"exclude_purchased": variant == "new"}
    )
    assert _lists(predicted, members) == expected
    # the rules changed something: the served lists are not the blend's own
    blend = run.report.result("blend").rankings[variant][:, :10]
    assert not np.array_equal(blend, evaluated[:, :10])


def _pyfunc(run: TrainResult) -> MemberRecsModel:
    model = MemberRecsModel()
    model.load_context(SimpleNamespace(artifacts={BUNDLE_ARTIFACT: str(run.bundle)}))  # type: ignore[arg-type]
    return model


def _lists(frame: pd.DataFrame, members: Sequence[str]) -> list[list[str]]:
    grouped = {m: g.sort_values("rank")["item_id"].tolist() for m, g in frame.groupby("member_id")}
    return [grouped.get(str(m), []) for m in members]


def test_per_request_rules_are_applied_alike_on_every_path(
    run: TrainResult, tmp_path: Path
) -> None:
    """An exclude list and a promotion: the service, the bundle recommender, ``recsys
    recommend`` and the pyfunc give the same lists; the excluded items never show, and the
    promoted items take their share of the slots, marked ``promoted``."""
    tiers = load_policy().tiers.names
    settings = Settings(model_uri=str(run.bundle), max_per_category_share=0.3)
    model = ServingModel.load(resolve_model(str(run.bundle)), settings, tiers)
    recommender = BundleRecommender.from_path(run.bundle)
    members = [str(m) for m in run.evaluated["all"][:40]]
    popular = recommender.recommend(members[:1], 10).item_ids[0].tolist()
    catalog = recommender.ranker.catalog
    catalogue = recommender.item_ids.ids.tolist()
    # promoted: items every tier may see, of three different categories, none in the lists
    promoted, categories = [], set()
    for item in reversed(range(catalog.n_items)):
        code = int(catalog.category_codes[item])
        if catalog.eligible[0, item] and code not in categories and catalogue[item] not in popular:
            promoted.append(catalogue[item])
            categories.add(code)
        if len(promoted) == 3:
            break
    params = {"exclude": ",".join(popular[:3]), "promote": ",".join(promoted), "promote_share": 0.2}
    query = ListQuery.model_validate(params)
    rows = recommender.member_ids.lookup(members)
    tier_at_cutoff = run_member_tiers(run, rows)
    asks = [
        Ask(
            m, None if t < 0 else _profile(m, tiers[t]), None, 10, None, PurchasedPolicy.KEEP, query
        )
        for m, t in zip(members, tier_at_cutoff, strict=True)
    ]
    served = [a.item_ids for a in model.recommend_many(asks)]
    exported = recommender.recommend(members, 10, query=query)
    assert [[i for i in row if i] for row in exported.item_ids.tolist()] == served
    assert (
        _lists(_pyfunc(run).predict(None, pd.DataFrame({"member_id": members}), params), members)
        == served
    )
    for items, sources in zip(exported.item_ids.tolist(), exported.sources.tolist(), strict=True):
        assert not set(items) & set(popular[:3])
        shown = [i for i in items if i in promoted]
        assert len(shown) == 2  # ceil(0.2 * 10)
        assert [s for i, s in zip(items, sources, strict=True) if i in promoted] == ["promoted"] * 2
    members_csv = tmp_path / "members.csv"
    pl.DataFrame({"member_id": members}).write_csv(members_csv)
    out = tmp_path / "recs.csv"
    result = CliRunner().invoke(
        cli_app,
        [
            "recommend",
            "--model",
            str(run.bundle),
            "--members",
            str(members_csv),
            "--out",
            str(out),
            "--k",
            "10",
            "--exclude",
            params["exclude"],
            "--promote",
            params["promote"],
            "--promote-share",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert _lists(pd.read_csv(out, dtype=str).astype({"rank": int}), members) == served


def test_recommend_names_a_bad_option() -> None:
    result = CliRunner().invoke(
        cli_app, ["recommend", "--model", "x", "--out", "y.csv", "--promote-share", "1.5"]
    )
    assert result.exit_code == 2
    assert "--promote-share" in result.output


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
