"""Tracking benchmark: the stock MLflow client against Sanctum and against ``mlflow server``.

Both servers run on this machine in the same run, and the same workload drives each through the
stock client, in a client process per server. Each figure is measured in rounds that alternate
between the two (A B, B A, ...), so that other load on a shared machine falls on both alike:

* Sanctum: ``sanctum serve`` (uvicorn, one worker) on a fresh data dir with the embedded default
  catalog (SQLite), authentication on: a project-bound ``snt_`` API token in
  ``MLFLOW_TRACKING_TOKEN``, issued to a Data Owner with TOTP enrolled (the default 2FA policy);
* ``mlflow server --workers 1 --backend-store-uri sqlite:///...`` (its fastest setting here), from a
  virtualenv this script makes outside the repository (``$XDG_CACHE_HOME/sanctum-bench/``, else
  ``~/.cache/sanctum-bench/``) with ``pip install mlflow==<the client's version>``. The first run
  downloads and installs mlflow: that takes a few minutes; later runs reuse it.

Figures, each printed for Sanctum, for mlflow, the ratio and the issue's target:
runs created/s; single ``log_metric`` calls/s, p50 and p99; ``log_batch`` metrics/s (1,000 per
call); ``search_runs`` ms for 100 of 2,000 runs with a filter and an order-by; ``get_metric_history``
of 10,000 steps in ms, beside the floor: the client's own time to decode and parse that response.

    .venv/bin/python bench/tracking.py [--quick] [--runs 2000] [--calls 2000] [--batches 20]
                                       [--repeat 10] [--rounds 6] [--mlflow-version X]

Everything binds to 127.0.0.1; servers and temp dirs are removed on exit, also on Ctrl-C. Exit status
0 when both servers were measured, 1 when one could not be, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api  # the served-instance helpers of bench/api.py
from _tracking_client import ANSWER, BATCH, HISTORY_STEPS, SEARCH_RESULTS
from api import BenchError, call, expect, free_port, stop, tail

TARGETS = {"per_call": 10.0, "bulk": 5.0, "log_metric_rps": 1200.0, "history_over_floor": 1.5}


@dataclass
class Target:
    """A server the client drives: where, with which environment, and whose CPU to count."""

    name: str
    url: str
    env: dict[str, str]
    pgid: int


def client_env(url: str, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "SANCTUM_"))}
    env |= {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # a failed call is an error, not a hidden retry
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if token:
        env["MLFLOW_TRACKING_TOKEN"] = token
    return env


# ------------------------------------------------------------------------------------- servers


@contextlib.contextmanager
def sanctum_server() -> Iterator[Target]:
    """``sanctum serve`` on SQLite with a Data Owner, project ``bench`` and a token bound to it."""
    with api.instance("sqlite", workers=1) as server:
        created = expect(
            *call(server.port, "POST", "/api/v1/tokens", {"name": "tracking-bench", "project": api.PROJECT},
                  server.token),
            201, "create a project-bound API token",
        )
        url = f"http://127.0.0.1:{server.port}"
        yield Target("sanctum", url, client_env(url, created["token"]), server.pgid)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sanctum-bench"


def mlflow_venv(version: str) -> Path:
    """A virtualenv with ``mlflow==version``, made once outside the repository and reused."""
    root = cache_dir() / f"mlflow-{version}"
    done = root / ".installed"
    if done.exists():
        return root
    print(f"installing mlflow=={version} into {root} (first run only; this takes a few minutes)...",
          flush=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    log = root / "pip.log"
    with open(log, "wb") as out:
        proc = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "--quiet",
                               "--disable-pip-version-check", f"mlflow=={version}"],
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise BenchError(f"pip install mlflow=={version} failed:\n{tail(log)}")
    done.write_text(version)
    return root


@contextlib.contextmanager
def mlflow_server(version: str) -> Iterator[Target]:
    """``mlflow server --workers 1`` on a fresh SQLite file, as the issue asks for the peer."""
    root = mlflow_venv(version)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sanctum-bench-mlflow-")))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_DISABLE_TELEMETRY"] = "true"
        log = tmp / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(root / "bin" / "mlflow"), "server",
                 "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                 "--artifacts-destination", str(tmp / "artifacts"), "--host", "127.0.0.1",
                 "--port", str(port), "--workers", "1"],
                env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        stack.callback(stop, proc)
        deadline = time.monotonic() + 180  # the first start migrates its fresh database
        while True:
            if proc.poll() is not None:
                raise BenchError(f"mlflow server exited with {proc.returncode}:\n{tail(log)}")
            with contextlib.suppress(OSError):
                if call(port, "GET", "/health")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"mlflow server did not answer /health within 180 s:\n{tail(log)}")
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        yield Target(f"mlflow {version}", url, client_env(url, None), proc.pid)


# ------------------------------------------------------------------------------------ the parent


class Client:
    """A client process driving one server, step by step."""

    def __init__(self, target: Target, log: IO[bytes]) -> None:
        self.name = target.name
        script = Path(__file__).with_name("_tracking_client.py")
        self.proc = subprocess.Popen([sys.executable, str(script)], env=target.env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        self.log = log
        self.call("setup", target.pgid)

    def call(self, op: str, *args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([op, args]) + "\n")
        self.proc.stdin.flush()
        for line in self.proc.stdout:
            if line.startswith(ANSWER):
                return json.loads(line[len(ANSWER):])
        self.log.flush()
        raise BenchError(f"the client driving {self.name} failed in {op}:\n{tail(Path(self.log.name), 30)}")

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def rounds(clients: list[Client], op: str, args: list[tuple[Any, ...]]) -> list[list[dict[str, Any]]]:
    """``op`` once per round for each client, alternating who goes first; results per client."""
    results: list[list[dict[str, Any]]] = [[] for _ in clients]
    for i, round_args in enumerate(args):
        order = list(range(len(clients)))[:: 1 if i % 2 == 0 else -1]
        for k in order:
            results[k].append(clients[k].call(op, *round_args))
    return results


def split(total: int, parts: int) -> list[tuple[int]]:
    parts = max(1, min(parts, total))
    return [(total // parts + (1 if i < total % parts else 0),) for i in range(parts)]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))]


def measure(clients: list[Client], args: argparse.Namespace) -> list[dict[str, float]]:
    """Every figure, for each client in order."""
    out: list[dict[str, float]] = [{} for _ in clients]
    print(f"  creating {args.runs} runs ...", flush=True)
    for o, res in zip(out, rounds(clients, "create_runs", split(args.runs, args.rounds)), strict=True):
        seconds, cpu = sum(r["seconds"] for r in res), sum(r["server_cpu"] for r in res)
        o["create_run_s"], o["create_run_server_cpu_ms"] = args.runs / seconds, cpu / args.runs * 1e3
    rounds(clients, "label", [()])
    print(f"  {args.calls} log_metric calls ...", flush=True)
    for o, res in zip(out, rounds(clients, "log_metric", split(args.calls, args.rounds)), strict=True):
        times = [t for r in res for t in r["times"]]
        o["log_metric_s"] = len(times) / sum(times)
        o["log_metric_p50_ms"] = percentile(times, 50) * 1e3
        o["log_metric_p99_ms"] = percentile(times, 99) * 1e3
        o["log_metric_server_cpu_ms"] = sum(r["server_cpu"] for r in res) / len(times) * 1e3
        o["log_metric_client_cpu_ms"] = sum(r["client_cpu"] for r in res) / len(times) * 1e3
    print(f"  {args.batches} log_batch calls ...", flush=True)
    for o, res in zip(out, rounds(clients, "log_batch", split(args.batches, args.rounds)), strict=True):
        o["log_batch_metrics_s"] = args.batches * BATCH / sum(r["seconds"] for r in res)
        o["log_batch_server_cpu_ms"] = sum(r["server_cpu"] for r in res) / args.batches * 1e3
    print(f"  {args.repeat} searches and metric histories ...", flush=True)
    rounds(clients, "search", [()])  # warm-ups
    rounds(clients, "history", [()])
    for o, res in zip(out, rounds(clients, "search", [()] * args.repeat), strict=True):
        o["search_ms"] = statistics.median(r["seconds"] for r in res) * 1e3
        o["search_parse_ms"] = statistics.median(r["parse"] for r in res) * 1e3
    for o, res in zip(out, rounds(clients, "history", [()] * args.repeat), strict=True):
        o["history_ms"] = statistics.median(r["seconds"] for r in res) * 1e3
        o["history_parse_ms"] = statistics.median(r["parse"] for r in res) * 1e3
        o["history_bytes"] = res[0]["bytes"]
    return out


# ------------------------------------------------------------------------------------- reporting


def report(s: dict[str, float], m: dict[str, float], args: argparse.Namespace) -> list[str]:
    """One line per figure: Sanctum, mlflow, how many times better Sanctum is, the target."""
    rows = [  # label, key, higher is better, target ratio, format
        ("runs created /s", "create_run_s", True, TARGETS["per_call"], ".0f"),
        ("log_metric calls /s", "log_metric_s", True, TARGETS["per_call"], ".0f"),
        ("log_metric p50 ms", "log_metric_p50_ms", False, TARGETS["per_call"], ".2f"),
        ("log_metric p99 ms", "log_metric_p99_ms", False, TARGETS["per_call"], ".2f"),
        (f"log_batch metrics /s ({BATCH}/call)", "log_batch_metrics_s", True, TARGETS["bulk"], ".0f"),
        (f"search_runs ms ({SEARCH_RESULTS} of {args.runs})", "search_ms", False, TARGETS["bulk"], ".1f"),
        (f"metric history {HISTORY_STEPS} steps ms", "history_ms", False, None, ".1f"),
    ]
    checked = ("create_run_s", "log_metric_s", "log_batch_metrics_s", "search_ms")
    misses = []
    print(f"\n  {'figure':<36}{'sanctum':>10}{'mlflow':>10}{'x better':>10}   target")
    for label, key, higher, target, fmt in rows:
        ratio = s[key] / m[key] if higher else m[key] / s[key]
        goal = f">= {target:g}x" if target else ""
        if target and key in checked and ratio < target:
            misses.append(f"{label}: {ratio:.1f}x mlflow, target {goal}")
        print(f"  {label:<36}{s[key]:>10{fmt}}{m[key]:>10{fmt}}{ratio:>10.1f}   {goal}")
    for label, key, what in (("client parse of that history ms", "history_parse_ms", "the history"),
                             ("client parse of a search answer ms", "search_parse_ms", "search_runs")):
        print(f"  {label:<36}{s[key]:>10.1f}{m[key]:>10.1f}{'':>10}   (the floor of {what})")
    over = s["history_ms"] / s["history_parse_ms"]
    print(f"\n  metric history / the client's parse of it: sanctum {over:.2f}x, mlflow "
          f"{m['history_ms'] / m['history_parse_ms']:.2f}x   (target <= {TARGETS['history_over_floor']:g}x; "
          f"answers of {s['history_bytes'] / 1024:.0f} KiB from sanctum, {m['history_bytes'] / 1024:.0f} KiB "
          "from mlflow)")
    client = s["log_metric_client_cpu_ms"]
    print("  server CPU ms per call (sanctum / mlflow): " + ", ".join(
        f"{name} {s[key]:.2f} / {m[key]:.2f}" for name, key in (
            ("create_run", "create_run_server_cpu_ms"), ("log_metric", "log_metric_server_cpu_ms"),
            ("log_batch", "log_batch_server_cpu_ms"))))
    print(f"  the stock client's own CPU per log_metric call: {client:.2f} ms, so at most "
          f"{1e3 / client:.0f} calls/s from one client process even against a server that costs nothing")
    if s["log_metric_s"] < TARGETS["log_metric_rps"]:
        misses.append(f"log_metric: {s['log_metric_s']:.0f} calls/s, target >= {TARGETS['log_metric_rps']:g}")
    if over > TARGETS["history_over_floor"]:
        misses.append(f"metric history: {over:.2f}x the client's parse time, target <= "
                      f"{TARGETS['history_over_floor']:g}x")
    return misses


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    import mlflow

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run: 300 runs, 300 calls, 5 batches, 3 repeats")
    parser.add_argument("--runs", type=int, default=2000, help="runs created, and searched over")
    parser.add_argument("--calls", type=int, default=2000, help="single log_metric calls")
    parser.add_argument("--batches", type=int, default=20, help=f"log_batch calls of {BATCH} metrics")
    parser.add_argument("--repeat", type=int, default=10, help="timed searches and history reads")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per figure")
    parser.add_argument("--mlflow-version", default=mlflow.__version__,
                        help="mlflow server version for the peer (default: the client's)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.calls, args.batches, args.repeat = 300, 300, 5, 3
    if args.runs < SEARCH_RESULTS * 2:
        parser.error(f"--runs must be at least {SEARCH_RESULTS * 2}")
    if min(args.calls, args.batches, args.repeat, args.rounds) < 1:
        parser.error("--calls, --batches, --repeat and --rounds must be positive")
    return args


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers: clients, servers and temp dirs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    import mlflow

    print("Sanctum tracking benchmark, stock MLflow client " + mlflow.__version__)
    print(f"  machine: {os.cpu_count()} CPUs, shared by servers and clients; Python {sys.version.split()[0]}")
    print(f"  workload: {args.runs} runs, {args.calls} log_metric calls, {args.batches} x {BATCH} log_batch, "
          f"{args.repeat} searches and history reads (medians), in {args.rounds} alternating rounds")
    print("  sanctum: sanctum serve --workers 1, SQLite catalog, bearer snt_ token bound to the project")
    print(f"  mlflow:  mlflow server --workers 1, SQLite backend, mlflow=={args.mlflow_version}")
    try:
        with contextlib.ExitStack() as stack:
            targets = [stack.enter_context(sanctum_server()),
                       stack.enter_context(mlflow_server(args.mlflow_version))]
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sanctum-bench-clients-")))
            clients = []
            for target in targets:
                print(f"  {target.name} at {target.url}", flush=True)
                log = stack.enter_context(open(logs / f"client-{len(clients)}.log", "wb"))
                clients.append(Client(target, log))
                stack.callback(clients[-1].close)
            sanctum, peer = measure(clients, args)
    except BenchError as exc:
        print(f"\nnot measured: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; clients, servers and temp dirs removed", file=sys.stderr)
        return 130
    misses = report(sanctum, peer, args)
    if misses:
        print()
        for line in misses:
            print(f"MISSED: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
