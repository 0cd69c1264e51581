"""The client side of bench/tracking.py: one process per server, driving the stock MLflow client
one step at a time on the parent's command (a JSON line on stdin; the answer is a JSON line on
stdout after ``ANSWER``). The stock client keeps global state, hence a process per server; its
environment (``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_TOKEN``) says which server it talks to.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import api  # for cpu_seconds

HISTORY_STEPS = 10_000
BATCH = 1000  # MLflow's per-call metric limit
SEARCH_RESULTS = 100
SEARCH_FILTER = "params.model = 'rf' and metrics.acc > 0.2"
SEARCH_ORDER = ["metrics.acc DESC"]
ANSWER = "@@bench "  # marks the answers on stdout, whatever else gets printed there


class Workload:
    """What one client process does, one step at a time on the parent's command. It keeps the
    stock ``MlflowClient`` and what it made (experiments, the runs searched over)."""

    def __init__(self, pgid: int) -> None:
        import random

        from mlflow import MlflowClient

        self.pgid = pgid
        self.rng = random.Random(6)
        self.client = MlflowClient()
        self.now = int(time.time() * 1000)
        self.corpus = self.client.create_experiment(f"search-{self.rng.getrandbits(32):08x}")
        self.logging = self.client.create_experiment(f"logging-{self.rng.getrandbits(32):08x}")
        self.runs: list[str] = []
        self.metric_run = self.batch_run = self.history_run = ""
        self.search_answer = self.history_answer = b""
        self.step = self.batches = 0
        for _ in range(5):  # warm-up: connection, first queries, lazy imports on both sides
            self.client.log_metric(self.client.create_run(self.logging).info.run_id, "warm", 1.0)

    def server_cpu(self) -> float:
        return api.cpu_seconds(self.pgid) or 0.0

    def create_runs(self, n: int) -> dict[str, Any]:
        cpu, began = self.server_cpu(), time.perf_counter()
        self.runs += [self.client.create_run(self.corpus).info.run_id for _ in range(n)]
        return {"seconds": time.perf_counter() - began, "server_cpu": self.server_cpu() - cpu}

    def label(self) -> dict[str, Any]:
        """Untimed: a metric and a param on every run searched over, from 4 threads."""
        from concurrent.futures import ThreadPoolExecutor

        from mlflow.entities import Metric, Param

        def one(item: tuple[str, float, str]) -> None:
            run_id, acc, model = item
            metrics, params = [Metric("acc", acc, self.now, 0)], [Param("model", model)]
            self.client.log_batch(run_id, metrics=metrics, params=params)

        values = [(r, self.rng.random(), "rf" if self.rng.random() < 0.6 else "svm") for r in self.runs]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, values))
        return {}

    def log_metric(self, n: int) -> dict[str, Any]:
        if not self.metric_run:
            self.metric_run = self.client.create_run(self.logging).info.run_id
        times = []
        cpu, client_cpu = self.server_cpu(), time.process_time()
        for _ in range(n):
            self.step += 1
            began = time.perf_counter()
            self.client.log_metric(self.metric_run, "loss", 1.0 / self.step, timestamp=self.now + self.step,
                                   step=self.step)
            times.append(time.perf_counter() - began)
        client_cpu = time.process_time() - client_cpu
        return {"times": times, "server_cpu": self.server_cpu() - cpu, "client_cpu": client_cpu}

    def log_batch(self, n: int) -> dict[str, Any]:
        from mlflow.entities import Metric

        if not self.batch_run:
            self.batch_run = self.client.create_run(self.logging).info.run_id
        batches = []
        for _ in range(n):
            self.batches += 1
            batches.append([Metric(f"m{i % 10}", self.rng.random(), self.now + self.batches,
                                   self.batches * BATCH + i) for i in range(BATCH)])
        cpu, began = self.server_cpu(), time.perf_counter()
        for batch in batches:
            self.client.log_batch(self.batch_run, metrics=batch)
        return {"seconds": time.perf_counter() - began, "server_cpu": self.server_cpu() - cpu}

    def search(self) -> dict[str, Any]:
        """One timed ``search_runs``, then the client's own parse of the same answer (its floor)."""
        from mlflow.entities import Run
        from mlflow.protos.service_pb2 import SearchRuns

        began = time.perf_counter()
        found = self.client.search_runs([self.corpus], SEARCH_FILTER, order_by=SEARCH_ORDER,
                                        max_results=SEARCH_RESULTS)
        seconds = time.perf_counter() - began
        accs = [r.data.metrics["acc"] for r in found]
        if len(found) != SEARCH_RESULTS or accs != sorted(accs, reverse=True):
            raise RuntimeError(f"search_runs answered {len(found)} runs, not {SEARCH_RESULTS} in order")
        if not self.search_answer:
            self.search_answer = fetch("POST", "/api/2.0/mlflow/runs/search", {
                "experiment_ids": [self.corpus], "filter": SEARCH_FILTER, "order_by": SEARCH_ORDER,
                "max_results": SEARCH_RESULTS})
        return {"seconds": seconds, "parse": parse_once(self.search_answer, SearchRuns.Response, "runs", Run)}

    def history(self) -> dict[str, Any]:
        """One timed ``get_metric_history`` of 10,000 steps, then the client's parse of it."""
        from mlflow.entities import Metric
        from mlflow.protos.service_pb2 import GetMetricHistory

        if not self.history_run:
            self.history_run = self.client.create_run(self.logging).info.run_id
            for start in range(0, HISTORY_STEPS, BATCH):
                self.client.log_batch(self.history_run, metrics=[
                    Metric("loss", 1.0 / (s + 1), self.now + s, s) for s in range(start, start + BATCH)])
            self.history_answer = fetch("GET", "/api/2.0/mlflow/metrics/get-history", {
                "run_id": self.history_run, "metric_key": "loss", "max_results": 25000})
        began = time.perf_counter()
        points = self.client.get_metric_history(self.history_run, "loss")
        seconds = time.perf_counter() - began
        if len(points) != HISTORY_STEPS or points[-1].step != HISTORY_STEPS - 1:
            raise RuntimeError(f"metric history has {len(points)} points, not {HISTORY_STEPS}")
        parse = parse_once(self.history_answer, GetMetricHistory.Response, "metrics", Metric)
        return {"seconds": seconds, "parse": parse, "bytes": len(self.history_answer)}


