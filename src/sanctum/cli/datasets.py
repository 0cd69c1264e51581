"""``sanctum dataset …``: create, list, upload, download (sharing and erasure: ``data_access``).

Uploads and downloads stream through the SDK with a progress bar (bytes, rate, time left) when
stdout is a terminal and ``--json`` is not given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

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

from sanctum.cli.client import ProjectArg, _fail, _server, _show
from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, err_console
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


@dataset_app.command("anonymity")
def dataset_anonymity(
    project: ProjectArg,
    dataset_version: Annotated[
        str, typer.Argument(metavar="DATASET[@VERSION]", help="a table dataset (default: its latest version)")
    ],
    as_json: JsonFlag = False,
) -> None:
    """The anonymity report stored with a table version: k, records in small classes, l-diversity,
    re-identification risk. Counts only, never values; every member who sees the dataset."""
    name, at, number = dataset_version.partition("@")
    if at and not number.isdigit():
        _fail("name the version as DATASET@VERSION, e.g. visits@3", as_json=as_json, code="usage")
    with _server(as_json) as client:
        version = int(number) if number else _latest(client, project, name, as_json)
        found = client.anonymity_report(project, name, version)
    if as_json:
        _show(found, as_json)
        return
    r = found.report
    lines = [
        f"{found.dataset} version {found.version}: anonymity report of "
        f"{found.computed_at:%Y-%m-%d %H:%M} UTC (its commit)",
        f"quasi-identifiers: {', '.join(found.quasi_identifiers)}"
        + (" (DICOM metadata table: records are patients)" if found.source == "dicom_metadata" else ""),
        f"rows: {r.rows}, equivalence classes: {r.equivalence_classes}",
        f"k: {r.k if r.k is not None else '-'}",
        f"records in classes smaller than {r.k_threshold}: {r.records_in_small_classes} "
        f"({r.small_class_share:.1%})",
        *(
            f"l-diversity of {s.column}: distinct {s.distinct_l if s.distinct_l is not None else '-'}, "
            f"entropy {f'{s.entropy_l:.2f}' if s.entropy_l is not None else '-'}"
            for s in r.sensitive
        ),
        f"prosecutor risk: max {r.prosecutor_risk_max:.3f}, average {r.prosecutor_risk_average:.3f}",
        f"journalist risk ({r.journalist_basis}): max {r.journalist_risk_max:.3f}, "
        f"average {r.journalist_risk_average:.3f}",
        *r.notes,
    ]
    _say(escape("\n".join(lines)))


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


def register(app: typer.Typer) -> None:
    """``dataset`` and ``query``, and ``delete``/``settings`` in the existing ``project`` group."""
    from sanctum.cli.data_access import project_delete, project_settings, query  # adds share/shred too

    app.add_typer(dataset_app, name="dataset")
    app.command("query")(query)
    group = next((g.typer_instance for g in app.registered_groups if g.name == "project"), None)
    if group is None:
        group = typer.Typer(no_args_is_help=True, help="Projects you are a member of.")
        app.add_typer(group, name="project")
    group.command("delete")(project_delete)
    group.command("settings")(project_settings)
