"""``sanctum dataset …``, ``sanctum query`` and the project's data commands (delete, settings).

Uploads and downloads stream through the SDK with a progress bar (bytes, rate, time left) when
stdout is a terminal and ``--json`` is not given. Erasure (``dataset shred``, ``project delete``)
shows what will be destroyed and asks for the name to be typed, unless ``--yes``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from sanctum.cli.client import ProjectArg, _fail, _server, _show
from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, err_console, show
from sanctum.schemas.datasets import DatasetPublic
from sanctum.sdk import Client, SanctumSDKError
from sanctum.sdk.upload_plan import (
    UploadItem,
    archive_items,
    dataset_path,
    directory_items,
    file_item,
    is_archive,
)

dataset_app = typer.Typer(
    no_args_is_help=True, help="Datasets: versioned files or tables, shares between projects, erasure."
)

DATASET_COLUMNS = {
    "dataset": "name",
    "kind": "kind",
    "latest": "latest",
    "files": "files",
    "size": "size",
    "owner project": "project",
    "access": "access",
}
FILE_COLUMNS = {"path": "path", "size": "size", "sha256": "sha256"}
VERSION_COLUMNS = {
    "version": "number",
    "state": "state",
    "files": "files",
    "size": "size",
    "created": "created_at",
    "committed": "committed_at",
    "manifest sha256": "manifest",
}
SHARE_COLUMNS = {
    "id": "id",
    "dataset": "dataset",
    "from": "source_project",
    "to": "target_project",
    "access": "access",
    "state": "state",
    "offered": "created_at",
}

DatasetArg = Annotated[str, typer.Argument(help="dataset name (a shared one: <project>.<name>)")]
ShareIdArg = Annotated[int, typer.Argument(metavar="SHARE_ID", help="the share's id (see 'dataset shares')")]
VersionOption = Annotated[
    int | None, typer.Option("--version", "-v", min=1, help="version number (default: the latest)")
]
YesFlag = Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")]


def _size(value: int | None) -> str:
    return "" if value is None else decimal(value)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# --------------------------------------------------------------------------- progress


class _Bar:
    """One rich progress bar over bytes; does nothing with --json or when stdout is not a terminal."""

    def __init__(self, progress: Progress | None, total: int, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(escape(description), total=total) if progress else None

    def advance(self, count: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, count)

    def describe(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=escape(text))


@contextmanager
def _bar(as_json: bool, total: int, description: str) -> Iterator[_Bar]:
    if as_json or not console.is_terminal:
        yield _Bar(None, total, description)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield _Bar(progress, total, description)


def _say(markup: str) -> None:
    """One paragraph for people, never wrapped mid-line (so it reads and copies whole)."""
    console.print(markup, highlight=False, soft_wrap=True)


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]


# --------------------------------------------------------------------------- datasets


@dataset_app.command("create")
def dataset_create(
    project: ProjectArg,
    name: Annotated[str, typer.Argument(help="dataset name: lowercase letters, digits, hyphens")],
    kind: Annotated[
        str, typer.Option(help="files (any files) or table (one CSV/Parquet per version)")
    ] = "files",
    description: Annotated[str, typer.Option(help="what the dataset holds")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Create an empty dataset (data owners); add data with 'sanctum dataset upload'."""
    with _server(as_json) as client:
        created = client.create_dataset(project, name, kind=kind, description=description)
    _show(created, as_json, message=f"created {created.kind} dataset {created.name} in {project}")


def _dataset_rows(datasets: list[DatasetPublic]) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "kind": d.kind,
            "latest": d.latest_version,
            "files": d.latest_files,
            "size": _size(d.latest_size),
            "project": d.project,
            "access": d.access,
        }
        for d in datasets
    ]


