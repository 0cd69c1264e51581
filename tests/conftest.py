"""Fixtures shared by the whole suite.

The suite runs against SQLite (``--db=sqlite``, the default) or PostgreSQL (``--db=postgresql``,
a fresh database per run on ``SANCTUM_TEST_PG``, default 127.0.0.1:5432 as user postgres). In CI
(``CI=true``) a missing PostgreSQL or Chromium fails the run instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sanctum.accounts import twofactor
from sanctum.accounts.tokens import TokenKind, issue
from sanctum.accounts.users import create_user
from sanctum.api.app import create_app
from sanctum.api.runtime import Runtime
from sanctum.audit import AuditContext
from sanctum.config import Settings, load_settings
from sanctum.db.migrate import upgrade
from sanctum.db.models import Base, User
from sanctum.db.types import utcnow
from sanctum.security.keys import create_master_key

PASSWORD = "correct horse battery staple"
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("SANCTUM_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
pytest_plugins = ["slurm_cluster"]  # the real single-node Slurm, tests/slurm_cluster.py


def missing(reason: str) -> None:
    """A component the suite needs is absent: skip on a laptop, fail in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=os.environ.get("SANCTUM_TEST_DB", "sqlite"),
        choices=["sqlite", "postgresql"],
        help="catalog database for this run",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On ``--db=postgresql``, run only the tests that reach the catalog.

    Why: the suite runs twice, once per database, within one time budget. A test whose fixtures
    never include ``catalog`` (pure de-identification, the sandbox, the store, file formats)
    behaves the same on either database, so running it twice proves nothing more.
    """
    if config.getoption("--db") != "postgresql":
        return
    keep, drop = [], []
    for item in items:
        uses_catalog = {"catalog", "db_kind"} & set(getattr(item, "fixturenames", ()))
        (keep if uses_catalog else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(autouse=True, scope="session")
def _cheap_argon2() -> Iterator[None]:
    """Tests create hundreds of users: use argon2id with minimal cost. Production keeps the
    library's RFC 9106 defaults; the algorithm and code path are the same."""
    from argon2 import PasswordHasher

    from sanctum.security import passwords

    original = passwords._hasher
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    passwords._dummy_hash.cache_clear()
    yield
    passwords._hasher = original
    passwords._dummy_hash.cache_clear()


# --------------------------------------------------------------------------- databases


class _SqliteCatalog:
    def __init__(self, root: Path) -> None:
        self.template = root / "template.db"
        upgrade(f"sqlite:///{self.template}")

    def fresh_url(self, tmp: Path) -> str:
        target = tmp / "catalog.db"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    def close(self) -> None:
        pass


class _PostgresCatalog:
    def __init__(self) -> None:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.name = f"sanctum_test_{os.getpid()}_{secrets.token_hex(4)}"
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
                # Tests need no durability across a PostgreSQL crash: skip the WAL flush per commit.
                conn.exec_driver_sql(f'ALTER DATABASE "{self.name}" SET synchronous_commit = off')
        except sa.exc.OperationalError as exc:
            admin.dispose()
            missing(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc.orig}")
        self.admin = admin
        self.url = (
            sa.engine.make_url(PG_ADMIN_URL).set(database=self.name).render_as_string(hide_password=False)
        )
        upgrade(self.url)
        self.engine = sa.create_engine(self.url)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        self.truncate = f"TRUNCATE {tables} RESTART IDENTITY CASCADE"

    def fresh_url(self, tmp: Path) -> str:
        with self.engine.begin() as conn:
            # Replica mode skips the audit table's append-only trigger for the reset between tests.
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.exec_driver_sql(self.truncate)
        return self.url

    def close(self) -> None:
        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture(scope="session")
