"""The Python SDK against a real server over real HTTP (``live_server``)."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyotp
import pytest

from conftest import PASSWORD, free_port
from sanctum.schemas.audit import AuditPage
from sanctum.schemas.projects import MemberPublic, ProjectPublic
from sanctum.schemas.tokens import TokenCreated
from sanctum.sdk import Client, SanctumAPIError, SanctumConfigError, SanctumConnectionError, credentials


def bearer(world, name: str) -> str:
    return world.h[name]["Authorization"].removeprefix("Bearer ")




def api_error(excinfo: pytest.ExceptionInfo) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.code


# --------------------------------------------------------------------------- logging in


def test_login_with_totp(live_server, people) -> None:
    ada = people.create("ada@example.org", totp=True)
    with pytest.raises(SanctumAPIError) as missing_code:
        Client.login(live_server.url, ada.email, PASSWORD)
    assert api_error(missing_code) == (401, "totp_required")
    with pytest.raises(SanctumAPIError) as wrong:
        Client.login(live_server.url, ada.email, "not the password at all", totp=ada.code())
    assert api_error(wrong) == (401, "bad_credentials")
    assert wrong.value.message == "wrong e-mail address or password"

    client, result = Client.login(live_server.url, ada.email, PASSWORD, totp=ada.code())
    with client:
        assert result.token.startswith("snt_") and client.token == result.token
        assert result.enrol_only is False
        assert result.expires_at > datetime.now(UTC)
        me = client.me()
        assert (me.email, me.totp_enabled, me.must_enrol_2fa) == ("ada@example.org", True, False)
        assert me.recovery_codes_left == 10
        client.logout()
        assert client.token is None
    with Client(live_server.url, result.token) as again, pytest.raises(SanctumAPIError) as ended:
        again.me()
    assert api_error(ended) == (401, "token_revoked")


def test_login_then_enrol_totp(live_server, people) -> None:
    """An admin without 2FA gets an enrol-only login, enrols through the SDK, then may act."""
    root = people.create("root@example.org", admin=True)
    client, result = Client.login(live_server.url, root.email, PASSWORD)
    with client:
        assert result.enrol_only is True
        assert client.me().must_enrol_2fa is True
        with pytest.raises(SanctumAPIError) as blocked:
            client.list_users()
        assert api_error(blocked) == (403, "enrol_2fa")
        enrolment = client.begin_totp()
        assert enrolment.otpauth_uri.startswith("otpauth://totp/")
        codes = client.confirm_totp(pyotp.TOTP(enrolment.secret).now())
        assert len(codes.recovery_codes) == 10
        assert client.me().totp_enabled is True
    # A fresh login with a recovery code reaches the admin API.
    client, result = Client.login(live_server.url, root.email, PASSWORD, totp=codes.recovery_codes[0])
    with client:
        assert result.enrol_only is False
        assert [u.email for u in client.list_users()] == ["root@example.org"]


def test_sdk_works_over_a_testclient(client, world) -> None:
    """``http=`` takes any httpx.Client, e.g. FastAPI's in-process TestClient."""
    sdk = Client("http://testserver", bearer(world, "scientist"), http=client)
    assert [p.name for p in sdk.list_projects()] == ["alpha"]
    sdk.close()
    assert client.get("/healthz").status_code == 200  # not closed: it was only borrowed


# --------------------------------------------------------------------------- projects and members


def test_projects(as_) -> None:
    owner = as_("owner")
    created = owner.create_project("gamma", title="Gamma", description="a third study")
    assert isinstance(created, ProjectPublic)
    assert (created.name, created.title, created.description, created.role) == (
        "gamma", "Gamma", "a third study", "data_owner")
    assert [(p.name, p.role) for p in owner.list_projects()] == [
        ("alpha", "data_owner"), ("gamma", "data_owner")]
    assert owner.get_project("alpha").title == "Alpha"
    assert [p.name for p in as_("scientist").list_projects()] == ["alpha"]
    assert as_("scientist").get_project("alpha").role == "data_scientist"
    with pytest.raises(SanctumAPIError) as taken:
        owner.create_project("alpha")
    assert api_error(taken) == (409, "project_exists")


