"""``sanctum dmp show|history|set|validate``, ``sanctum report gdpr`` and ``sanctum lifecycle run``.

``dmp validate`` works offline (no server): the same validation the server runs, listing every
problem with its JSON path. ``dmp set`` runs it before sending, so a broken file never travels.
``lifecycle run`` is a server-side command on a data dir (cron or a systemd timer may call it; the
server also runs it daily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from sanctum.cli.client import ProjectArg, _fail, _server, _show
from sanctum.cli.instance import DataDirOption, JsonFlag, open_runtime, settings_for
from sanctum.cli.output import console, emit_json

dmp_app = typer.Typer(
    no_args_is_help=True, help="A project's data management plan (RDA DMP Common Standard)."
)
report_app = typer.Typer(no_args_is_help=True, help="Compliance reports.")
lifecycle_app = typer.Typer(
    no_args_is_help=True, help="Retention: shred expired datasets, warn owners (server)."
)

FileArg = Annotated[Path, typer.Argument(help="the DMP as JSON (RDA DMP Common Standard 1.1 or 1.2)")]
StandardOption = Annotated[
    str | None, typer.Option("--standard", help="1.1 or 1.2 (default: from $schema, else 1.2 then 1.1)")
]
RULE_COLUMNS = {
    "dataset": "name",
    "personal": "personal_data",
    "sensitive": "sensitive_data",
    "access": "data_access",
    "available until": "available_until",
    "compute in": "locations",
}
VERSION_COLUMNS = {
    "version": "number",
    "standard": "standard",
    "title": "title",
    "set by": "set_by",
    "set at": "set_at",
    "sha256": "sha256",
}


def _validated(path: Path, standard: str | None, as_json: bool) -> Any:
    """The file checked as the server would check it; every problem listed, exit 1, when invalid."""
    from sanctum.dmp import service
    from sanctum.dmp import standard as std

    if standard is not None and standard not in std.VERSIONS:
        _fail("--standard must be 1.1 or 1.2", as_json=as_json, code="invalid_input")
    try:
        text = path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", as_json=as_json, code="file")
    try:
        return service.validate(std.parse_json(text), standard)
    except std.NotAStandardDmp as exc:
        invalid = service.DmpInvalid(exc)
    except service.DmpInvalid as exc:
        invalid = exc
    problems = [{"path": p.path, "message": p.message} for p in invalid.problems]
    if as_json:
        emit_json({"valid": False, "standard": invalid.standard, "problems": problems})
    else:
        console.print(f"[red]not a valid DMP[/red] (RDA DMP Common Standard {invalid.standard}):")
        for p in problems:
            console.print(f"  {escape(p['path'])}: {escape(p['message'])}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _summary_lines(summary: Any, as_json: bool) -> None:
    _show(summary.datasets, as_json, columns=RULE_COLUMNS, empty="no dataset of the project is described")
    if summary.described_but_absent:
        console.print("described but not in the project: " + escape(", ".join(summary.described_but_absent)))
    if summary.controls:
        controls = ", ".join(f"{k}={v}" for k, v in summary.controls.items())
        console.print(f"sanctum controls: {escape(controls)}", highlight=False, soft_wrap=True)


@dmp_app.command("validate")
def dmp_validate(file: FileArg, standard: StandardOption = None, as_json: JsonFlag = False) -> None:
    """Check a DMP file offline (no server); exit 1 and list every problem with its path."""
    from sanctum.dmp import views

    valid = _validated(file, standard, as_json)
    summary = views.summary(valid.plan(), None)
    if as_json:
        emit_json(
            {
                "valid": True,
                "standard": valid.standard,
                "sha256": valid.sha256,
                "problems": [],
                "summary": summary.model_dump(mode="json"),
            }
        )
        return
    console.print(f"valid DMP (RDA DMP Common Standard {valid.standard}), sha256 {valid.sha256}")
    _summary_lines(summary, as_json)


@dmp_app.command("set")
def dmp_set(
    project: ProjectArg,
    file: FileArg,
    standard: StandardOption = None,
    confirm_shred: Annotated[
        bool,
        typer.Option("--confirm-shred", help="accept that datasets past their retention date are shredded"),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Set a new version of the project's DMP (data owners); checked here first, then by the server."""
    valid = _validated(file, standard, as_json)
    with _server(as_json) as client:
        result = client.set_dmp(project, valid.document, standard=valid.standard, confirm_shred=confirm_shred)
    message = f"DMP version {result.number} of {project} is in force (sha256 {result.sha256})"
    if result.shred_at_next_run:
        message += f"; shredded at the next lifecycle run: {', '.join(result.shred_at_next_run)}"
    if result.shares_revoked:
        message += f"; {result.shares_revoked} share(s) of closed datasets ended"
    _show(result, as_json, message=message)