def fetch(method: str, path: str, fields: dict[str, object]) -> bytes:
    """One raw answer of the server the client talks to, with the client's credential."""
    import requests

    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    response = requests.request(
        method, os.environ["MLFLOW_TRACKING_URI"] + path, timeout=60,
        headers={"Authorization": f"Bearer {token}"} if token else {},
        **({"params": fields} if method == "GET" else {"json": fields}),  # type: ignore[arg-type]
    )
    response.raise_for_status()
    return response.content


def parse_once(raw: bytes, message: type, field: str, entity: type) -> float:
    """The client's own work on an answer once its bytes have arrived: decode, JSON, protobuf and
    entities, as ``mlflow.utils.rest_utils.call_endpoint`` and the store do. Seconds."""
    from mlflow.utils.proto_json_utils import parse_dict

    began = time.perf_counter()
    proto = message()
    parse_dict(js_dict=json.loads(raw.decode("utf-8")), message=proto)
    [entity.from_proto(item) for item in getattr(proto, field)]  # type: ignore[attr-defined]
    return time.perf_counter() - began


def client_main() -> int:
    """Serve the parent's commands (one JSON line each) until stdin closes."""
    work: Workload | None = None
    for line in sys.stdin:
        op, args = json.loads(line)
        if op == "setup":
            work = Workload(*args)
            result: dict[str, Any] = {}
        else:
            assert work is not None
            result = getattr(work, op)(*args)
        print(ANSWER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(client_main())
