"""API benchmark: what token authentication costs per request, on SQLite and on PostgreSQL.

For each backend it starts a real ``sanctum serve`` on a fresh data dir (and, for PostgreSQL, a fresh
database), creates a user, logs in, creates project ``bench`` and enrols TOTP (the default 2FA policy
requires it of a project's Data Owner), then drives, in the same run and with the same load generator:

* ``GET /healthz``: no authentication, no database; the floor;
* ``GET /api/v1/projects/bench`` with ``Authorization: Bearer snt_…``: token lookup, principal, project
  and membership load, authorisation, JSON.

and prints requests/s and p50/p99 latency for both, the ratio, and the server time the authenticated
path adds per request, ``1/rps_auth - 1/rps_healthz`` (with one worker the server is one process, so
1/rps is its time per request). Targets: that cost under 1 ms; p99 under 25 ms on 2 cores. A
single-connection probe per endpoint shows the unqueued latency; ~40 ms there would mean Nagle's
algorithm meeting delayed ACKs (the server must set TCP_NODELAY).

    .venv/bin/python bench/api.py [--seconds 10] [--connections 32] [--backends sqlite,postgresql]
                                  [--workers 1] [--loadgen auto|wrk|python]

Everything stays on 127.0.0.1; the server, its temp dir and the PostgreSQL database are removed on
exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _load

EMAIL = "bench@example.org"
PROJECT = "bench"
HEALTH_PATH = "/healthz"
AUTH_PATH = f"/api/v1/projects/{PROJECT}"
TARGET_COST_MS = 1.0
TARGET_P99_MS = 25.0
NAGLE_MS = 30.0  # an unqueued request slower than this smells of Nagle + delayed ACK (~40 ms)
PG_ADMIN_URL = os.environ.get("SANCTUM_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PROBE_REQUESTS = 300


class BenchError(Exception):
    """A run that cannot give meaningful figures; the message says why."""


# --------------------------------------------------------------------------------------- helpers


def sanctum_command() -> list[str]:
    """The venv's ``sanctum`` script beside this interpreter, else the same entry point via ``-c``."""
    script = Path(sys.executable).parent / "sanctum"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from sanctum.cli.main import main; main()"]


def child_env(database_url: str | None) -> dict[str, str]:
    """The caller's environment without any SANCTUM_* setting, so the run does not depend on the shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANCTUM_")}
    if database_url:
        env["SANCTUM_DATABASE_URL"] = database_url
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(port: int, method: str, path: str, body: object | None = None,
         token: str | None = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        data: object = json.loads(raw) if raw else None
    except ValueError:
        data = raw.decode(errors="replace")
    return response.status, data


def expect(status: int, data: object, want: int, what: str) -> dict:  # type: ignore[type-arg]
    if status != want:
        raise BenchError(f"{what}: HTTP {status} (wanted {want}): {data}")
    assert isinstance(data, dict)
    return data


def probe(port: int, path: str, token: str | None, requests: int = PROBE_REQUESTS) -> float:
    """p50 of sequential requests on one keep-alive connection: latency with no queueing."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    times = []
    try:
        for _ in range(requests):
            began = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            times.append(time.perf_counter() - began)
            if response.status != 200:
                raise BenchError(f"probe GET {path}: HTTP {response.status}")
    finally:
        conn.close()
    times.sort()
    return _load.percentile(times, 50) * 1e3


# -------------------------------------------------------------------------------------- instance


@dataclass
class Server:
    port: int
    token: str
    description: str
    pgid: int  # the server's process group: uvicorn and any workers