def catalog(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    kind = request.config.getoption("--db")
    cat = _PostgresCatalog() if kind == "postgresql" else _SqliteCatalog(tmp_path_factory.mktemp("catalog"))
    yield cat
    cat.close()


@pytest.fixture
def db_kind(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--db")


# --------------------------------------------------------------------------- instance


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    create_master_key(path / "master.key")
    return path


@pytest.fixture
def settings(data_dir: Path, catalog: object, tmp_path: Path) -> Settings:
    return load_settings(data_dir, database_url=catalog.fresh_url(tmp_path))  # type: ignore[attr-defined]


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.start(settings)
    yield rt
    rt.close()


@pytest.fixture
def app(runtime: Runtime):
    return create_app(runtime=runtime)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


# --------------------------------------------------------------------------- people


@dataclass
class Person:
    """A test user and how to act as them."""

    id: int
    email: str
    password: str = PASSWORD
    totp_secret: str | None = None
    _last_step: int = field(default=-1)

    def code(self) -> str:
        """A TOTP code that has not been used yet (replays are refused, so each call moves on)."""
        assert self.totp_secret, "user has no TOTP"
        now_step = int(time.time() // 30)
        step = max(now_step - 1, self._last_step + 1)
        if step > now_step + 1:
            time.sleep((step - 1) * 30 - time.time() + 0.5)
        self._last_step = step
        return pyotp.TOTP(self.totp_secret).at(step * 30)


class People:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def create(
        self, email: str, *, admin: bool = False, totp: bool = False, can_create_projects: bool = True
    ) -> Person:
        with self.runtime.db.session() as db:
            user = create_user(
                db, AuditContext(), email, PASSWORD, admin=admin, can_create_projects=can_create_projects
            )
            person = Person(user.id, user.email)
            if totp:
                enrolment = twofactor.begin(db, AuditContext(), user, self.runtime.totp_box)
                person.totp_secret = enrolment.secret
                twofactor.confirm(db, AuditContext(), user, self.runtime.totp_box, person.code())
        return person

    def token(
        self,
        person: Person,
        *,
        scopes: list[str] | None = None,
        project_id: int | None = None,
        kind: TokenKind = TokenKind.LOGIN,
        hours: int = 1,
        enrol_only: bool = False,
    ) -> str:
        """A credential issued directly (the login flow itself is tested in test_login)."""
        with self.runtime.db.session() as db:
            user = db.get(User, person.id)
            assert user is not None
            return issue(
                db,
                user,
                kind,
                expires_at=utcnow() + timedelta(hours=hours),
                name="test",
                scopes=scopes,
                project_id=project_id,
                enrol_only=enrol_only,
            ).secret

    def headers(self, person: Person, **kwargs: object) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(person, **kwargs)}"}  # type: ignore[arg-type]


@pytest.fixture
def people(runtime: Runtime) -> People:
    return People(runtime)


@dataclass
class World:
    """Two projects with every role filled, the usual cast of the permission tests."""

    owner: Person
    scientist: Person
    checker: Person
    auditor: Person
    outsider: Person
    admin: Person
    other_owner: Person
    h: dict[str, dict[str, str]]


@pytest.fixture
def world(client: TestClient, people: People) -> World:
    owner = people.create("owner@example.org", totp=True)
    scientist = people.create("scientist@example.org")
    checker = people.create("checker@example.org")
    auditor = people.create("auditor@example.org")
    outsider = people.create("outsider@example.org")
    admin = people.create("admin@example.org", admin=True, totp=True)
    other_owner = people.create("other-owner@example.org", totp=True)
    h = {
        name: people.headers(p)
        for name, p in {
            "owner": owner,
            "scientist": scientist,
            "checker": checker,
            "auditor": auditor,
            "outsider": outsider,
            "admin": admin,
            "other_owner": other_owner,
        }.items()
    }
    assert (
        client.post(
            "/api/v1/projects", json={"name": "alpha", "title": "Alpha"}, headers=h["owner"]
        ).status_code
        == 201
    )
    assert client.post("/api/v1/projects", json={"name": "beta"}, headers=h["other_owner"]).status_code == 201
    for person, role in ((scientist, "data_scientist"), (checker, "output_checker"), (auditor, "auditor")):
        r = client.post(
            "/api/v1/projects/alpha/members", json={"email": person.email, "role": role}, headers=h["owner"]
        )
        assert r.status_code == 201, r.text
    return World(owner, scientist, checker, auditor, outsider, admin, other_owner, h)


# --------------------------------------------------------------------------- live server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    runtime: Runtime


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[LiveServer]:
    """The real app under uvicorn on a loopback port, in a thread of this process."""
    from sanctum.server import in_thread

    with in_thread(create_app(runtime=runtime)) as url:
        yield LiveServer(url, runtime)


# --------------------------------------------------------------------------- browser and SDK

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (no browser download); missing → skip, or fail in CI."""
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright; no browser download needed)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def as_(world, people, live_server) -> Iterator:
    """``as_("owner")``: an SDK client for one of the world's people, with a login token as
    ``Client.login`` gets (an API token could not mint longer-lived tokens)."""
    from sanctum.sdk import Client

    opened: list[Client] = []

    def make(name: str) -> Client:
        client = Client(live_server.url, people.token(getattr(world, name), kind=TokenKind.LOGIN, hours=12))
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()
