"""Server-side commands on a data dir of their own (SQLite catalog), whatever ``--db`` says:
``init``, ``admin user create``, ``audit verify`` in process; ``serve`` as the installed script."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from conftest import PASSWORD, free_port
from sanctum.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch) -> None:
    """Settings come from SANCTUM_* too: none may leak in from the shell running the tests."""
    for name in list(os.environ):
        if name.startswith("SANCTUM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def home(tmp_path) -> Path:
    """An instance folder that does not exist yet."""
    return tmp_path / "instance"


@pytest.fixture
def password_file(tmp_path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def sanctum(*args: str, input: str | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def ok(*args: str) -> str:
    result = sanctum(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def said(out: str) -> str:
    """Output for people, as one string: Rich may wrap it to the terminal's width."""
    return " ".join(out.split())


def users(home: Path) -> dict[str, bool]:
    with sqlite3.connect(home / "sanctum.db") as db:
        return {email: bool(admin) for email, admin in db.execute("SELECT email, is_admin FROM users")}


def one_error_line(result, contains: str, *, code: int = 1) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert contains in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


# --------------------------------------------------------------------------- init


def test_init_creates_a_private_key_and_is_idempotent(home) -> None:
    first = json.loads(ok("init", "--data-dir", home, "--json"))
    key = home / "master.key"
    assert first == {"data_dir": str(home.resolve()),
                     "database": f"sqlite:///{home.resolve() / 'sanctum.db'}",
                     "master_key": str(key.resolve()), "master_key_created": True}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    assert (home / "sanctum.db").is_file() and users(home) == {}
    secret = key.read_bytes()

    again = json.loads(ok("init", "--data-dir", home, "--json"))
    assert again["master_key_created"] is False
    assert key.read_bytes() == secret  # never replaced: that would make every encrypted byte unreadable
    assert said(ok("init", "--data-dir", home)) == f"initialised {home.resolve()}"


def test_init_with_an_admin(home, password_file) -> None:
    out = ok("init", "--data-dir", home, "--admin-email", "Root@Example.org", "--admin-password-file",
             password_file)
    assert said(out) == f"initialised {home.resolve()} (new master key)"
    assert users(home) == {"root@example.org": True}
    with sqlite3.connect(home / "sanctum.db") as db:
        stored = db.execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    one_error_line(sanctum("init", "--data-dir", home, "--admin-email", "x@example.org"),
                   "--admin-email and --admin-password-file go together")


# --------------------------------------------------------------------------- admin user create


def test_admin_user_create(home, password_file) -> None:
    ok("init", "--data-dir", home)
    out = ok("admin", "user", "create", "ada@example.org", "--data-dir", home,
             "--password-file", password_file)
    assert said(out) == "created user ada@example.org"
    created = json.loads(ok("admin", "user", "create", "root@example.org", "--admin", "--data-dir", home,
                            "--password-file", password_file, "--json"))
    assert (created["email"], created["is_admin"], created["can_create_projects"]) == (
        "root@example.org", True, True)
    assert users(home) == {"ada@example.org": False, "root@example.org": True}

    duplicate = sanctum("admin", "user", "create", "ADA@example.org", "--data-dir", home,
                        "--password-file", password_file)
    one_error_line(duplicate, "a user with this e-mail address already exists")
    as_json = sanctum("admin", "user", "create", "ada@example.org", "--data-dir", home,
                      "--password-file", password_file, "--json")
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"]["code"] == "user_exists"
    assert users(home) == {"ada@example.org": False, "root@example.org": True}


@pytest.mark.parametrize(("password", "reason"), [
    ("short", "password must be at least 12 characters"),
    ("password1234", "password is among the most common passwords"),
    ("aaaaaaaaaaaaaaaa", "password is among the most common passwords"),
])
def test_admin_user_create_refuses_weak_passwords(home, tmp_path, password, reason) -> None:
    ok("init", "--data-dir", home)
    weak = tmp_path / "weak"
    weak.write_text(password)
    result = sanctum("admin", "user", "create", "ada@example.org", "--data-dir", home,
                     "--password-file", weak)
    line = one_error_line(result, reason)
    assert password not in line
    assert users(home) == {}
    with sqlite3.connect(home / "sanctum.db") as db:
        assert db.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 0  # rolled back with it