def test_members(as_, world) -> None:
    owner = as_("owner")
    added = owner.add_member("alpha", world.outsider.email, "data_scientist")
    assert isinstance(added, MemberPublic)
    assert (added.email, added.role) == ("outsider@example.org", "data_scientist")
    assert owner.set_member_role("alpha", "Outsider@Example.org", "auditor").role == "auditor"
    roles = {m.email: m.role for m in as_("scientist").list_members("alpha")}
    assert roles == {"owner@example.org": "data_owner", "scientist@example.org": "data_scientist",
                     "checker@example.org": "output_checker", "auditor@example.org": "auditor",
                     "outsider@example.org": "auditor"}
    assert as_("outsider").get_project("alpha").role == "auditor"
    owner.remove_member("alpha", world.outsider.email)
    assert world.outsider.email not in {m.email for m in owner.list_members("alpha")}
    with pytest.raises(SanctumAPIError) as gone:
        owner.remove_member("alpha", world.outsider.email)
    assert api_error(gone) == (404, "member_not_found")


# --------------------------------------------------------------------------- tokens


def test_tokens_create_list_revoke(as_, live_server) -> None:
    owner = as_("owner")
    created = owner.create_token("ci", scopes=["read"], project="alpha", expires_in_days=7)
    assert isinstance(created, TokenCreated)
    assert created.token.startswith("snt_") and created.token.startswith(created.prefix)
    assert (created.name, created.scopes, created.project, created.kind) == ("ci", ["read"], "alpha", "api")
    assert timedelta(days=6) < created.expires_at - datetime.now(UTC) <= timedelta(days=7)
    assert created.id in {t.id for t in owner.list_tokens()}

    with Client(live_server.url, created.token) as ci:
        assert [p.name for p in ci.list_projects()] == ["alpha"]
        with pytest.raises(SanctumAPIError) as narrow:
            ci.add_member("alpha", "outsider@example.org", "auditor")
        assert narrow.value.status == 403
        owner.revoke_token(created.id)
        with pytest.raises(SanctumAPIError) as revoked:
            ci.list_projects()
    assert api_error(revoked) == (401, "token_revoked")
    assert revoked.value.message == "this token has been revoked"

    assert created.id not in {t.id for t in owner.list_tokens()}
    listed = {t.id: t for t in owner.list_tokens(include_inactive=True)}
    assert listed[created.id].revoked_at is not None
    with pytest.raises(SanctumAPIError) as unknown:
        owner.revoke_token(999_999)
    assert api_error(unknown) == (404, "not_found")
    with pytest.raises(SanctumAPIError) as bad_scope:
        owner.create_token("x", scopes=["everything"])
    assert api_error(bad_scope) == (422, "invalid_scope")


# --------------------------------------------------------------------------- audit


def test_audit_pages(as_) -> None:
    owner = as_("owner")
    page = owner.project_audit("alpha")
    assert isinstance(page, AuditPage) and page.next_after is None
    actions = [e.action for e in page.events]
    assert actions[0] == "project.create" and actions.count("member.add") == 3
    assert {e.project for e in page.events} == {"alpha"}  # beta's events stay in beta
    first = owner.project_audit("alpha", limit=2)
    assert [e.seq for e in first.events] == [e.seq for e in page.events[:2]]
    assert first.next_after == first.events[-1].seq
    rest = owner.project_audit("alpha", after=first.next_after)
    assert [e.seq for e in first.events + rest.events] == [e.seq for e in page.events]
    members_only = owner.project_audit("alpha", action="member.")
    assert {e.action for e in members_only.events} == {"member.add"}
    assert [e.target for e in as_("auditor").project_audit("alpha", action="member.").events] == [
        "scientist@example.org", "checker@example.org", "auditor@example.org"]
    with pytest.raises(SanctumAPIError) as scientist:
        as_("scientist").project_audit("alpha")
    assert scientist.value.status == 403


