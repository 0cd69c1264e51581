"""Client commands: a researcher's laptop talking to a server through the SDK.

The server and credential come from ``SANCTUM_URL`` / ``SANCTUM_TOKEN`` when set (scripts, CI),
else from what ``sanctum login`` stored (see ``sanctum.sdk.credentials``). Every command takes
``--json``; a refusal is one line ``error: <message>`` on stderr and exit code 1, or with ``--json``
the server's error object on stdout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from rich.markup import escape

from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, emit_json, err_console, show
from sanctum.sdk import Client, SanctumAPIError, SanctumSDKError, credentials

project_app = typer.Typer(no_args_is_help=True, help="Projects you are a member of.")
member_app = typer.Typer(no_args_is_help=True, help="A project's members and their roles.")
token_app = typer.Typer(no_args_is_help=True, help="Your API tokens.")
totp_app = typer.Typer(no_args_is_help=True, help="Your second factor (TOTP).")

# What people see: column heading -> field of the wire schema (JSON output has every field).
PROJECT_COLUMNS = {"name": "name", "title": "title", "your role": "role", "created": "created_at"}
MEMBER_COLUMNS = {"email": "email", "role": "role", "added": "added_at"}
TOKEN_COLUMNS = {"id": "id", "name": "name", "kind": "kind", "project": "project", "scopes": "scopes",
                 "expires": "expires_at", "last used": "last_used_at"}
AUDIT_COLUMNS = {"seq": "seq", "when": "occurred_at", "actor": "actor", "action": "action",
                 "target": "target", "outcome": "outcome"}
Columns = dict[str, str]

ProjectArg = Annotated[str, typer.Argument(help="project name")]
EmailArg = Annotated[str, typer.Argument(help="the member's e-mail address")]


# --------------------------------------------------------------------------- plumbing


def _fail(message: str, *, as_json: bool, code: str = "error") -> NoReturn:
    """One line, whatever the terminal width, and never read as Rich markup."""
    message = " ".join(message.split())
    if as_json:
        emit_json({"error": {"code": code, "message": message}})
    else:
        err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _read_password(path: Path, as_json: bool) -> str:
    """Passwords come from files or a hidden prompt, never argv (other users can read ``ps``)."""
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        _fail(f"cannot read password file {path}: {exc.strerror}", as_json=as_json, code="password_file")


@contextmanager
def _server(as_json: bool) -> Iterator[Client]:
    """A client for the configured server; any SDK error ends the command with one line."""
    try:
        url, token = credentials.resolve()
        with Client(url, token) as client:
            yield client
    except SanctumSDKError as exc:
        _fail(exc.message, as_json=as_json, code=exc.code)


def _cell(value: Any, seconds: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ" if seconds else "%Y-%m-%d %H:%MZ")
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def _timestamp(text: str) -> str:
    try:
        return _cell(datetime.fromisoformat(text), seconds=True)
    except ValueError:
        return text


def _row(value: BaseModel | dict[str, Any], columns: Columns) -> dict[str, str]:
    get = value.get if isinstance(value, dict) else lambda name: getattr(value, name, None)
    return {heading: escape(_cell(get(field))) for heading, field in columns.items()}


def _show(value: Any, as_json: bool, *, columns: Columns | None = None,
          message: str | None = None, empty: str | None = None) -> None:
    """``output.show``, with what the server sends escaped so that Rich never reads it as markup.

    A list becomes a table (or the ``empty`` line); ``columns`` of one object become lines of
    ``field: value``.
    """
    if as_json:
        show(value, as_json=True)
        return
    lines = [escape(message)] if message else []
    table: list[dict[str, str]] | None = None
    if columns is not None and isinstance(value, list):
        if value or not empty:
            table = [_row(v, columns) for v in value]
        else:
            lines.append(escape(empty))
    elif columns is not None:
        lines += [f"{name}: {cell}" for name, cell in _row(value, columns).items()]
    show(table, as_json=False, columns=list(columns) if columns and table is not None else None,
         message="\n".join(lines) or None)


# --------------------------------------------------------------------------- you


def login(
    url: Annotated[str, typer.Argument(help="the server, e.g. https://tre.example.org")],
    email: Annotated[str | None, typer.Option(help="your e-mail address (prompted when missing)")] = None,
    password_file: Annotated[Path | None, typer.Option(help="file holding your password")] = None,
    totp: Annotated[str | None, typer.Option(help="TOTP or recovery code (prompted when needed)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Log in and keep the token (hours) in your config dir, readable by you only."""
    email = email or typer.prompt("E-mail", err=True)
    password = _read_password(password_file, as_json) if password_file else typer.prompt(
        "Password", hide_input=True, err=True)
    try:
        try:
            client, result = Client.login(url, email, password, totp)
        except SanctumAPIError as exc:
            if exc.code != "totp_required" or totp is not None:
                raise
            code = typer.prompt("TOTP code (or a recovery code)", err=True)
            client, result = Client.login(url, email, password, code)
        with client:
            me = client.me()
    except SanctumSDKError as exc:
        _fail(exc.message, as_json=as_json, code=exc.code)
    path = credentials.save(credentials.Credentials(
        url=client.url, token=result.token, expires_at=result.expires_at.isoformat(), email=me.email))
    summary = {"url": client.url, "email": me.email, "expires_at": result.expires_at.isoformat(),
               "enrol_only": result.enrol_only, "credentials_file": str(path)}
    _show(summary, as_json, message=f"logged in to {client.url} as {me.email} "
                                    f"until {_cell(result.expires_at)}")
    if result.enrol_only and not as_json:
        err_console.print("your account must enrol two-factor authentication before anything else: "
                          "run 'sanctum totp enrol'", soft_wrap=True, highlight=False)


