"""How a compute node signs its requests to the server: shared by the node agent and the server.

Kept apart from ``sanctum.jobs.nodes`` (which needs the database) so that the node agent, started
by Slurm for every job, imports no SQLAlchemy: each import saved is start-up time for every job.
"""

from __future__ import annotations

import hashlib
import time

from sanctum.security import signing

AUTH_SCHEME = "SanctumNode"
MAX_SKEW_S = 120


def request_message(method: str, path: str, timestamp: int, body: bytes) -> bytes:
    """What a node signs: method, path, time and the body's hash (nothing can be swapped)."""
    return f"{method.upper()}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def auth_header(name: str, key: object, method: str, path: str, body: bytes, now: int | None = None) -> str:
    stamp = int(now if now is not None else time.time())
    signature = signing.sign(key, request_message(method, path, stamp, body))  # type: ignore[arg-type]
    return f"{AUTH_SCHEME} {name}:{stamp}:{signature}"
