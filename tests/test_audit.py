"""The audit trail: hash chain, tamper detection, same-transaction writes, who may read it."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from sanctum.audit import AuditContext, record, verify
from sanctum.db.models import AuditEvent, Membership


def _tamper(runtime, sql: str, params: dict) -> None:
    """Change the table behind the application's back, as someone with database access could."""
    with runtime.db.engine.begin() as conn:
        if runtime.db.is_sqlite:
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_events_no_update")
            conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_events_no_delete")
        else:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        conn.execute(sa.text(sql), params)


def _events(runtime, n: int) -> None:
    with runtime.db.session() as db:
        for i in range(n):
            record(
                db,
                AuditContext(actor_email="t@example.org", ip="127.0.0.1"),
                "test.event",
                target=f"thing-{i}",
                details={"i": i, "nested": {"ü": [1, 2]}},
            )


def test_chain_verifies(runtime) -> None:
    _events(runtime, 20)
    with runtime.db.session(write=False) as db:
        report = verify(db)
    assert report.ok and report.events == 20 and report.first_broken_seq is None


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("target", "'someone-else'"),
        ("actor_email", "'innocent@example.org'"),
        ("outcome", "'failed'"),
        ("details", "'{\"i\": 99}'"),
        ("occurred_at", "'2020-01-01T00:00:00.000000Z'"),
    ],
)
def test_tampering_with_one_field_names_that_event(runtime, column: str, value: str) -> None:
    _events(runtime, 10)
    _tamper(runtime, f"UPDATE audit_events SET {column} = {value} WHERE seq = :seq", {"seq": 7})
    with runtime.db.session(write=False) as db:
        report = verify(db)
    assert not report.ok
    assert report.first_broken_seq == 7
    assert report.events == 6


def test_rewriting_hashes_breaks_the_next_link(runtime) -> None:
    """Someone who recomputes one event's hash after editing it still breaks the next event."""
    from sanctum.audit.chain import compute_hash

    _events(runtime, 10)
    with runtime.db.session(write=False) as db:
        event = db.get(AuditEvent, 4)
        db.expunge(event)
        event.target = "forged"
        forged_hash = compute_hash(event)
    _tamper(runtime, "UPDATE audit_events SET target = 'forged', hash = :h WHERE seq = 4", {"h": forged_hash})
    with runtime.db.session(write=False) as db:
        report = verify(db)
    assert report.first_broken_seq == 5


def test_deleting_an_event_is_detected(runtime) -> None:
    _events(runtime, 10)
    _tamper(runtime, "DELETE FROM audit_events WHERE seq = :seq", {"seq": 3})
    with runtime.db.session(write=False) as db:
        report = verify(db)
    assert not report.ok and report.first_broken_seq == 3 and "missing" in (report.reason or "")


