"""``GET /v1/experiments/current`` on the real app: exposures in the exposure log (Redis, both
backends), purchases in the campaign database's event log (SQLite), the data's time zone
Europe/Berlin. World (tests/experiments/world.py): champion 30 members of whom 6 bought a
recommended item, challenger 20 members of whom 10 did."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from serving.app import create_app
from serving.security import Role
from serving.settings import Settings
from tests.conftest import RedisBackend
from tests.experiments.world import CAKE, TEA, Arm, write_world
from tests.serving.audience_fixtures import audience_settings
from tests.serving.conftest import Service

CHAMPION = Arm("champion", 30, 6, "bundle-champ")
CHALLENGER = Arm("challenger", 20, 10, "bundle-chall")
URL = "/v1/experiments/current"


@contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), client=("127.0.0.1", 50000)) as client:
        yield client


@pytest.fixture
def settings(bundle: Path, snapshot: Path, redis_backend: RedisBackend, tmp_path: Path) -> Settings:
    return audience_settings(
        bundle,
        snapshot,
        redis_backend,
        campaign_db_url=f"sqlite:///{tmp_path / 'campaigns.db'}",
        data_timezone="Europe/Berlin",
        attribution_hours=24.0,
        experiment="exp-api",
    )


@pytest.fixture
def service(settings: Settings, redis_backend: RedisBackend) -> Iterator[Service]:
    with running(settings) as client:
        yield Service(client, settings, redis_backend.client)


def test_report_from_the_exposure_log_and_the_event_log(
    service: Service, settings: Settings, redis_backend: RedisBackend
) -> None:
    assert settings.campaign_db_url is not None
    write_world(
        redis_backend.client,
        redis_backend.prefix,
        settings.campaign_db_url,
        [CHAMPION, CHALLENGER],
        zone="Europe/Berlin",
    )
    response = service.get(URL, Role.MARKETER, params={"days": 7})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["experiment"] == "exp-api"
    assert report["counts"] == {"champion": 30, "challenger": 20}
    assert report["data_timezone"] == "Europe/Berlin"
    variants = {v["variant"]: v for v in report["variants"]}
    assert variants["champion"]["lists_served"] == 30
    assert variants["champion"]["bundle_ids"] == ["bundle-champ"]
    assert variants["challenger"]["converted_recommended"] == 10
    assert variants["challenger"]["converted"] == 10 + CHALLENGER.others
    metrics = {m["name"]: m for m in report["metrics"]}
    primary = metrics["conversion_recommended"]
    assert primary["champion"]["value"] == pytest.approx(6 / 30)
    assert primary["challenger"]["value"] == pytest.approx(10 / 20)
    assert primary["difference"]["estimate"] == pytest.approx(0.3)
    assert primary["difference"]["ci_low"] < 0.3 < primary["difference"]["ci_high"]
    assert primary["difference"]["significant"] is True
    revenue = metrics["revenue_per_member"]
    assert revenue["champion"]["value"] == pytest.approx(CHAMPION.revenue / 30)
    assert revenue["challenger"]["value"] == pytest.approx(CHALLENGER.revenue / 20)
    share = metrics["recommended_revenue_share"]
    assert share["champion"]["value"] == pytest.approx(6 * TEA / (6 * TEA + CHAMPION.others * CAKE))
    assert report["detectable_effect"]["absolute"] > 0
    # the admin may read it too; the period parameter is honoured (nothing 1 day back)
    assert service.get(URL, Role.ADMIN).status_code == 200
    recent = service.get(URL, Role.MARKETER, params={"days": 1}).json()
    assert recent["counts"] == {"champion": 0, "challenger": 0}


def test_roles_and_bad_input(service: Service) -> None:
    for role in (Role.STOREFRONT, Role.INGEST):
        response = service.get(URL, role)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/problem+json")
    assert service.client.get(URL).status_code == 401
    for days in (0, 91, -1):
        response = service.get(URL, Role.MARKETER, params={"days": days})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "query.days"


def test_an_empty_experiment_answers_without_numbers(service: Service) -> None:
    response = service.get(URL, Role.MARKETER)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["counts"] == {"champion": 0, "challenger": 0}
    assert report["metrics"][0]["difference"]["estimate"] is None
    assert "No challenger is configured" in report["notes"][0]


def test_503_without_a_campaign_database(
    bundle: Path, snapshot: Path, redis_backend: RedisBackend
) -> None:
    settings = audience_settings(bundle, snapshot, redis_backend)  # campaign_db_url None
    with running(settings) as client:
        response = Service(client, settings, redis_backend.client).get(URL, Role.MARKETER)
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert "no campaign database is configured" in response.json()["detail"]


def test_503_when_the_exposure_log_cannot_be_read(
    bundle: Path, snapshot: Path, redis_backend: RedisBackend, tmp_path: Path
) -> None:
    settings = audience_settings(
        bundle,
        snapshot,
        redis_backend,
        campaign_db_url=f"sqlite:///{tmp_path / 'campaigns.db'}",
        redis_url="redis://127.0.0.1:1/0",
        store_auto_restore=False,
    )
    with running(settings) as client:
        response = Service(client, settings, redis_backend.client).get(URL, Role.MARKETER)
    assert response.status_code == 503, response.text
    assert "exposure log" in response.json()["detail"]


def test_openapi_documents_a_closed_typed_body(service: Service) -> None:
    document = service.client.get("/openapi.json").json()
    operation = document["paths"][URL]["get"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ExperimentReport"}
    schemas = document["components"]["schemas"]
    for name in ("ExperimentReport", "ExperimentMetric", "VariantSummary", "DetectableEffectOut"):
        assert schemas[name]["additionalProperties"] is False, name
    assert {"401", "403", "422", "503"} <= set(operation["responses"])
    assert operation["security"]
