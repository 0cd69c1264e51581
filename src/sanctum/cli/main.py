"""``sanctum``: one command for administrators on the server and for researchers on their laptops."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sanctum.cli.instance import (
    DataDirOption,
    JsonFlag,
    _show_init,
    fail,
    guard_start,
    initialise,
    open_runtime,
    read_password_file,
    settings_for,
)
from sanctum.cli.output import console, show
from sanctum.config import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    help="Sanctum trusted research environment.",
)
admin_app = typer.Typer(no_args_is_help=True, help="Platform administration on a data dir (offline).")
admin_user_app = typer.Typer(no_args_is_help=True, help="User accounts.")
audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit trail.")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(admin_user_app, name="user")
app.add_typer(audit_app, name="audit")


@app.command()
def init(
    data_dir: DataDirOption,
    admin_email: Annotated[str | None, typer.Option(help="create this platform admin")] = None,
    admin_password_file: Annotated[
        Path | None, typer.Option(help="file holding the admin's password")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a data dir: master key (0600), catalog database, and optionally the first admin."""
    if (admin_email is None) != (admin_password_file is None):
        fail("--admin-email and --admin-password-file go together", as_json=as_json)
    settings = settings_for(data_dir)
    created = initialise(settings)
    if admin_email and admin_password_file:
        _create_user(
            settings,
            admin_email,
            read_password_file(admin_password_file),
            admin=True,
            can_create_projects=False,
            as_json=as_json,
            quiet=True,
        )
    _show_init(settings, created, as_json)


@app.command()
def serve(
    data_dir: DataDirOption,
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
) -> None:
    """Serve the web pages and the API. Refuses an unsafe configuration with a one-line reason."""
    from sanctum.db.migrate import upgrade
    from sanctum.server import serve as run

    settings = settings_for(data_dir, host=host, port=port, workers=workers)
    guard_start(settings)
    upgrade(settings.resolved_database_url)
    _clean_leftovers(settings)
    console.print(
        f"Sanctum serving {settings.data_dir} on "
        f"{'https' if settings.tls_enabled else 'http'}://{settings.host}:{settings.port}"
    )
    run(settings)


def _clean_leftovers(settings: Settings) -> None:
    """What a crash left: ``.part`` files, blobs never recorded, jobs cut off mid-run and their staging."""
    from sanctum.datasets.fsck import cleanup_orphans
    from sanctum.jobs.runner import recover

    runtime = open_runtime(settings)
    try:
        parts = runtime.store.cleanup_temp()
        with runtime.db.session(write=False) as db:
            orphans = cleanup_orphans(db, runtime.store)
        interrupted = recover(runtime)
    finally:
        runtime.close()
    if interrupted:
        console.print(f"{interrupted} job(s) cut off by the last stop: marked failed, staging wiped")
    if parts or orphans:
        console.print(
            f"cleaned up after interrupted uploads: {parts} partial and {orphans} unrecorded blob(s)"
        )


@app.command()
def demo(
    data_dir: DataDirOption = Path("./sanctum-data"),
    port: Annotated[int, typer.Option(help="port")] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="set up and print credentials only")] = False,
    as_json: JsonFlag = False,
) -> None:
    """An embedded instance with a demo project, a Data Owner and a Data Scientist; then serve it."""
    from sanctum.demo import ensure_demo

    settings = settings_for(data_dir, port=port)
    initialise(settings)
    runtime = open_runtime(settings)
    try:
        creds = ensure_demo(runtime)
    finally:
        runtime.close()
    url = f"http://{settings.host}:{settings.port}"
    if as_json:
        show({"url": url, **creds}, as_json=True)
    else:
        _print_demo(url, creds)
    if not no_serve:
        from sanctum.server import serve as run

        run(settings)


def _print_demo(url: str, creds: dict) -> None:  # type: ignore[type-arg]
    console.print(f"\n[bold]Sanctum demo[/bold] — project [cyan]{creds['project']}[/cyan] at {url}\n")
    for role, person in creds["people"].items():
        console.print(f"[bold]{role}[/bold]: {person['email']}  password: {person['password']}")
        if "totp_secret" in person:
            console.print(f"  TOTP secret: {person['totp_secret']} (add it to an authenticator app)")
            console.print(f"  recovery codes: {', '.join(person['recovery_codes'][:3])}, …")
    if creds.get("job"):
        console.print(f"\nDemo job: {creds['job']}")
    if creds.get("experiment"):
        console.print(f"Demo experiment: {creds['experiment']}; see the Experiments page")
    console.print("\nCredentials are kept in demo-credentials.json in the data dir (mode 0600).\n")


