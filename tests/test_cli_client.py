"""The client commands of ``sanctum`` against a real server (``live_server``).

In process with Typer's runner (server URL and token from SANCTUM_URL / SANCTUM_TOKEN), plus the
installed console script in a subprocess for ``login`` and the stored credentials.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
from typer.testing import CliRunner

from conftest import PASSWORD, free_port
from sanctum.accounts.tokens import TokenKind
from sanctum.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def private_config(tmp_path, monkeypatch) -> Path:
    """No test reads or writes the real ~/.config/sanctum, or inherits a token."""
    for name in ("SANCTUM_URL", "SANCTUM_TOKEN", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config"
    monkeypatch.setenv("SANCTUM_CONFIG_DIR", str(path))
    return path


class Cli:
    """``cli("owner", "project", "list")``: run a command as one of the world's people."""

    def __init__(self, world, people, url: str) -> None:
        self.world, self.people, self.url = world, people, url
        self.tokens: dict[str, str] = {}

    def token(self, name: str) -> str:
        # A login token, as 'sanctum login' stores (an API token could not mint longer-lived ones).
        if name not in self.tokens:
            self.tokens[name] = self.people.token(getattr(self.world, name), kind=TokenKind.LOGIN, hours=12)
        return self.tokens[name]

    def __call__(self, who: str | None, *args: str, token: str | None = None, columns: int | None = None):
        """Errors must be one line at any width, so by default Rich gets its 80 columns."""
        env = {"SANCTUM_URL": self.url, "SANCTUM_TOKEN": token or (self.token(who) if who else None),
               "COLUMNS": str(columns) if columns else None}
        return runner.invoke(app, list(args), env=env)

    def ok(self, who: str | None, *args: str, **kwargs) -> str:
        """Tables for people use the terminal's width: a wide one, so cells are not cut short."""
        result = self(who, *args, columns=250, **kwargs)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result.stdout

    def json(self, who: str | None, *args: str, **kwargs):
        return json.loads(self.ok(who, *args, "--json", **kwargs))


@pytest.fixture
def cli(world, people, live_server) -> Cli:
    return Cli(world, people, live_server.url)


def one_error_line(result, contains: str) -> str:
    """Exit 1, nothing on stdout, and exactly one line ``error: ...`` on stderr."""
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert contains in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def json_error(result, code: str) -> dict:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    error = json.loads(result.stdout)["error"]
    assert error["code"] == code, error
    return error


# --------------------------------------------------------------------------- who am I


def test_whoami(cli) -> None:
    assert "owner@example.org at http://127.0.0.1:" in cli.ok("owner", "whoami")
    me = cli.json("admin", "whoami")
    assert (me["email"], me["is_admin"], me["totp_enabled"], me["url"]) == (
        "admin@example.org", True, True, cli.url)


def test_no_credentials_says_to_log_in(cli) -> None:
    result = runner.invoke(app, ["project", "list"])
    one_error_line(result, "not logged in: run 'sanctum login URL'")
    assert json_error(runner.invoke(app, ["project", "list", "--json"]), "not_logged_in")


def test_unreachable_server_is_one_line(cli) -> None:
    env = {"SANCTUM_URL": f"http://127.0.0.1:{free_port()}", "SANCTUM_TOKEN": "snt_x"}
    one_error_line(runner.invoke(app, ["whoami"], env=env), "cannot reach http://127.0.0.1:")
    json_error(runner.invoke(app, ["whoami", "--json"], env=env), "connection_error")


# --------------------------------------------------------------------------- projects


def test_project_commands(cli) -> None:
    out = cli.ok("owner", "project", "create", "gamma", "--title", "Gamma", "--description", "third")
    assert out.strip() == "created project gamma (you are its data owner)"
    created = cli.json("owner", "project", "create", "delta")
    assert (created["name"], created["title"], created["role"]) == ("delta", "delta", "data_owner")

    listed = cli.ok("owner", "project", "list")
    for text in ("name", "role", "alpha", "gamma", "delta", "data_owner"):
        assert text in listed
    assert [p["name"] for p in cli.json("owner", "project", "list")] == ["alpha", "delta", "gamma"]
    assert [(p["name"], p["role"]) for p in cli.json("scientist", "project", "list")] == [
        ("alpha", "data_scientist")]
    assert cli.ok("outsider", "project", "list").strip() == "no projects"
    assert cli.json("outsider", "project", "list") == []

    shown = cli.ok("owner", "project", "show", "gamma")
    assert "Gamma" in shown and "third" in shown
    assert cli.json("scientist", "project", "show", "alpha")["title"] == "Alpha"