@dmp_app.command("show")
def dmp_show(
    project: ProjectArg,
    version: Annotated[int | None, typer.Option("--version", help="an earlier version")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The DMP in force (or ``--version N``): per-dataset rules, controls and what expires soon."""
    with _server(as_json) as client:
        plan = client.get_dmp(project) if version is None else client.get_dmp_version(project, version)
        status = client.dmp_status(project)
    if as_json:
        emit_json({**plan.model_dump(mode="json"), "status": status.model_dump(mode="json")})
        return
    state = "in force" if plan.in_force else "not in force"
    console.print(
        f"DMP version {plan.number} of {escape(project)} ({state}): {escape(plan.title)}\n"
        f"RDA DMP Common Standard {plan.standard}; set by {escape(plan.set_by)} at "
        f"{plan.set_at:%Y-%m-%d %H:%MZ}; sha256 {plan.sha256}",
        highlight=False,
        soft_wrap=True,
    )
    _summary_lines(plan.summary, as_json)
    for label, items in (("expiring within 30 days", status.expiring_soon), ("overdue", status.overdue)):
        if items:
            listed = ", ".join(f"{i.dataset} ({i.available_until})" for i in items)
            console.print(f"{label}: {escape(listed)}")


@dmp_app.command("history")
def dmp_history(project: ProjectArg, as_json: JsonFlag = False) -> None:
    """Every version of the project's DMP, newest first."""
    with _server(as_json) as client:
        versions = client.dmp_history(project)
    _show(versions, as_json, columns=VERSION_COLUMNS, empty="no DMP has been set")


@report_app.command("gdpr")
def report_gdpr(
    project: ProjectArg,
    html: Annotated[Path | None, typer.Option("--html", help="write the report as an HTML file")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The compliance report (owners and auditors): JSON with --json, a file with --html FILE."""
    from sanctum.dmp import report_html

    with _server(as_json) as client:
        report = client.gdpr_report(project)
    if html is not None:
        try:
            html.write_text(report_html.render(report), encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {html}: {exc.strerror}", as_json=as_json, code="file")
    if as_json:
        emit_json(report)
        return
    chain = report["audit_chain"]
    dmp = report["dmp"]
    lines = [
        f"compliance report of {project}: {len(report['datasets'])} dataset(s), "
        f"{len(report['access']['members'])} member(s), {len(report['jobs'])} job(s), "
        f"{len(report['refusals'])} refusal(s)",
        f"DMP: version {dmp['version']} ({dmp['sha256'][:16]}…)" if dmp else "DMP: none set",
        f"audit chain: {'intact' if chain['ok'] else 'BROKEN at event ' + str(chain['first_broken_seq'])}, "
        f"{chain['events']} events",
    ]
    if html is not None:
        lines.append(f"written to {html}")
    console.print(escape("\n".join(lines)), highlight=False, soft_wrap=True)


@lifecycle_app.command("run")
def lifecycle_run(data_dir: DataDirOption, as_json: JsonFlag = False) -> None:
    """Shred datasets whose DMP retention date has come; warn about those within 30 days.
    Exit 1 when a dataset could not be shredded (the others are done)."""
    from sanctum.dmp import lifecycle

    runtime = open_runtime(settings_for(data_dir))
    try:
        result = lifecycle.run(runtime)
    finally:
        runtime.close()
    if as_json:
        emit_json(result.as_dict())
    else:
        for item in result.shredded:
            console.print(
                f"shredded {escape(item['project'])}/{escape(item['dataset'])} "
                f"(available until {item['available_until']})",
                highlight=False,
            )
        for item in result.warned:
            console.print(
                f"warned: {escape(item['project'])}/{escape(item['dataset'])} expires "
                f"{item['available_until']} ({item['days_left']} days)",
                highlight=False,
            )
        for item in result.failed:
            console.print(f"[red]failed[/red] dataset {item['dataset_id']}: {escape(item['error'])}")
        console.print(
            f"lifecycle {result.on}: {len(result.shredded)} shredded, {len(result.warned)} warned, "
            f"{len(result.failed)} failed"
        )
    if result.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(dmp_app, name="dmp")
    app.add_typer(report_app, name="report")
    app.add_typer(lifecycle_app, name="lifecycle")
