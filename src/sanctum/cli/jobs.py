"""``sanctum key`` and ``sanctum job``: sign code on this machine, run it on data you cannot download.

The private key is made and kept here (``sanctum key create``); ``job submit`` packs the code
folder, pins every input to a version, signs the manifest and submits it. ``--wait`` follows the
job with a spinner until it ends and exits non-zero unless it succeeded, so scripts can chain jobs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from sanctum.cli.client import ProjectArg, _fail, _server, _show
from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, emit_json
from sanctum.errors import SanctumError
from sanctum.jobs.manifest import Resources
from sanctum.sdk import signing_keys
from sanctum.sdk.errors import SanctumSDKError
from sanctum.sdk.jobs import public_key_text, sign_manifest

key_app = typer.Typer(no_args_is_help=True, help="Your job-signing key (kept on this machine).")
job_app = typer.Typer(no_args_is_help=True, help="Signed jobs: run code on a project's data.")

JOB_COLUMNS = {
    "job": "id",
    "state": "state",
    "by": "submitted_by",
    "entrypoint": "entrypoint",
    "created": "created_at",
    "runtime s": "runtime_seconds",
    "reason": "reason",
}
JobArg = Annotated[int, typer.Argument(metavar="JOB", help="the job's number in the project")]
KeyFileOption = Annotated[
    Path | None, typer.Option("--key-file", help="private key (default: signing-key.pem in the config dir)")
]


@key_app.command("create")
def key_create(
    name: Annotated[str, typer.Option(help="a label for this key, e.g. the machine's name")] = "key",
    key_file: KeyFileOption = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing key file")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Make an Ed25519 key pair here (private key mode 0600, never uploaded) and register its public half."""
    path = key_file or signing_keys.key_path()
    try:
        key = signing_keys.create(path, overwrite=force)
    except SanctumSDKError as exc:
        _fail(exc.message, as_json=as_json, code=exc.code)
    with _server(as_json) as client:
        registered = client.register_key(public_key_text(key), name=name)
    _show(registered, as_json, message=f"created {path} and registered key {registered.fingerprint}")


@key_app.command("ls")
def key_ls(as_json: JsonFlag = False) -> None:
    """Your registered public keys."""
    with _server(as_json) as client:
        keys = client.list_keys()
    _show(
        keys,
        as_json,
        columns={
            "name": "name",
            "fingerprint": "fingerprint",
            "created": "created_at",
            "revoked": "revoked_at",
        },
        empty="no keys; run: sanctum key create",
    )