def cpu_seconds(pgid: int) -> float | None:
    """User + system CPU time of every live process in a process group (Linux /proc), else None."""
    tick = os.sysconf("SC_CLK_TCK")
    total, seen = 0.0, False
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone, or not ours to read
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / tick
            seen = True
    return total if seen else None


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named database on the PostgreSQL at SANCTUM_BENCH_PG; dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"sanctum_bench_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        raise BenchError(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {str(exc.orig).strip()}") from exc
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def run_cli(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(sanctum_command() + args, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    if proc.returncode != 0:
        raise BenchError(f"sanctum {' '.join(args[:3])} failed: {(proc.stderr or proc.stdout).strip()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server we started: its own process group (uvicorn and any workers), politely first."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def instance(backend: str, workers: int) -> Iterator[Server]:
    """A served instance with user, token, project and enrolled TOTP; torn down on exit."""
    import pyotp

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"sanctum-bench-{backend}-")))
        database_url = stack.enter_context(postgres_database()) if backend == "postgresql" else None
        env = child_env(database_url)
        data_dir = tmp / "data"
        password = "bench-" + secrets.token_urlsafe(24)
        password_file = tmp / "password"
        password_file.write_text(password)
        password_file.chmod(0o600)
        run_cli(["init", "--data-dir", str(data_dir)], env)
        run_cli(["admin", "user", "create", EMAIL, "--data-dir", str(data_dir),
                 "--password-file", str(password_file)], env)

        port = free_port()
        log = tmp / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*sanctum_command(), "serve", "--data-dir", str(data_dir), "--port", str(port),
                 "--workers", str(workers)],
                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: Ctrl-C reaches us, and we stop it
            )
        stack.callback(stop, proc)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(f"server exited with {proc.returncode}:\n{tail(log)}")
            with contextlib.suppress(OSError):
                if call(port, "GET", HEALTH_PATH)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"server did not answer /healthz within 60 s:\n{tail(log)}")
            time.sleep(0.1)

        token = expect(*call(port, "POST", "/api/v1/auth/token", {"email": EMAIL, "password": password}),
                       200, "login")["token"]
        expect(*call(port, "POST", "/api/v1/projects", {"name": PROJECT}, token), 201, "create project")
        # Now a Data Owner: under the default policy the token reaches only /me until TOTP is enrolled.
        secret = expect(*call(port, "POST", "/api/v1/me/totp", {}, token), 201, "begin TOTP")["secret"]
        expect(*call(port, "POST", "/api/v1/me/totp/confirm", {"code": pyotp.TOTP(secret).now()}, token),
               200, "confirm TOTP")
        project = expect(*call(port, "GET", AUTH_PATH, token=token), 200, f"GET {AUTH_PATH}")
        if project.get("name") != PROJECT:
            raise BenchError(f"GET {AUTH_PATH} answered {project}")
        where = "file catalog in WAL mode" if backend == "sqlite" else "PostgreSQL on 127.0.0.1:5432"
        yield Server(port, token, f"{backend} ({where})", proc.pid)


# ------------------------------------------------------------------------------------- measuring


@dataclass
class Row:
    label: str
    result: _load.Result
    probe_p50_ms: float
    cpu_ms: float | None  # server CPU time per request during the measured run


@dataclass
class BackendReport:
    backend: str
    health: Row
    auth: Row


def measure(backend: str, args: argparse.Namespace, generator: str) -> BackendReport:
    with instance(backend, args.workers) as server:
        print(f"\n{server.description}: server on 127.0.0.1:{server.port}, --workers {args.workers}",
              flush=True)
        base = f"http://127.0.0.1:{server.port}"
        auth_headers = {"Authorization": f"Bearer {server.token}"}
        targets = [("GET /healthz (no auth, no DB)", HEALTH_PATH, None),
                   (f"GET {AUTH_PATH} (bearer)", AUTH_PATH, auth_headers)]
        if args.warmup > 0:
            for _, path, headers in targets:
                _load.run(base + path, seconds=args.warmup, connections=args.connections,
                          generator=generator, threads=args.threads, headers=headers)
        rows = []
        for label, path, headers in targets:
            cpu_before = cpu_seconds(server.pgid)
            result = _load.run(base + path, seconds=args.seconds, connections=args.connections,
                               generator=generator, threads=args.threads, headers=headers)
            cpu_after = cpu_seconds(server.pgid)
            cpu_ms = None
            if cpu_before is not None and cpu_after is not None and result.requests:
                cpu_ms = (cpu_after - cpu_before) / result.requests * 1e3
            if result.errors:
                raise BenchError(f"{label}: {result.errors} failed requests ({result.error_detail}); "
                                 "figures for error answers would be meaningless")
            p50 = probe(server.port, path, server.token if headers else None)
            rows.append(Row(label, result, p50, cpu_ms))
            print(f"  measured {label}: {result.rps:.0f} req/s", flush=True)
        return BackendReport(backend, rows[0], rows[1])


def report(rep: BackendReport, args: argparse.Namespace) -> list[str]:
    """The figures for one backend, and the warnings they call for."""
    cores = os.cpu_count() or 1
    share = min(args.workers, cores)  # server processes that can run at once
    h, a = rep.health.result, rep.auth.result
    print(f"\n{rep.backend}")
    print(f"  {'endpoint':<40}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'1-conn p50 ms':>15}"
          f"{'CPU ms/req':>12}")
    for row in (rep.health, rep.auth):
        r = row.result
        cpu = f"{row.cpu_ms:>12.3f}" if row.cpu_ms is not None else f"{'n/a':>12}"
        print(f"  {row.label:<40}{r.rps:>8.0f}{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{row.probe_p50_ms:>15.2f}{cpu}")
    ratio = a.rps / h.rps
    cost_ms = share * (1 / a.rps - 1 / h.rps) * 1e3
    formula = f"{'' if share == 1 else f'{share} x '}(1/{a.rps:.0f} - 1/{h.rps:.0f} s)"
    print(f"  rps(auth) / rps(healthz) = {ratio:.3f}")
    print(f"  auth + project lookup per request = {formula} = {cost_ms:.3f} ms   "
          f"(target < {TARGET_COST_MS:g} ms: {'met' if cost_ms < TARGET_COST_MS else 'MISSED'})")
    if rep.auth.cpu_ms is not None and rep.health.cpu_ms is not None:
        print(f"  cross-check by server CPU time: {rep.auth.cpu_ms:.3f} - {rep.health.cpu_ms:.3f} = "
              f"{rep.auth.cpu_ms - rep.health.cpu_ms:.3f} ms per request"
              + (" (PostgreSQL's own processes not included)" if rep.backend == "postgresql" else ""))
    print(f"  p99 authenticated = {a.p99_ms:.2f} ms   (target < {TARGET_P99_MS:g} ms: "
          f"{'met' if a.p99_ms < TARGET_P99_MS else 'MISSED'}; "
          f"closed-loop queueing alone is {args.connections}/rps = {args.connections / a.rps * 1e3:.1f} ms)")
    warnings = []
    for row in (rep.health, rep.auth):
        if row.probe_p50_ms > NAGLE_MS:
            warnings.append(f"{rep.backend}: {row.label} takes {row.probe_p50_ms:.1f} ms on an idle "
                            "connection: Nagle + delayed ACK? (is TCP_NODELAY set on accepted sockets?)")
    if a.p99_ms > TARGET_P99_MS:
        warnings.append(f"{rep.backend}: p99 {a.p99_ms:.1f} ms for {AUTH_PATH} is over the "
                        f"{TARGET_P99_MS:g} ms target")
    if cost_ms > TARGET_COST_MS:
        warnings.append(f"{rep.backend}: authentication + project lookup costs {cost_ms:.2f} ms per request, "
                        f"over the {TARGET_COST_MS:g} ms target")
    return warnings


