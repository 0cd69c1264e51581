"""``sanctum export`` and ``sanctum import``: the airlock from a laptop.

``export request`` names job outputs (``DATASET@VERSION:PATH``) with a justification, shows what
the automatic checks said about each, and submits (``--draft`` keeps it a draft). Reviewers use
``export show`` (checks, lineage, their own verdicts) and ``export review``; an owner releases;
the requester downloads. ``import request`` uploads a file to the holding area for an owner to
``import approve`` or ``import reject``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from sanctum.cli.client import ProjectArg, _fail, _server, _show
from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, emit_json
from sanctum.errors import SanctumError
from sanctum.schemas.airlock import ExportDetail

export_app = typer.Typer(no_args_is_help=True, help="Export requests: outputs leave only after review.")
import_app = typer.Typer(
    no_args_is_help=True, help="Import requests: files enter only after an owner approves."
)

ExportArg = Annotated[
    int, typer.Argument(metavar="NUMBER", help="the export request's number in the project")
]
ImportArg = Annotated[
    int, typer.Argument(metavar="NUMBER", help="the import request's number in the project")
]
EXPORT_COLUMNS = {
    "export": "number",
    "state": "state",
    "by": "requested_by",
    "title": "title",
    "reviews": "reviewers_so_far",
    "needed": "required_approvals",
    "submitted": "submitted_at",
}
IMPORT_COLUMNS = {
    "import": "number",
    "state": "state",
    "by": "requested_by",
    "file": "original_name",
    "dataset": "dataset",
    "size": "size",
    "created": "created_at",
}


def _print_export(export: ExportDetail) -> None:
    console.print(
        f"export {export.number}: {export.state}"
        + (f" — {escape(export.state_reason)}" if export.state_reason else ""),
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"requested by {escape(export.requested_by or '(deleted user)')}; "
        f"{export.reviewers_so_far} of {export.required_approvals} reviewer(s) so far",
        highlight=False,
    )
    for file in export.files:
        flag = " (overridden)" if file.override_reason else ""
        source = f"{file.dataset}@{file.version}:{escape(file.path)}"
        console.print(
            f"  {escape(file.name)}: {file.check_verdict}{flag} — {source}, job {file.job}, "
            f"sha256 {file.sha256[:16]}…",
            highlight=False,
            soft_wrap=True,
        )
        for finding in file.findings:
            console.print(
                f"    {finding.verdict}: {escape(finding.message)}", highlight=False, soft_wrap=True
            )
    if export.verdicts_hidden and export.state in ("submitted", "in_review"):
        console.print("  verdicts stay hidden until every review is in", highlight=False)
    for review in export.reviews:
        comment = f" — {escape(review.comment)}" if review.comment else ""
        console.print(
            f"  {escape(review.reviewer)} {review.verdict}s {escape(review.file)}{comment}",
            highlight=False,
            soft_wrap=True,
        )


def _emit(export: ExportDetail, as_json: bool) -> None:
    if as_json:
        emit_json(export.model_dump(mode="json"))
    else:
        _print_export(export)


@export_app.command("request")
def export_request(
    project: ProjectArg,
    files: Annotated[
        list[str], typer.Option("--file", help="DATASET@VERSION:PATH of a job output (repeatable)")
    ],
    justification: Annotated[str, typer.Option(help="why these outputs must leave")],
    title: Annotated[str, typer.Option(help="a short title")] = "",
    draft: Annotated[bool, typer.Option("--draft", help="keep it a draft (submit later)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Ask for job outputs to leave: each file is checked at once; then the request is submitted."""
    from sanctum.airlock.export_files import parse_source  # server-side module: loaded only here

    try:
        named = [parse_source(f) for f in files]
    except SanctumError as exc:
        _fail(exc.message, as_json=as_json, code=exc.code)
    with _server(as_json) as client:
        export = client.create_export(project, title=title, justification=justification)
        for dataset, version, path in named:
            export = client.add_export_file(project, export.number, dataset, version, path)
        if not draft:
            export = client.submit_export(project, export.number)
    _emit(export, as_json)


@export_app.command("submit")
def export_submit(project: ProjectArg, number: ExportArg, as_json: JsonFlag = False) -> None:
    """Submit a draft (or a request returned for changes) for review."""
    with _server(as_json) as client:
        _emit(client.submit_export(project, number), as_json)