def test_admin_user_create_needs_a_readable_password_file(home, tmp_path) -> None:
    ok("init", "--data-dir", home)
    result = sanctum("admin", "user", "create", "ada@example.org", "--data-dir", home,
                     "--password-file", tmp_path / "missing")
    one_error_line(result, "cannot read password file")
    assert users(home) == {}


# --------------------------------------------------------------------------- audit verify


def test_audit_verify_names_the_tampered_event(home, password_file) -> None:
    ok("init", "--data-dir", home, "--admin-email", "root@example.org",
       "--admin-password-file", password_file)
    for email in ("ada@example.org", "bob@example.org", "cy@example.org"):
        ok("admin", "user", "create", email, "--data-dir", home, "--password-file", password_file)
    out = ok("audit", "verify", "--data-dir", home)
    assert said(out).startswith("audit chain intact: 4 events, head ")
    intact = json.loads(ok("audit", "verify", "--data-dir", home, "--json"))
    assert (intact["ok"], intact["events"], intact["first_broken_seq"]) == (True, 4, None)

    with sqlite3.connect(home / "sanctum.db") as db:
        with pytest.raises(sqlite3.DatabaseError):  # append-only, even for the database's owner
            db.execute("UPDATE audit_events SET target = 'mallory@example.org' WHERE seq = 3")
        db.execute("DROP TRIGGER audit_events_no_update")
        db.execute("UPDATE audit_events SET target = 'mallory@example.org' WHERE seq = 3")

    broken = sanctum("audit", "verify", "--data-dir", home)
    assert broken.exit_code == 1, (broken.stdout, broken.stderr)
    assert re.search(r"broken at event (\d+)", broken.stdout).group(1) == "3"
    assert "its content does not match its hash" in said(broken.stdout)
    report = sanctum("audit", "verify", "--data-dir", home, "--json")
    assert report.exit_code == 1
    assert json.loads(report.stdout) == {
        "ok": False, "events": 2, "head_hash": intact_head(home, 2), "first_broken_seq": 3,
        "reason": "its content does not match its hash"}


def intact_head(home: Path, seq: int) -> str:
    with sqlite3.connect(home / "sanctum.db") as db:
        return db.execute("SELECT hash FROM audit_events WHERE seq = ?", (seq,)).fetchone()[0]


# --------------------------------------------------------------------------- serve


def sanctum_script() -> str:
    path = Path(sys.executable).parent / "sanctum"
    assert path.exists(), f"console script not installed next to {sys.executable}"
    return str(path)


def script_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}


def refused(*args: str) -> str:
    """``sanctum serve`` must refuse with exit 2 and one line on stderr, no traceback, nothing bound."""
    done = subprocess.run([sanctum_script(), "serve", *map(str, args)], capture_output=True, text=True,
                          timeout=60, env=script_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_serve_refuses_without_a_master_key(home) -> None:
    home.mkdir()
    line = refused("--data-dir", home, "--port", free_port())
    assert line == f"error: master key {home.resolve() / 'master.key'} is missing; run 'sanctum init " \
                   f"--data-dir {home.resolve()}'"


def test_serve_refuses_a_world_readable_master_key(home) -> None:
    ok("init", "--data-dir", home)
    (home / "master.key").chmod(0o644)
    line = refused("--data-dir", home, "--port", free_port())
    assert "has mode 644; it must be readable by its owner only (0600)" in line


def test_serve_refuses_a_public_address_without_tls(home) -> None:
    ok("init", "--data-dir", home)
    line = refused("--data-dir", home, "--host", "0.0.0.0", "--port", free_port())
    assert line == "error: refusing to listen on 0.0.0.0 without TLS; set tls_certfile and tls_keyfile or " \
                   "bind to 127.0.0.1"


def test_serve_serves_a_safe_configuration(home) -> None:
    ok("init", "--data-dir", home)
    port = free_port()
    proc = subprocess.Popen([sanctum_script(), "serve", "--data-dir", str(home), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env(),
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.time() < deadline, "sanctum serve did not answer"
            time.sleep(0.1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"Sanctum serving {home.resolve()} on http://127.0.0.1:{port}" in said(out)
