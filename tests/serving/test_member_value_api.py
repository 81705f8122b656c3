"""Member value through the API: the profile's ``value``, the audience filters and ranking on it,
and the early-warning list ``GET /v1/members/at-risk``, against the real app, bundle, snapshot
and Redis. Right answers: the one-member scorer on tests/serving/audience_fixtures.py."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from feature_store.value import score_member
from serving.security import Role
from tests.conftest import RedisBackend
from tests.serving.audience_fixtures import (
    AS_OF_DATE,
    TEA1_SCORES,
    VALUE_PARAMS,
    VALUE_STATS,
    audience_settings,
    member_value,
    write_audience_bundle,
    write_audience_snapshot,
)
from tests.serving.conftest import Service, event, running


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audience_bundle(tmp_path_factory.mktemp("value-bundle") / "b")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audience_snapshot(tmp_path_factory.mktemp("value-snapshot") / "snap")


@pytest.fixture
def service(bundle: Path, snapshot: Path, redis_backend: RedisBackend) -> Iterator[Service]:
    settings = audience_settings(bundle, snapshot, redis_backend)
    with running(settings) as client:
        yield Service(client, settings, redis_backend.client)


def _values(as_of: date) -> dict[str, Any]:
    return {m: member_value(m, as_of) for m in VALUE_STATS}


def _at_risk(values: dict[str, Any], below: float = 0.5) -> list[str]:
    risky = [(v.clv * (1 - v.p_alive), m) for m, v in values.items() if v.p_alive < below]
    return [m for _, m in sorted(risky, key=lambda pair: (-pair[0], pair[1]))]


def test_profile_carries_the_member_value(service: Service) -> None:
    body = service.get("/v1/members/m02/profile", Role.MARKETER).json()
    want = member_value("m02", AS_OF_DATE)
    assert want is not None
    value = body["value"]
    assert value["purchase_days"] == 6
    assert math.isclose(value["p_alive"], want.p_alive, rel_tol=1e-12)
    assert math.isclose(value["expected_orders_90d"], want.expected_orders, rel_tol=1e-12)
    assert math.isclose(value["expected_spend_90d"], want.expected_spend, rel_tol=1e-12)
    assert math.isclose(value["clv"], want.clv, rel_tol=1e-12)
    never = service.get("/v1/members/m07/profile", Role.MARKETER).json()["value"]
    assert never == {
        "p_alive": None,
        "expected_orders_90d": None,
        "expected_spend_90d": None,
        "clv": None,
        "purchase_days": 0,
    }


def test_a_purchase_event_updates_the_profile_value(service: Service) -> None:
    response = service.post(
        "/v1/events", Role.INGEST, json={"events": [event("v1", "m02", "tea1", day=10)]}
    )
    assert response.status_code == 200, response.text
    value = service.get("/v1/members/m02/profile", Role.MARKETER).json()["value"]
    stats = VALUE_STATS["m02"].add_purchase(date(2024, 6, 10), 4.5)

    want = score_member(VALUE_PARAMS, *stats.inputs(date(2024, 6, 11)), 90, 12)
    assert value["purchase_days"] == 7
    assert math.isclose(value["p_alive"], want.p_alive, rel_tol=1e-12)
    assert value["p_alive"] > 0.5  # back from a long silence: no longer slipping away
    listed = service.get("/v1/members/at-risk", Role.MARKETER).json()
    assert "m02" not in [m["member_id"] for m in listed["members"]]
    assert listed["changed_since_snapshot"] == 1


def test_at_risk_list_is_ordered_by_value_at_risk(service: Service) -> None:
    response = service.get("/v1/members/at-risk", Role.MARKETER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["members"]
    assert [m["member_id"] for m in body["members"]] == _at_risk(_values(AS_OF_DATE))
    first = body["members"][0]
    assert math.isclose(first["value_at_risk"], first["clv"] * (1 - first["p_alive"]))
    assert body["below"] == 0.5
    assert body["members_with_value"] == len(VALUE_STATS)
    top = service.get(
        "/v1/members/at-risk", Role.MARKETER, params={"top": 2, "min_clv": 10, "below": 0.6}
    ).json()
    want = [m for m in _at_risk(_values(AS_OF_DATE), 0.6) if _values(AS_OF_DATE)[m].clv >= 10]
    assert [m["member_id"] for m in top["members"]] == want[:2]


def test_at_risk_as_of_a_later_date(service: Service) -> None:
    later = AS_OF_DATE + timedelta(days=365)
    body = service.get(
        "/v1/members/at-risk", Role.MARKETER, params={"as_of": later.isoformat()}
    ).json()
    assert [m["member_id"] for m in body["members"]] == _at_risk(_values(later))
    assert len(body["members"]) > len(_at_risk(_values(AS_OF_DATE)))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"as_of": "2024-01-01"}, "as_of"),
        ({"as_of": "2024-02-30"}, "as_of"),
        ({"top": 0}, "top"),
        ({"below": 1.5}, "below"),
    ],
)
def test_at_risk_bad_input_names_the_field(
    service: Service, params: dict[str, Any], field: str
) -> None:
    response = service.get("/v1/members/at-risk", Role.MARKETER, params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == f"query.{field}"


def test_at_risk_roles(service: Service) -> None:
    for role in (Role.STOREFRONT, Role.INGEST):
        assert service.get("/v1/members/at-risk", role).status_code == 403


def _audience(service: Service, **sections: Any) -> list[str]:
    body = {"seed": {"items": ["tea1"]}, "size": {"top_n": 100}} | sections
    response = service.post("/v1/audiences", Role.MARKETER, json=body)
    assert response.status_code == 201, response.text
    audience_id = response.json()["id"]
    page = service.get(f"/v1/audiences/{audience_id}/members", Role.MARKETER).json()
    return [m["member_id"] for m in page["members"]]


def test_audience_value_filters_never_let_an_outsider_in(service: Service) -> None:
    values = _values(AS_OF_DATE)
    slipping = _audience(service, filters={"p_alive": {"max": 0.5}})
    want = [m for m in TEA1_SCORES if m in values and values[m].p_alive <= 0.5]
    assert slipping == want
    rich = _audience(service, filters={"clv": {"min": 100}})
    assert rich == [m for m in TEA1_SCORES if m in values and values[m].clv >= 100]
    # top 30% of the 11 members with a value (ceil 3.3 = 4): m08, m03, m09, m01
    by_clv = sorted(values, key=lambda m: -values[m].clv)[:4]
    top = _audience(service, filters={"clv": {"top_percent": 30}})
    assert top == [m for m in TEA1_SCORES if m in by_clv]


def test_audience_ranked_by_expected_value(service: Service) -> None:
    values = _values(AS_OF_DATE)
    ranked = _audience(service, size={"top_n": 5, "rank_by": "expected_value"})
    expected = sorted(
        (m for m in TEA1_SCORES if m in values),
        key=lambda m: -max(TEA1_SCORES[m], 0) * values[m].expected_spend,
    )
    assert ranked == expected[:5]
