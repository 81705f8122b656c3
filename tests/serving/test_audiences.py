"""/v1/audiences against the real app, a real bundle and snapshot, and real Redis (both the
machine's server and an embedded one). Right answers: tests/serving/audience_fixtures.py.

The service reads the member, item and recent-purchase tables that materialize stored with the
active snapshot version (feature_store/online/audience_data.py), never the snapshot folder;
tests/serving/test_audience_replicas.py runs two instances without that folder."""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import redis

from feature_store.online import connect, materialize
from feature_store.redis_keys import RedisKeys
from serving.security import Role
from serving.settings import Settings
from tests.conftest import RedisBackend
from tests.serving.audience_fixtures import (
    COFFEE_SCORES,
    LOOKALIKE_M10_SCORES,
    RANKED,
    TEA1_SCORES,
    WINTER_SCORES,
    audience_settings,
    write_audience_bundle,
    write_audience_snapshot,
)
from tests.serving.conftest import Service, event, keys, running

TEA = {"items": ["tea1"]}


@pytest.fixture(scope="module")
def audience_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audience_bundle(tmp_path_factory.mktemp("aud-bundle") / "b")


@pytest.fixture(scope="module")
def audience_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audience_snapshot(tmp_path_factory.mktemp("aud-snapshot") / "snap")


@pytest.fixture
def settings(
    audience_bundle: Path, audience_snapshot: Path, redis_backend: RedisBackend
) -> Settings:
    return audience_settings(audience_bundle, audience_snapshot, redis_backend)


@pytest.fixture
def service(settings: Settings, redis_backend: RedisBackend) -> Iterator[Service]:
    with running(settings) as client:
        yield Service(client, settings, redis_backend.client)


def create(service: Service, body: dict[str, Any], role: Role = Role.MARKETER) -> dict[str, Any]:
    response = service.post("/v1/audiences", role, json=body)
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


def all_pages(service: Service, audience_id: str, limit: int) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        response = service.get(
            f"/v1/audiences/{audience_id}/members",
            Role.MARKETER,
            params={"offset": offset, "limit": limit},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        members += page["members"]
        offset = page["next_offset"]
    return members


def member_ids(service: Service, body: dict[str, Any]) -> list[str]:
    audience = create(service, body)
    return [m["member_id"] for m in all_pages(service, audience["id"], 1000)]


def scored(service: Service, body: dict[str, Any]) -> dict[str, float]:
    """member id -> score of the whole audience of ``body``, best first."""
    audience = create(service, body)
    return {m["member_id"]: m["score"] for m in all_pages(service, audience["id"], 1000)}


def test_the_fixture_answers_are_ordered() -> None:
    # the hand-worked tables are best first with distinct scores (ties only where documented)
    for table in (TEA1_SCORES, WINTER_SCORES, LOOKALIKE_M10_SCORES):
        values = list(table.values())
        assert values == sorted(values, reverse=True)
        assert len(set(values)) == len(values)
    assert list(COFFEE_SCORES.values()) == sorted(COFFEE_SCORES.values(), reverse=True)


def test_create_get_page_and_export_agree(service: Service) -> None:
    audience = create(service, {"name": "tea lovers", "seed": TEA, "size": {"top_percent": 100}})
    assert audience["name"] == "tea lovers"
    assert audience["size"] == len(RANKED) == 11
    assert audience["counts"]["unscored"] == 1  # x_novec has no vector
    assert audience["counts"]["members"] == 12
    assert audience["breakdown"]["tier"] == {
        "regular": 3,
        "silver": 1,
        "gold": 4,
        "platinum": 1,
        "diamond": 2,
    }
    assert audience["breakdown"]["lifecycle"]["at_risk"] == 2
    assert audience["model_version"]
    assert len(audience["bundle_id"]) == 16
    assert [m["member_id"] for m in audience["preview"]] == RANKED
    # m / max|m| + 2 log1p(h) / max log1p(h): m09 (tea 0.1, bought tea1 3 times) comes first
    assert [m["score"] for m in audience["preview"]] == pytest.approx(
        list(TEA1_SCORES.values()), abs=1e-6
    )
    top = audience["preview"][0]
    assert top == {
        "member_id": "m09",
        "score": pytest.approx(0.1 / 0.9 + 2),
        "rank": 1,
        "percentile": pytest.approx(100.0),
        "tier": "diamond",
        "segment": "At Risk",
    }
    # 11 distinct scores: the member at rank r has 11 - (r - 1) of them at or below it
    assert [m["percentile"] for m in audience["preview"]] == pytest.approx(
        [(11 - r) / 11 * 100 for r in range(11)], abs=1e-4
    )
    assert audience["preview"][RANKED.index("m07")]["segment"] is None  # m07 never purchased

    shown = service.get(f"/v1/audiences/{audience['id']}", Role.MARKETER)
    assert shown.status_code == 200
    assert shown.json() == audience

    pages = all_pages(service, audience["id"], limit=4)
    assert [m["member_id"] for m in pages] == RANKED
    assert [m["rank"] for m in pages] == list(range(1, 12))
    scores = [m["score"] for m in pages]
    assert scores == sorted(scores, reverse=True)

    export = service.get(f"/v1/audiences/{audience['id']}/export.csv", Role.MARKETER)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0] == ["member_id", "score", "rank", "percentile", "tier", "segment"]
    assert [r[0] for r in rows[1:]] == [m["member_id"] for m in pages]
    assert [int(r[2]) for r in rows[1:]] == [m["rank"] for m in pages]
    # pages round scores to 6 decimals, the CSV writes the float32 value
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(scores, abs=1e-6)
    assert [float(r[1]) for r in rows[1:]] == pytest.approx(list(TEA1_SCORES.values()), abs=1e-6)
    assert [r[4] for r in rows[1:]] == [m["tier"] or "" for m in pages]
    assert [r[5] for r in rows[1:]] == [m["segment"] or "" for m in pages]