def test_project_errors(cli) -> None:
    one_error_line(cli("owner", "project", "create", "Bad Name"), "error: invalid project name: use 1-63")
    json_error(cli("owner", "project", "create", "Bad Name", "--json"), "invalid_name")
    one_error_line(cli("owner", "project", "create", "alpha"), "a project with this name already exists")
    one_error_line(cli("owner", "project", "show", "beta"), "error: project not found")
    assert json_error(cli("owner", "project", "show", "beta", "--json"), "not_found") == {
        "code": "not_found", "message": "project not found"}
    one_error_line(cli("owner", "project", "show", "no-such"), "error: project not found")


def test_server_text_is_not_rich_markup(cli) -> None:
    """Titles come from users; Rich must print them, not interpret (or choke on) them."""
    title = "[bold]Trial[/bold] [/oops] [red]"
    assert "created project tricky" in cli.ok("owner", "project", "create", "tricky", "--title", title)
    assert title in cli.ok("owner", "project", "show", "tricky").replace("\n", "")
    line = one_error_line(cli("owner", "member", "add", "alpha", "outsider@example.org", "--role", "[/x]"),
                          "unknown role")
    assert "'[/x]'" in line


# --------------------------------------------------------------------------- members


def test_member_commands(cli) -> None:
    listed = cli.ok("scientist", "member", "list", "alpha")
    for text in ("owner@example.org", "data_owner", "checker@example.org", "output_checker"):
        assert text in listed
    assert {m["email"]: m["role"] for m in cli.json("auditor", "member", "list", "alpha")} == {
        "owner@example.org": "data_owner", "scientist@example.org": "data_scientist",
        "checker@example.org": "output_checker", "auditor@example.org": "auditor"}

    out = cli.ok("owner", "member", "add", "alpha", "outsider@example.org", "--role", "data_scientist")
    assert out.strip() == "added outsider@example.org to alpha as data_scientist"
    out = cli.ok("owner", "member", "set-role", "alpha", "outsider@example.org", "auditor")
    assert out.strip() == "outsider@example.org is now auditor in alpha"
    changed = cli.json("owner", "member", "set-role", "alpha", "outsider@example.org", "output_checker")
    assert (changed["email"], changed["role"]) == ("outsider@example.org", "output_checker")
    assert cli.ok("owner", "member", "remove", "alpha", "outsider@example.org").strip() == (
        "removed outsider@example.org from alpha")
    added = cli.json("owner", "member", "add", "alpha", "outsider@example.org", "--role", "auditor")
    assert added["role"] == "auditor"
    assert cli.json("owner", "member", "remove", "alpha", "outsider@example.org") == {
        "project": "alpha", "removed": "outsider@example.org"}
    assert "outsider@example.org" not in cli.ok("owner", "member", "list", "alpha")


def test_member_errors(cli) -> None:
    one_error_line(cli("owner", "member", "add", "alpha", "outsider@example.org", "--role", "boss"),
                   "error: unknown role 'boss'; use one of data_owner, data_scientist, output_checker, "
                   "auditor")
    json_error(cli("owner", "member", "set-role", "alpha", "scientist@example.org", "boss", "--json"),
               "invalid_role")
    one_error_line(cli("scientist", "member", "add", "alpha", "outsider@example.org", "--role", "auditor"),
                   "your role data_scientist may not members:manage")
    one_error_line(cli("owner", "member", "add", "beta", "outsider@example.org", "--role", "auditor"),
                   "project not found")
    one_error_line(cli("owner", "member", "add", "alpha", "nobody@example.org", "--role", "auditor"),
                   "no active user with this e-mail address")
    one_error_line(cli("owner", "member", "remove", "alpha", "owner@example.org"),
                   "the last data owner cannot be removed")
    one_error_line(cli("owner", "member", "remove", "alpha", "outsider@example.org"), "no member")


# --------------------------------------------------------------------------- tokens


