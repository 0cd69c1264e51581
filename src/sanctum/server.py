"""Serving the app with uvicorn, with TCP_NODELAY on every accepted connection.

Without it, small responses on keep-alive connections can wait ~40 ms for delayed ACKs (Nagle's
algorithm meeting delayed ACK), which dominates the latency of an API that answers in 1 ms.
"""

from __future__ import annotations

import asyncio
import os
import socket
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