def test_platform_audit_and_users_for_admins(as_) -> None:
    admin = as_("admin")
    assert admin.verify_audit().ok is True
    everything = admin.platform_audit(limit=500)
    assert {"project.create", "member.add", "admin.user.create"} <= {e.action for e in everything.events}
    assert {e.project for e in admin.platform_audit(project="beta").events} == {"beta"}
    created = admin.create_user("newcomer@example.org", "a long and unusual passphrase 42",
                                can_create_projects=False)
    assert (created.email, created.is_admin, created.can_create_projects) == (
        "newcomer@example.org", False, False)
    assert "newcomer@example.org" in {u.email for u in admin.list_users()}
    with pytest.raises(SanctumAPIError) as weak:
        admin.create_user("weak@example.org", "password")
    assert api_error(weak) == (422, "weak_password")
    with pytest.raises(SanctumAPIError) as not_admin:
        as_("owner").verify_audit()
    assert not_admin.value.status == 403


# --------------------------------------------------------------------------- errors


def test_errors_carry_status_code_and_message(as_) -> None:
    owner = as_("owner")
    with pytest.raises(SanctumAPIError) as other_project:
        owner.get_project("beta")
    assert api_error(other_project) == (404, "not_found")
    assert other_project.value.message == "project not found"
    with pytest.raises(SanctumAPIError) as no_such:
        owner.get_project("no-such-project")
    # The same answer as for beta, which exists: no existence leak.
    assert (no_such.value.status, no_such.value.message) == (404, "project not found")

    with pytest.raises(SanctumAPIError) as scientist:
        as_("scientist").add_member("alpha", "outsider@example.org", "auditor")
    assert api_error(scientist) == (403, "forbidden")
    assert "data_scientist" in scientist.value.message
    assert str(scientist.value) == f"{scientist.value.message} (HTTP 403, forbidden)"

    with pytest.raises(SanctumAPIError) as role:
        owner.add_member("alpha", "outsider@example.org", "boss")
    assert api_error(role) == (422, "invalid_role")
    assert "data_scientist" in role.value.message
    with pytest.raises(SanctumAPIError) as name:
        owner.create_project("Not A Name")
    assert api_error(name) == (422, "invalid_name")
    with pytest.raises(SanctumAPIError) as too_long:  # refused by the shared schema before sending
        owner.create_project("x" * 201)
    assert api_error(too_long) == (422, "invalid_input")
    assert too_long.value.message.startswith("name: String should have at most 200 characters")
    with pytest.raises(SanctumAPIError) as anonymous:
        Client(owner.url).list_projects()
    assert api_error(anonymous) == (401, "unauthenticated")


def test_unreachable_server() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "snt_x") as nobody, \
            pytest.raises(SanctumConnectionError) as refused:
        nobody.me()
    assert refused.value.message.startswith("cannot reach http://127.0.0.1:")
    assert refused.value.code == "connection_error"


