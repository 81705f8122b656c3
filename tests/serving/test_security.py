"""API keys and roles (401/403 as problem+json), open mode, settings validation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from serving.app import create_app
from serving.security import KeyRing, Role, hash_key, key_file_entry, load_api_keys, new_key
from serving.settings import Settings, SettingsError, is_loopback, load_settings
from tests.serving.conftest import TOKENS, Service, event, running

ROUTES = {
    "recommendations": ("GET", "/v1/members/m_tea/recommendations", None),
    "similar": ("GET", "/v1/items/tea1/similar", None),
    "profile": ("GET", "/v1/members/m_tea/profile", None),
    "events": ("POST", "/v1/events", {"events": [event("s1", "m_tea", "cof1")]}),
    "reload": ("POST", "/v1/models/reload", None),
    "current": ("GET", "/v1/models/current", None),
}
ALLOWED = {
    Role.STOREFRONT: {"recommendations", "similar", "current"},
    Role.MARKETER: {"profile", "current"},
    Role.INGEST: {"events", "current"},
    Role.ADMIN: set(ROUTES),
}


def call(service: Service, route: str, headers: dict[str, str]) -> int:
    method, path, body = ROUTES[route]
    response = service.client.request(method, path, headers=headers, json=body)
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.text
    return int(response.status_code)


@pytest.mark.parametrize("role", list(Role))
def test_each_role_reaches_only_its_endpoints(service: Service, role: Role) -> None:
    for route in ROUTES:
        status = call(service, route, {"Authorization": f"Bearer {TOKENS[role]}"})
        assert (status == 200) == (route in ALLOWED[role]), (role, route, status)
        if route not in ALLOWED[role]:
            assert status == 403


def test_missing_or_wrong_key_is_401(service: Service) -> None:
    for route in ROUTES:
        assert call(service, route, {}) == 401
        assert call(service, route, {"Authorization": "Bearer rk_wrong"}) == 401
    response = service.client.get("/v1/members/m_tea/recommendations")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["title"] == "Authentication required"


def test_x_api_key_header_works(service: Service) -> None:
    headers = {"X-API-Key": TOKENS[Role.STOREFRONT]}
    assert call(service, "recommendations", headers) == 200


def test_health_and_metrics_need_no_key(service: Service) -> None:
    assert service.client.get("/healthz").status_code == 200
    assert service.client.get("/readyz").status_code == 200
    assert service.client.get("/metrics").status_code == 200


def test_open_mode_serves_loopback_only(base_settings: Settings) -> None:
    settings = replace(base_settings, api_keys=(), keys_source="none")
    with running(settings) as client:
        assert client.get("/v1/members/m_tea/recommendations").status_code == 200
        assert client.post("/v1/models/reload").status_code == 200
    with TestClient(create_app(settings), client=("10.1.2.3", 5000)) as remote_client:
        response = remote_client.get("/v1/members/m_tea/recommendations")
        assert response.status_code == 403
        assert "open mode" in response.json()["detail"]


def test_open_mode_refuses_to_bind_beyond_loopback() -> None:
    open_settings = Settings(api_keys=())
    open_settings.check_bind("127.0.0.1")
    open_settings.check_bind("::1")
    with pytest.raises(SettingsError, match=r"refusing to bind 0\.0\.0\.0"):
        open_settings.check_bind("0.0.0.0")
    with pytest.raises(SettingsError, match="no API keys"):
        load_settings({"RECSYS_HOST": "0.0.0.0"})
    keyed = load_settings({"RECSYS_HOST": "0.0.0.0", "RECSYS_API_KEYS": f"admin:{hash_key('k')}"})
    assert not keyed.open_mode
    assert keyed.host == "0.0.0.0"
    assert is_loopback("localhost")
    assert is_loopback("127.0.0.2")
    assert not is_loopback("10.0.0.1")


def test_keys_are_stored_hashed_and_matched(tmp_path: Path) -> None:
    token = new_key()
    assert token.startswith("rk_")
    assert len(token) > 40
    path = tmp_path / "keys.toml"
    path.write_text(key_file_entry(Role.MARKETER, token, "crm-tool"))
    assert token not in path.read_text()
    keys = load_api_keys(path, f"storefront:{hash_key('other')}")
    ring = KeyRing(keys)
    found = ring.find(token)
    assert found is not None
    assert found.role is Role.MARKETER
    assert found.name == "crm-tool"
    assert ring.find("other") is not None
    assert ring.find("nope") is None
    assert ring.find("") is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECSYS_CACHE_TTL_SECONDS": "soon"}, "RECSYS_CACHE_TTL_SECONDS='soon' is not an integer"),
        ({"RECSYS_CACHE_TTL_SECONDS": "-1"}, "RECSYS_CACHE_TTL_SECONDS=-1 is outside"),
        ({"RECSYS_INDEX": "ivf"}, "RECSYS_INDEX='ivf': choose auto, exact or hnsw"),
        ({"RECSYS_API_KEYS": "storefront:plaintext-key"}, "64-character hex digest"),
        ({"RECSYS_API_KEYS": f"boss:{'a' * 64}"}, "role 'boss' is not one of"),
        ({"RECSYS_API_KEYS_FILE": "/no/such/keys.toml"}, "no such file"),
        ({"RECSYS_PURCHASED_POLICY": "sometimes"}, "RECSYS_PURCHASED_POLICY"),
        ({"RECSYS_POLICY_FILE": "/no/policy.toml"}, "RECSYS_POLICY_FILE"),
    ],
)
def test_bad_settings_fail_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_settings(env)


def test_keys_file_errors_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text('[[keys]]\nrole = "admin"\n')
    with pytest.raises(SettingsError, match=r"keys\[0\]: needs role and sha256"):
        load_settings({"RECSYS_API_KEYS_FILE": str(path)})