def test_database_refuses_update_and_delete(runtime) -> None:
    """The append-only triggers stop even a buggy or injected statement from the application."""
    _events(runtime, 2)
    for statement in ("UPDATE audit_events SET target = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), runtime.db.session() as db:
            db.execute(sa.text(statement))
    with runtime.db.session(write=False) as db:
        assert verify(db).events == 2


def test_concurrent_writers_keep_one_chain(runtime) -> None:
    """Appends from many threads at once serialise into a single unbroken chain."""
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            _events(runtime, 10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with runtime.db.session(write=False) as db:
        report = verify(db)
    assert report.ok and report.events == 80


def test_audit_event_rolls_back_with_its_change(runtime, world) -> None:
    """Written in the same transaction: a change that does not commit leaves no audit event."""
    from sanctum.access.permissions import Permission, Role
    from sanctum.projects import members, service

    with runtime.db.session(write=False) as db:
        before = db.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    principal = _principal_for(runtime, world.owner)
    with pytest.raises(RuntimeError), runtime.db.session() as db:
        ctx = service.load(db, principal, "alpha", Permission.MEMBERS_MANAGE)
        members.add(db, ctx, world.outsider.email, Role.DATA_SCIENTIST)
        raise RuntimeError("crash after the change and its audit event, before commit")
    with runtime.db.session(write=False) as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == before
        assert (
            db.scalar(
                sa.select(sa.func.count())
                .select_from(Membership)
                .where(Membership.user_id == world.outsider.id)
            )
            == 0
        )
        assert verify(db).ok


def _principal_for(runtime, person):
    from tests.conftest import People

    from sanctum.accounts import tokens
    from sanctum.config import TwoFactorPolicy

    secret = People(runtime).token(person)
    with runtime.db.session(write=False) as db:
        principal, _ = tokens.authenticate(
            db, secret, kinds=frozenset({tokens.TokenKind.LOGIN}), policy=TwoFactorPolicy.OWNERS, ip=None
        )
    return principal


# --------------------------------------------------------------------------- reading it


def test_owner_and_auditor_read_their_project_audit_only(client, world) -> None:
    for name in ("owner", "auditor"):
        r = client.get("/api/v1/projects/alpha/audit", headers=world.h[name])
        assert r.status_code == 200
        events = r.json()["events"]
        assert events and {e["project"] for e in events} == {"alpha"}
        assert any(e["action"] == "member.add" and e["target"] == "scientist@example.org" for e in events)
    for name in ("scientist", "checker"):
        assert client.get("/api/v1/projects/alpha/audit", headers=world.h[name]).status_code == 403
    assert client.get("/api/v1/projects/alpha/audit", headers=world.h["other_owner"]).status_code == 404


def test_admin_reads_everything_and_members_do_not(client, world) -> None:
    r = client.get("/api/v1/audit", headers=world.h["admin"])
    assert r.status_code == 200
    projects = {e["project"] for e in r.json()["events"]}
    assert {"alpha", "beta"} <= projects
    r = client.get("/api/v1/audit", params={"project": "beta"}, headers=world.h["admin"])
    assert {e["project"] for e in r.json()["events"]} == {"beta"}
    for name in ("owner", "auditor", "scientist"):
        assert client.get("/api/v1/audit", headers=world.h[name]).status_code == 403
    r = client.get("/api/v1/audit/verify", headers=world.h["admin"])
    assert r.json()["ok"] is True


def test_audit_pages_resume_after_a_sequence_number(client, world, runtime) -> None:
    _events(runtime, 5)
    first = client.get("/api/v1/audit", params={"limit": 3}, headers=world.h["admin"]).json()
    assert len(first["events"]) == 3 and first["next_after"] == first["events"][-1]["seq"]
    second = client.get(
        "/api/v1/audit", params={"after": first["next_after"], "limit": 3}, headers=world.h["admin"]
    ).json()
    assert second["events"][0]["seq"] == first["next_after"] + 1
    assert client.get("/api/v1/audit", params={"limit": 0}, headers=world.h["admin"]).status_code == 422


def test_denied_access_is_audited_for_the_project(client, world) -> None:
    assert (
        client.post(
            "/api/v1/projects/alpha/members",
            json={"email": world.outsider.email, "role": "data_owner"},
            headers=world.h["scientist"],
        ).status_code
        == 403
    )
    assert client.get("/api/v1/projects/alpha/audit", headers=world.h["outsider"]).status_code == 404
    events = client.get(
        "/api/v1/projects/alpha/audit", params={"action": "access.denied"}, headers=world.h["owner"]
    ).json()["events"]
    by_actor = {e["actor"]: e for e in events}
    assert by_actor["scientist@example.org"]["details"]["permission"] == "members:manage"
    assert by_actor["outsider@example.org"]["details"]["reason"] == "not_found"
    assert all(e["outcome"] == "denied" for e in events)


def test_event_details_are_canonical_json(runtime) -> None:
    _events(runtime, 1)
    with runtime.db.session(write=False) as db:
        event = db.get(AuditEvent, 1)
    assert event.details == json.dumps(
        json.loads(event.details), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
