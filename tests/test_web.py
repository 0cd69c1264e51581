"""The server-rendered pages, driven through their forms as a browser would (without JavaScript).

Cookies are Secure, so the test browsers talk to https://testserver (httpx keeps Secure cookies
for https only, as browsers do outside loopback).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.routes import _calls, api_routes

from sanctum.accounts import tokens as token_service
from sanctum.api.deps import SESSION_COOKIE, InProject, Require, public
from sanctum.api.middleware import CONTENT_SECURITY_POLICY
from sanctum.audit import AuditContext, record
from sanctum.db.models import AuditEvent, Membership, Project, Token, User
from sanctum.web.session import LOGIN_CSRF_COOKIE, PENDING_COOKIE, safe_next, web_principal

BASE = "https://testserver"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def set_cookies(response) -> dict[str, str]:
    """Set-Cookie headers by cookie name (the raw header, to check the flags)."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


def strict(response):
    """Every page the tests see must work under the CSP: no inline script or style at all."""
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    if response.headers.get("content-type", "").startswith("text/html"):
        page = response.text.lower()
        assert "<script" not in page and "<style" not in page and " style=" not in page
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", page), "inline event handler"
    return response


class Browser:
    """One browser: its own cookie jar, no redirects followed unless asked."""

    def __init__(self, app) -> None:
        self.http = TestClient(app, base_url=BASE, follow_redirects=False)

    def get(self, path: str, **kwargs):
        return strict(self.http.get(path, **kwargs))

    def post(self, path: str, data: dict | None = None, **kwargs):
        return strict(self.http.post(path, data=data or {}, **kwargs))

    def csrf(self, path: str = "/me/2fa") -> str:
        r = self.get(path)
        assert r.status_code == 200, (path, r.status_code, r.headers.get("location"))
        return csrf_of(r.text)

    def form(self, path: str, data: dict, *, page: str | None = None):
        """Post a form with the CSRF token of the page it lives on."""
        return self.post(path, {"csrf": self.csrf(page or path), **data})

    def password_step(self, email: str, password: str, next_path: str = "/"):
        page = self.get("/login", params={"next": next_path})
        assert page.status_code == 200
        return self.post(
            "/login", {"email": email, "password": password, "csrf": csrf_of(page.text), "next": next_path}
        )

    def code_step(self, code: str, next_path: str = "/"):
        page = self.get("/login/totp", params={"next": next_path})
        assert page.status_code == 200, page.headers.get("location")
        return self.post("/login/totp", {"code": code, "csrf": csrf_of(page.text), "next": next_path})

    def login(self, person, next_path: str = "/"):
        r = self.password_step(person.email, person.password, next_path)
        assert r.status_code == 303, r.text
        if person.totp_secret:
            assert r.headers["location"].startswith("/login/totp")
            r = self.code_step(person.code(), next_path)
            assert r.status_code == 303, r.text
        return r

    @property
    def session(self) -> str | None:
        return self.http.cookies.get(SESSION_COOKIE)


@pytest.fixture
def browser(app):
    return lambda: Browser(app)


def events(runtime, action: str) -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(
            db.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))
        )


def member_role(runtime, project: str, email: str) -> str | None:
    with runtime.db.session(write=False) as db:
        return db.scalar(
            select(Membership.role)
            .join(Project, Project.id == Membership.project_id)
            .join(User, User.id == Membership.user_id)
            .where(Project.name == project, User.email == email)
        )


# --------------------------------------------------------------------------- login