def test_paging_bounds(service: Service) -> None:
    audience = create(service, {"seed": TEA, "size": {"top_n": 5}})
    url = f"/v1/audiences/{audience['id']}/members"
    page = service.get(url, Role.MARKETER, params={"offset": 3, "limit": 10}).json()
    assert [m["member_id"] for m in page["members"]] == ["m02", "m03"]  # ranks 4 and 5
    assert page["next_offset"] is None
    assert [m["rank"] for m in page["members"]] == [4, 5]
    assert page["size"] == 5
    first = service.get(url, Role.MARKETER, params={"offset": 0, "limit": 3}).json()
    assert [m["member_id"] for m in first["members"]] == ["m09", "m06", "m01"]
    assert first["next_offset"] == 3
    beyond = service.get(url, Role.MARKETER, params={"offset": 50}).json()
    assert beyond["members"] == []
    for params in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}):
        bad = service.get(url, Role.MARKETER, params=params)
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"tiers": ["gold", "diamond"]}, {"m01", "m02", "m03", "m06", "m09", "m11"}),
        ({"lifecycle": ["at_risk"]}, {"m02", "m09"}),
        ({"segments": ["Champions"]}, {"m01", "m03", "m08", "m11"}),
        ({"tags": {"any": ["vip"]}}, {"m01", "m03", "m05", "m08", "m11"}),
        ({"tags": {"all": ["vip", "opt_out"]}}, {"m03"}),
        ({"tags": {"any": ["vip"], "none": ["opt_out"]}}, {"m01", "m05", "m08", "m11"}),
        ({"regions": ["east"]}, {"m06", "m09"}),
        ({"birth_months": [12]}, {"m01", "m03", "m06", "m09", "m11"}),
        ({"points": {"min": 400, "max": 3000}}, {"m01", "m02", "m08", "m11"}),
        ({"joined": {"after": "2023-01-01", "before": "2024-05-10"}}, {"m02", "m04", "m06", "m10"}),
        ({"tiers": ["gold"], "lifecycle": ["active"]}, {"m01", "m06", "m11"}),
    ],
)
def test_each_filter_reaches_the_api(
    service: Service, filters: dict[str, Any], expected: set[str]
) -> None:
    found = scored(service, {"seed": TEA, "filters": filters, "size": {"top_percent": 100}})
    assert set(found) == expected
    assert list(found) == [m for m in RANKED if m in expected]  # still ordered by score
    # the maxima of the score are over every member with a vector, not the filtered ones
    assert list(found.values()) == pytest.approx([TEA1_SCORES[m] for m in found], abs=1e-6)


