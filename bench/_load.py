"""Load generators for the benchmarks: ``wrk`` when installed, else a Python fallback.

Both drive a closed loop: ``connections`` keep-alive connections, each sending its next request as soon
as the previous answer arrives, for a fixed number of seconds. Both return a ``Result`` with requests per
second and p50/p99 latency, and count every answer that is not a 2xx as an error (a benchmark of error
pages would be meaningless, so the caller refuses such a run).
"""

from __future__ import annotations

import http.client
import math
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers plus socket errors and timeouts
    error_detail: str = ""


def wrk_path() -> str | None:
    return shutil.which("wrk")


# ---------------------------------------------------------------------------------------------- wrk

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise ValueError(f"cannot read wrk duration {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> Result:
    """Read ``wrk --latency`` output (wrk 4.x)."""
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"unexpected wrk output (no match for {pattern!r}):\n{output}")
        return match

    p50 = _duration_ms(find(r"^\s+50%\s+(\S+)").group(1))
    p99 = _duration_ms(find(r"^\s+99%\s+(\S+)").group(1))
    total = find(r"^\s+(\d+) requests in ([\d.]+\w+),")
    requests, seconds = int(total.group(1)), _duration_ms(total.group(2)) / 1e3
    rps = float(find(r"^Requests/sec:\s+([\d.]+)").group(1))
    errors, detail = 0, []
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
        detail.append(non2xx.group(0))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sock:
        errors += sum(int(n) for n in sock.groups())
        detail.append(sock.group(0))
    return Result(requests, seconds, rps, p50, p99, errors, "; ".join(detail))


def run_wrk(url: str, *, seconds: float, connections: int, threads: int = 2,
            headers: dict[str, str] | None = None) -> Result:
    """One fixed-duration wrk run. Headers go through a Lua script in a 0600 file, not argv, so a
    bearer token never shows in ``ps``."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    args = [wrk, f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "--timeout", "10s"]
    with tempfile.TemporaryDirectory(prefix="sanctum-wrk-") as tmp:
        if headers:
            script = Path(tmp) / "headers.lua"
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                for name, value in headers.items():
                    out.write(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}\n")
            args += ["-s", str(script)]
        args.append(url)
        proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return parse_wrk(proc.stdout)


def _lua_string(text: str) -> str:
    if not re.fullmatch(r"[\x20-\x7e]*", text):
        raise ValueError("header values must be printable ASCII")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------------- Python


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _connection(host: str, port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _client_loop(host: str, port: int, path: str, headers: dict[str, str], start: float, stop: float,
                 latencies: list[float], errors: list[str]) -> None:
    conn = _connection(host, port)
    now = time.monotonic()
    while now < stop:
        began = now
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            status = response.status
            if response.will_close:
                conn.close()
                conn = _connection(host, port)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(type(exc).__name__)
            conn.close()
            conn = _connection(host, port)
            now = time.monotonic()
            continue
        now = time.monotonic()
        if began >= start:  # only requests begun inside the measured window count
            latencies.append(now - began)
            if not 200 <= status < 300:
                errors.append(f"HTTP {status}")
    conn.close()


def _process_worker(url: str, headers: dict[str, str], threads: int, start: float, stop: float,
                    queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    latencies: list[float] = []
    errors: list[str] = []
    pool = [threading.Thread(target=_client_loop, args=(host, port, path, headers, start, stop, latencies,
                                                        errors), daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put((latencies, errors))


def run_python(url: str, *, seconds: float, connections: int, headers: dict[str, str] | None = None,
               processes: int | None = None) -> Result:
    """``connections`` threads with keep-alive ``http.client`` connections, spread over a few processes
    (one per core) so that the GIL of one process is not the ceiling. Still far heavier than wrk per
    request: on a small machine it takes CPU from the server, so its rps is a lower bound."""
    processes = max(1, min(processes or os.cpu_count() or 1, connections))
    shares = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    # time.monotonic (CLOCK_MONOTONIC) is one clock for all processes, with ns resolution on Linux.
    start = time.monotonic() + 1.5  # let every process connect before the window opens
    stop = start + seconds
    workers = [ctx.Process(target=_process_worker,
                           args=(url, headers or {}, n, start, stop, queue), daemon=True) for n in shares]
    for proc in workers:
        proc.start()
    latencies: list[float] = []
    errors: list[str] = []
    try:
        for _ in workers:
            got_latencies, got_errors = queue.get(timeout=seconds + 60)
            latencies += got_latencies
            errors += got_errors
    finally:
        for proc in workers:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    latencies.sort()
    detail = ", ".join(f"{e} x{errors.count(e)}" for e in sorted(set(errors)))
    return Result(len(latencies), seconds, len(latencies) / seconds, percentile(latencies, 50) * 1e3,
                  percentile(latencies, 99) * 1e3, len(errors), detail)


def run(url: str, *, seconds: float, connections: int, generator: str, threads: int = 2,
        headers: dict[str, str] | None = None) -> Result:
    if generator == "wrk":
        return run_wrk(url, seconds=seconds, connections=connections, threads=threads, headers=headers)
    return run_python(url, seconds=seconds, connections=connections, headers=headers)