def logout(as_json: JsonFlag = False) -> None:
    """End the stored login on the server and forget it here (SANCTUM_TOKEN is left alone)."""
    try:
        stored = credentials.load()
    except SanctumSDKError as exc:
        _fail(exc.message, as_json=as_json, code=exc.code)
    if stored is None:
        _show({"logged_out": False, "revoked": False}, as_json, message="not logged in")
        return
    revoked, note = False, ""
    if not stored.expired:
        try:
            with Client(stored.url, stored.token) as client:
                client.logout()
            revoked = True
        except SanctumAPIError as exc:
            revoked = exc.status == 401  # already revoked or expired there
            note = "" if revoked else f" (the server said: {exc.message})"
        except SanctumSDKError as exc:
            note = f" ({exc.message}; the token stays valid until {stored.expires_at})"
    credentials.delete()
    _show({"logged_out": True, "revoked": revoked, "url": stored.url}, as_json,
          message=f"logged out of {stored.url}{note}")


def whoami(as_json: JsonFlag = False) -> None:
    """Who the configured credential belongs to."""
    with _server(as_json) as client:
        me = client.me()
    if as_json:
        show({"url": client.url, **me.model_dump(mode="json")}, as_json=True)
        return
    flags = [f for f, on in (("admin", me.is_admin), ("2FA on", me.totp_enabled),
                             ("must enrol 2FA", me.must_enrol_2fa)) if on]
    _show(me, False, message=f"{me.email} at {client.url}" + (f" ({', '.join(flags)})" if flags else ""))