def _create_user(
    settings: Settings,
    email: str,
    password: str,
    *,
    admin: bool,
    can_create_projects: bool,
    as_json: bool,
    quiet: bool = False,
) -> None:
    from sanctum.accounts.users import create_user
    from sanctum.audit import AuditContext
    from sanctum.errors import SanctumError
    from sanctum.schemas.admin import UserPublic

    runtime = open_runtime(settings)
    try:
        with runtime.db.session() as db:
            user = create_user(
                db,
                AuditContext(actor_email="sanctum admin (offline)"),
                email,
                password,
                admin=admin,
                can_create_projects=can_create_projects,
            )
            public = UserPublic.model_validate(user)
    except SanctumError as exc:
        fail(exc.message, as_json=as_json, error_code=exc.code)
    finally:
        runtime.close()
    if not quiet:
        show(public, as_json=as_json, message=f"created user {public.email}" + (" (admin)" if admin else ""))


@admin_user_app.command("create")
def admin_user_create(
    email: str,
    data_dir: DataDirOption,
    password_file: Annotated[Path, typer.Option(help="file holding the password")],
    admin: Annotated[bool, typer.Option("--admin", help="platform administrator")] = False,
    no_projects: Annotated[bool, typer.Option("--no-projects", help="may not create projects")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a user directly in the data dir's catalog (no server needed)."""
    settings = settings_for(data_dir)
    _create_user(
        settings,
        email,
        read_password_file(password_file),
        admin=admin,
        can_create_projects=not no_projects,
        as_json=as_json,
    )


@audit_app.command("verify")
def audit_verify(data_dir: DataDirOption, as_json: JsonFlag = False) -> None:
    """Recompute the hash chain; name the first broken event. Exit 1 when the chain is broken."""
    from sanctum.audit import verify

    runtime = open_runtime(settings_for(data_dir))
    try:
        with runtime.db.session(write=False) as db:
            report = verify(db)
    finally:
        runtime.close()
    if as_json:
        show(report.__dict__, as_json=True)
    elif report.ok:
        console.print(f"audit chain intact: {report.events} events, head {report.head_hash}")
    else:
        console.print(
            f"[red]audit chain broken at event {report.first_broken_seq}[/red]: {report.reason} "
            f"({report.events} events verified before it)"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def fsck(
    data_dir: DataDirOption,
    deep: Annotated[bool, typer.Option("--deep", help="decrypt every blob and re-check its SHA-256")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Prove the blob store and the catalog agree; exit 1 and list what does not."""
    from sanctum.datasets.fsck import check

    runtime = open_runtime(settings_for(data_dir))
    try:
        with runtime.db.session(write=False) as db:
            report = check(db, runtime.store, runtime.keyring, deep=deep)
    finally:
        runtime.close()
    result = {
        "ok": report.ok,
        "files": report.files,
        "blobs": report.blobs,
        "checked_bytes": report.checked_bytes,
        "problems": [p.__dict__ for p in report.problems],
    }
    if as_json:
        show(result, as_json=True)
    else:
        for problem in report.problems:
            console.print(f"[red]{problem.kind}[/red] {problem.blob_id}: {problem.detail}", highlight=False)
        verdict = "store and catalog agree" if report.ok else f"{len(report.problems)} problem(s)"
        console.print(
            f"{verdict}: {report.files} files, {report.blobs} blobs"
            + (f", {report.checked_bytes} bytes decrypted and re-hashed" if deep else "")
        )
    if not report.ok:
        raise typer.Exit(1)


def _register_client_commands() -> None:
    """Client commands (login, project, member, token) live in sanctum.cli.client."""
    try:
        from sanctum.cli import client
    except ImportError:
        return
    client.register(app)


_register_client_commands()


def main() -> None:
    app()
