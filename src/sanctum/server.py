"""Serving the app with uvicorn, with TCP_NODELAY on every accepted connection.

Without it, small responses on keep-alive connections can wait ~40 ms for delayed ACKs (Nagle's
algorithm meeting delayed ACK), which dominates the latency of an API that answers in 1 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sanctum.config import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _FastProtocol
except ImportError:  # httptools is optional in uvicorn; h11 always works
    _FastProtocol = H11Protocol  # type: ignore[assignment,misc]


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayProtocol(_FastProtocol):  # type: ignore[misc,valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


def uvicorn_config(settings: Settings, **extra: Any) -> uvicorn.Config:
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": NoDelayProtocol,
        "proxy_headers": False,
        "server_header": False,
        "log_level": "info",
        "access_log": False,
    }
    if settings.tls_enabled:
        kwargs.update(ssl_certfile=str(settings.tls_certfile), ssl_keyfile=str(settings.tls_keyfile))
    kwargs.update(extra)
    if settings.workers > 1:
        # Each worker process builds its own app from the same settings, passed via SANCTUM_*.
        export_settings(settings)
        return uvicorn.Config(
            "sanctum.api.app:app_from_env", factory=True, workers=settings.workers, **kwargs
        )
    from sanctum.api.app import create_app

    return uvicorn.Config(create_app(settings), **kwargs)


def export_settings(settings: Settings) -> None:
    for name, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"SANCTUM_{name.upper()}"] = str(value)


def serve(settings: Settings) -> None:
    """Run in the foreground until interrupted."""
    config = uvicorn_config(settings)
    server = uvicorn.Server(config)
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()


@contextlib.contextmanager
def in_thread(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread of this process; yields its URL.

    For tests and benchmarks that need a real HTTP server (a Slurm node agent, a browser, the
    stock MLflow client) beside objects of the same process. The app's lifespan is not run: the
    caller owns the runtime and whatever it starts.
    """
    with socket.socket() as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host=host, port=port, http=NoDelayProtocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