def test_token_commands(cli) -> None:
    out = cli("owner", "token", "create", "ci", "--scope", "read", "--project", "alpha", "--days", "7")
    assert out.exit_code == 0, out.stderr
    *message, secret = out.stdout.strip().splitlines()
    message = " ".join(" ".join(message).split())  # people's text may wrap; the secret never does
    assert message.startswith("created token ci (id ") and message.endswith("the secret, shown only now:")
    assert secret.startswith("snt_") and len(secret) > 30 and " " not in secret

    as_ci = cli.json(None, "project", "list", token=secret)
    assert [p["name"] for p in as_ci] == ["alpha"]
    one_error_line(cli(None, "member", "add", "alpha", "outsider@example.org", "--role", "auditor",
                       token=secret), "this token's scopes do not include members:manage")

    created = cli.json("owner", "token", "create", "notebook", "--scope", "project:read",
                       "--scope", "members:read")
    assert created["token"].startswith("snt_")
    assert (created["name"], created["scopes"], created["project"]) == (
        "notebook", ["project:read", "members:read"], None)

    listed = cli.json("owner", "token", "list")
    names = {t["name"]: t for t in listed}
    assert {"ci", "notebook"} <= set(names) and all("token" not in t for t in listed)
    ci_id = names["ci"]["id"]
    table = cli.ok("owner", "token", "list")
    assert "ci" in table and "notebook" in table and secret not in table

    assert cli.ok("owner", "token", "revoke", str(ci_id)).strip() == f"revoked token {ci_id}"
    one_error_line(cli(None, "project", "list", token=secret), "error: this token has been revoked")
    json_error(cli(None, "project", "list", "--json", token=secret), "token_revoked")
    assert ci_id not in {t["id"] for t in cli.json("owner", "token", "list")}
    everything = {t["id"]: t for t in cli.json("owner", "token", "list", "--all")}
    assert everything[ci_id]["revoked_at"] is not None
    assert cli.json("owner", "token", "revoke", str(created["id"])) == {"revoked": created["id"]}


def test_token_errors(cli) -> None:
    one_error_line(cli("owner", "token", "create", "x", "--scope", "everything"),
                   "unknown scopes: everything")
    one_error_line(cli("owner", "token", "create", "x", "--project", "beta"), "project not found")
    one_error_line(cli("owner", "token", "create", "x", "--days", "1000"), "between 1 and 365")
    one_error_line(cli("owner", "token", "revoke", "999999"), "token not found")
    json_error(cli("owner", "token", "revoke", "999999", "--json"), "not_found")


# --------------------------------------------------------------------------- audit


def test_audit_log(cli) -> None:
    table = cli.ok("owner", "audit", "log", "alpha")
    for text in ("seq", "action", "project.create", "member.add", "owner@example.org"):
        assert text in table
    page = cli.json("auditor", "audit", "log", "alpha")
    actions = [e["action"] for e in page["events"]]
    assert actions[0] == "project.create" and actions.count("member.add") == 3
    assert page["next_after"] is None

    first = cli.json("owner", "audit", "log", "alpha", "--limit", "2")
    assert len(first["events"]) == 2 and first["next_after"] == first["events"][-1]["seq"]
    rest = cli.json("owner", "audit", "log", "alpha", "--after", str(first["next_after"]))
    assert [e["seq"] for e in first["events"] + rest["events"]] == [e["seq"] for e in page["events"]]
    assert f"more: --after {first['next_after']}" in cli.ok("owner", "audit", "log", "alpha", "--limit", "2")
    only = cli.json("owner", "audit", "log", "alpha", "--action", "member.")
    assert {e["action"] for e in only["events"]} == {"member.add"}

    one_error_line(cli("scientist", "audit", "log", "alpha"), "your role data_scientist may not audit:read")
    one_error_line(cli("owner", "audit", "log", "beta"), "project not found")


# --------------------------------------------------------------------------- login, logout, 2FA


