"""The Redis result cache: hits, invalidation by the member's events and by a model switch."""

from __future__ import annotations

from pathlib import Path

from serving.security import Role
from tests.serving.conftest import MEMBERS_V2, Service, event, ids, write_test_bundle


def get(service: Service, member: str, **params: object) -> tuple[str, dict[str, object]]:
    response = service.get(f"/v1/members/{member}/recommendations", Role.STOREFRONT, params=params)
    assert response.status_code == 200
    return response.headers["x-cache"], response.json()


def test_second_request_is_a_hit_with_the_same_answer(cached_service: Service) -> None:
    first_state, first = get(cached_service, "m_tea", k=4)
    second_state, second = get(cached_service, "m_tea", k=4)
    assert (first_state, second_state) == ("miss", "hit")
    # the same list; every served list has its own id (the exposure log tells them apart)
    assert second.pop("recommendation_id") != first.pop("recommendation_id")
    assert second == first
    # another variant of the request is cached separately
    assert get(cached_service, "m_tea", k=3)[0] == "miss"
    assert get(cached_service, "m_tea", k=4, category="tea")[0] == "miss"
    metrics = cached_service.client.get("/metrics").text
    assert 'recsys_cache_requests_total{result="hit"} 1.0' in metrics


def test_an_event_invalidates_that_member_only(cached_service: Service) -> None:
    get(cached_service, "m_tea", k=4)
    get(cached_service, "m_gold", k=4)
    response = cached_service.post(
        "/v1/events", Role.INGEST, json={"events": [event("c1", "m_tea", "cof1")]}
    )
    assert response.status_code == 200
    state, body = get(cached_service, "m_tea", k=4)
    assert state == "miss"
    assert "cof1" not in ids(body)  # the fresh answer reflects the purchase
    assert get(cached_service, "m_gold", k=4)[0] == "hit"


def test_a_model_switch_never_serves_the_old_cache(cached_service: Service, tmp_path: Path) -> None:
    _, old = get(cached_service, "m_tea", k=4)
    assert get(cached_service, "m_tea", k=4)[0] == "hit"
    new_bundle = write_test_bundle(tmp_path / "v2", members_vectors=MEMBERS_V2, label="v2")
    reload = cached_service.post("/v1/models/reload", json={"uri": str(new_bundle)})
    assert reload.status_code == 200
    assert reload.json()["changed"] is True
    state, new = get(cached_service, "m_tea", k=4)
    assert state == "miss"
    assert new["bundle_id"] != old["bundle_id"]
    assert new["model_version"] == "v2"


def test_cache_off_says_so(service: Service) -> None:
    assert get(service, "m_tea", k=4)[0] == "off"
