"""Bad input gets a clear 4xx in one shape; nothing becomes a 500."""

from __future__ import annotations

import pytest

ERROR_KEYS = {"code", "message"}


def _error(r) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    return body["error"]


def test_malformed_json(client, world) -> None:
    r = client.post(
        "/api/v1/projects",
        content=b'{"name": "x",',
        headers={**world.h["owner"], "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and _error(r)["code"] == "malformed_json"


def test_body_that_is_not_an_object(client, world) -> None:
    for raw in (b"[]", b'"name"', b"null", b"42"):
        r = client.post(
            "/api/v1/projects", content=raw, headers={**world.h["owner"], "Content-Type": "application/json"}
        )
        assert r.status_code == 422, raw
        _error(r)


def test_huge_body_by_content_length(client, world, settings) -> None:
    r = client.post(
        "/api/v1/projects",
        content=b"x" * (settings.max_body_bytes + 1),
        headers={**world.h["owner"], "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and _error(r)["code"] == "payload_too_large"


def test_huge_chunked_body(client, world, settings) -> None:
    def chunks():
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b" " * 65536

    r = client.post(
        "/api/v1/projects", content=chunks(), headers={**world.h["owner"], "Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_unknown_route_and_method(client) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404 and _error(r)["code"] == "not_found"
    r = client.put("/api/v1/auth/token", json={})
    assert r.status_code == 405 and _error(r)["code"] == "method_not_allowed"


@pytest.mark.parametrize("name", ["a/b", "../x", "a\\b", "a\x00b", "a\nb", "\u202eevil", "x" * 500])
def test_names_with_separators_or_control_characters(client, world, name) -> None:
    r = client.post("/api/v1/projects", json={"name": name}, headers=world.h["owner"])
    assert r.status_code == 422
    assert "invalid project name" in _error(r)["message"] or _error(r)["code"] == "invalid_input"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/projects", {"name": 1}),
        ("POST", "/api/v1/projects", {"name": None}),
        ("POST", "/api/v1/projects", {"name": "ok", "unexpected": True}),
        ("POST", "/api/v1/projects/alpha/members", {"email": ["x"], "role": "auditor"}),
        ("PATCH", "/api/v1/projects/alpha/members/scientist@example.org", {"role": 7}),
        ("POST", "/api/v1/tokens", {"name": "x", "expires_in_days": "soon"}),
        ("POST", "/api/v1/tokens", {"name": "x", "scopes": "read"}),
        ("GET", "/api/v1/projects/alpha/audit?after=-1", None),
        ("GET", "/api/v1/projects/alpha/audit?limit=abc", None),
        ("DELETE", "/api/v1/tokens/not-a-number", None),
        ("POST", "/api/v1/me/totp/confirm", {"code": "1" * 100}),
    ],
)
def test_wrong_types_are_422_never_500(client, world, method, path, body) -> None:
    r = client.request(method, path, json=body, headers=world.h["owner"])
    assert r.status_code == 422, r.text
    _error(r)


def test_unicode_and_emoji_in_free_text_are_fine(client, world) -> None:
    r = client.post(
        "/api/v1/projects", json={"name": "unicode", "title": "Étude 🧠 Schlaf"}, headers=world.h["owner"]
    )
    assert r.status_code == 201 and r.json()["title"] == "Étude 🧠 Schlaf"


def test_security_headers_on_every_response(client, world) -> None:
    for r in (
        client.get("/healthz"),
        client.get("/api/v1/nothing"),
        client.get("/api/v1/projects", headers=world.h["owner"]),
    ):
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["cache-control"] == "no-store"


def test_unexpected_failure_is_a_bare_500(app, world, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from sanctum.projects import service

    def boom(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "list_for", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/projects", headers=world.h["owner"])
    assert r.status_code == 500 and _error(r)["code"] == "internal_error"
    assert "secret internal detail" not in r.text


def test_openapi_is_served(client) -> None:
    spec = client.get("/api/openapi.json").json()
    for path in (
        "/api/v1/auth/token",
        "/api/v1/me",
        "/api/v1/me/totp",
        "/api/v1/me/totp/confirm",
        "/api/v1/tokens",
        "/api/v1/tokens/{token_id}",
        "/api/v1/projects",
        "/api/v1/projects/{project}",
        "/api/v1/projects/{project}/members",
        "/api/v1/projects/{project}/members/{email}",
        "/api/v1/projects/{project}/audit",
        "/api/v1/audit",
        "/api/v1/admin/users",
    ):
        assert path in spec["paths"], path


def test_a_value_the_database_cannot_take_is_a_400_not_a_500(client, world):
    """PostgreSQL refuses a NUL byte in text where SQLite stores it; either way nothing breaks."""
    r = client.post(
        "/api/v1/projects/alpha/datasets",
        json={"name": "bad", "description": "a\u0000b"},
        headers=world.h["owner"],
    )
    assert r.status_code in (201, 400, 422), r.text
    if r.status_code == 400:
        assert r.json()["error"]["code"] == "invalid_value" and "INSERT" not in r.text
    r = client.get("/api/2.0/mlflow/runs/get", params={"run_id": "ab\u0000cd"}, headers=world.h["owner"])
    assert r.status_code in (400, 404), r.text
