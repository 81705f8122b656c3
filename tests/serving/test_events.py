"""POST /v1/events: idempotent updates, just-bought items, and the fold-in of the member."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store.redis_keys import RedisKeys
from serving.online import decode_overlay
from serving.security import Role
from tests.serving.conftest import Service, event, ids


def post_events(service: Service, *events: dict[str, object]) -> dict[str, object]:
    response = service.post("/v1/events", Role.INGEST, json={"events": list(events)})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_events_are_idempotent(service: Service) -> None:
    first = post_events(service, event("e1", "m_tea", "cof1"))
    assert first["applied"] == 1
    assert first["duplicates"] == 0
    again = post_events(service, event("e1", "m_tea", "cof1"), event("e2", "m_tea", "cof2"))
    assert again["applied"] == 1
    assert again["duplicates"] == 1
    results = again["results"]
    assert isinstance(results, list)
    assert [r["status"] for r in results] == ["duplicate", "applied"]
    profile = service.get("/v1/members/m_tea/profile", Role.MARKETER).json()
    bought = [p["item_id"] for p in profile["recent_purchases"]]
    assert bought == ["cof2", "cof1", "tea3"]  # newest first, each event counted once


def test_events_before_the_snapshot_change_nothing(service: Service) -> None:
    body = post_events(
        service, event("old", "m_tea", "cof1", day=1) | {"ts": "2024-05-20T10:00:00"}
    )
    assert body["before_snapshot"] == 1
    assert body["applied"] == 0


def test_fold_in_shifts_recommendations_toward_what_was_bought(service: Service) -> None:
    before = service.recs("m_tea", k=4)
    assert ids(before) == ["tea3", "tea1", "cof1", "cof2"]
    body = post_events(
        service,
        event("f1", "m_tea", "cof1"),
        event("f2", "m_tea", "cof2"),
        event("f3", "m_tea", "cof3"),
    )
    assert body["members_refreshed"] == 1
    after = service.recs("m_tea", k=4)
    # the just-bought coffees are gone (policy exclude_recent); the fold-in adds 0.851 on the
    # coffee axis (hand-computed: (0.693 * 2.7) / (2.94 + 0.01 - 0.307 * 2.45)), so cof4
    # (0.7 * 0.951 = 0.666 / 1.3 + 0.005 = 0.517) enters the list it was far from (0.059)
    assert after["basis"] == "fold_in"
    assert ids(after) == ["tea3", "tea1", "cof4", "cake1"]
    assert after["items"][2]["score"] == pytest.approx(0.7 * (0.1 + 0.8512) / 1.3 + 0.005, abs=2e-3)
    assert not {"cof1", "cof2", "cof3"} & set(ids(service.recs("m_tea", k=200)))
    # keep: buy-again may offer them again
    assert "cof1" in ids(service.recs("m_tea", k=200, exclude_purchased="false"))


def test_fold_in_vector_is_stored_in_redis(service: Service) -> None:
    post_events(service, event("v1", "m_tea", "cof1", quantity=3))
    assert service.redis is not None
    model = service.get("/v1/models/current").json()
    key = RedisKeys(service.settings.redis_prefix or "recsys").serving_fold(
        model["bundle_id"], "m_tea"
    )
    raw = service.redis.get(key)
    assert isinstance(raw, bytes)
    overlay = decode_overlay(raw, dim=3, n_items=12)
    assert overlay is not None
    assert overlay.items.tolist() == [5]  # cof1
    assert overlay.weights[0] == pytest.approx(np.log1p(3))
    assert overlay.vector[0] == pytest.approx(1.0, abs=1e-4)  # the tea axis is untouched
    # moved toward coffee: c = log1p(3) = 1.386; (c * 1.0) / (2.94 + 0.01 + (c - 1) * 1.0)
    c = np.log1p(3)
    assert overlay.vector[1] == pytest.approx(0.1 + c / (2.95 + (c - 1)), abs=1e-4)


def test_new_member_gets_a_vector_from_their_purchases(service: Service) -> None:
    assert service.recs("walk_in", k=3)["basis"] == "popular"
    post_events(service, event("n1", "walk_in", "cake2", quantity=2))
    body = service.recs("walk_in", k=3)
    assert body["basis"] == "fold_in"
    assert body["fallback"] is False
    assert ids(body)[0] == "cake1"  # the nearest item on the cake axis not just bought
    profile = service.get("/v1/members/walk_in/profile", Role.MARKETER).json()
    assert profile["tier"] == "regular"
    assert profile["in_model"] is False


def test_a_return_cancels_the_purchase_in_the_fold_in(service: Service) -> None:
    post_events(service, event("p1", "m_tea", "cof1"), event("r1", "m_tea", "cof1", quantity=-1))
    after = service.recs("m_tea", k=4, exclude_purchased="false")
    assert ids(after) == ["tea3", "tea1", "cof1", "cof2"]  # the vector is back where it was


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"quantity": 0}, "body.events[0].quantity"),
        ({"amount": "NaN"}, "body.events[0].amount"),
        ({"ts": "2024-06-10"}, "body.events[0].ts"),  # a time is required; an offset is not
        ({"member_id": "m" * 129}, "body.events[0].member_id"),
        ({"event_id": ""}, "body.events[0].event_id"),
        ({"colour": "red"}, "body.events[0].colour"),
    ],
)
def test_bad_events_are_rejected_naming_the_field(
    service: Service, patch: dict[str, object], field: str
) -> None:
    response = service.post(
        "/v1/events", Role.INGEST, json={"events": [event("x", "m_tea", "cof1") | patch]}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


def test_batch_size_limits(service: Service) -> None:
    empty = service.post("/v1/events", Role.INGEST, json={"events": []})
    assert empty.status_code == 422
    many = [event(f"b{i}", "m_tea", "cof1") for i in range(1001)]
    assert service.post("/v1/events", Role.INGEST, json={"events": many}).status_code == 422