@dataset_app.command("ls")
def dataset_ls(
    project: ProjectArg,
    dataset: Annotated[str | None, typer.Argument(help="list this dataset's files instead")] = None,
    version: VersionOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The project's datasets (with shared ones), or the files of one dataset's version."""
    if dataset is None:
        if version is not None:
            _fail("--version needs a DATASET", as_json=as_json, code="usage")
        with _server(as_json) as client:
            datasets = client.list_datasets(project)
        _show(
            datasets if as_json else _dataset_rows(datasets),
            as_json,
            columns=DATASET_COLUMNS,
            empty="no datasets",
        )
        return
    with _server(as_json) as client:
        number = version or _latest(client, project, dataset, as_json)
        files = client.list_files(project, dataset, number)
    rows = [{"path": f.path, "size": _size(f.size), "sha256": f.sha256} for f in files]
    total = sum(f.size for f in files)
    _show(
        files if as_json else rows,
        as_json,
        columns=FILE_COLUMNS,
        empty="no files",
        message=f"{dataset} version {number}: {_n(len(files), 'file')}, {_size(total)}",
    )


def _latest(client: Client, project: str, dataset: str, as_json: bool) -> int:
    found = client.get_dataset(project, dataset)
    if found.latest_version is None:
        _fail(f"{dataset} has no committed version yet", as_json=as_json, code="no_version")
    return found.latest_version


@dataset_app.command("versions")
def dataset_versions(
    project: ProjectArg,
    dataset: DatasetArg,
    drafts: Annotated[bool, typer.Option("--drafts", help="include uncommitted drafts")] = False,
    as_json: JsonFlag = False,
) -> None:
    """A dataset's versions: committed ones are immutable; drafts are uploads not yet committed."""
    with _server(as_json) as client:
        versions = client.list_versions(project, dataset, drafts=drafts)
    rows = [
        {
            "number": v.number,
            "state": v.state,
            "files": v.file_count if v.state == "committed" else "",
            "size": _size(v.total_size) if v.state == "committed" else "",
            "created_at": v.created_at,
            "committed_at": v.committed_at,
            "manifest": v.manifest_sha256,
        }
        for v in versions
    ]
    _show(versions if as_json else rows, as_json, columns=VERSION_COLUMNS, empty="no versions")


# --------------------------------------------------------------------------- upload


Plan = tuple[list[UploadItem], list[str]]


@contextmanager
def _planned(source: Path, as_path: str | None, no_extract: bool) -> Iterator[Plan]:
    """What the upload will send, checked locally before anything leaves (archives stay open)."""
    if source.is_dir():
        yield directory_items(source, prefix=as_path or "")
    elif is_archive(source) and not no_extract and source.is_file():
        with archive_items(source, prefix=as_path or "") as items:
            yield items, []
    elif source.exists() or source.is_symlink():
        yield [file_item(source, as_path)], []
    else:
        raise _NoSuchSource(source)


class _NoSuchSource(Exception):
    def __init__(self, source: Path) -> None:
        super().__init__(f"no such file or directory: {source}")


@dataset_app.command("upload")
def dataset_upload(
    project: ProjectArg,
    dataset: DatasetArg,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="DIR_OR_FILE", help="a folder (recursively), a file, or a .zip/.tar(.gz) archive"
        ),
    ],
    as_path: Annotated[
        str | None,
        typer.Option(
            "--as", help="a file: its path in the dataset; a folder or archive: a folder to put it under"
        ),
    ] = None,
    no_extract: Annotated[
        bool, typer.Option("--no-extract", help="upload an archive as one file instead of its entries")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Upload a folder, file or archive as one new version (data owners).

    The version is committed at the end; if a file fails, it stays an uncommitted draft and nothing
    becomes visible."""
    try:
        with _server(as_json) as client, _planned(source, as_path, no_extract) as (items, skipped):
            for what in skipped:
                err_console.print(
                    f"[yellow]warning:[/yellow] skipped {escape(what)}", highlight=False, soft_wrap=True
                )
            found = client.get_dataset(project, dataset)
            if found.kind == "table" and len(items) != 1:
                _fail(
                    f"{dataset} is a table dataset: a version is one CSV or Parquet file, and "
                    f"{source} holds {_n(len(items), 'file')}",
                    as_json=as_json,
                    code="table_one_file",
                )
            total = sum(item.size for item in items)
            with _bar(as_json, total, _n(len(items), "file")) as bar:
                version = client.upload_items(
                    project,
                    dataset,
                    items,
                    progress=bar.advance,
                    on_file=lambda item: bar.describe(_short(item.path)),
                )
    except _NoSuchSource as exc:
        _fail(str(exc), as_json=as_json, code="not_found")
    what = f"{_n(version.file_count, 'file')} ({_size(version.total_size)})"
    if found.kind == "table":
        what = f"a table of {_n(version.row_count or 0, 'row')}"
    _show(version, as_json, message=f"uploaded {what} to {project}/{dataset} as version {version.number}")


# --------------------------------------------------------------------------- download


def _inside(root: Path, path: str) -> Path:
    """Where a manifest path lands under ``root``; never outside it, whatever the server sent."""
    target = root / dataset_path(path)
    if not target.resolve().is_relative_to(root.resolve()):
        raise SanctumSDKError(f"refusing to write {path!r} outside {root}", code="unsafe_path")
    return target


@dataset_app.command("download")
def dataset_download(
    project: ProjectArg,
    dataset: DatasetArg,
    path: Annotated[str | None, typer.Argument(help="the file's path in the version")] = None,
    version: VersionOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="file or folder to write to (--all: folder; default ./DATASET-vN)"
        ),
    ] = None,
    download_all: Annotated[bool, typer.Option("--all", help="every file of the version")] = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite existing files")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Download a file (or --all files) of a version, SHA-256 checked (data owners).

    Others export data through the airlock. A file appears under its name only once complete."""
    if download_all == (path is not None):
        _fail("give a PATH, or --all", as_json=as_json, code="usage")
    with _server(as_json) as client:
        number = version or _latest(client, project, dataset, as_json)
        manifest = client.list_files(project, dataset, number)
        if download_all:
            root = output or Path(f"{dataset}-v{number}")
            plan = [(entry, _inside(root, entry.path)) for entry in manifest]
        else:
            wanted = dataset_path(path or "")
            entry = next((f for f in manifest if f.path == wanted), None)
            if entry is None:
                _fail(f"no file {wanted} in {dataset} version {number}", as_json=as_json, code="not_found")
            target = output or Path(wanted.rsplit("/", 1)[-1])
            plan = [(entry, target / wanted.rsplit("/", 1)[-1] if target.is_dir() else target)]
        existing = [str(t) for _, t in plan if t.exists() or t.is_symlink()]
        if existing and not force:
            _fail(
                f"{existing[0]} exists (pass --force to overwrite)"
                + (f", and {len(existing) - 1} more" if len(existing) > 1 else ""),
                as_json=as_json,
                code="exists",
            )
        done: list[dict[str, Any]] = []
        with _bar(as_json, sum(e.size for e, _ in plan), _n(len(plan), "file")) as bar:
            for entry, target in plan:
                bar.describe(_short(entry.path))
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    _fail(
                        f"cannot create {target.parent}: {exc.strerror}", as_json=as_json, code="write_error"
                    )
                client.download_file(
                    project, dataset, number, entry.path, target, progress=bar.advance, expected=entry
                )
                done.append({**entry.model_dump(), "saved_to": str(target)})
    result = {"project": project, "dataset": dataset, "version": number, "files": done}
    if len(done) == 1 and not download_all:
        message = f"downloaded {done[0]['path']} ({_size(done[0]['size'])}) to {done[0]['saved_to']}"
    else:
        where = str(output or Path(f"{dataset}-v{number}"))
        message = f"downloaded {_n(len(done), 'file')} ({_size(sum(d['size'] for d in done))}) to {where}"
    _show(result, as_json, message=message + "; SHA-256 verified")


# --------------------------------------------------------------------------- shares


@dataset_app.command("share")
def dataset_share(
    project: ProjectArg,
    dataset: DatasetArg,
    target: Annotated[str, typer.Argument(metavar="TARGET_PROJECT", help="the project to share with")],
    access: Annotated[str, typer.Option(help="read, or write (may add versions)")] = "read",
    as_json: JsonFlag = False,
) -> None:
    """Offer a dataset to another project, without copying it; that project's owners accept it."""
    with _server(as_json) as client:
        share = client.share_dataset(project, dataset, target, access=access)
    _show(
        share,
        as_json,
        message=f"offered {dataset} to {target} ({share.access}), share {share.id}; an "
        f"owner of {target} accepts it with: sanctum dataset accept {target} "
        f"{share.id}",
    )


@dataset_app.command("shares")
def dataset_shares(project: ProjectArg, as_json: JsonFlag = False) -> None:
    """Shares into and out of a project, in every state."""
    with _server(as_json) as client:
        shares = client.list_shares(project)
    _show(shares, as_json, columns=SHARE_COLUMNS, empty="no shares")


@dataset_app.command("accept")
def dataset_accept(project: ProjectArg, share_id: ShareIdArg, as_json: JsonFlag = False) -> None:
    """Accept a share offered to this project: the dataset appears here as <project>.<dataset>."""
    with _server(as_json) as client:
        share = client.accept_share(project, share_id)
    _show(
        share,
        as_json,
        message=f"accepted share {share.id}: {share.source_project}.{share.dataset} is now "
        f"available in {share.target_project} ({share.access})",
    )


@dataset_app.command("decline")
def dataset_decline(project: ProjectArg, share_id: ShareIdArg, as_json: JsonFlag = False) -> None:
    """Decline a share offered to this project."""
    with _server(as_json) as client:
        share = client.decline_share(project, share_id)
    _show(share, as_json, message=f"declined share {share.id} ({share.source_project}.{share.dataset})")


@dataset_app.command("revoke")
def dataset_revoke(project: ProjectArg, share_id: ShareIdArg, as_json: JsonFlag = False) -> None:
    """End a share (the offering project withdraws it, or the receiving one leaves it): at once."""
    with _server(as_json) as client:
        client.revoke_share(project, share_id)
    _show({"project": project, "revoked": share_id}, as_json, message=f"revoked share {share_id}")


# --------------------------------------------------------------------------- erasure


def _inventory(client: Client, project: str, dataset: str) -> dict[str, int]:
    """What a dataset holds, drafts included (their sizes are known only from their manifests)."""
    versions = client.list_versions(project, dataset, drafts=True)
    files = size = drafts = 0
    for v in versions:
        if v.state == "committed":
            files, size = files + v.file_count, size + v.total_size
        else:
            drafts += 1
            listed = client.list_files(project, dataset, v.number)
            files, size = files + len(listed), size + sum(f.size for f in listed)
    return {"versions": len(versions), "drafts": drafts, "files": files, "bytes": size}


def _confirm(what: str, name: str, as_json: bool) -> None:
    """The user types ``name``; anything else (or end of input) aborts with exit 1."""
    try:
        typed = typer.prompt(
            f"Type the {what} name ({name}) to confirm", default="", show_default=False, err=True
        )
    except click.exceptions.Abort:
        typed = None
    if typed is None or typed.strip() != name:
        _fail(
            f"aborted: that is not the {what} name {name!r}; nothing was destroyed",
            as_json=as_json,
            code="aborted",
        )


def _needs_yes(yes: bool, as_json: bool) -> None:
    if as_json and not yes:
        _fail("confirmation required: pass --yes", as_json=True, code="confirmation_required")


def _counts(inv: dict[str, int]) -> str:
    drafts = f" ({inv['drafts']} uncommitted)" if inv["drafts"] else ""
    exact = f" ({inv['bytes']} bytes)" if inv["bytes"] >= 1000 else ""
    versions, files = _n(inv["versions"], "version"), _n(inv["files"], "file")
    return f"{versions}{drafts}, {files}, {_size(inv['bytes'])}{exact}"


@dataset_app.command("shred")
def dataset_shred(
    project: ProjectArg, dataset: DatasetArg, yes: YesFlag = False, as_json: JsonFlag = False
) -> None:
    """Erase a dataset (GDPR Article 17) by destroying its key; asks for its name unless --yes.

    Every version, and every copy in backups, becomes unreadable. Data owners only."""
    _needs_yes(yes, as_json)
    with _server(as_json) as client:
        found = client.get_dataset(project, dataset)
        if found.access != "owner":
            _fail(
                f"{dataset} belongs to project {found.project}; only that project can shred it "
                "(to stop using it here, revoke the share)",
                as_json=as_json,
                code="not_owner",
            )
        inv = _inventory(client, project, dataset)
        shares = [
            s
            for s in client.list_shares(project)
            if s.dataset == dataset and s.source_project == project and s.state in ("pending", "accepted")
        ]
        if not yes:
            _say(
                f"This permanently destroys dataset [bold]{escape(dataset)}[/bold] in {escape(project)}: "
                f"{escape(_counts(inv))}."
            )
            if shares:
                _say(
                    f"Its {_n(len(shares), 'active share')} end too: "
                    f"{escape(', '.join(s.target_project for s in shares))}."
                )
            _say("Its key is destroyed, so no copy of the data can be read again.")
            _confirm("dataset", dataset, as_json)
        client.shred_dataset(project, dataset, confirm=dataset)
    _show(
        {"project": project, "dataset": dataset, "shredded": True, **inv, "shares_revoked": len(shares)},
        as_json,
        message=f"shredded {dataset}: {_counts(inv)} are unreadable from now on",
    )


def project_delete(project: ProjectArg, yes: YesFlag = False, as_json: JsonFlag = False) -> None:
    """Delete a project and crypto-shred all its data; asks for its name unless --yes.

    Data owners only."""
    _needs_yes(yes, as_json)
    with _server(as_json) as client:
        client.get_project(project)
        own = [d for d in client.list_datasets(project) if d.access == "owner"]
        totals = {"datasets": len(own), "versions": 0, "drafts": 0, "files": 0, "bytes": 0}
        for d in own:
            for key, value in _inventory(client, project, d.name).items():
                totals[key] += value
        if not yes:
            _say(
                f"This permanently deletes project [bold]{escape(project)}[/bold], its members and shares, "
                f"and destroys the keys of its {_n(len(own), 'dataset')}: {escape(_counts(totals))}."
            )
            _say("No copy of the data can be read again.")
            _confirm("project", project, as_json)
        client.delete_project(project, confirm=project)
    _show(
        {"project": project, "deleted": True, **totals},
        as_json,
        message=f"deleted project {project}: {_n(len(own), 'dataset')}, {_counts(totals)} are unreadable "
        "from now on",
    )


def project_settings(
    project: ProjectArg,
    query_row_limit: Annotated[int, typer.Option(min=1, help="rows a query returns to data scientists")],
    as_json: JsonFlag = False,
) -> None:
    """A project's data settings (data owners)."""
    with _server(as_json) as client:
        updated = client.update_project_settings(project, query_row_limit=query_row_limit)
    _show(
        updated,
        as_json,
        message=f"queries in {project} now return at most {updated.query_row_limit} rows to data scientists",
    )


# --------------------------------------------------------------------------- query


def _sql_text(sql: str | None, file: Path | None, as_json: bool) -> str:
    if (sql is None) == (file is None):
        _fail("give the SQL, or -f FILE", as_json=as_json, code="usage")
    if file is None:
        return sql or ""
    try:
        return sys.stdin.read() if str(file) == "-" else file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        _fail(f"cannot read {file}: {reason}", as_json=as_json, code="sql_file")


def _value(value: Any) -> str:
    return "NULL" if value is None else escape(str(value))


def query(
    project: ProjectArg,
    sql: Annotated[str | None, typer.Argument(help="one read-only SQL statement")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="read the SQL from this file ('-': stdin)")
    ] = None,
    max_rows: Annotated[int | None, typer.Option(min=1, help="return at most this many rows")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run one read-only SQL statement over the project's table datasets.

    Tables are named after datasets with _ for - (shared ones: <project>__<name>). Rows are capped
    by your role; the output says when the result was cut."""
    text = _sql_text(sql, file, as_json)
    with _server(as_json) as client:
        result = client.query(project, text, max_rows=max_rows)
    if as_json:
        show(result, as_json=True)
        return
    grid = Table()
    for name, kind in zip(result.columns, result.types, strict=True):
        grid.add_column(f"{escape(name)}\n[dim]{escape(kind.lower())}[/dim]")
    for row in result.rows:
        grid.add_row(*(_value(v) for v in row))
    console.print(grid)
    note = _n(result.row_count, "row")
    if result.truncated:
        note += f"; truncated to the row limit of {result.row_limit} (there are more rows)"
    _say(escape(note))


# --------------------------------------------------------------------------- wiring


def register(app: typer.Typer) -> None:
    """``dataset`` and ``query``, and ``delete``/``settings`` in the existing ``project`` group."""
    app.add_typer(dataset_app, name="dataset")
    app.command("query")(query)
    group = next((g.typer_instance for g in app.registered_groups if g.name == "project"), None)
    if group is None:
        group = typer.Typer(no_args_is_help=True, help="Projects you are a member of.")
        app.add_typer(group, name="project")
    group.command("delete")(project_delete)
    group.command("settings")(project_settings)
