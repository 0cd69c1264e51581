"""The served app: TCP_NODELAY on accepted connections, and a real HTTP round trip."""

from __future__ import annotations

import socket

import httpx

from sanctum import server


class _Transport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str, default=None):
        return self.sock if name == "socket" else default


def test_set_nodelay_on_a_real_socket() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        accepted.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        server.set_nodelay(_Transport(accepted))
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        for s in (client, accepted, listener):
            s.close()


def test_live_server_sets_nodelay_on_each_connection(live_server, monkeypatch) -> None:
    seen: list[int] = []
    original = server.set_nodelay

    def spy(transport) -> None:
        original(transport)
        sock = transport.get_extra_info("socket")
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(server, "set_nodelay", spy)
    for _ in range(2):
        with httpx.Client() as c:
            assert c.get(f"{live_server.url}/healthz").json() == {"status": "ok"}
    assert seen == [1, 1]


def test_uvicorn_config_uses_the_nodelay_protocol(settings) -> None:
    config = server.uvicorn_config(settings)
    assert config.http is server.NoDelayProtocol
    assert config.host == "127.0.0.1" and config.server_header is False