def test_login_page_renders_with_strict_headers_and_cookie(browser) -> None:
    r = browser().get("/login")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/login"' in r.text
    assert 'name="password" type="password"' in r.text
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    # Nothing inline for the CSP to refuse, nothing from elsewhere.
    assert "<script" not in r.text and "style=" not in r.text and "<style" not in r.text
    assert "http://" not in r.text and "https://" not in r.text
    cookie = set_cookies(r)[LOGIN_CSRF_COOKIE].lower()
    for flag in ("httponly", "secure", "samesite=strict", "path=/login"):
        assert flag in cookie, cookie
    css = browser().get("/static/sanctum.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_full_login_with_the_totp_step(browser, people, runtime) -> None:
    owner = people.create("owner@example.org", totp=True)
    b = browser()
    r = b.password_step(owner.email, owner.password)
    assert r.status_code == 303 and r.headers["location"] == "/login/totp"
    assert b.session is None, "no session before the second factor"
    pending = set_cookies(r)[PENDING_COOKIE].lower()
    assert "httponly" in pending and "samesite=strict" in pending and "secure" in pending

    r = b.code_step(owner.code())
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = set_cookies(r)[SESSION_COOKIE].lower()
    for flag in ("httponly", "secure", "samesite=strict", "path=/", "max-age="):
        assert flag in cookie, cookie
    home = b.get("/")
    assert home.status_code == 200 and owner.email in home.text and "My projects" in home.text
    assert home.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    ok = [e for e in events(runtime, "auth.login") if e.outcome == "ok"]
    assert len(ok) == 1 and '"password+totp"' in ok[0].details and '"session"' in ok[0].details
    # The pending credential is used up.
    with runtime.db.session(write=False) as db:
        assert all(t.revoked_at is not None for t in db.scalars(select(Token).where(Token.kind == "pending")))
    assert b.get("/login/totp").status_code == 303


def test_wrong_password_shows_the_message_and_is_audited(browser, people, runtime) -> None:
    person = people.create("someone@example.org")
    b = browser()
    r = b.password_step(person.email, "not the password")
    assert r.status_code == 401
    assert "Wrong e-mail address or password." in r.text
    assert f'value="{person.email}"' in r.text, "the address is kept in the form"
    assert b.session is None
    (failed,) = events(runtime, "auth.login")
    assert failed.outcome == "failed" and failed.target == person.email


def test_repeated_wrong_passwords_lock_the_address(browser, people, runtime) -> None:
    person = people.create("someone@example.org")
    b = browser()
    for _ in range(runtime.settings.login_max_failures):
        assert b.password_step(person.email, "not the password").status_code == 401
    r = b.password_step(person.email, person.password)
    assert r.status_code == 429 and "Too many failed logins; try again in" in r.text
    assert int(r.headers["retry-after"]) > 0 and b.session is None


def test_wrong_codes_are_refused_and_count_towards_the_lockout(browser, people, runtime) -> None:
    owner = people.create("owner@example.org", totp=True)
    b = browser()
    assert b.password_step(owner.email, owner.password).status_code == 303
    r = b.code_step("000000")
    assert r.status_code == 401 and "That code is not valid or was already used." in r.text
    for _ in range(runtime.settings.login_max_failures - 1):
        assert b.code_step("000000").status_code == 401
    r = b.code_step(owner.code())  # even the right code: the address is locked now
    assert r.status_code == 429 and "Too many failed logins" in r.text
    assert int(r.headers["retry-after"]) > 0
    assert b.session is None
    assert [e.outcome for e in events(runtime, "auth.login")][-1] == "locked"


def test_login_form_needs_its_csrf_token(browser, people, runtime) -> None:
    person = people.create("someone@example.org")
    b = browser()
    b.get("/login")
    for token in ("", "x" * 43):
        r = b.post("/login", {"email": person.email, "password": person.password, "csrf": token})
        assert r.status_code == 403 and "This login form has expired" in r.text
    # A form from another site has no cookie to match.
    r = browser().post("/login", {"email": person.email, "password": person.password, "csrf": "y" * 43})
    assert r.status_code == 403
    assert b.session is None and events(runtime, "auth.login") == []


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "https:/evil.example",
        "javascript:alert(1)",
    ],
)
def test_next_never_leaves_the_site(browser, people, target: str) -> None:
    person = people.create("someone@example.org")
    b = browser()
    page = b.get("/login", params={"next": target})
    assert 'name="next" value="/"' in page.text
    r = b.post(
        "/login",
        {"email": person.email, "password": person.password, "csrf": csrf_of(page.text), "next": target},
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert safe_next(target) == "/"


def test_next_to_a_page_of_this_site_is_followed(browser, people, world) -> None:
    b = browser()
    r = b.get("/projects/alpha")
    assert r.status_code == 303
    location = urlsplit(r.headers["location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/projects/alpha"]}
    r = b.login(world.owner, next_path="/projects/alpha")
    assert r.headers["location"] == "/projects/alpha"


# --------------------------------------------------------------------------- sessions


def test_logout_ends_the_session_for_good(app, browser, people, runtime) -> None:
    person = people.create("someone@example.org")
    b = browser()
    b.login(person)
    old = b.session
    r = b.form("/logout", {}, page="/")
    assert r.status_code == 303 and r.headers["location"] == "/login?done=logged_out"
    assert "max-age=0" in set_cookies(r)[SESSION_COOKIE].lower()
    assert b.get("/login?done=logged_out").text.count("You have logged out.") == 1
    # The old cookie, replayed, opens nothing.
    replay = TestClient(app, base_url=BASE, follow_redirects=False, cookies={SESSION_COOKIE: old})
    r = replay.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login?done=session_ended"
    assert "max-age=0" in set_cookies(r)[SESSION_COOKIE].lower(), "the dead cookie is cleared"
    (denied,) = events(runtime, "auth.token")
    assert denied.outcome == "denied" and '"revoked"' in denied.details
    assert len(events(runtime, "auth.logout")) == 1


def test_logout_is_a_form_with_csrf(browser, people) -> None:
    person = people.create("someone@example.org")
    b = browser()
    b.login(person)
    assert b.post("/logout", {}).status_code == 403
    assert b.get("/logout").status_code == 405
    assert b.get("/").status_code == 200, "still logged in"


def test_pages_without_a_session_go_to_the_login(browser) -> None:
    b = browser()
    for path in ("/", "/me/tokens", "/me/2fa", "/projects/alpha", "/projects/alpha/audit"):
        r = b.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    r = b.post("/projects", {"name": "x"})
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_unknown_pages_and_bad_input_get_html_error_pages(browser, people) -> None:
    b = browser()
    b.login(people.create("someone@example.org"))
    r = b.get("/no/such/page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "Not found" in r.text and "no such resource" in r.text.lower()
    assert b.get("/api/v1/nothing-here").headers["content-type"].startswith("application/json")


# --------------------------------------------------------------------------- CSRF


def test_forms_without_the_right_csrf_token_change_nothing(browser, world, runtime) -> None:
    b = browser()
    b.login(world.owner)
    add = {"email": world.outsider.email, "role": "data_scientist"}
    for data in (add, {**add, "csrf": ""}, {**add, "csrf": "wrong"}, {**add, "csrf": b.session}):
        r = b.post("/projects/alpha/members", data)
        assert r.status_code == 403, data
        assert "This form has expired or was not sent from this site" in r.text
    assert member_role(runtime, "alpha", world.outsider.email) is None
    assert b.post("/projects", {"name": "gamma"}).status_code == 403
    assert b.post("/me/tokens", {"name": "t"}).status_code == 403
    with runtime.db.session(write=False) as db:
        assert db.scalar(select(Project).where(Project.name == "gamma")) is None
        assert db.scalar(select(Token).where(Token.kind == "api", Token.name == "t")) is None
    # Another session's token does not fit this one either.
    other = browser()
    other.login(world.scientist)
    r = b.post("/projects/alpha/members", {**add, "csrf": other.csrf("/")})
    assert r.status_code == 403 and member_role(runtime, "alpha", world.outsider.email) is None


def test_every_web_route_is_guarded_and_every_form_checks_csrf(app) -> None:
    checked = 0
    for route in api_routes(app):
        if route.path.startswith("/api/") or route.path == "/healthz":
            continue
        calls = list(_calls(route.dependant))
        guarded = any(isinstance(c, Require | InProject) for c in calls)
        is_public = any(c is public for c in calls)
        assert guarded or is_public, f"{route.path} has neither a permission nor a public marker"
        if route.methods - {"GET", "HEAD"} and not is_public:
            assert web_principal in calls, f"{route.path} does not check the form's CSRF token"
        if is_public:
            assert route.path.startswith("/login"), route.path
        checked += 1
    assert checked >= 14


# --------------------------------------------------------------------------- projects and members


def test_create_a_project_through_the_form(browser, people, runtime) -> None:
    b = browser()
    b.login(people.create("maker@example.org"))
    r = b.form("/projects", {"name": "Bad Name!", "title": "T"}, page="/")
    assert r.status_code == 422 and "Invalid project name" in r.text and 'value="Bad Name!"' in r.text
    r = b.form("/projects", {"name": "gamma", "title": "Gamma study", "description": "cohort"}, page="/")
    assert r.status_code == 303 and r.headers["location"] == "/projects/gamma?done=project_created"
    # Owning a project means 2FA is required: this account now has to enrol first.
    assert b.get("/projects/gamma").headers["location"] == "/me/2fa"
    assert member_role(runtime, "gamma", "maker@example.org") == "data_owner"
    assert len(events(runtime, "project.create")) == 1


def test_owner_adds_changes_and_removes_a_member(browser, world, runtime) -> None:
    b = browser()
    b.login(world.owner)
    page = b.get("/projects/alpha")
    assert page.status_code == 200
    assert "Add a member" in page.text and "/projects/alpha/members/remove" in page.text
    assert world.scientist.email in page.text and "Audit trail" in page.text

    r = b.form(
        "/projects/alpha/members",
        {"email": world.outsider.email, "role": "data_scientist"},
        page="/projects/alpha",
    )
    assert r.status_code == 303 and r.headers["location"] == "/projects/alpha?done=member_added"
    page = b.get(r.headers["location"])
    assert "Member added." in page.text and world.outsider.email in page.text
    assert member_role(runtime, "alpha", world.outsider.email) == "data_scientist"

    r = b.form(
        "/projects/alpha/members/role",
        {"email": world.outsider.email, "role": "auditor"},
        page="/projects/alpha",
    )
    assert r.status_code == 303 and member_role(runtime, "alpha", world.outsider.email) == "auditor"

    r = b.form("/projects/alpha/members/remove", {"email": world.outsider.email}, page="/projects/alpha")
    assert r.status_code == 303 and member_role(runtime, "alpha", world.outsider.email) is None
    assert world.outsider.email not in b.get("/projects/alpha").text
    actions = [
        e.action
        for e in events(runtime, "member.add")
        + events(runtime, "member.set_role")
        + events(runtime, "member.remove")
        if e.target == world.outsider.email
    ]
    assert actions == ["member.add", "member.set_role", "member.remove"]


def test_refused_member_changes_explain_why(browser, world, runtime) -> None:
    b = browser()
    b.login(world.owner)
    r = b.form(
        "/projects/alpha/members",
        {"email": "nobody@example.org", "role": "data_scientist"},
        page="/projects/alpha",
    )
    assert r.status_code == 404 and "No active user with this e-mail address" in r.text
    assert 'value="nobody@example.org"' in r.text, "the form keeps what was typed"
    r = b.form(
        "/projects/alpha/members", {"email": world.scientist.email, "role": "boss"}, page="/projects/alpha"
    )
    assert r.status_code == 422 and "Unknown role" in r.text
    r = b.form(
        "/projects/alpha/members/role",
        {"email": world.owner.email, "role": "auditor"},
        page="/projects/alpha",
    )
    assert r.status_code == 409 and "The last data owner cannot be demoted" in r.text
    assert member_role(runtime, "alpha", world.owner.email) == "data_owner"


def test_a_scientist_sees_no_controls_and_cannot_forge_them(browser, world, runtime) -> None:
    b = browser()
    b.login(world.scientist)
    page = b.get("/projects/alpha")
    assert page.status_code == 200 and world.owner.email in page.text
    assert "Add a member" not in page.text and "/members" not in page.text and "<select" not in page.text
    assert "Audit trail" not in page.text
    csrf = csrf_of(page.text)  # a valid token of this session: only the role stands in the way
    forged = [
        ("/projects/alpha/members", {"email": world.outsider.email, "role": "data_owner"}),
        ("/projects/alpha/members/role", {"email": world.scientist.email, "role": "data_owner"}),
        ("/projects/alpha/members/remove", {"email": world.owner.email}),
    ]
    for path, data in forged:
        r = b.post(path, {"csrf": csrf, **data})
        assert r.status_code == 403 and "may not members:manage" in r.text, path
    assert member_role(runtime, "alpha", world.outsider.email) is None
    assert member_role(runtime, "alpha", world.scientist.email) == "data_scientist"
    assert member_role(runtime, "alpha", world.owner.email) == "data_owner"
    assert b.get("/projects/alpha/audit").status_code == 403


def test_another_projects_pages_do_not_exist(browser, world) -> None:
    b = browser()
    b.login(world.owner)
    for path in ("/projects/beta", "/projects/beta/audit", "/projects/no-such-project"):
        r = b.get(path)
        assert r.status_code == 404 and "Project not found." in r.text, path
    r = b.form(
        "/projects/beta/members", {"email": world.owner.email, "role": "data_owner"}, page="/projects/alpha"
    )
    assert r.status_code == 404
    home = b.get("/")
    assert "/projects/alpha" in home.text and "/projects/beta" not in home.text


def test_the_audit_trail_newest_first_and_paged(browser, world, runtime) -> None:
    with runtime.db.session() as db:
        alpha = db.scalar(select(Project).where(Project.name == "alpha"))
        for i in range(60):
            record(
                db,
                AuditContext(actor_email="robot@example.org"),
                "test.event",
                project_id=alpha.id,
                project_name="alpha",
                target=f"thing-{i}",
                details={"i": i},
            )
        beta = db.scalar(select(Project.id).where(Project.name == "beta"))
        record(db, AuditContext(), "test.secret", project_id=beta, project_name="beta", target="beta-only")
    b = browser()
    b.login(world.auditor)
    first = b.get("/projects/alpha/audit")
    assert first.status_code == 200
    assert first.text.index("thing-59") < first.text.index("thing-58"), "newest first"
    assert "thing-9<" not in first.text and "beta-only" not in first.text
    older = re.search(r'href="(/projects/alpha/audit\?before=\d+)"', first.text)
    assert older
    second = b.get(older.group(1))
    assert "thing-9<" in second.text and "thing-59" not in second.text
    assert "member.add" in second.text and "project.create" in second.text
    assert b.get("/projects/alpha/audit?before=-1").status_code == 422


# --------------------------------------------------------------------------- second factor


def test_enrol_only_login_is_sent_to_enrolment_and_can_enrol(browser, people, client, runtime) -> None:
    person = people.create("new-owner@example.org")
    r = client.post("/api/v1/projects", json={"name": "delta"}, headers=people.headers(person))
    assert r.status_code == 201  # owning a project: this account must now have 2FA
    b = browser()
    r = b.password_step(person.email, person.password, "/projects/delta")
    assert r.status_code == 303 and r.headers["location"] == "/me/2fa"
    for path in ("/", "/projects/delta", "/me/tokens", "/projects/delta/audit"):
        r = b.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/me/2fa", path
    assert b.form("/projects", {"name": "epsilon"}, page="/me/2fa").headers["location"] == "/me/2fa"
    page = b.get("/me/2fa")
    assert "must use two-factor authentication" in page.text and "API tokens" not in page.text

    page = b.form("/me/2fa", {})
    assert page.status_code == 200
    assert "<svg" in page.text and "TOTP QR code" in page.text and "style=" not in page.text
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text).group(1)
    r = b.post("/me/2fa/confirm", {"csrf": csrf_of(page.text), "code": "123456"})
    assert r.status_code == 422 and "That code is not valid" in r.text
    old_session = b.session
    r = b.post("/me/2fa/confirm", {"csrf": csrf_of(r.text), "code": pyotp.TOTP(secret).now()})
    assert r.status_code == 200
    codes = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code></li>", r.text)
    assert len(codes) == 10
    # The session was replaced by one without the enrol-only restriction.
    assert b.session != old_session and SESSION_COOKIE in set_cookies(r)
    assert b.get("/projects/delta").status_code == 200
    assert "Recovery codes left: 10" in b.get("/me/2fa").text
    assert codes[0] not in b.get("/me/2fa").text, "recovery codes are shown once"
    assert [e.action for e in events(runtime, "user.2fa.enable")] == ["user.2fa.enable"]

    # A recovery code works in place of a TOTP code, once.
    b.form("/logout", {}, page="/")
    second = browser()
    assert second.password_step(person.email, person.password).status_code == 303
    assert second.code_step(codes[0]).status_code == 303
    assert second.get("/").status_code == 200
    third = browser()
    third.password_step(person.email, person.password)
    assert third.code_step(codes[0]).status_code == 401


def test_replacing_the_second_factor_needs_password_and_code(browser, world, runtime) -> None:
    b = browser()
    b.login(world.owner)
    page = b.get("/me/2fa")
    assert "Two-factor authentication is <strong>on</strong>" in page.text
    r = b.form("/me/2fa", {"password": "wrong password", "code": "000000"})
    assert r.status_code == 401 and "Password or code is wrong." in r.text
    assert b.get("/").status_code == 200, "a wrong re-authentication does not end the session"
    assert [e.outcome for e in events(runtime, "user.2fa.reset")] == ["failed"]
    r = b.form("/me/2fa", {"password": world.owner.password, "code": world.owner.code()})
    assert r.status_code == 200 and "<svg" in r.text


# --------------------------------------------------------------------------- tokens


def test_tokens_page_shows_a_new_secret_once_and_revokes(app, browser, world, runtime) -> None:
    b = browser()
    b.login(world.owner)
    r = b.form(
        "/me/tokens",
        {
            "name": "nightly-runner",
            "project": "alpha",
            "days": "7",
            "scopes": ["project:read", "members:read"],
        },
    )
    assert r.status_code == 200
    secret = re.search(r'id="new-token" tabindex="0">(snt_[a-z2-7]+)<', r.text).group(1)
    assert "shown only this once" in r.text
    listing = b.get("/me/tokens")
    assert secret not in listing.text and secret[:10] in listing.text and "nightly-runner" in listing.text

    api = TestClient(app)
    bearer = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/projects/alpha/members", headers=bearer).status_code == 200
    assert api.get("/api/v1/projects/alpha/audit", headers=bearer).status_code == 403  # not in its scopes

    with runtime.db.session(write=False) as db:
        token = db.scalar(select(Token).where(Token.name == "nightly-runner"))
        assert token.scopes == ["project:read", "members:read"] and token.project_id is not None
    r = b.form(f"/me/tokens/{token.id}/revoke", {}, page="/me/tokens")
    assert r.status_code == 303 and r.headers["location"] == "/me/tokens?done=token_revoked"
    assert "nightly-runner" not in b.get("/me/tokens").text
    assert api.get("/api/v1/projects", headers=bearer).status_code == 401
    assert len(events(runtime, "token.revoke")) == 1


def test_token_form_errors_and_other_peoples_tokens(browser, world, people, runtime) -> None:
    b = browser()
    b.login(world.scientist)
    r = b.form("/me/tokens", {"name": "x", "days": "many"})
    assert r.status_code == 422 and "Days must be a whole number." in r.text
    r = b.form("/me/tokens", {"name": "x", "days": "999"})
    assert r.status_code == 422 and "between 1 and 365" in r.text
    r = b.form("/me/tokens", {"name": "x", "project": "beta"})
    assert r.status_code == 404 and "Project not found." in r.text
    other = people.token(world.owner)
    with runtime.db.session(write=False) as db:
        other_id = db.scalar(select(Token.id).where(Token.token_hash == token_service.bearer.digest(other)))
    r = b.form(f"/me/tokens/{other_id}/revoke", {}, page="/me/tokens")
    assert r.status_code == 404 and "Token not found." in r.text
    with runtime.db.session(write=False) as db:
        assert db.get(Token, other_id).revoked_at is None
