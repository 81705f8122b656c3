"""Campaigns through the API: an audience with a holdout, its treatment and control exports, the
send recorded in the campaign database (SQLite here; the store suite runs on PostgreSQL too),
the contact cap counting only contacted members, and the lift report from posted events."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.campaigns import control_mask
from serving.security import Role
from tests.conftest import RedisBackend
from tests.serving.audience_fixtures import (
    TEA1_SCORES,
    audience_settings,
    write_audience_bundle,
    write_audience_snapshot,
)
from tests.serving.conftest import Service, running

TEA = {"items": ["tea1"]}
EVERYONE = {"seed": TEA, "size": {"top_n": 100}}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audience_bundle(tmp_path_factory.mktemp("cmp-bundle") / "b")


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audience_snapshot(tmp_path_factory.mktemp("cmp-snapshot") / "snap")


@pytest.fixture
def service(
    bundle: Path, snapshot: Path, redis_backend: RedisBackend, tmp_path: Path
) -> Iterator[Service]:
    settings = audience_settings(
        bundle, snapshot, redis_backend, campaign_db_url=f"sqlite:///{tmp_path / 'campaigns.db'}"
    )
    with running(settings) as client:
        yield Service(client, settings, redis_backend.client)


def _create(service: Service, body: dict[str, Any]) -> dict[str, Any]:
    response = service.post("/v1/audiences", Role.MARKETER, json=body)
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


def _csv_ids(service: Service, url: str) -> list[str]:
    response = service.get(url, Role.MARKETER)
    assert response.status_code == 200, response.text
    return [row["member_id"] for row in csv.DictReader(io.StringIO(response.text))]


def test_holdout_splits_the_audience_deterministically(service: Service) -> None:
    audience = _create(service, EVERYONE | {"holdout": {"percent": 40, "salt": "spring"}})
    aid = audience["id"]
    everyone = list(TEA1_SCORES)  # the whole audience, best first
    in_control = control_mask(aid, np.asarray(everyone), 40.0, "spring")
    control = [m for m, c in zip(everyone, in_control, strict=True) if c]
    treatment = [m for m, c in zip(everyone, in_control, strict=True) if not c]
    assert control
    assert treatment
    assert audience["counts"]["control"] == len(control)
    assert audience["counts"]["treatment"] == audience["size"] == len(treatment)
    assert audience["holdout"]["percent"] == 40
    assert audience["holdout"]["salt"] == "spring"
    assert _csv_ids(service, f"/v1/audiences/{aid}/export.csv") == treatment
    assert _csv_ids(service, f"/v1/audiences/{aid}/control.csv") == control
    page = service.get(f"/v1/audiences/{aid}/members", Role.MARKETER).json()
    assert [m["member_id"] for m in page["members"]] == treatment


@pytest.mark.parametrize("percent", [0, 100, -5, 150])
def test_holdout_out_of_range_names_the_field(service: Service, percent: int) -> None:
    response = service.post(
        "/v1/audiences", Role.MARKETER, json=EVERYONE | {"holdout": {"percent": percent}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "holdout.percent"


def test_no_control_csv_without_a_holdout(service: Service) -> None:
    aid = _create(service, EVERYONE)["id"]
    response = service.get(f"/v1/audiences/{aid}/control.csv", Role.MARKETER)
    assert response.status_code == 404
    assert "holdout" in response.json()["detail"]


def _send(service: Service, aid: str) -> dict[str, Any]:
    response = service.post(f"/v1/audiences/{aid}/sent", Role.MARKETER)
    assert response.status_code == 200, response.text
    out: dict[str, Any] = response.json()
    return out


def test_sent_records_the_campaign_and_caps_only_contacted_members(service: Service) -> None:
    audience = _create(service, EVERYONE | {"holdout": {"percent": 40, "salt": "spring"}})
    aid = audience["id"]
    sent = _send(service, aid)
    assert sent["campaign_id"] == aid
    assert sent["contacts"] == audience["counts"]["treatment"]
    assert sent["control"] == audience["counts"]["control"]
    assert _send(service, aid)["recorded"] is False  # idempotent
    campaign = service.get(f"/v1/campaigns/{aid}", Role.MARKETER).json()
    assert campaign["counts"]["treatment"] == audience["counts"]["treatment"]
    assert campaign["counts"]["control"] == audience["counts"]["control"]
    assert campaign["holdout_percent"] == 40
    assert campaign["definition"]["seed"] == TEA
    listed = service.get("/v1/campaigns", Role.MARKETER).json()
    assert [c["id"] for c in listed["campaigns"]] == [aid]
    # the contact cap leaves out the treatment group only: control members were not contacted
    capped = _create(service, EVERYONE | {"exclude": {"contacted_within_days": 7}})
    kept = _csv_ids(service, f"/v1/audiences/{capped['id']}/export.csv")
    control = _csv_ids(service, f"/v1/audiences/{aid}/control.csv")
    assert sorted(kept) == sorted(control)


def _event(event_id: str, member: str, item: str, when: datetime, amount: float) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "member_id": member,
        "order_id": f"o-{event_id}",
        "item_id": item,
        "ts": when.replace(tzinfo=None).isoformat(),
        "quantity": 1,
        "amount": amount,
    }


def test_report_from_posted_events(service: Service) -> None:
    audience = _create(service, EVERYONE | {"holdout": {"percent": 40, "salt": "spring"}})
    aid = audience["id"]
    _send(service, aid)
    treatment = _csv_ids(service, f"/v1/audiences/{aid}/export.csv")
    control = _csv_ids(service, f"/v1/audiences/{aid}/control.csv")
    soon = datetime.now(UTC) + timedelta(minutes=1)
    events = [
        _event("t1", treatment[0], "tea1", soon, 10.0),
        _event("t2", treatment[1], "tea1", soon, 30.0),
        _event("t3", treatment[1], "cof1", soon, 5.0),
        _event("c1", control[0], "cof1", soon, 8.0),
    ]
    posted = service.post("/v1/events", Role.INGEST, json={"events": events})
    assert posted.status_code == 200, posted.text
    response = service.get(f"/v1/campaigns/{aid}/report", Role.MARKETER, params={"window_days": 30})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["counts"]["treatment"] == len(treatment)
    assert report["counts"]["control"] == len(control)
    metrics = {m["name"]: m for m in report["metrics"]}
    seed = metrics["conversion_seed"]
    assert seed["treatment"]["value"] == pytest.approx(2 / len(treatment))
    assert seed["control"]["value"] == 0.0
    revenue = metrics["revenue_per_member"]
    assert revenue["treatment"]["value"] == pytest.approx(45.0 / len(treatment))
    assert revenue["control"]["value"] == pytest.approx(8.0 / len(control))
    diff = seed["difference"]
    assert diff["ci_low"] <= diff["estimate"] <= diff["ci_high"]
    # a campaign this small says how small an effect it could have detected
    assert report["detectable_effect"]


def test_report_bad_input(service: Service) -> None:
    missing = service.get("/v1/campaigns/aud_nope/report", Role.MARKETER)
    assert missing.status_code == 404
    aid = _create(service, EVERYONE | {"holdout": {"percent": 20}})["id"]
    _send(service, aid)
    for window in (0, -3, 400):
        response = service.get(
            f"/v1/campaigns/{aid}/report", Role.MARKETER, params={"window_days": window}
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "query.window_days"


def test_campaign_roles(service: Service) -> None:
    for role in (Role.STOREFRONT, Role.INGEST):
        assert service.get("/v1/campaigns", role).status_code == 403


def test_a_category_seed_counts_every_item_of_the_category(service: Service) -> None:
    """The campaign records the items a category seed stands for: buying any tea is a seed
    conversion, buying coffee is not."""
    body = {"seed": {"categories": ["tea"]}, "size": {"top_n": 100}, "holdout": {"percent": 40}}
    aid = _create(service, body)["id"]
    _send(service, aid)
    treatment = _csv_ids(service, f"/v1/audiences/{aid}/export.csv")
    soon = datetime.now(UTC) + timedelta(minutes=1)
    events = [
        _event("k1", treatment[0], "tea2", soon, 4.0),
        _event("k2", treatment[1], "cof1", soon, 4.0),
    ]
    assert service.post("/v1/events", Role.INGEST, json={"events": events}).status_code == 200
    report = service.get(f"/v1/campaigns/{aid}/report", Role.MARKETER).json()
    metrics = {m["name"]: m for m in report["metrics"]}
    assert metrics["conversion_seed"]["treatment"]["value"] == pytest.approx(1 / len(treatment))
    assert metrics["conversion_any"]["treatment"]["value"] == pytest.approx(2 / len(treatment))


def test_rank_by_uplift_with_a_loaded_model(
    bundle: Path, snapshot: Path, redis_backend: RedisBackend, tmp_path: Path
) -> None:
    """With RECSYS_UPLIFT_MODEL the audience is ordered by the model's predicted uplift on the
    features of engine.campaigns.features; without one the request is a 409."""
    from engine.campaigns import fit_uplift
    from engine.campaigns.features import CATEGORICAL, NUMERIC, uplift_features
    from feature_store.member_columns import read_audience_columns

    columns = read_audience_columns(snapshot).members
    rng = np.random.default_rng(5)
    rows = rng.integers(0, len(columns), 600)
    scores = rng.normal(size=600).astype(np.float32)
    features = uplift_features(columns, rows, scores)
    treated = rng.random(600) < 0.5
    # planted: contacting helps members with a high p_alive
    p_alive = np.nan_to_num(columns.p_alive[rows], nan=0.0)
    converted = rng.random(600) < 0.1 + 0.6 * treated * p_alive
    model = fit_uplift(features, treated, converted, categorical=CATEGORICAL, numeric=NUMERIC)
    path = tmp_path / "uplift.json"
    model.save(path)

    settings = audience_settings(
        bundle,
        snapshot,
        redis_backend,
        campaign_db_url=f"sqlite:///{tmp_path / 'campaigns.db'}",
        uplift_model=path,
    )
    body = {"seed": TEA, "size": {"top_n": 5, "rank_by": "uplift"}}
    with running(settings) as client:
        service = Service(client, settings, redis_backend.client)
        ranked = _csv_ids(service, f"/v1/audiences/{_create(service, body)['id']}/export.csv")
    index = {m: i for i, m in enumerate(columns.member_ids.tolist())}
    members = list(TEA1_SCORES)
    member_rows = np.asarray([index[m] for m in members])
    member_scores = np.asarray([TEA1_SCORES[m] for m in members], dtype=np.float32)
    predicted = model.predict(uplift_features(columns, member_rows, member_scores))
    order = sorted(range(len(members)), key=lambda i: (-np.float32(predicted[i]), member_rows[i]))
    assert ranked == [members[i] for i in order][:5]


def test_rank_by_uplift_without_a_model_is_a_conflict(service: Service) -> None:
    body = {"seed": TEA, "size": {"top_n": 5, "rank_by": "uplift"}}
    response = service.post("/v1/audiences", Role.MARKETER, json=body)
    assert response.status_code == 409
    assert "RECSYS_UPLIFT_MODEL" in response.json()["detail"]