def test_scores_do_not_depend_on_the_filters(service: Service) -> None:
    # active members only: m09 (h = 3, at risk) is filtered out, but the maxima are still taken
    # over every member with a vector, so m06 (h = 1) gains 1, not the +2 a maximum over the
    # eligible members would give it
    found = scored(
        service, {"seed": TEA, "filters": {"lifecycle": ["active"]}, "size": {"top_n": 2}}
    )
    assert found == pytest.approx({"m06": 0.4 / 0.9 + 1, "m01": 1.0}, abs=1e-6)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ({"top_n": 3}, ["m09", "m06", "m01"]),
        ({"top_percent": 50}, RANKED[:6]),  # ceil(11 * 0.5)
        ({"top_percent": 10}, RANKED[:2]),  # ceil(1.1)
        ({"min_score": 0.7}, RANKED[:5]),  # m03 0.78 in, m04 0.67 out
        ({"min_score": 1.2}, ["m09", "m06"]),  # above 1 only with the history term
        ({"top_n": 5, "min_score": 0.95}, RANKED[:3]),  # the smallest wins (m01 = 1.0)
    ],
)
def test_size_rules(service: Service, size: dict[str, Any], expected: list[str]) -> None:
    assert member_ids(service, {"seed": TEA, "size": size}) == expected


def test_seed_types(service: Service) -> None:
    # coffee: (0, c, 0) seed; m11 (no coffee taste) bought cof2, an item of the category: +2;
    # then m10 (c = 1), m08 (0.5), and the rest tie at 0 in snapshot order
    coffee = scored(service, {"seed": {"categories": ["coffee"]}, "size": {"top_n": 5}})
    assert list(coffee) == list(COFFEE_SCORES)[:5]
    assert list(coffee.values()) == pytest.approx(list(COFFEE_SCORES.values())[:5], abs=1e-6)
    # the winter tag is on tea1 and cake1, weighed 3 : 1 by their buyers in the snapshot; m11
    # bought cake1, so it gains from the tag's items; uniform weights or the trending prior
    # (tea1 0.5, cake1 1.0) would give other scores
    winter = scored(service, {"seed": {"item_tags": ["winter"]}, "size": {"top_percent": 100}})
    assert list(winter) == list(WINTER_SCORES)
    assert list(winter.values()) == pytest.approx(list(WINTER_SCORES.values()), abs=1e-6)
    # lookalike of m10 (0.05, 1, 0): the pure m (no normalisation, no history); m08 is the
    # closest; m10 itself is left out
    like = create(service, {"seed": {"members": ["m10"]}, "size": {"top_n": 3}})
    assert {m["member_id"]: m["score"] for m in like["preview"]} == pytest.approx(
        LOOKALIKE_M10_SCORES, abs=1e-6
    )
    assert [m["member_id"] for m in like["preview"]] == list(LOOKALIKE_M10_SCORES)
    assert like["counts"]["excluded_seed_member"] == 1


def test_contact_cap_excludes_members_of_sent_audiences(service: Service) -> None:
    first = create(service, {"seed": TEA, "size": {"top_n": 3}})
    sent = service.post(f"/v1/audiences/{first['id']}/sent", Role.MARKETER)
    assert sent.status_code == 200, sent.text
    assert sent.json()["contacts"] == 3
    assert sent.json()["recorded"] is True
    again = service.post(f"/v1/audiences/{first['id']}/sent", Role.MARKETER).json()
    assert again["recorded"] is False
    assert again["contacts"] == 3
    assert again["sent_at"] == sent.json()["sent_at"]
    shown = service.get(f"/v1/audiences/{first['id']}", Role.MARKETER).json()
    assert shown["sent"]["contacts"] == 3

    capped = create(
        service, {"seed": TEA, "exclude": {"contacted_within_days": 7}, "size": {"top_n": 3}}
    )
    assert [m["member_id"] for m in first["preview"]] == ["m09", "m06", "m01"]
    assert [m["member_id"] for m in capped["preview"]] == ["m02", "m03", "m04"]
    assert capped["counts"]["excluded_contacted"] == 3
    # sent once, not twice: the sends set has one entry
    k = RedisKeys(service.settings.redis_prefix or "recsys")
    assert service.redis is not None
    assert service.redis.zcard(k.audience_sends) == 1