def test_login_whoami_logout_in_process(cli, world, tmp_path, private_config) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    url = cli.url
    # The owner has 2FA: without --totp the code is asked for.
    result = runner.invoke(app, ["login", url, "--email", world.owner.email, "--password-file",
                                 str(password_file)], input=world.owner.code() + "\n")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    # (The runner echoes typed input to stdout; a terminal would not.)
    assert f"logged in to {url} as owner@example.org until " in " ".join(result.stdout.split())
    stored = json.loads((private_config / "credentials.json").read_text())
    assert set(stored) == {"url", "token", "expires_at", "email"} and stored["url"] == url

    assert cli.ok(None, "whoami").startswith("owner@example.org at ")  # SANCTUM_URL set, token stored
    me = json.loads(runner.invoke(app, ["whoami", "--json"]).stdout)
    assert me["email"] == "owner@example.org"

    out = json.loads(runner.invoke(app, ["logout", "--json"]).stdout)
    assert out == {"logged_out": True, "revoked": True, "url": url}
    assert not (private_config / "credentials.json").exists()
    revoked = cli(None, "whoami", token=stored["token"])
    one_error_line(revoked, "this token has been revoked")
    assert runner.invoke(app, ["logout"]).stdout.strip() == "not logged in"

    # Password prompted (hidden), e-mail prompted; a wrong password is one line.
    # (The runner echoes the typed e-mail address to stdout, before the JSON; a terminal would not.)
    result = runner.invoke(app, ["login", url, "--json"], input=f"{world.scientist.email}\nwrong password\n")
    assert result.exit_code == 1
    assert json.loads(result.stdout.partition("\n")[2])["error"] == {
        "code": "bad_credentials", "message": "wrong e-mail address or password"}
    result = runner.invoke(app, ["login", url, "--json"], input=f"{world.scientist.email}\n{PASSWORD}\n")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert json.loads(result.stdout.partition("\n")[2])["email"] == "scientist@example.org"
    assert PASSWORD not in result.output
    listed = json.loads(runner.invoke(app, ["project", "list", "--json"]).stdout)
    assert [p["name"] for p in listed] == ["alpha"]


def test_login_refuses_bad_totp_and_plain_http_elsewhere(cli, world, tmp_path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    base = ["login", cli.url, "--email", world.owner.email, "--password-file", str(password_file)]
    one_error_line(runner.invoke(app, [*base, "--totp", "000000"]),
                   "that code is not valid or was already used")
    one_error_line(runner.invoke(app, ["login", "http://tre.example.org", "--email", "a@b.org",
                                       "--password-file", str(password_file)]),
                   "refusing to send credentials over plain http to tre.example.org")
    one_error_line(runner.invoke(app, ["login", cli.url, "--email", "a@b.org", "--password-file",
                                       str(tmp_path / "missing")]), "cannot read password file")


def test_totp_enrol_and_confirm(cli, people, tmp_path, private_config) -> None:
    people.create("root@example.org", admin=True)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    result = runner.invoke(app, ["login", cli.url, "--email", "root@example.org", "--password-file",
                                 str(password_file)])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "must enrol two-factor authentication" in result.stderr
    assert runner.invoke(app, ["whoami"]).stdout.strip().endswith("(admin, must enrol 2FA)")
    enrolment = json.loads(runner.invoke(app, ["totp", "enrol", "--json"]).stdout)
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    one_error_line(runner.invoke(app, ["totp", "confirm", "000000"]), "code")
    result = runner.invoke(app, ["totp", "confirm", pyotp.TOTP(enrolment["secret"]).now()])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert len(result.stdout.strip().splitlines()) == 11  # the heading and ten recovery codes
    assert runner.invoke(app, ["whoami"]).stdout.strip().endswith("(admin, 2FA on)")
    human = runner.invoke(app, ["totp", "enrol"])  # replacing needs the password and a current code
    one_error_line(human, "already enabled")


def sanctum_script() -> str:
    path = Path(sys.executable).parent / "sanctum"
    assert path.exists(), f"console script not installed next to {sys.executable}"
    return str(path)


def test_console_script_login_stores_a_private_token(cli, world, tmp_path) -> None:
    """The installed ``sanctum`` in a subprocess: login with --password-file and --totp, then use
    the stored credential with no token in the environment."""
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    config = tmp_path / "cfg" / "sanctum"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    env["SANCTUM_CONFIG_DIR"] = str(config)

    def sanctum(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sanctum_script(), *args], env=env, capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    done = sanctum("login", cli.url, "--email", world.owner.email, "--password-file", str(password_file),
                   "--totp", world.owner.code())
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.startswith(f"logged in to {cli.url} as owner@example.org")
    path = config / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["token"].startswith("snt_") and stored["email"] == "owner@example.org"

    listed = sanctum("project", "list", "--json")
    assert listed.returncode == 0, (listed.stdout, listed.stderr)
    assert [p["name"] for p in json.loads(listed.stdout)] == ["alpha"]

    # The stored token goes to its own server only.
    env["SANCTUM_URL"] = f"http://127.0.0.1:{free_port()}"
    elsewhere = sanctum("project", "list")
    assert elsewhere.returncode == 1
    assert elsewhere.stderr.strip() == f"error: not logged in to {env['SANCTUM_URL']}: run 'sanctum login " \
                                       f"{env['SANCTUM_URL']}' (or set SANCTUM_TOKEN)"
