"""The hot path: precomputed candidate lists and the framework-free route answer exactly what
the search path and the FastAPI route answer."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from engine.ranking.lanes import from_precomputed
from feature_store.online.profile import MemberProfile
from feature_store.policy import load_policy
from serving.model import Ask, PurchasedPolicy, ServingModel
from serving.model_source import resolve_model
from serving.schemas import Recommendations
from serving.security import Role
from serving.settings import Settings
from tests.serving.conftest import ITEM_IDS, MEMBERS, Service, auth, write_test_bundle


def _model(path: Path) -> ServingModel:
    settings = Settings(model_uri=str(path))
    return ServingModel.load(resolve_model(str(path)), settings, load_policy().tiers.names)


def _profile(tier: str) -> MemberProfile:
    """A profile with only the tier set (the rest is not read by the ranking)."""
    fields = {name: None for name in MemberProfile.__dataclass_fields__}
    fields.update(member_id="x", tier=tier, tags=(), top_categories=())
    return MemberProfile(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("width", "per_category"), [(3, None), (6, None), (12, None), (4, 1), (6, 2)]
)
def test_precomputed_lists_answer_exactly_what_the_search_answers(
    tmp_path: Path, width: int, per_category: int | None
) -> None:
    """Every member, tier, k and policy: the same items, scores and sources with and without
    the precomputed lists (short lists fall back to the search, width 3 forces that; lists
    capped per category fall back when a cut category could have supplied more)."""
    searched = _model(write_test_bundle(tmp_path / "plain"))
    listed = _model(
        write_test_bundle(tmp_path / "listed", precomputed=width, per_category=per_category)
    )
    assert listed.ranker.precomputed is not None
    assert listed.ranker.precomputed.items.shape == (3, width)
    tiers = [None, "regular", "gold", "diamond"]
    policies = list(PurchasedPolicy)
    asks = [
        Ask(member, None if tier is None else _profile(tier), None, k, None, policy)
        for member, tier, k, policy in itertools.product(
            [*MEMBERS, "nobody"], tiers, [1, 2, 4, 7, 12], policies
        )
    ]
    assert listed.recommend_many(asks) == searched.recommend_many(asks)
    ranker = listed.ranker
    answered = dict(
        from_precomputed(
            ranker.precomputed, ranker.catalog, ranker.share, [listed.request(a) for a in asks]
        )
    )
    if width >= 6:  # the lists, not the search, answered many of them
        assert len(answered) >= 20
    for ask in asks[:: len(asks) // 25]:  # one at a time, too
        assert listed.recommend_many([ask]) == searched.recommend_many([ask])


def test_lists_never_show_ineligible_items(tmp_path: Path) -> None:
    model = _model(write_test_bundle(tmp_path / "listed", precomputed=12))
    regular = model.recommend_many([Ask("m_gold", _profile("regular"), None, 12)])[0]
    gold = model.recommend_many([Ask("m_gold", _profile("gold"), None, 12)])[0]
    assert "tea_gold" not in regular.item_ids
    assert "tea_gold" in gold.item_ids
    assert "tea_off" not in gold.item_ids
    assert "cake_dia" not in gold.item_ids
    assert set(gold.item_ids) <= set(ITEM_IDS)


def _get(service: Service, member: str, **params: object) -> Any:
    return service.get(f"/v1/members/{member}/recommendations", Role.STOREFRONT, params=params)


def _route_body(service: Service, member: str, **params: object) -> bytes:
    """The FastAPI route's answer: an extra query parameter the fast path does not know makes
    it fall through (the route ignores unknown parameters)."""
    response = _get(service, member, **params, via="route")
    assert response.status_code == 200
    return bytes(response.content)


def _split_id(body: bytes) -> tuple[bytes, bytes]:
    """(the recommendation_id, the body without it): the id comes first in every body."""
    head = b'{"recommendation_id":"'
    assert body.startswith(head)
    rid, _, rest = body[len(head) :].partition(b'",')
    return rid, rest


@pytest.mark.parametrize(
    "params",
    [{}, {"k": 3}, {"k": 12, "exclude_purchased": "true"}, {"category": "tea", "k": 2}],
)
@pytest.mark.parametrize("member", ["m_tea", "m_gold", "nobody"])
def test_fast_path_answers_byte_for_byte_what_the_route_answers(
    service: Service, member: str, params: dict[str, object]
) -> None:
    fast = _get(service, member, **params)
    assert fast.status_code == 200
    # byte for byte but the list's own id, which every served list gets afresh
    fast_id, fast_rest = _split_id(fast.content)
    route_id, route_rest = _split_id(_route_body(service, member, **params))
    assert fast_rest == route_rest
    assert fast_id != route_id
    Recommendations.model_validate_json(fast.content)  # the documented schema
    assert fast.headers["content-type"] == "application/json"
    assert fast.headers["x-cache"] == "off"


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("k=0", 422, "k"),
        ("k=201", 422, "k"),
        ("k=ten", 422, "k"),
        ("category=", 422, "category"),
        ("exclude_purchased=maybe", 422, "exclude_purchased"),
        ("k=%C2%B2", 422, "k"),  # superscript two: a digit to str.isdigit, not a number
        ("k=%D9%A3", 422, "k"),  # Arabic-Indic three: int() takes it, the contract does not
        ("k=%EF%BC%95", 422, "k"),  # fullwidth five
    ],
)
def test_bad_parameters_still_get_the_route_problem(
    service: Service, query: str, status: int, field: str
) -> None:
    response = service.client.get(
        f"/v1/members/m_tea/recommendations?{query}",
        headers=auth(Role.STOREFRONT),
    )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.text


@pytest.mark.parametrize("role", [None, Role.MARKETER, Role.INGEST])
def test_keys_are_checked_on_the_fast_path(service: Service, role: Role | None) -> None:
    headers = {} if role is None else auth(role)
    response = service.client.get("/v1/members/m_tea/recommendations", headers=headers)
    assert response.status_code == (401 if role is None else 403)
    assert response.headers["content-type"] == "application/problem+json"


def test_fast_path_requests_are_counted_under_the_route(service: Service) -> None:
    for _ in range(3):
        assert _get(service, "m_tea").status_code == 200
    metrics = service.get("/metrics", Role.ADMIN).text
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith("recsys_http_requests_total{")
        and 'route="/v1/members/{member_id}/recommendations"' in line
        and 'status="200"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
