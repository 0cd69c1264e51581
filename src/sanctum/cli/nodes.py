"""``sanctum node`` (on a compute node, and its registration) and ``sanctum slurm install``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sanctum.cli.client import _fail, _server, _show
from sanctum.cli.instance import JsonFlag
from sanctum.cli.output import console, emit_json

node_app = typer.Typer(no_args_is_help=True, help="Compute nodes of the Slurm executor.")
slurm_app = typer.Typer(no_args_is_help=True, help="Set up Slurm for Sanctum jobs.")
DirOption = Annotated[Path | None, typer.Option("--dir", help="node config dir (default $SANCTUM_NODE_DIR)")]


@node_app.command("keygen")
def node_keygen(
    name: Annotated[str, typer.Option(help="the node's Slurm NodeName")],
    server: Annotated[str, typer.Option(help="the Sanctum server URL the node calls")],
    blob_root: Annotated[Path, typer.Option(help="the shared blob store (the server's data_dir/blobs)")],
    spool: Annotated[Path, typer.Option(help="the shared Slurm spool dir (the server's slurm_spool_dir)")],
    staging: Annotated[Path, typer.Option(help="local folder for staged inputs (wiped after each job)")],
    directory: Annotated[Path, typer.Option("--dir", help="where the node's keys and config go")] = Path(
        "/etc/sanctum-node"
    ),
    as_json: JsonFlag = False,
) -> None:
    """On the node: make its signing and sealing keys (0600) and config; prints what an admin registers."""
    from sanctum.jobs.node_agent import keygen

    try:
        public = keygen(
            directory, name=name, server_url=server, blob_root=blob_root, spool=spool, staging=staging
        )
    except FileExistsError:
        _fail(f"{directory} already holds node keys", as_json=as_json, code="exists")
    if as_json:
        emit_json(public)
        return
    console.print(
        f"node keys in {directory}. An admin registers the node with:\n  sanctum node register {name} "
        f"--public-key {public['public_key']} --sealing-key {public['sealing_key']} --address <node IP>",
        highlight=False,
        soft_wrap=True,
    )


@node_app.command("register")
def node_register(
    name: Annotated[str, typer.Argument(help="the node's Slurm NodeName")],
    public_key: Annotated[str, typer.Option(help="ed25519:... from `node keygen`")],
    sealing_key: Annotated[str, typer.Option(help="base64 X25519 key from `node keygen`")],
    address: Annotated[list[str], typer.Option(help="an IP the node calls from (repeatable)")],
    location: Annotated[str, typer.Option(help="where the node is, for data-locality rules")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Admin: allow a node to receive data keys for jobs Slurm schedules on it."""
    with _server(as_json) as client:
        body = {
            "name": name,
            "public_key": public_key,
            "sealing_key": sealing_key,
            "addresses": address,
            "location": location,
        }
        node = client._call("POST", "/admin/nodes", dict, json=body)
    _show(node, as_json, message=f"registered node {name}")


@node_app.command("verify-prolog")
def node_verify_prolog(directory: DirOption = None) -> None:
    """Run by the Slurm Prolog: exit 0 only if this node verified the job's signed manifest and code."""
    from sanctum.jobs.node_agent import NodeConfig, verify_prolog

    try:
        job = verify_prolog(NodeConfig.load(directory))
    except Exception as exc:  # the Prolog fails closed, whatever went wrong
        print(f"refused: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"sanctum job {job}: manifest and code verified", file=sys.stderr)


@node_app.command("run")
def node_run(
    job: Annotated[int, typer.Argument(help="the Sanctum job id (from the batch script)")],
    directory: DirOption = None,
) -> None:
    """Run by the batch script on the node: verify, get keys, stage, sandbox, report, wipe."""
    from sanctum.jobs.node_agent import NodeConfig, run

    state = run(job, NodeConfig.load(directory))
    print(f"sanctum job {job}: {state}", file=sys.stderr)
    if state != "succeeded":
        raise typer.Exit(1)


@node_app.command("wipe")
def node_wipe(directory: DirOption = None, as_json: JsonFlag = False) -> None:
    """Remove staged data no running job holds (run it at boot: a node that lost power left some)."""
    from sanctum.jobs.node_agent import NodeConfig
    from sanctum.jobs.node_staging import wipe_stale

    wiped = wipe_stale(NodeConfig.load(directory).staging_dir)
    if as_json:
        emit_json({"wiped": wiped})
    else:
        names = f": {', '.join(wiped)}" if wiped else ""
        console.print(f"wiped {len(wiped)} stale staging folder(s){names}")


@slurm_app.command("install")
def slurm_install(
    prolog: Annotated[Path, typer.Option(help="where to write the Prolog script")],
    server: Annotated[str, typer.Option(help="the Sanctum server URL nodes call")],
    node_dir: Annotated[
        Path | None, typer.Option(help="the node config dir, if not /etc/sanctum-node")
    ] = None,
) -> None:
    """Write the Prolog that verifies every job's signed manifest on the node; print the slurm.conf lines."""
    from sanctum.jobs.slurm_install import prolog_script, slurm_conf_lines, write_prolog

    extra = ["--dir", str(node_dir)] if node_dir else []
    write_prolog(prolog, prolog_script(Path(sys.executable).with_name("sanctum"), server, extra_args=extra))
    console.print(f"wrote {prolog}. Add to slurm.conf on every node and the controller:", highlight=False)
    for line in slurm_conf_lines(prolog):
        console.print(f"  {line}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    app.add_typer(slurm_app, name="slurm")
