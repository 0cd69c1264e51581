"""Experiment pages benchmark: what a runs table and a run page cost next to the MLflow API calls
that fetch the same data, same run, same catalog.

In process (the app through Starlette's test client, no sockets), on a fresh data dir and catalog
per backend, as the same data scientist:

* the runs table of an experiment with ``--runs`` runs (default 2,000), 50 per page, sorted by a
  metric, unfiltered and filtered (``metrics.acc > 0.5 and params.C = '1'``), next to
  ``runs/search`` for 50 runs with the same order and filter (the MLflow API's answer is JSON, the
  page renders HTML, counts the matches and reads users, children and parents as well);
* the page of a run whose metric has ``--steps`` points (default 10,000 and 100,000), drawn as one
  downsampled SVG line, next to reading that history through ``metrics/get-history`` in pages of
  25,000 as the MLflow client does.

It prints the median of ``--repeat`` requests of each (after one unreported warm-up) and the ratio
page/API. Timing is never asserted; read the ratios, not the absolute numbers.

    .venv/bin/python bench/web_tracking.py [--runs 2000] [--steps 10000,100000] [--repeat 7]
                                           [--backends sqlite,postgresql]

PostgreSQL gets a fresh database ``sanctum_bench_<pid>_<random>`` on ``SANCTUM_BENCH_PG`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), dropped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import sqlalchemy as sa
from fastapi.testclient import TestClient

from sanctum.access.permissions import Permission, Role
from sanctum.access.policy import Principal
from sanctum.accounts.tokens import TokenKind, issue
from sanctum.accounts.users import create_user
from sanctum.api.app import create_app
from sanctum.api.deps import SESSION_COOKIE
from sanctum.api.runtime import Runtime
from sanctum.audit import AuditContext
from sanctum.config import load_settings
from sanctum.db.migrate import upgrade
from sanctum.db.types import utcnow
from sanctum.projects import members
from sanctum.projects import service as projects
from sanctum.security.keys import create_master_key
from sanctum.tracking import runlog
from sanctum.tracking import service as svc

PG_ADMIN_URL = os.environ.get("SANCTUM_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench password that is long enough"
M = "/api/2.0/mlflow"
FILTER = "metrics.acc > 0.5 and params.C = '1'"


@contextlib.contextmanager
def database(kind: str, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'catalog.db'}"
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"sanctum_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def populate(runtime: Runtime, n_runs: int, steps: list[int]) -> tuple[str, str, dict[int, str], str]:
    """(session secret, API token, {steps: run id}, experiment id), logged through the services."""
    rng = random.Random(7)
    with runtime.db.session() as db:
        owner = create_user(db, AuditContext(), "owner@bench.example.org", PASSWORD)
        scientist = create_user(db, AuditContext(), "scientist@bench.example.org", PASSWORD)
        principal = Principal(owner.id, owner.email, False, True, 0, "bench")
        project = projects.create(db, principal, name="bench")
        members.add(db, project, scientist.email, Role.DATA_SCIENTIST)
        expires = utcnow() + timedelta(hours=2)
        session = issue(db, scientist, TokenKind.SESSION, expires_at=expires, name="bench").secret
        token = issue(db, scientist, TokenKind.API, expires_at=expires, project_id=project.project.id).secret
        sci = Principal(scientist.id, scientist.email, False, False, 0, "bench")
        ctx = projects.load(db, sci, "bench", Permission.EXPERIMENTS_WRITE)
        experiment = svc.create_experiment(db, ctx, "bench")
        start = svc.now_ms() - n_runs * 1000
        for i in range(n_runs):
            run = svc.create_run(
                db, ctx, experiment_id=experiment.id, start_time=start + i * 1000, run_name=f"r{i}", tags=[]
            )
            metrics = [{"key": "acc", "value": rng.random(), "timestamp": start, "step": 0}]
            params = [{"key": "C", "value": str(i % 4)}]
            runlog.log_batch(db, ctx, run.id, metrics=metrics, params=params, tags=[])
            run.end_time = start + i * 1000 + 500
        long_runs = {}
        for n in steps:
            run = svc.create_run(
                db, ctx, experiment_id=experiment.id, start_time=start, run_name=f"long{n}", tags=[]
            )
            for first in range(0, n, 1000):
                points = [
                    {
                        "key": "loss",
                        "value": 1 / (s + 1) + rng.random() * 0.01,
                        "timestamp": start + s,
                        "step": s,
                    }
                    for s in range(first, min(n, first + 1000))
                ]
                runlog.log_batch(db, ctx, run.id, metrics=points, params=[], tags=[])
            long_runs[n] = run.id
        return session, token, long_runs, str(experiment.id)


def median_ms(call: Callable[[], None], repeat: int) -> float:
    call()  # warm-up, not reported
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def ok(response) -> None:  # type: ignore[no-untyped-def]
    if response.status_code != 200:
        raise SystemExit(f"{response.request.url} answered {response.status_code}: {response.text[:300]}")


def history(api: TestClient, run_id: str) -> None:
    token = None
    while True:
        params = {"run_id": run_id, "metric_key": "loss", "max_results": 25000}
        if token:
            params["page_token"] = token
        r = api.get(f"{M}/metrics/get-history", params=params)
        ok(r)
        token = r.json().get("next_page_token")
        if not token:
            return


def bench(kind: str, args: argparse.Namespace) -> None:
    steps = [int(s) for s in args.steps.split(",") if s]
    with (
        tempfile.TemporaryDirectory(prefix="sanctum-bench-web-") as tmp_name,
        database(kind, Path(tmp_name)) as url,
    ):
        tmp = Path(tmp_name)
        data = tmp / "data"
        data.mkdir()
        create_master_key(data / "master.key")
        upgrade(url)
        runtime = Runtime.start(load_settings(data, database_url=url))
        try:
            started = time.perf_counter()
            session, token, long_runs, experiment = populate(runtime, args.runs, steps)
            took = time.perf_counter() - started
            print(f"\n{kind}: {args.runs:,} runs and runs of {args.steps} steps logged in {took:.1f} s")
            app = create_app(runtime=runtime)
            web = TestClient(app, base_url="https://testserver")
            web.cookies.set(SESSION_COOKIE, session)
            api = TestClient(app, headers={"Authorization": f"Bearer {token}"})
            table = f"/projects/bench/experiments/{experiment}"
            rows = []
            for label, query in (("sorted by metric", {}), ("filtered", {"filter": FILTER})):
                page = median_ms(
                    lambda q=query: ok(web.get(table, params={"sort": "metric", **q})), args.repeat
                )
                body = {"experiment_ids": [experiment], "max_results": 50, "order_by": ["metrics.acc DESC"]}
                if query:
                    body["filter"] = FILTER
                search = median_ms(lambda b=body: ok(api.post(f"{M}/runs/search", json=b)), args.repeat)
                rows.append(
                    (f"runs table, {args.runs:,} runs, {label}", page, "runs/search, 50 runs", search)
                )
            for n, run_id in long_runs.items():
                page = median_ms(lambda r=run_id: ok(web.get(f"/projects/bench/runs/{r}")), args.repeat)
                hist = median_ms(lambda r=run_id: history(api, r), args.repeat)
                rows.append((f"run page, {n:,}-step metric", page, "metrics/get-history", hist))
            print(f"{'page':48} {'ms':>8}   {'MLflow API peer':28} {'ms':>8} {'page/API':>9}")
            for what, page_ms, peer, peer_ms in rows:
                print(f"{what:48} {page_ms:8.1f}   {peer:28} {peer_ms:8.1f} {page_ms / peer_ms:9.2f}")
        finally:
            runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--steps", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.backends.split(","):
        bench(kind.strip(), args)


if __name__ == "__main__":
    main()
