"""GET /v1/members/{id}/recommendations: the blend, every business rule, cold start, limits.

Expected lists are worked out by hand in tests/serving/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bundle_recommender import BundleRecommender
from feature_store.policy import load_policy
from serving.model import Ask, PurchasedPolicy, ServingModel
from serving.model_source import resolve_model
from serving.security import Role
from serving.settings import Settings
from tests.serving.conftest import ITEM_IDS, Service, ids, write_test_bundle


def test_known_member_gets_the_blend_under_the_rules(service: Service) -> None:
    body = service.recs("m_tea", k=4)
    # tea3 (bought; embedding 0.615 outweighs buy-again 0.5: source model), tea1, then the cap
    # of 2 teas moves on to coffee
    assert ids(body) == ["tea3", "tea1", "cof1", "cof2"]
    assert body["items"][0]["score"] == pytest.approx(0.8 / 1.3 + 0.5 + 0.05 * 0.3, abs=1e-5)
    assert body["items"][1]["score"] == pytest.approx(1.0 / 1.3 + 0.05 * 0.5, abs=1e-5)
    assert [i["source"] for i in body["items"]] == ["model"] * 4
    assert [i["category"] for i in body["items"]] == ["tea", "tea", "coffee", "coffee"]
    assert body["basis"] == "model"
    assert body["fallback"] is False
    assert body["degraded"] is False
    assert body["tier"] == "regular"
    assert body["model_version"] == "v1"


def test_diversity_cap_scales_with_k(service: Service) -> None:
    # k=2: at most ceil(0.5 * 2) = 1 per category, so the second coffee gives way to tea1
    # (m_cof's embedding 0.1 * 1.0 = 0.1 over the best 1.0, plus 0.05 * 0.5 trending)
    body = service.recs("m_cof", k=2)
    assert ids(body) == ["cof1", "tea1"]
    assert body["items"][1]["score"] == pytest.approx(0.1 + 0.025, abs=1e-5)


def test_purchased_items_per_policy(service: Service) -> None:
    assert "tea3" in ids(service.recs("m_tea", k=4, exclude_purchased="false"))
    assert ids(service.recs("m_tea", k=4, exclude_purchased="true")) == [
        "tea1",
        "tea2",
        "cof1",
        "cof2",
    ]


def test_tier_exclusive_items_only_for_that_tier_and_up(service: Service) -> None:
    gold = service.recs("m_gold", k=4)
    assert ids(gold) == ["tea_gold", "tea1", "cof1", "cof2"]
    assert gold["tier"] == "gold"
    for member in ("m_tea", "m_cof", "nobody"):
        for k in (1, 4, 12, 200):
            shown = ids(service.recs(member, k=k))
            assert not {"tea_gold", "cake_dia"} & set(shown), (member, k)


def test_inactive_items_never_shown(service: Service) -> None:
    for member in ("m_tea", "m_gold", "m_cof", "m_new", "nobody"):
        for exclude in ("true", "false"):
            assert "tea_off" not in ids(service.recs(member, k=200, exclude_purchased=exclude))


def test_category_filter(service: Service) -> None:
    body = service.recs("m_tea", k=4, category="coffee")
    assert ids(body) == ["cof1", "cof2", "cof3", "cof4"]  # no cap within one category
    assert ids(service.recs("m_tea", k=4, category="no-such-category")) == []


def test_fills_from_fallbacks_up_to_what_is_eligible(service: Service) -> None:
    body = service.recs("m_tea", k=200)
    # 9 items are active and open to regular members; every one is returned once
    assert sorted(ids(body)) == sorted(
        ["tea1", "tea2", "tea3", "cof1", "cof2", "cof3", "cof4", "cake1", "cake2"]
    )
    assert len(set(ids(body))) == len(ids(body))


def test_unknown_member_gets_popular_items_flagged_fallback(service: Service) -> None:
    body = service.recs("nobody", k=4)
    # trending order among eligible items: cake1 1.0, cake2 0.8, cof1 0.6, tea1 0.5 (tie with
    # cof2 broken by item order); tea_off 0.9 inactive, cake_dia 0.7 diamond only
    assert ids(body) == ["cake1", "cake2", "cof1", "tea1"]
    assert body["fallback"] is True
    assert body["basis"] == "popular"
    assert {i["source"] for i in body["items"]} == {"popular_in_tier"}
    assert body["tier"] == "regular"


def test_member_with_profile_but_no_vector_gets_popular_in_tier(service: Service) -> None:
    body = service.recs("m_new", k=4)
    assert ids(body) == ["cake_dia", "cake1", "cof1", "tea1"]  # diamond popularity first
    assert body["basis"] == "popular_in_tier"
    assert body["fallback"] is True
    assert body["tier"] == "diamond"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/members/m_tea/recommendations?k=0", "query.k"),
        ("/v1/members/m_tea/recommendations?k=201", "query.k"),
        ("/v1/members/m_tea/recommendations?k=ten", "query.k"),
        ("/v1/members/" + "m" * 129 + "/recommendations", "path.member_id"),
        ("/v1/members/m_tea/recommendations?category=" + "c" * 129, "query.category"),
        ("/v1/members/m_tea/recommendations?exclude_purchased=maybe", "query.exclude_purchased"),
        ("/v1/members/m_tea/recommendations?exclude=tea1,,tea2", "query.exclude"),
        ("/v1/members/m_tea/recommendations?promote=tea1&promote_share=1.5", "query.promote_share"),
        ("/v1/members/m_tea/recommendations?promote=tea1&promote_share=nan", "query.promote_share"),
        ("/v1/members/m_tea/recommendations?k=%C2%B2", "query.k"),
    ],
)
def test_input_limits_are_problem_json(service: Service, path: str, field: str) -> None:
    response = service.get(path, Role.STOREFRONT)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 422
    assert body["type"] == "/problems/invalid-request"
    assert [e["field"] for e in body["errors"]] == [field]
    assert "Traceback" not in response.text


def test_exclude_list_removes_items_and_the_fill_takes_their_place(service: Service) -> None:
    # m_tea's list is tea3, tea1, cof1, cof2 (first test); without tea1 and cof1 the cap of two
    # teas lets tea2 in, then cof2 and the next coffee
    body = service.recs("m_tea", k=4, exclude="tea1,cof1,not-an-item")
    assert ids(body) == ["tea3", "tea2", "cof2", "cof3"]
    # the same query through the framework route (a repeated parameter skips the fast path)
    routed = service.get(
        "/v1/members/m_tea/recommendations?k=4&exclude=tea1,cof1,not-an-item&k=4",
        Role.STOREFRONT,
    )
    assert routed.status_code == 200
    assert ids(routed.json()) == ids(body)


def test_promotion_gets_its_share_of_the_slots(service: Service) -> None:
    # cakes are never in m_tea's top 4; promoting the category gives them ceil(0.5 * 4) = 2
    # slots, taken by popularity among the cakes, marked "promoted", after the blend's items
    body = service.recs("m_tea", k=4, promote_category="cake", promote_share="0.5")
    assert ids(body) == ["tea3", "tea1", "cake1", "cake2"]
    assert [i["source"] for i in body["items"]] == ["model", "model", "promoted", "promoted"]
    one = service.recs("m_tea", k=4, promote="cake2", promote_share="0.25")
    assert ids(one) == ["tea3", "tea1", "cof1", "cake2"]
    # a promoted item the member may not see is still not shown
    assert "cake_dia" not in ids(service.recs("m_tea", k=4, promote="cake_dia", promote_share="1"))


def test_unknown_route_is_problem_json(service: Service) -> None:
    response = service.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_every_item_id_is_a_catalogue_id(service: Service) -> None:
    for member in ("m_tea", "m_gold", "m_cof", "m_new", "nobody"):
        assert set(ids(service.recs(member, k=200))) <= set(ITEM_IDS)


def test_serving_ranks_through_the_evaluation_path(tmp_path: Path) -> None:
    """Without item attributes and without the diversity cap the rules change nothing, so the
    service must return exactly what the blend (BundleRecommender, used by evaluation and batch
    export) returns."""
    bundle = write_test_bundle(tmp_path / "plain", with_item_attributes=False)
    settings = Settings(model_uri=str(bundle), max_per_category_share=1.0)
    model = ServingModel.load(resolve_model(str(bundle)), settings, load_policy().tiers.names)
    reference = BundleRecommender.from_path(bundle)
    members = ["m_tea", "m_gold", "m_cof"]
    for exclude in (False, True):
        expected = reference.recommend(members, 5, exclude_purchased=exclude)
        policy = PurchasedPolicy.EXCLUDE if exclude else PurchasedPolicy.KEEP
        got = model.recommend_many([Ask(m, None, None, 5, None, policy) for m in members])
        for row, result in enumerate(got):
            assert result.item_ids == expected.item_ids[row].tolist()
            assert result.scores == pytest.approx(expected.scores[row].tolist(), abs=1e-6)
            assert result.sources == expected.sources[row].tolist()


def test_a_mixed_batch_equals_one_request_at_a_time(bundle_dir: Path) -> None:
    model = ServingModel.load(
        resolve_model(str(bundle_dir)),
        Settings(model_uri=str(bundle_dir)),
        load_policy().tiers.names,
    )
    folded = model.overlay_from_lines("m_tea", ["cof1", "cof2"], [1, 2])
    newcomer = model.overlay_from_lines("walk_in", ["cake2"], [1])
    asks = [
        Ask("m_tea", None, None, 4),
        Ask("m_tea", None, folded, 4),
        Ask("walk_in", None, newcomer, 3, None, PurchasedPolicy.EXCLUDE),
        Ask("nobody", None, None, 5),
        Ask("m_cof", None, None, 3, "coffee", PurchasedPolicy.KEEP),
        Ask("m_gold", None, None, 2, None, PurchasedPolicy.EXCLUDE),
    ]
    together = model.recommend_many(asks)
    for ask, result in zip(asks, together, strict=True):
        assert result == model.recommend_many([ask])[0]
    assert [r.basis for r in together] == [
        "model",
        "fold_in",
        "fold_in",
        "popular",
        "model",
        "model",
    ]
    assert "cof1" not in together[1].item_ids
    assert "cof2" not in together[1].item_ids
