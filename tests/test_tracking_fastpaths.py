"""What the tracking hot paths promise beyond speed: exact JSON, MLflow's latest-value rule, nothing
kept from a refused or failed batch, the commit durability each route gets, and credentials
checked on every call (no cache stands between a revocation and the next request)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, text
from tests.routes import api_routes
from tests.test_tracking_api import M, h, make_run

from sanctum.access.permissions import Permission
from sanctum.accounts import tokens
from sanctum.accounts.tokens import TokenKind
from sanctum.config import TwoFactorPolicy
from sanctum.db.models import AuditEvent
from sanctum.db.session import Database
from sanctum.projects import service as projects
from sanctum.tracking import runlog

TOKENS = "/api/v1/tokens"


def _history(client: Any, hs: dict[str, str], run_id: str, key: str, **page: Any) -> dict[str, Any]:
    r = client.get(
        f"{M}/metrics/get-history", params={"run_id": run_id, "metric_key": key, **page}, headers=hs
    )
    assert r.status_code == 200, r.text
    # Strict JSON: a bare NaN or Infinity in the answer would fail here.
    return json.loads(r.content, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def _run_data(client: Any, hs: dict[str, str], run_id: str) -> dict[str, Any]:
    return client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=hs).json()["run"]["data"]


def test_history_comes_back_exactly_and_pages(client, world) -> None:
    hs = h(world, "scientist")
    _, run_id = make_run(client, hs)
    key = 'top-1 "acc" é✓\\'  # quotes, a backslash and non-ASCII inside the formatted JSON
    values = [0.1, 1e-300, -2.5, 1.7976931348623157e308, "Infinity", "-Infinity", "NaN", 2.5]
    batch = [
        {"key": key, "value": v, "timestamp": 1_700_000_000_000 + i, "step": 2**40 + i}
        for i, v in enumerate(values)
    ]
    r = client.post(f"{M}/runs/log-batch", json={"run_id": run_id, "metrics": batch}, headers=hs)
    assert r.status_code == 200, r.text
    got = _history(client, hs, run_id, key)
    assert "next_page_token" not in got
    assert got["metrics"] == [
        {"key": key, **{k: m[k] for k in ("value", "timestamp", "step")}} for m in batch
    ]
    pages, token = [], None
    while True:
        page = _history(client, hs, run_id, key, max_results=3, **({"page_token": token} if token else {}))
        pages.append([m["step"] for m in page["metrics"]])
        token = page.get("next_page_token")
        if not token:
            break
    assert pages == [[2**40 + i for i in chunk] for chunk in ([0, 1, 2], [3, 4, 5], [6, 7])]
    assert _history(client, hs, run_id, "never-logged") == {"metrics": []}


def test_latest_value_follows_mlflow_order(client, world) -> None:
    """Highest step, then latest timestamp, then the larger value (NaN lowest) — across batches
    and inside one batch, which is what searches filter and sort on."""
    hs = h(world, "scientist")
    _, run_id = make_run(client, hs)

    def log(*points: tuple[str, Any, int, int]) -> None:
        metrics = [{"key": k, "value": v, "timestamp": t, "step": s} for k, v, t, s in points]
        r = client.post(f"{M}/runs/log-batch", json={"run_id": run_id, "metrics": metrics}, headers=hs)
        assert r.status_code == 200, r.text

    log(("a", 5.0, 10, 5), ("b", 1.0, 10, 1), ("c", "NaN", 10, 0))
    log(("a", 3.0, 99, 3))  # an older step later: not the latest
    log(("b", 2.0, 11, 1), ("b", 0.5, 11, 1))  # same step, later timestamp; then the larger value wins
    log(("c", 0.25, 10, 0))  # same step and time: a number beats NaN
    log(("c", "NaN", 10, 0))  # ... and NaN does not beat a number
    latest = {m["key"]: (m["value"], m["step"]) for m in _run_data(client, hs, run_id)["metrics"]}
    assert latest == {"a": (5.0, 5), "b": (2.0, 1), "c": (0.25, 0)}
    assert [m["step"] for m in _history(client, hs, run_id, "a")["metrics"]] == [3, 5]


def test_refused_batch_keeps_nothing(client, world) -> None:
    hs = h(world, "scientist")
    _, run_id = make_run(client, hs)
    before = _run_data(client, hs, run_id)
    good = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    json_headers = {**hs, "content-type": "application/json"}
    params = [{"key": "p", "value": "a"}]
    batch = {"run_id": run_id, "params": params, "metrics": [good, {**good, "key": "LONE", "step": 1}]}
    body = json.dumps(batch).replace("LONE", "\\ud800")  # a lone surrogate, as JSON escapes it
    r = client.post(f"{M}/runs/log-batch", content=body.encode(), headers=json_headers)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    r = client.post(f"{M}/runs/log-batch", content=b'{"run_id": "\xed\xa0\x80"}', headers=json_headers)
    assert (r.status_code, r.json()["error_code"]) == (400, "MALFORMED_REQUEST")  # not UTF-8
    bad_value = {
        "run_id": run_id,
        "params": [{"key": "p", "value": "a"}],
        "metrics": [good, {**good, "value": "x"}],
    }
    r = client.post(f"{M}/runs/log-batch", json=bad_value, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert _run_data(client, hs, run_id) == before
    assert _history(client, hs, run_id, "m") == {"metrics": []}


def test_a_write_failing_midway_rolls_back_the_whole_batch(runtime, client, world, people) -> None:
    """The driver refuses a value after the params and the metric history are already written in
    the transaction: everything goes, on SQLite and on PostgreSQL alike."""
    hs = h(world, "scientist")
    _, run_id = make_run(client, hs)
    secret = people.token(world.scientist)
    with pytest.raises(UnicodeEncodeError), runtime.db.session(durable=False) as db:
        result = tokens.authenticate(
            db, secret, kinds=frozenset({TokenKind.LOGIN}), policy=TwoFactorPolicy.OFF, ip=None
        )
        assert not isinstance(result, tokens.AuthFailure)
        ctx = projects.load(db, result[0], "alpha", Permission.EXPERIMENTS_WRITE)
        runlog.log_batch(
            db,
            ctx,
            run_id,
            metrics=[{"key": "m", "value": float(i), "timestamp": i, "step": i} for i in range(500)],
            params=[{"key": "p", "value": "a"}],
            tags=[{"key": "t", "value": "\ud800"}],  # written last; no database can store it
        )
    data = _run_data(client, hs, run_id)
    assert data["metrics"] == [] and data.get("params", []) == []
    assert "t" not in {t["key"] for t in data["tags"]}
    assert _history(client, hs, run_id, "m") == {"metrics": []}


def test_commit_durability_per_session(settings) -> None:
    """Relaxed sessions skip the WAL flush (SQLite synchronous=NORMAL, PostgreSQL
    synchronous_commit=off) for their own transaction only; the next durable one flushes again."""
    db = Database(settings.resolved_database_url, pool_size=1)  # one connection, reused throughout
    try:
        if db.is_sqlite:
            query, relaxed, durable = "PRAGMA synchronous", 1, 2
        else:
            # The test catalog turns it off for the whole database (tests/conftest.py): turn it on
            # for this connection, so that a relaxed transaction has something to differ from.
            with db.session(write=False) as session:
                session.execute(text("SET synchronous_commit = on"))
            query, relaxed, durable = "SHOW synchronous_commit", "off", "on"
        for want_durable in (True, False, True, False, True):
            with db.session(durable=want_durable) as session:
                got = session.execute(text(query)).scalar()
            assert got == (durable if want_durable else relaxed)
        with db.session(durable=False):
            pass
        with db.session(write=False) as session:  # nothing but a relaxed session runs relaxed
            assert session.execute(text(query)).scalar() == durable
    finally:
        db.dispose()


def test_only_unaudited_run_writes_commit_relaxed(app) -> None:
    relaxed = {
        (method, route.path)
        for route in api_routes(app)
        if getattr(route.original_route.endpoint, "sanctum_relaxed_durability", False)
        for method in route.methods
    }
    assert relaxed == {
        ("POST", f"{M}/runs/{name}")
        for name in ("create", "update", "log-batch", "log-metric", "log-parameter", "set-tag", "delete-tag")
    }


def test_revoked_token_is_refused_on_the_next_call(client, world, runtime) -> None:
    created = client.post(
        TOKENS, json={"name": "ml", "project": "alpha"}, headers=world.h["scientist"]
    ).json()
    hs = {"Authorization": f"Bearer {created['token']}"}
    _, run_id = make_run(client, hs)
    point = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    assert client.post(f"{M}/runs/log-metric", json=point, headers=hs).status_code == 200
    assert client.delete(f"{TOKENS}/{created['id']}", headers=world.h["scientist"]).status_code == 204
    r = client.post(f"{M}/runs/log-metric", json={**point, "step": 1}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (401, "UNAUTHENTICATED")
    assert r.json()["error"]["code"] == "token_revoked"
    details = json.loads(_last_event(runtime, "auth.token").details)
    assert details == {"path": f"{M}/runs/log-metric", "reason": "revoked"}


def test_refusals_on_relaxed_routes_are_audited(client, world, runtime) -> None:
    """The refusal's audit event is committed durably, in a session of its own, and the refused
    request's relaxed session is given up first (on SQLite it holds the write lock)."""
    _, run_id = make_run(client, h(world, "scientist"))
    point = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    r = client.post(f"{M}/runs/log-metric", json=point, headers=h(world, "auditor"))
    assert (r.status_code, r.json()["error_code"]) == (403, "PERMISSION_DENIED")
    event = _last_event(runtime, "access.denied")
    assert (event.actor_email, event.project_name, event.target) == (
        world.auditor.email,
        "alpha",
        f"{M}/runs/log-metric",
    )
    r = client.post(f"{M}/runs/log-metric", json=point, headers=h(world, "outsider"))
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert _last_event(runtime, "access.denied").actor_email == world.outsider.email
    # Nothing was logged, and the catalog takes writes again at once (no lock left behind).
    assert _history(client, h(world, "scientist"), run_id, "m") == {"metrics": []}
    assert client.post(f"{M}/runs/log-metric", json=point, headers=h(world, "scientist")).status_code == 200


def _last_event(runtime: Any, action: str) -> Any:
    with runtime.db.session(write=False) as db:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq.desc())
        return db.scalars(query).first()
