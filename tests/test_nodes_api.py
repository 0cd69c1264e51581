"""Registering compute nodes (admins only) and how the node routes treat unsigned or foreign calls."""

from __future__ import annotations

import base64

import pytest
from nacl.public import PrivateKey
from sqlalchemy import select

from sanctum.db.models import AuditEvent
from sanctum.errors import Denied
from sanctum.jobs import nodes
from sanctum.jobs.node_protocol import auth_header
from sanctum.security import signing


def _node_body(name: str = "node1", **overrides):
    key = signing.new_private_key()
    body = {
        "name": name,
        "public_key": signing.encode_public_key(signing.public_key_raw(key)),
        "sealing_key": base64.b64encode(bytes(PrivateKey.generate().public_key)).decode(),
        "addresses": ["10.0.0.5"],
        "location": "site-a",
    }
    body.update(overrides)
    return body, key


def test_admins_register_list_and_retire_nodes_and_it_is_audited(client, world, runtime):
    body, _ = _node_body()
    r = client.post("/api/v1/admin/nodes", json=body, headers=world.h["admin"])
    assert r.status_code == 201 and r.json()["addresses"] == ["10.0.0.5"]
    assert [n["name"] for n in client.get("/api/v1/admin/nodes", headers=world.h["admin"]).json()] == [
        "node1"
    ]
    assert client.delete("/api/v1/admin/nodes/node1", headers=world.h["admin"]).json()["retired"] is True
    with runtime.db.session(write=False) as db:
        actions = set(db.scalars(select(AuditEvent.action).where(AuditEvent.target == "node1")).all())
    assert actions == {"node.register", "node.retire"}


@pytest.mark.parametrize("who", ["owner", "scientist", "checker", "auditor", "outsider"])
def test_only_admins_manage_nodes(client, world, who):
    body, _ = _node_body()
    assert client.post("/api/v1/admin/nodes", json=body, headers=world.h[who]).status_code == 403
    assert client.get("/api/v1/admin/nodes", headers=world.h[who]).status_code == 403


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"public_key": "ed25519:AAAA"}, "invalid_key"),
        ({"sealing_key": "not base64!"}, "invalid_key"),
        ({"sealing_key": base64.b64encode(b"short").decode()}, "invalid_key"),
        ({"addresses": ["not-an-ip"]}, "invalid_address"),
        ({"addresses": []}, "invalid_address"),
        ({"name": "two words"}, "invalid_name"),
    ],
)
def test_bad_registrations_are_clear_errors(client, world, override, code):
    body, _ = _node_body(**override)
    r = client.post("/api/v1/admin/nodes", json=body, headers=world.h["admin"])
    assert r.status_code == 422 and r.json()["error"]["code"] == code
    assert client.get("/api/v1/admin/nodes", headers=world.h["admin"]).json() == []


def test_a_node_name_is_registered_once(client, world):
    body, _ = _node_body()
    assert client.post("/api/v1/admin/nodes", json=body, headers=world.h["admin"]).status_code == 201
    again, _ = _node_body()
    assert client.post("/api/v1/admin/nodes", json=again, headers=world.h["admin"]).status_code == 409


def test_node_calls_from_other_addresses_or_retired_nodes_are_refused_and_audited(client, world, runtime):
    body, key = _node_body(addresses=["10.0.0.5"])  # the test client calls from "testclient"
    client.post("/api/v1/admin/nodes", json=body, headers=world.h["admin"])
    path = "/api/v1/node/jobs/1/keys"
    header = auth_header("node1", key, "POST", path, b"{}")
    r = client.post(path, content=b"{}", headers={"Authorization": header})
    assert r.status_code == 403 and r.json()["error"]["code"] == "node_address"
    client.delete("/api/v1/admin/nodes/node1", headers=world.h["admin"])
    r = client.post(
        path, content=b"{}", headers={"Authorization": auth_header("node1", key, "POST", path, b"{}")}
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "unregistered_node"
    with runtime.db.session(write=False) as db:
        denied = db.scalars(select(AuditEvent).where(AuditEvent.action == "node.auth")).all()
    assert [e.outcome for e in denied] == ["denied", "denied"]


def test_old_or_tampered_node_requests_are_refused(client, world, runtime):
    body, key = _node_body(addresses=["10.0.0.5"])
    client.post("/api/v1/admin/nodes", json=body, headers=world.h["admin"])
    path = "/api/v1/node/jobs/1/plan"

    def check(header: str, sent: bytes) -> str:
        with runtime.db.session(write=False) as db:
            try:
                nodes.authenticate(db, header, method="POST", path=path, body=sent, ip="10.0.0.5")
            except Denied as exc:
                return exc.code
        return "ok"

    assert check(auth_header("node1", key, "POST", path, b"{}"), b"{}") == "ok"
    assert check(auth_header("node1", key, "POST", path, b"{}", now=1_000_000), b"{}") == "node_clock"
    assert check(auth_header("node1", key, "POST", path, b"{}"), b'{"x": 1}') == "node_signature"
    assert check(auth_header("node1", key, "POST", "/api/v1/node/jobs/2/plan", b"{}"), b"{}") == (
        "node_signature"
    )