@pytest.fixture
def not_sanctum() -> Iterator[str]:
    """A real HTTP server that is not Sanctum (a proxy's error page, a web server on the wrong port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 502 if self.path.startswith("/api/v1/projects") else 200
            body = b"<html><body><h1>Bad Gateway</h1></body></html>"
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_non_json_answers_are_api_errors(not_sanctum) -> None:
    with Client(not_sanctum, "snt_x") as client:
        with pytest.raises(SanctumAPIError) as gateway:
            client.list_projects()
        assert api_error(gateway) == (502, "http_502")
        assert gateway.value.message == (
            "HTTP 502 from 127.0.0.1: <html><body><h1>Bad Gateway</h1></body></html>")
        with pytest.raises(SanctumAPIError) as html:
            client.me()
        assert api_error(html) == (200, "invalid_response")
        assert "is it a Sanctum server" in html.value.message


def test_urls_are_checked() -> None:
    for url in ("tre.example.org", "ftp://tre.example.org", "https://"):
        with pytest.raises(SanctumConfigError, match="invalid server URL"):
            Client(url)
    with pytest.raises(SanctumConfigError, match="plain http"):
        Client("http://tre.example.org", "snt_secret")
    assert Client("https://tre.example.org/sanctum/").url == "https://tre.example.org/sanctum"
    assert Client("http://localhost:8000").url == "http://localhost:8000"
    assert Client("http://tre.example.org", insecure_http=True).url == "http://tre.example.org"


# --------------------------------------------------------------------------- stored credentials


@pytest.fixture
def config_env(tmp_path, monkeypatch) -> dict[str, str]:
    for name in ("SANCTUM_URL", "SANCTUM_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SANCTUM_CONFIG_DIR", str(tmp_path / "config"))
    return {"SANCTUM_CONFIG_DIR": str(tmp_path / "config")}


def test_credentials_file_is_private(config_env, tmp_path) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    path = credentials.save(credentials.Credentials("http://127.0.0.1:1", "snt_secret", later, "a@b.org"))
    assert path == tmp_path / "config" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["token"] == "snt_secret"
    assert os.listdir(path.parent) == ["credentials.json"]  # no temporary file left behind
    assert credentials.load().email == "a@b.org"
    path.chmod(0o644)
    with pytest.raises(SanctumConfigError, match="others can read it") as unsafe:
        credentials.load()
    assert unsafe.value.code == "unsafe_credentials"
    credentials.save(credentials.Credentials("http://127.0.0.1:1", "snt_new", later))  # replaces it, 0600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.delete() is True and credentials.delete() is False


def test_config_dir_follows_xdg(monkeypatch, tmp_path) -> None:
    assert credentials.config_dir({"SANCTUM_CONFIG_DIR": "/x/y"}).as_posix() == "/x/y"
    assert credentials.config_dir({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "sanctum"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    relative = credentials.config_dir({"XDG_CONFIG_HOME": "relative"})
    assert relative == tmp_path / "home" / ".config" / "sanctum"


def test_resolve_prefers_the_environment_and_never_moves_a_token(config_env) -> None:
    with pytest.raises(SanctumConfigError, match="sanctum login") as nothing:
        credentials.resolve()
    assert nothing.value.code == "not_logged_in"
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    credentials.save(credentials.Credentials("http://127.0.0.1:1", "snt_stored", later))
    assert credentials.resolve() == ("http://127.0.0.1:1", "snt_stored")
    env = {**config_env, "SANCTUM_URL": "http://127.0.0.1:2/", "SANCTUM_TOKEN": "snt_env"}
    assert credentials.resolve(env) == ("http://127.0.0.1:2", "snt_env")
    token_only = {**config_env, "SANCTUM_TOKEN": "snt_env"}
    assert credentials.resolve(token_only) == ("http://127.0.0.1:1", "snt_env")
    # A stored token is never sent to another server.
    with pytest.raises(SanctumConfigError, match=r"not logged in to http://127\.0\.0\.1:2"):
        credentials.resolve({**config_env, "SANCTUM_URL": "http://127.0.0.1:2"})
    earlier = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    credentials.save(credentials.Credentials("http://127.0.0.1:1", "snt_stored", earlier))
    with pytest.raises(SanctumConfigError, match="expired") as expired:
        credentials.resolve()
    assert expired.value.code == "login_expired"


def test_from_config(config_env, live_server, world, monkeypatch) -> None:
    monkeypatch.setenv("SANCTUM_URL", live_server.url)
    monkeypatch.setenv("SANCTUM_TOKEN", bearer(world, "checker"))
    with Client.from_config() as client:
        assert client.me().email == "checker@example.org"
