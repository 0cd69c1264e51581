"""``sanctum dicom listen`` (the receiver, on the server host) and ``sanctum dicom route add|ls|rm``.

``listen`` acts on a data dir like ``serve``: it runs the Storage SCP in the foreground until
SIGINT or SIGTERM, then aborts open associations (nothing of them is committed) and exits. The
server can run the same receiver itself (``dicom_port``); run one or the other on a port.
``route`` commands talk to a server as a data owner. See docs/dicom-receiver.md.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.markup import escape

from sanctum.cli.client import ProjectArg, _server, _show
from sanctum.cli.ingest import CLEAN, RETAIN, _options
from sanctum.cli.instance import DataDirOption, JsonFlag, open_runtime, settings_for
from sanctum.cli.output import console, fail

dicom_app = typer.Typer(no_args_is_help=True, help="The DICOM receiver (C-STORE from a PACS).")
route_app = typer.Typer(no_args_is_help=True, help="Which sending AE title goes into which dataset.")
dicom_app.add_typer(route_app, name="route")

AeTitleArg = Annotated[str, typer.Argument(help="the sender's calling AE title, as set in the PACS")]
ROUTE_COLUMNS = {
    "AE title": "ae_title",
    "dataset": "dataset",
    "dates": "dates",
    "set by": "set_by",
    "active": "active",
    "updated": "updated_at",
}


@dicom_app.command("listen")
def listen(
    data_dir: DataDirOption,
    host: Annotated[str | None, typer.Option(help="address to bind (default: dicom_host, else host)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="port (default: dicom_port)")] = None,
    ae_title: Annotated[str | None, typer.Option(help="this receiver's AE title (default SANCTUM)")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="TLS certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="its private key (PEM)")] = None,
    tls_ca: Annotated[Path | None, typer.Option(help="require client certificates signed by this CA")] = None,
) -> None:
    """Run the DICOM receiver (a Storage SCP) in the foreground; Ctrl-C or SIGTERM stops it."""
    from sanctum.config import ConfigError
    from sanctum.db.migrate import upgrade
    from sanctum.dicom.receiver import DicomReceiver, ListenConfig

    settings = settings_for(data_dir)
    paths = {
        k: v.expanduser().resolve()
        for k, v in (("tls_cert", tls_cert), ("tls_key", tls_key), ("tls_ca", tls_ca))
        if v
    }
    try:
        config = ListenConfig.from_settings(settings, host=host, port=port, ae_title=ae_title, **paths)
        config.check()
    except ConfigError as exc:
        fail(str(exc), code=2, error_code="config")
    upgrade(settings.resolved_database_url)
    runtime = open_runtime(settings)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    receiver = DicomReceiver(runtime, config)
    try:
        try:
            receiver.start()
        except OSError as exc:
            fail(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", code=2)
        console.print(
            f"DICOM receiver {escape(config.ae_title)} listening on {config.host}:{config.port}"
            + (" (TLS" + (", client certificates required)" if config.tls_ca else ")") if config.tls else ""),
            highlight=False,
        )
        stop.wait()
        console.print("stopping: open associations are aborted and nothing of them is committed")
    finally:
        receiver.stop()
        runtime.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@route_app.command("add")
def route_add(
    project: ProjectArg,
    ae_title: AeTitleArg,
    dataset: Annotated[str, typer.Argument(help="a files dataset of the project (created if missing)")],
    dates: Annotated[str, typer.Option(help="shift (default), keep or remove")] = "shift",
    retain: Annotated[
        list[str] | None, typer.Option(help=f"PS3.15 retain option: {', '.join(RETAIN)}")
    ] = None,
    clean: Annotated[list[str] | None, typer.Option(help=f"PS3.15 clean option: {', '.join(CLEAN)}")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Route a sender (data owners): its instances go into DATASET, de-identified with these options.
    Setting an existing route again changes it, and makes you the owner the receiver acts for."""
    if dates not in ("shift", "keep", "remove"):
        fail("--dates must be shift, keep or remove", as_json=as_json, error_code="invalid_input")
    options = _options(dates, retain or [], clean or [], as_json)
    with _server(as_json) as client:
        route = client.set_dicom_route(project, ae_title, dataset, options=options)
    _show(route, as_json, message=f"AE title {route.ae_title} → {project}/{route.dataset}")


@route_app.command("ls")
def route_ls(project: ProjectArg, as_json: JsonFlag = False) -> None:
    """The project's routes; 'active' is false while the owner who set one is no longer an owner."""
    with _server(as_json) as client:
        found = client.list_dicom_routes(project)
    rows = found if as_json else [{**r.model_dump(), "dates": r.options.get("dates")} for r in found]
    _show(rows, as_json, columns=ROUTE_COLUMNS, empty="no DICOM routes")


@route_app.command("rm")
def route_rm(project: ProjectArg, ae_title: AeTitleArg, as_json: JsonFlag = False) -> None:
    """Remove a route: associations from that AE title are rejected from now on."""
    with _server(as_json) as client:
        client.delete_dicom_route(project, ae_title)
    _show({"removed": ae_title}, as_json, message=f"removed the route of AE title {ae_title}")


def register(app: typer.Typer) -> None:
    app.add_typer(dicom_app, name="dicom")