def describe_generator(generator: str, args: argparse.Namespace) -> str:
    if generator == "wrk":
        proc = subprocess.run([_load.wrk_path() or "wrk", "-v"], capture_output=True, text=True, check=False)
        version = (proc.stdout or proc.stderr).split("\n")[0].split(" [")[0].strip() or "wrk"
        return (f"{version} -t{min(args.threads, args.connections)} -c{args.connections} "
                f"-d{max(1, round(args.seconds))}s --latency")
    return (f"Python fallback: {args.connections} keep-alive http.client threads over "
            f"{min(os.cpu_count() or 1, args.connections)} processes, {args.seconds:g} s "
            "(heavy on CPU: its req/s are a lower bound; install wrk for better figures)")


def server_protocol() -> str:
    from sanctum.server import NoDelayProtocol

    base = NoDelayProtocol.__mro__[1].__name__
    return f"uvicorn {base} + TCP_NODELAY"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measured row")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive clients")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--warmup", type=float, default=2.0, help="unreported seconds per endpoint first")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                        help="load generator; auto = wrk when installed")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - {"sqlite", "postgresql"})
    if unknown:
        parser.error(f"unknown backends: {', '.join(unknown)}")
    if not 1 <= args.seconds <= 300:
        parser.error("--seconds must be between 1 and 300")
    if not 0 <= args.warmup <= 60:
        parser.error("--warmup must be between 0 and 60")
    if not 1 <= args.connections <= 1000:
        parser.error("--connections must be between 1 and 1000")
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers: server, database, temp dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    generator = args.loadgen
    if generator == "auto":
        generator = "wrk" if _load.wrk_path() else "python"
    elif generator == "wrk" and not _load.wrk_path():
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None and args.loadgen == "auto":
        print("note: wrk not found (Debian: apt-get install wrk); using the Python load generator")

    print("Sanctum API benchmark")
    print(f"  machine:        {os.cpu_count()} CPUs (shared with the load generator), Python "
          f"{sys.version.split()[0]}")
    print(f"  load generator: {describe_generator(generator, args)}")
    print(f"  server:         sanctum serve --workers {args.workers} ({server_protocol()}), "
          "2FA policy 'owners' (default); the bench user owns the project and has TOTP enrolled")

    reports, warnings, failed = [], [], []
    try:
        for backend in args.backends:
            try:
                reports.append(measure(backend, args, generator))
            except BenchError as exc:
                failed.append(backend)
                print(f"\n{backend}: not measured: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; servers, temp dirs and databases removed", file=sys.stderr)
        return 130

    for rep in reports:
        warnings += report(rep, args)
    if len(reports) > 1:
        print(f"\nsummary ({args.connections} connections, --workers {args.workers})")
        print(f"  {'backend':<12}{'healthz req/s':>15}{'auth req/s':>12}{'ratio':>8}{'auth ms':>9}"
              f"{'CPU ms':>8}{'p50 ms':>8}{'p99 ms':>8}")
        share = min(args.workers, os.cpu_count() or 1)
        for rep in reports:
            h, a = rep.health.result, rep.auth.result
            cpu = (f"{rep.auth.cpu_ms - rep.health.cpu_ms:>8.3f}"
                   if rep.auth.cpu_ms is not None and rep.health.cpu_ms is not None else f"{'n/a':>8}")
            print(f"  {rep.backend:<12}{h.rps:>15.0f}{a.rps:>12.0f}{a.rps / h.rps:>8.3f}"
                  f"{share * (1 / a.rps - 1 / h.rps) * 1e3:>9.3f}{cpu}{a.p50_ms:>8.2f}{a.p99_ms:>8.2f}")
    if warnings:
        print()
        for line in warnings:
            print(f"WARNING: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