def test_bought_seed_exclusion_uses_the_snapshot_and_events(service: Service) -> None:
    body = {"seed": TEA, "exclude": {"bought_seed_within_days": 30}, "size": {"top_n": 4}}
    # snapshot only (as of 2024-06-01): m02 bought tea1 on 05-25 (m04's, m06's and m09's are
    # older, m05 returned)
    before = create(service, body)
    assert [m["member_id"] for m in before["preview"]] == ["m09", "m06", "m01", "m03"]
    assert before["counts"]["excluded_bought_seed"] == 1
    response = service.post(
        "/v1/events", Role.INGEST, json={"events": [event("b1", "m01", "tea1", day=10)]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1
    after = create(service, body)
    assert [m["member_id"] for m in after["preview"]] == ["m09", "m06", "m03", "m04"]
    assert after["counts"]["excluded_bought_seed"] == 2
    # a coffee seed is not excluded by a tea purchase
    coffee = create(
        service,
        {
            "seed": {"items": ["cof1"]},
            "exclude": {"bought_seed_within_days": 30},
            "size": {"top_n": 2},
        },
    )
    assert coffee["counts"]["excluded_bought_seed"] == 0


@pytest.mark.parametrize("role", [Role.STOREFRONT, Role.INGEST])
def test_roles_without_audiences_get_403(service: Service, role: Role) -> None:
    audience = create(service, {"seed": TEA, "size": {"top_n": 1}})
    base = f"/v1/audiences/{audience['id']}"
    responses = [
        service.post("/v1/audiences", role, json={"seed": TEA, "size": {"top_n": 1}}),
        service.get(base, role),
        service.get(f"{base}/members", role),
        service.get(f"{base}/export.csv", role),
        service.post(f"{base}/sent", role),
    ]
    assert [r.status_code for r in responses] == [403] * 5
    assert all(r.headers["content-type"] == "application/problem+json" for r in responses)
    assert service.client.get(base).status_code == 401  # no key at all


def test_admin_may_use_audiences(service: Service) -> None:
    assert create(service, {"seed": TEA, "size": {"top_n": 1}}, role=Role.ADMIN)["size"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seed": TEA, "filters": {"tiers": ["golden"]}, "size": {"top_n": 1}}, "filters.tiers[0]"),
        ({"seed": {}, "size": {"top_n": 1}}, "seed"),
        ({"seed": TEA, "size": {"top_n": 0}}, "size.top_n"),
        ({"seed": TEA, "size": {}}, "size"),
        ({"seed": TEA, "size": {"top_n": 1}, "filtres": {}}, "filtres"),
        (
            {"seed": TEA, "filters": {"lifecycle": ["dormant"]}, "size": {"top_n": 1}},
            "filters.lifecycle[0]",
        ),
        ({"seed": {"items": ["nope"]}, "size": {"top_n": 1}}, "seed"),
    ],
)
def test_bad_definitions_name_the_field(service: Service, body: dict[str, Any], field: str) -> None:
    response = service.post("/v1/audiences", Role.MARKETER, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["errors"][0]["field"] == field
    assert problem["detail"].startswith(f"{field}:")


def test_a_body_that_is_not_an_object_is_422(service: Service) -> None:
    response = service.post("/v1/audiences", Role.MARKETER, json=["seed"])
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("audience_id", ["aud_0123456789abcdef", "nope", "aud_%2A"])
def test_unknown_audience_is_404(service: Service, audience_id: str) -> None:
    for response in (
        service.get(f"/v1/audiences/{audience_id}", Role.MARKETER),
        service.get(f"/v1/audiences/{audience_id}/members", Role.MARKETER),
        service.get(f"/v1/audiences/{audience_id}/export.csv", Role.MARKETER),
        service.post(f"/v1/audiences/{audience_id}/sent", Role.MARKETER),
    ):
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"


def test_audiences_are_kept_with_a_ttl(service: Service) -> None:
    audience = create(service, {"seed": TEA, "size": {"top_n": 2}})
    k = RedisKeys(service.settings.redis_prefix or "recsys")
    assert service.redis is not None
    for key in (k.audience_meta(audience["id"]), k.audience_rows(audience["id"])):
        ttl = service.redis.ttl(key)
        assert 29 * 86400 < ttl <= 30 * 86400


def test_redis_down_gives_503(
    audience_bundle: Path, audience_snapshot: Path, redis_backend: RedisBackend
) -> None:
    if redis_backend.name != "redis-server":
        pytest.skip("one backend is enough")
    settings = Settings(
        model_uri=str(audience_bundle),
        redis_url="redis://127.0.0.1:1/0",  # nothing listens there
        api_keys=keys(),
        keys_source="tests",
        model_poll_seconds=0,
        redis_retry_seconds=0.0,
        snapshot=audience_snapshot,
    )
    with running(settings) as client:
        svc = Service(client, settings, None)
        for response in (
            svc.post("/v1/audiences", Role.MARKETER, json={"seed": TEA, "size": {"top_n": 1}}),
            svc.get("/v1/audiences/aud_0123456789abcdef", Role.MARKETER),
            svc.post("/v1/audiences/aud_0123456789abcdef/sent", Role.MARKETER),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert "Retry-After" in response.headers


def test_audiences_need_no_snapshot_folder(
    settings: Settings, audience_snapshot: Path, tmp_path: Path
) -> None:
    # RECSYS_SNAPSHOT is not read by audiences (only by the restore of an empty store): a
    # folder that does not exist changes nothing; the summary names the materialized snapshot
    with running(replace(settings, snapshot=tmp_path / "gone")) as client:
        audience = create(Service(client, settings, None), {"seed": TEA, "size": {"top_n": 1}})
    assert audience["snapshot"] == {"path": str(audience_snapshot.resolve()), "as_of": "2024-06-01"}
    assert [m["member_id"] for m in audience["preview"]] == ["m09"]


def unavailable(service: Service) -> dict[str, Any]:
    response = service.post(
        "/v1/audiences", Role.MARKETER, json={"seed": TEA, "size": {"top_n": 1}}
    )
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    problem: dict[str, Any] = response.json()
    return problem


def test_a_version_without_audience_tables_is_503(service: Service) -> None:
    assert create(service, {"seed": TEA, "size": {"top_n": 1}})["size"] == 1  # scorer cached
    k = RedisKeys(service.settings.redis_prefix or "recsys")
    assert service.redis is not None
    version = service.redis.get(k.active)
    assert isinstance(version, bytes)
    service.redis.delete(k.audience_columns(version.decode()))  # as an older recsys loads
    problem = unavailable(service)
    assert f"version {version.decode()} has no audience tables" in problem["detail"]
    assert "recsys features materialize" in problem["detail"]
    service.redis.delete(k.active)  # nothing loaded
    assert "no active snapshot version" in unavailable(service)["detail"]


def test_a_new_snapshot_version_is_picked_up(
    service: Service, audience_snapshot: Path, tmp_path: Path
) -> None:
    gold = {"seed": TEA, "filters": {"tiers": ["gold"]}, "size": {"top_percent": 100}}
    assert "m01" in scored(service, gold)
    # m01 is no longer gold in the next snapshot; the running service uses it at once
    changed = shutil.copytree(audience_snapshot, tmp_path / "next")
    members = pl.read_parquet(changed / "members.parquet")
    members.with_columns(
        pl.when(pl.col("member_id") == "m01").then(pl.lit("silver")).otherwise("tier").alias("tier")
    ).write_parquet(changed / "members.parquet")
    store = connect(service.settings.redis_url, prefix=service.settings.redis_prefix)
    try:
        materialize(changed, store)
    finally:
        store.close()
    after = create(service, gold)
    assert "m01" not in [m["member_id"] for m in after["preview"]]
    assert after["snapshot"]["path"] == str(changed.resolve())


def test_member_ids_survive_the_fixed_width_records(redis_backend: RedisBackend) -> None:
    import numpy as np

    from serving.audience_store import AudienceStore, Labels, decode_ids, encode_ids, make_records

    ids = np.asarray(["a", "ünïcødé-ü", "b,c", 'q"uote'], dtype=np.str_)
    encoded = encode_ids(ids)
    assert decode_ids(encoded).tolist() == ids.tolist()
    store = AudienceStore(RedisKeys(redis_backend.prefix), ttl_days=1, history_days=1)
    codes = np.zeros(4, np.int16)
    records = make_records(
        encoded, np.ones(4, np.float32), np.ones(4, np.float32), codes, codes, codes
    )
    client: redis.Redis = redis_backend.client
    labels = Labels(("t",), ("s",), ("l",))
    store.save(client, "aud_00000000000000aa", records, labels, {"x": 1})
    stored = store.load(client, "aud_00000000000000aa")
    assert decode_ids(store.read(client, stored, 1, 2)["id"]).tolist() == ids[1:3].tolist()
