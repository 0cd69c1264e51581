"""Projects and members: creation, isolation between projects, owners manage, the last owner stays."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.conftest import PASSWORD

from sanctum.db.models import AuditEvent


def test_creator_becomes_owner(client, world) -> None:
    r = client.get("/api/v1/projects/alpha", headers=world.h["owner"])
    assert r.json()["role"] == "data_owner" and r.json()["title"] == "Alpha"


def test_each_member_sees_only_their_projects(client, world) -> None:
    names = lambda who: [p["name"] for p in client.get("/api/v1/projects", headers=world.h[who]).json()]  # noqa: E731
    assert names("owner") == ["alpha"]
    assert names("scientist") == ["alpha"]
    assert names("other_owner") == ["beta"]
    assert names("outsider") == []
    assert names("admin") == []  # admins are not members and see no project


def test_another_projects_objects_are_not_found(client, world) -> None:
    for path in (
        "/api/v1/projects/beta",
        "/api/v1/projects/beta/members",
        "/api/v1/projects/beta/audit",
        "/api/v1/projects/does-not-exist",
    ):
        r = client.get(path, headers=world.h["owner"])
        assert r.status_code == 404 and r.json()["error"]["message"] == "project not found"


def test_duplicate_and_invalid_names(client, world) -> None:
    assert (
        client.post("/api/v1/projects", json={"name": "alpha"}, headers=world.h["scientist"]).status_code
        == 409
    )
    for name in ("", "Alpha", "a/b", "a\\b", "..", "-x", "x-", "a b", "a\x00", "a" * 64, "é", "a.b"):
        r = client.post("/api/v1/projects", json={"name": name}, headers=world.h["scientist"])
        assert r.status_code == 422, name
        assert r.json()["error"]["code"] in ("invalid_name", "invalid_input")
    r = client.post(
        "/api/v1/projects", json={"name": "ok", "title": "bad\x07title"}, headers=world.h["scientist"]
    )
    assert r.status_code == 422


def test_users_not_allowed_to_create_projects(client, people) -> None:
    person = people.create("no-create@example.org", can_create_projects=False)
    r = client.post("/api/v1/projects", json={"name": "mine"}, headers=people.headers(person))
    assert r.status_code == 403


def test_admin_creates_users_and_users_cannot(client, world, runtime) -> None:
    body = {"email": "new@example.org", "password": PASSWORD}
    assert client.post("/api/v1/admin/users", json=body, headers=world.h["owner"]).status_code == 403
    r = client.post("/api/v1/admin/users", json=body, headers=world.h["admin"])
    assert r.status_code == 201 and r.json()["can_create_projects"] is True and "password" not in r.text
    assert client.post("/api/v1/admin/users", json=body, headers=world.h["admin"]).status_code == 409
    weak = {"email": "weak@example.org", "password": "password1234"}
    r = client.post("/api/v1/admin/users", json=weak, headers=world.h["admin"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "weak_password"
    short = {"email": "short@example.org", "password": "Tr0ub4dor&3"}
    assert client.post("/api/v1/admin/users", json=short, headers=world.h["admin"]).status_code == 422
    bad = {"email": "not an email", "password": PASSWORD}
    assert client.post("/api/v1/admin/users", json=bad, headers=world.h["admin"]).status_code == 422
    listed = client.get("/api/v1/admin/users", headers=world.h["admin"]).json()
    assert "new@example.org" in [u["email"] for u in listed]


# --------------------------------------------------------------------------- members


def test_owner_manages_members(client, world, runtime) -> None:
    h = world.h["owner"]
    r = client.post(
        "/api/v1/projects/alpha/members", json={"email": world.outsider.email, "role": "auditor"}, headers=h
    )
    assert r.status_code == 201
    assert client.get("/api/v1/projects/alpha", headers=world.h["outsider"]).json()["role"] == "auditor"
    r = client.patch(
        f"/api/v1/projects/alpha/members/{world.outsider.email}", json={"role": "data_scientist"}, headers=h
    )
    assert r.status_code == 200 and r.json()["role"] == "data_scientist"
    assert (
        client.delete(f"/api/v1/projects/alpha/members/{world.outsider.email}", headers=h).status_code == 204
    )
    assert client.get("/api/v1/projects/alpha", headers=world.h["outsider"]).status_code == 404
    with runtime.db.session(write=False) as db:
        actions = db.scalars(
            sa.select(AuditEvent.action).where(
                AuditEvent.target == world.outsider.email, AuditEvent.action.startswith("member.")
            )
        ).all()
    assert actions == ["member.add", "member.set_role", "member.remove"]


def test_member_errors(client, world) -> None:
    h = world.h["owner"]
    url = "/api/v1/projects/alpha/members"
    assert (
        client.post(url, json={"email": world.scientist.email, "role": "auditor"}, headers=h).status_code
        == 409
    )
    r = client.post(url, json={"email": "ghost@example.org", "role": "auditor"}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
    r = client.post(url, json={"email": world.outsider.email, "role": "superuser"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_role"
    assert client.patch(f"{url}/ghost@example.org", json={"role": "auditor"}, headers=h).status_code == 404
    assert client.delete(f"{url}/not-an-email", headers=h).status_code == 422


def test_last_owner_cannot_leave_or_be_demoted(client, world) -> None:
    h = world.h["owner"]
    url = f"/api/v1/projects/alpha/members/{world.owner.email}"
    r = client.delete(url, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "last_owner"
    assert client.patch(url, json={"role": "data_scientist"}, headers=h).status_code == 409
    # With a second owner, the first may step down.
    client.patch(
        f"/api/v1/projects/alpha/members/{world.auditor.email}", json={"role": "data_owner"}, headers=h
    )
    assert client.patch(url, json={"role": "data_scientist"}, headers=h).status_code == 200


def test_dynamic_roles_one_person_two_projects(client, world) -> None:
    """The same person is owner of one project and scientist in another; each context stands alone."""
    client.post(
        "/api/v1/projects/beta/members",
        json={"email": world.owner.email, "role": "data_scientist"},
        headers=world.h["other_owner"],
    )
    h = world.h["owner"]
    roles = {p["name"]: p["role"] for p in client.get("/api/v1/projects", headers=h).json()}
    assert roles == {"alpha": "data_owner", "beta": "data_scientist"}
    assert client.get("/api/v1/projects/alpha/audit", headers=h).status_code == 200
    assert client.get("/api/v1/projects/beta/audit", headers=h).status_code == 403
    r = client.post(
        "/api/v1/projects/beta/members", json={"email": world.outsider.email, "role": "auditor"}, headers=h
    )
    assert r.status_code == 403


def test_promoted_owner_must_enrol_2fa(client, world) -> None:
    """Becoming a data owner makes 2FA mandatory at once, on existing credentials too."""
    h = world.h["scientist"]
    assert client.get("/api/v1/projects", headers=h).status_code == 200
    client.patch(
        f"/api/v1/projects/alpha/members/{world.scientist.email}",
        json={"role": "data_owner"},
        headers=world.h["owner"],
    )
    r = client.get("/api/v1/projects", headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "enrol_2fa"
    assert client.get("/api/v1/me", headers=h).json()["must_enrol_2fa"] is True


@pytest.mark.parametrize("email", ["owner@example.org", "OWNER@EXAMPLE.ORG"])
def test_member_email_is_normalised(client, world, email) -> None:
    r = client.patch(
        f"/api/v1/projects/alpha/members/{email}", json={"role": "data_owner"}, headers=world.h["owner"]
    )
    assert r.status_code == 200