@export_app.command("review")
def export_review(
    project: ProjectArg,
    number: ExportArg,
    approve: Annotated[bool, typer.Option("--approve/--reject", help="your verdict")],
    comment: Annotated[str, typer.Option(help="why (required to reject)")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Your verdict on every file you have not reviewed yet (you cannot review your own request)."""
    with _server(as_json) as client:
        _emit(client.review_export(project, number, "approve" if approve else "reject", comment), as_json)


@export_app.command("return")
def export_return(
    project: ProjectArg,
    number: ExportArg,
    reason: Annotated[str, typer.Option(help="what the requester should change")],
    as_json: JsonFlag = False,
) -> None:
    """Send a request back to its requester for changes (reviewers)."""
    with _server(as_json) as client:
        _emit(client.return_export(project, number, reason), as_json)


@export_app.command("withdraw")
def export_withdraw(
    project: ProjectArg,
    number: ExportArg,
    reason: Annotated[str, typer.Option()] = "",
    as_json: JsonFlag = False,
) -> None:
    """Withdraw your own request (before it is released)."""
    with _server(as_json) as client:
        _emit(client.withdraw_export(project, number, reason), as_json)


@export_app.command("override")
def export_override(
    project: ProjectArg,
    number: ExportArg,
    name: Annotated[str, typer.Argument(help="the file whose failed checks you override")],
    reason: Annotated[str, typer.Option(help="why it may leave anyway (kept in the audit trail)")],
    as_json: JsonFlag = False,
) -> None:
    """Let a file that failed its automatic checks be released (data owners; not your own request)."""
    with _server(as_json) as client:
        _emit(client.override_export_check(project, number, name, reason), as_json)


@export_app.command("release")
def export_release(project: ProjectArg, number: ExportArg, as_json: JsonFlag = False) -> None:
    """Release an approved request (data owners); every file is re-hashed first."""
    with _server(as_json) as client:
        _emit(client.release_export(project, number), as_json)


@export_app.command("download")
def export_download(
    project: ProjectArg,
    number: ExportArg,
    dest: Annotated[Path, typer.Option("--to", help="folder to write the files into")] = Path("."),
    as_json: JsonFlag = False,
) -> None:
    """Download every file of your released request, each checked against its released SHA-256."""
    if not dest.is_dir():
        _fail(f"{dest} is not a folder", as_json=as_json, code="invalid_input")
    written = []
    with _server(as_json) as client:
        export = client.get_export(project, number)
        for file in export.files:
            target = dest / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_export_file(project, number, file.name, target)
            written.append({"name": file.name, "path": str(target), "sha256": file.sha256})
    if as_json:
        emit_json(written)
    else:
        for item in written:
            console.print(f"{escape(item['path'])}  sha256 {item['sha256']}", highlight=False, soft_wrap=True)


@export_app.command("ls")
def export_ls(
    project: ProjectArg,
    state: Annotated[str | None, typer.Option(help="only requests in this state")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your export requests (reviewers, owners and auditors: every submitted request)."""
    with _server(as_json) as client:
        exports = client.list_exports(project, state=state)
    _show(exports, as_json, columns=EXPORT_COLUMNS, empty="no export requests")


@export_app.command("show")
def export_show(project: ProjectArg, number: ExportArg, as_json: JsonFlag = False) -> None:
    """One request: its files with their checks, and the verdicts you may see."""
    with _server(as_json) as client:
        _emit(client.get_export(project, number), as_json)


@import_app.command("request")
def import_request(
    project: ProjectArg,
    dataset: Annotated[str, typer.Argument(help="the dataset it should land in (created if new)")],
    source: Annotated[Path, typer.Argument(metavar="FILE", exists=True, dir_okay=False, readable=True)],
    justification: Annotated[str, typer.Option(help="what it is and why the project needs it")],
    as_json: JsonFlag = False,
) -> None:
    """Ask for a file (a code dependency, a reference table) to enter the project."""
    with _server(as_json) as client:
        asked = client.request_import(project, dataset, source, justification=justification)
    _show(asked, as_json, message=f"import {asked.number}: {asked.state}, waiting for a data owner")


@import_app.command("approve")
def import_approve(
    project: ProjectArg,
    number: ImportArg,
    reason: Annotated[str, typer.Option()] = "",
    as_json: JsonFlag = False,
) -> None:
    """Let the file in as the next version of its dataset (data owners; not your own request)."""
    with _server(as_json) as client:
        done = client.approve_import(project, number, reason)
    _show(done, as_json, message=f"import {done.number}: approved as {done.dataset}@{done.version}")


@import_app.command("reject")
def import_reject(
    project: ProjectArg,
    number: ImportArg,
    reason: Annotated[str, typer.Option(help="why (the requester sees it)")],
    as_json: JsonFlag = False,
) -> None:
    """Refuse the file; the held bytes are destroyed."""
    with _server(as_json) as client:
        done = client.reject_import(project, number, reason)
    _show(done, as_json, message=f"import {done.number}: rejected")


@import_app.command("ls")
def import_ls(project: ProjectArg, as_json: JsonFlag = False) -> None:
    """Your import requests (data owners and auditors: all of them)."""
    with _server(as_json) as client:
        found = client.list_imports(project)
    _show(found, as_json, columns=IMPORT_COLUMNS, empty="no import requests")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
    app.add_typer(import_app, name="import")