@key_app.command("revoke")
def key_revoke(
    fingerprint: Annotated[str, typer.Argument(help="SHA256:... as `key ls` shows")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: it signs nothing new, and queued jobs it signed are refused when they start."""
    with _server(as_json) as client:
        key = client.revoke_key(fingerprint)
    _show(key, as_json, message=f"revoked {key.fingerprint}")


def _load_key(key_file: Path | None, as_json: bool) -> object:
    try:
        return signing_keys.load(key_file or signing_keys.key_path())
    except (SanctumSDKError, SanctumError) as exc:
        _fail(exc.message, as_json=as_json, code=getattr(exc, "code", "error"))


def _params(values: list[str], as_json: bool) -> dict[str, str | int | float | bool]:
    out: dict[str, str | int | float | bool] = {}
    for item in values:
        name, eq, raw = item.partition("=")
        if not eq:
            _fail(f"--param {item}: use NAME=VALUE", as_json=as_json, code="invalid_input")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[name] = value if isinstance(value, str | int | float | bool) else raw
    return out


@job_app.command("submit")
def job_submit(
    project: ProjectArg,
    code: Annotated[Path, typer.Argument(metavar="DIR", help="folder of code (no data files)")],
    entrypoint: Annotated[
        str, typer.Option(help='what to run in the folder, e.g. "python train.py --lr 0.1"')
    ],
    inputs: Annotated[
        list[str], typer.Option("--input", help="DATASET or DATASET@VERSION (repeatable)")
    ] = [],  # noqa: B006
    params: Annotated[list[str], typer.Option("--param", help="NAME=VALUE, as SANCTUM_PARAM_NAME")] = [],  # noqa: B006
    output: Annotated[str, typer.Option(help="dataset that receives /output")] = "job-outputs",
    executor: Annotated[str, typer.Option(help="local, or slurm")] = "local",
    cpus: Annotated[int, typer.Option(min=1)] = 1,
    memory: Annotated[int, typer.Option(help="memory limit in MiB", min=64)] = 2048,
    time_limit: Annotated[int, typer.Option("--time", help="time limit in seconds", min=1)] = 3600,
    output_limit: Annotated[
        int, typer.Option("--output-mb", help="largest total output in MiB", min=1)
    ] = 1024,
    wait: Annotated[bool, typer.Option("--wait", help="follow the job until it ends")] = False,
    key_file: KeyFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Sign and submit a job: the code runs in a sandbox on the inputs; /output becomes a new version."""
    if executor not in ("local", "slurm"):
        _fail("--executor is local or slurm", as_json=as_json, code="invalid_input")
    key = _load_key(key_file, as_json)
    resources = Resources(cpus=cpus, memory_mb=memory, time_limit_s=time_limit, output_mb=output_limit)
    mode: Literal["local", "slurm"] = "slurm" if executor == "slurm" else "local"
    with _server(as_json) as client:
        try:
            job = client.submit_job(
                project,
                code,
                key=key,
                entrypoint=entrypoint,
                inputs=inputs,  # type: ignore[arg-type]
                parameters=_params(params, as_json),
                output=output,
                resources=resources,
                executor=mode,
            )
        except (SanctumError, ValueError) as exc:
            _fail(
                getattr(exc, "message", str(exc)), as_json=as_json, code=getattr(exc, "code", "invalid_input")
            )
        if wait:
            if not as_json:
                with console.status(f"job {job.id} {job.state}…"):
                    job = client.wait_job(project, job.id)
            else:
                job = client.wait_job(project, job.id)
    if as_json:
        emit_json(job.model_dump(mode="json"))
    else:
        console.print(
            f"job {job.id}: {job.state}" + (f" — {escape(job.reason)}" if job.reason else ""),
            highlight=False,
            soft_wrap=True,
        )
        if job.output:
            console.print(f"output: {job.output.dataset}@{job.output.version}", highlight=False)
    if wait and job.state != "succeeded":
        raise typer.Exit(1)


@job_app.command("sign")
def job_sign(
    manifest: Annotated[Path, typer.Argument(metavar="MANIFEST", help="manifest JSON file, or - for stdin")],
    key_file: KeyFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Sign a manifest (e.g. one the web page's re-run form shows) and print the signature."""
    key = _load_key(key_file, as_json)
    text = sys.stdin.read() if str(manifest) == "-" else manifest.read_text()
    try:
        document = json.loads(text)
        signature = sign_manifest(key, document)  # type: ignore[arg-type]
    except (ValueError, SanctumError) as exc:
        _fail(f"not a manifest: {getattr(exc, 'message', exc)}", as_json=as_json, code="invalid_manifest")
    if as_json:
        emit_json({"signature": signature})
    else:
        console.print(signature, highlight=False, soft_wrap=True)


@job_app.command("ls")
def job_ls(
    project: ProjectArg,
    state: Annotated[str | None, typer.Option(help="only this state")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The project's jobs, newest first."""
    with _server(as_json) as client:
        jobs = client.list_jobs(project, state=state)
    _show(jobs, as_json, columns=JOB_COLUMNS, empty="no jobs")


@job_app.command("status")
def job_status(project: ProjectArg, job: JobArg, as_json: JsonFlag = False) -> None:
    """One job: state, reason, inputs, output, signature check."""
    with _server(as_json) as client:
        found = client.get_job(project, job)
    _show(
        found,
        as_json,
        columns={
            "job": "id",
            "state": "state",
            "reason": "reason",
            "executor": "executor",
            "submitted by": "submitted_by",
            "signer": "signer",
            "signature valid": "signature_valid",
            "entrypoint": "entrypoint",
            "inputs": "inputs",
            "output": "output",
            "started": "started_at",
            "ended": "ended_at",
            "manifest sha256": "manifest_sha256",
        },
    )


@job_app.command("logs")
def job_logs(project: ProjectArg, job: JobArg, as_json: JsonFlag = False) -> None:
    """The job's standard output and error (stored encrypted; readable by project members)."""
    with _server(as_json) as client:
        logs = client.job_logs(project, job)
    if as_json:
        emit_json(logs.model_dump(mode="json"))
        return
    console.print("[bold]stdout[/bold]")
    console.print(escape(logs.stdout), highlight=False, markup=True, soft_wrap=True)
    console.print("[bold]stderr[/bold]")
    console.print(escape(logs.stderr), highlight=False, markup=True, soft_wrap=True)


@job_app.command("cancel")
def job_cancel(project: ProjectArg, job: JobArg, as_json: JsonFlag = False) -> None:
    """Cancel a queued or running job (yours, or any as a data owner)."""
    with _server(as_json) as client:
        found = client.cancel_job(project, job)
    _show(found, as_json, message=f"job {found.id}: {found.state}")


@job_app.command("lineage")
def job_lineage(
    project: ProjectArg,
    dataset_version: Annotated[str, typer.Argument(metavar="DATASET@VERSION")],
    ro_crate: Annotated[
        Path | None, typer.Option("--ro-crate", help="write ro-crate-metadata.json here")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Which job, code, inputs and signer produced an output version (optionally as RO-Crate)."""
    name, _, number = dataset_version.partition("@")
    if not number.isdigit():
        _fail("name the version: DATASET@VERSION", as_json=as_json, code="invalid_input")
    with _server(as_json) as client:
        found = client.lineage(project, name, int(number))
        crate = client.ro_crate(project, name, int(number)) if ro_crate else None
    if crate is not None and ro_crate is not None:
        target = ro_crate / "ro-crate-metadata.json" if ro_crate.is_dir() else ro_crate
        target.write_text(json.dumps(crate, indent=2))
    _show(
        found,
        as_json,
        columns={
            "output": "dataset",
            "version": "version",
            "job": "job",
            "signer": "signer",
            "key": "signer_key",
            "code sha256": "code_sha256",
            "manifest sha256": "manifest_sha256",
            "inputs": "inputs",
            "executor": "executor",
            "started": "started_at",
            "ended": "ended_at",
        },
    )


def register(app: typer.Typer) -> None:
    app.add_typer(key_app, name="key")
    app.add_typer(job_app, name="job")
