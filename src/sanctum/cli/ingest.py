"""``sanctum ingest PROJECT DATASET PATH``: de-identifying ingest of a folder or archive.

The raw files stream to the server in batches (de-identification needs the project's secret, which
never leaves the server). A progress bar shows files, files/s and bytes; the summary lists what was
quarantined or failed and why. Interrupted (Ctrl-C, a crash, a lost connection)? Run the same
command again: it resumes the session and sends only what the server does not hold yet.
``--json`` prints the report (dataset, version, counts, quarantined files with reasons) instead.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sanctum.cli.client import ProjectArg, _fail, _server
from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, emit_json
from sanctum.schemas.ingest import IngestOptions, IngestReport
from sanctum.sdk.ingest import DEFAULT_BATCH_FILES, IngestProgress

RETAIN = ("uids", "device-identity", "institution-identity", "patient-characteristics")
CLEAN = ("descriptors", "structured-content", "graphics")


class _Bar:
    """Files (done / total), files per second and bytes sent; silent with --json or off a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.enabled = enabled
        self.started = time.monotonic()
        self.first_files = 0

    def __call__(self, state: IngestProgress) -> None:
        if not self.enabled:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]ingest {task.fields[number]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} files/s"),
                TextColumn("{task.fields[bytes]}"),
                TimeElapsedColumn(),
                console=console,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "", total=state.total_files, number=state.ingest, rate="-", bytes=""
            )
            self.started, self.first_files = time.monotonic(), state.files
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (state.files - self.first_files) / elapsed
        assert self.task is not None
        self.progress.update(
            self.task,
            completed=state.files,
            rate=f"{rate:.1f}",
            bytes=f"{decimal(state.bytes)} / {decimal(state.total_bytes)}",
        )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _options(dates: str, retain: list[str], clean: list[str], as_json: bool) -> IngestOptions:
    for value, allowed, flag in ((retain, RETAIN, "--retain"), (clean, CLEAN, "--clean")):
        unknown = [v for v in value if v not in allowed]
        if unknown:
            _fail(
                f"{flag} {unknown[0]}: use one of {', '.join(allowed)}", as_json=as_json, code="invalid_input"
            )
    fields: dict[str, Any] = {"dates": dates}
    fields |= {f"retain_{v.replace('-', '_')}": True for v in retain}
    fields |= {f"clean_{v.replace('-', '_')}": True for v in clean}
    return IngestOptions(**fields)


def _policy(path: Path | None, as_json: bool) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}", as_json=as_json, code="read_error")
    except ValueError as exc:
        _fail(f"{path} is not JSON: {exc}", as_json=as_json, code="invalid_input")
    if not isinstance(document, dict):
        _fail(f"{path}: a column policy is a JSON object", as_json=as_json, code="invalid_input")
    return document


def _summary(report: IngestReport) -> None:
    c = report.counts
    where = f"{report.project}/{report.dataset}" + (f" version {report.version}" if report.version else "")
    console.print(
        f"ingest {report.ingest} into {escape(where)}: {c.get('stored', 0)} stored, "
        f"{c.get('quarantined', 0)} quarantined, {c.get('error', 0)} error(s), "
        f"{c.get('duplicate', 0)} duplicate(s); {decimal(c.get('bytes_in', 0))} read",
        highlight=False,
        soft_wrap=True,
    )
    if report.version is None:
        console.print("nothing was stored, so no version was made", highlight=False)
    for title, files in (("quarantined", report.quarantined), ("errors", report.errors)):
        if files:
            console.print(f"[bold]{title}[/bold]:")
            for item in files:
                console.print(
                    f"  {escape(item.path)}: {escape('; '.join(item.reasons))}",
                    highlight=False,
                    soft_wrap=True,
                )
    if report.metadata_table:
        m = report.metadata_table
        console.print(
            f"DICOM metadata: table dataset {escape(m.dataset)} version {m.version} ({m.rows} rows), "
            f"queried in SQL as {m.dataset.replace('-', '_')}",
            highlight=False,
            soft_wrap=True,
        )


def ingest(
    project: ProjectArg,
    dataset: Annotated[str, typer.Argument(help="the dataset to ingest into (created when missing)")],
    path: Annotated[Path, typer.Argument(help="a folder, a .zip/.tar/.tar.gz archive, or one file")],
    kind: Annotated[str, typer.Option(help="kind of a new dataset: files or table")] = "files",
    policy: Annotated[
        Path | None, typer.Option(help="column policy (JSON) for CSV/Parquet tables; kept with the dataset")
    ] = None,
    dates: Annotated[str, typer.Option(help="shift (per-patient offset), keep, or remove dates")] = "shift",
    retain: Annotated[
        list[str] | None, typer.Option(help=f"PS3.15 option, repeatable: {', '.join(RETAIN)}")
    ] = None,
    clean: Annotated[
        list[str] | None, typer.Option(help=f"PS3.15 clean option, repeatable: {', '.join(CLEAN)}")
    ] = None,
    dask: Annotated[bool, typer.Option("--dask", help="de-identify on the server's Dask cluster")] = False,
    new: Annotated[bool, typer.Option("--new", help="start a new session instead of resuming")] = False,
    batch_files: Annotated[int, typer.Option(min=1, help="files per batch")] = DEFAULT_BATCH_FILES,
    batch_mb: Annotated[int, typer.Option(min=1, help="MB per batch (one larger file goes alone)")] = 32,
    as_json: JsonFlag = False,
) -> None:
    """De-identify a folder or archive into a new version of DATASET (resumes an interrupted run)."""
    if kind not in ("files", "table"):
        _fail("--kind must be files or table", as_json=as_json, code="invalid_input")
    if dates not in ("shift", "keep", "remove"):
        _fail("--dates must be shift, keep or remove", as_json=as_json, code="invalid_input")
    options = _options(dates, retain or [], clean or [], as_json)
    document = _policy(policy, as_json)
    bar = _Bar(enabled=not as_json and console.is_terminal)
    with _server(as_json) as client:
        try:
            report = client.ingest(
                project,
                dataset,
                path,
                kind=kind,
                options=options,
                policy=document,
                dask=dask,
                resume=not new,
                batch_files=batch_files,
                batch_bytes=batch_mb * 1000 * 1000,
                progress=bar,
            )
        except KeyboardInterrupt:
            bar.stop()
            _fail("interrupted; run the same command again to resume", as_json=as_json, code="interrupted")
        finally:
            bar.stop()
    if as_json:
        emit_json(report)
    else:
        _summary(report)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