@totp_app.command("enrol")
def totp_enrol(
    password_file: Annotated[Path | None, typer.Option(help="replacing a factor: your password")] = None,
    current_code: Annotated[str | None, typer.Option(help="replacing a factor: a current code")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start enrolment: prints the secret for your authenticator app; then run 'sanctum totp confirm'."""
    password = _read_password(password_file, as_json) if password_file else None
    with _server(as_json) as client:
        enrolment = client.begin_totp(password=password, code=current_code)
    if as_json:
        show(enrolment, as_json=True)
        return
    console.print("Add this to your authenticator app, then run 'sanctum totp confirm CODE':")
    typer.echo(f"secret: {enrolment.secret}\nuri:    {enrolment.otpauth_uri}")


@totp_app.command("confirm")
def totp_confirm(code: Annotated[str, typer.Argument(help="a code from the app")],
                 as_json: JsonFlag = False) -> None:
    """Prove the app works: 2FA is on from now. Prints the one-time recovery codes (shown only here)."""
    with _server(as_json) as client:
        codes = client.confirm_totp(code)
    if as_json:
        show(codes, as_json=True)
        return
    console.print("two-factor authentication is on. Keep these recovery codes somewhere safe:")
    typer.echo("\n".join(codes.recovery_codes))


# --------------------------------------------------------------------------- projects and members


@project_app.command("create")
def project_create(
    name: ProjectArg,
    title: Annotated[str, typer.Option(help="a title for people")] = "",
    description: Annotated[str, typer.Option(help="what the project is for")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create a project; you become its data owner."""
    with _server(as_json) as client:
        project = client.create_project(name, title=title, description=description)
    _show(project, as_json, message=f"created project {project.name} (you are its data owner)")


@project_app.command("list")
def project_list(as_json: JsonFlag = False) -> None:
    """The projects you are a member of, with your role in each."""
    with _server(as_json) as client:
        projects = client.list_projects()
    _show(projects, as_json, columns=PROJECT_COLUMNS, empty="no projects")


@project_app.command("show")
def project_show(name: ProjectArg, as_json: JsonFlag = False) -> None:
    """One project."""
    with _server(as_json) as client:
        project = client.get_project(name)
    _show(project, as_json, columns={**PROJECT_COLUMNS, "description": "description"})


@member_app.command("list")
def member_list(project: ProjectArg, as_json: JsonFlag = False) -> None:
    """Who is in a project, with which role."""
    with _server(as_json) as client:
        members = client.list_members(project)
    _show(members, as_json, columns=MEMBER_COLUMNS, empty="no members")


@member_app.command("add")
def member_add(
    project: ProjectArg,
    email: EmailArg,
    role: Annotated[str, typer.Option(help="data_owner, data_scientist, output_checker or auditor")],
    as_json: JsonFlag = False,
) -> None:
    """Add a user to a project (data owners)."""
    with _server(as_json) as client:
        member = client.add_member(project, email, role)
    _show(member, as_json, message=f"added {member.email} to {project} as {member.role}")


@member_app.command("set-role")
def member_set_role(
    project: ProjectArg,
    email: EmailArg,
    role: Annotated[str, typer.Argument(help="data_owner, data_scientist, output_checker or auditor")],
    as_json: JsonFlag = False,
) -> None:
    """Change a member's role (data owners)."""
    with _server(as_json) as client:
        member = client.set_member_role(project, email, role)
    _show(member, as_json, message=f"{member.email} is now {member.role} in {project}")


@member_app.command("remove")
def member_remove(project: ProjectArg, email: EmailArg, as_json: JsonFlag = False) -> None:
    """Remove a member from a project (data owners)."""
    with _server(as_json) as client:
        client.remove_member(project, email)
    _show({"project": project, "removed": email}, as_json, message=f"removed {email} from {project}")


# --------------------------------------------------------------------------- tokens and audit


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="what the token is for, e.g. 'ci'")],
    scope: Annotated[list[str] | None, typer.Option(
        "--scope", help="limit to this scope (repeatable; e.g. read, project:read)")] = None,
    project: Annotated[str | None, typer.Option(help="bind the token to this project")] = None,
    days: Annotated[int | None, typer.Option(help="lifetime in days (default 30, at most 365)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API token. The secret is printed once; store it now."""
    with _server(as_json) as client:
        created = client.create_token(name, scopes=scope or None, project=project, expires_in_days=days)
    if as_json:
        show(created, as_json=True)
        return
    _show(created, False, message=f"created token {created.name} (id {created.id}, "
                                  f"expires {_cell(created.expires_at)}); the secret, shown only now:")
    typer.echo(created.token)  # plain: never wrapped or restyled, so it copies cleanly


@token_app.command("list")
def token_list(
    include_all: Annotated[bool, typer.Option("--all", help="include revoked and expired tokens")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Your API and login tokens (never their secrets)."""
    with _server(as_json) as client:
        tokens = client.list_tokens(include_inactive=include_all)
    columns = {**TOKEN_COLUMNS, "revoked": "revoked_at"} if include_all else TOKEN_COLUMNS
    _show(tokens, as_json, columns=columns, empty="no tokens")


@token_app.command("revoke")
def token_revoke(token_id: Annotated[int, typer.Argument(metavar="ID", help="the token's id")],
                 as_json: JsonFlag = False) -> None:
    """Revoke one of your tokens; it stops working at once."""
    with _server(as_json) as client:
        client.revoke_token(token_id)
    _show({"revoked": token_id}, as_json, message=f"revoked token {token_id}")


def audit_log(
    project: ProjectArg,
    after: Annotated[int, typer.Option(min=0, help="events after this sequence number")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="at most this many events")] = 100,
    action: Annotated[str | None, typer.Option(help="only actions starting so, e.g. 'member.'")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A project's audit trail (data owners and auditors)."""
    with _server(as_json) as client:
        page = client.project_audit(project, after=after, limit=limit, action=action)
    rows = [{**event.model_dump(), "occurred_at": _timestamp(event.occurred_at)} for event in page.events]
    _show(page if as_json else rows, as_json, columns=AUDIT_COLUMNS, empty="no events")
    if page.next_after is not None and not as_json:
        console.print(f"more: --after {page.next_after}")


# --------------------------------------------------------------------------- wiring


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``sanctum`` app (the ``audit log`` command to its audit group)."""
    for command in (login, logout, whoami):
        app.command()(command)
    for name, group in (("project", project_app), ("member", member_app), ("token", token_app),
                        ("totp", totp_app)):
        app.add_typer(group, name=name)
    audit = next((g.typer_instance for g in app.registered_groups if g.name == "audit"), None)
    if audit is None:
        audit = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")
        app.add_typer(audit, name="audit")
    audit.command("log")(audit_log)
    from sanctum.cli.datasets import register as register_datasets  # late: it imports this module

    register_datasets(app)
    from sanctum.cli.jobs import register as register_jobs

    register_jobs(app)
    from sanctum.cli.nodes import register as register_nodes

    register_nodes(app)
    from sanctum.cli.hpo import register as register_hpo

    register_hpo(app)
    from sanctum.cli.ingest import register as register_ingest

    register_ingest(app)
    from sanctum.cli.dmp import register as register_dmp

    register_dmp(app)
    from sanctum.cli.airlock import register as register_airlock

    register_airlock(app)
    from sanctum.cli.dicom import register as register_dicom

    register_dicom(app)
