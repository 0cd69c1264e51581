"""The tracking half of ``Client``: MLflow-compatible experiments and runs, and hyperparameter search.

These calls speak the server's MLflow REST API (``/api/2.0/mlflow/...``), naming the project in
MLflow's ``X-MLFLOW-WORKSPACE`` header, so they work with a login token as well as with a
project-bound one. Results are MLflow's own JSON (``run["info"]["run_id"]``...), as the stock
client would see them; the ``mlflow`` package itself is not needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from sanctum.sdk.errors import SanctumAPIError, SanctumConnectionError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sanctum.jobs.manifest import Resources, Scalar
    from sanctum.tracking.hpo import Progress, SearchResult

MLFLOW = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
WORKSPACE_HEADER = "X-MLFLOW-WORKSPACE"
# MLflow's limits for one log-batch call.
BATCH_METRICS, BATCH_PARAMS, BATCH_TAGS = 1000, 100, 100

Metric = tuple[str, float, int]  # key, value, step


def _mlflow_error(response: httpx.Response) -> SanctumAPIError:
    """MLflow's ``{"error_code", "message"}``; the platform's own code when it answered (401/403/404)."""
    try:
        body = response.json()
        platform = body.get("error") if isinstance(body, dict) else None
        if isinstance(platform, dict):
            return SanctumAPIError(response.status_code, str(platform["code"]), str(platform["message"]))
        return SanctumAPIError(response.status_code, str(body["error_code"]), str(body["message"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        snippet = " ".join(response.text.split())[:200] or response.reason_phrase
        return SanctumAPIError(response.status_code, f"http_{response.status_code}", snippet)


class TrackingMixin:
    url: str
    token: str | None
    _http: httpx.Client

    def _mlflow(
        self,
        method: str,
        path: str,
        project: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", WORKSPACE_HEADER: project}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self._http.request(
                method, self.url + path, json=json, params=params, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise SanctumConnectionError(f"{self.url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise SanctumConnectionError(f"cannot reach {self.url}: {reason}") from exc
        if response.status_code >= 400:
            raise _mlflow_error(response)
        return response.json() if response.content else {}

    # ------------------------------------------------------------------ experiments

    def get_or_create_experiment(self, project: str, name: str) -> str:
        """The id of the project's experiment ``name``, created when it does not exist yet."""
        try:
            found = self._mlflow(
                "GET", f"{MLFLOW}/experiments/get-by-name", project, params={"experiment_name": name}
            )
            return str(found["experiment"]["experiment_id"])
        except SanctumAPIError as exc:
            if exc.code != "RESOURCE_DOES_NOT_EXIST":
                raise
        created = self._mlflow("POST", f"{MLFLOW}/experiments/create", project, json={"name": name})
        return str(created["experiment_id"])

    # ------------------------------------------------------------------ runs

    def create_run(
        self, project: str, experiment_id: str, *, name: str, tags: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        body = {
            "experiment_id": experiment_id,
            "run_name": name,
            "start_time": int(time.time() * 1000),
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        return self._mlflow("POST", f"{MLFLOW}/runs/create", project, json=body)["run"]

    def get_run(self, project: str, run_id: str) -> dict[str, Any]:
        return self._mlflow("GET", f"{MLFLOW}/runs/get", project, params={"run_id": run_id})["run"]

    def search_runs(
        self, project: str, experiment_ids: list[str], *, filter_string: str = "", max_results: int = 1000
    ) -> list[dict[str, Any]]:
        body = {"experiment_ids": experiment_ids, "filter": filter_string, "max_results": max_results}
        return self._mlflow("POST", f"{MLFLOW}/runs/search", project, json=body).get("runs", [])

    def metric_history(self, project: str, run_id: str, key: str) -> list[dict[str, Any]]:
        params = {"run_id": run_id, "metric_key": key}
        return self._mlflow("GET", f"{MLFLOW}/metrics/get-history", project, params=params).get("metrics", [])

    def log_run(
        self,
        project: str,
        run_id: str,
        *,
        metrics: Iterable[Metric] = (),
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Metrics (key, value, step), params and tags in as few log-batch calls as MLflow's limits allow."""
        now = int(time.time() * 1000)
        points = [{"key": k, "value": v, "step": s, "timestamp": now} for k, v, s in metrics]
        pairs = [{"key": k, "value": str(v)} for k, v in (params or {}).items()]
        labels = [{"key": k, "value": v} for k, v in (tags or {}).items()]
        while points or pairs or labels:
            body = {
                "run_id": run_id,
                "metrics": points[:BATCH_METRICS],
                "params": pairs[:BATCH_PARAMS],
                "tags": labels[:BATCH_TAGS],
            }
            self._mlflow("POST", f"{MLFLOW}/runs/log-batch", project, json=body)
            points, pairs, labels = points[BATCH_METRICS:], pairs[BATCH_PARAMS:], labels[BATCH_TAGS:]

    def end_run(
        self, project: str, run_id: str, status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED"
    ) -> None:
        body = {"run_id": run_id, "status": status, "end_time": int(time.time() * 1000)}
        self._mlflow("POST", f"{MLFLOW}/runs/update", project, json=body)

    def upload_artifact(self, project: str, run: Mapping[str, Any], path: str, data: bytes) -> None:
        """Store ``data`` as the run's artifact ``path`` (encrypted in the project's store)."""
        info = run["info"]
        where = f"{info['experiment_id']}/{info['run_id']}/artifacts/{path}"
        self._mlflow("PUT", f"{ARTIFACTS}/{quote(where)}", project, content=data)

    # ------------------------------------------------------------------ hyperparameter search

    def hpo(
        self,
        project: str,
        code: Path,
        *,
        key: Ed25519PrivateKey,
        entrypoint: str | list[str],
        space: Mapping[str, Any] | str | Path,
        metric: str,
        direction: Literal["maximize", "minimize"] = "maximize",
        sampler: Any = "tpe",
        trials: int = 20,
        parallel: int = 1,
        pruner: Any = "none",
        seed: int | None = None,
        inputs: list[str] | None = None,
        fixed_params: Mapping[str, Scalar] | None = None,
        executor: Literal["local", "slurm"] = "local",
        resources: Resources | None = None,
        output: str = "job-outputs",
        experiment: str = "hpo",
        run_name: str | None = None,
        enqueue: list[dict[str, Any]] | None = None,
        prune_startup_trials: int = 5,
        prune_warmup_steps: int = 0,
        poll: float = 1.0,
        progress: Callable[[Progress], None] | None = None,
    ) -> SearchResult:
        """Run a hyperparameter search: each trial a signed job and a child run of one parent run.

        See ``sanctum.tracking.hpo.Search`` for every argument and docs/hpo.md for the whole story.
        """
        from sanctum.tracking.hpo import Search

        search = Search(
            project=project,
            code=Path(code),
            entrypoint=entrypoint,
            space=space,
            metric=metric,
            direction=direction,
            sampler=sampler,
            trials=trials,
            parallel=parallel,
            pruner=pruner,
            seed=seed,
            inputs=list(inputs or []),
            fixed_params=dict(fixed_params or {}),
            executor=executor,
            resources=resources,
            output=output,
            experiment=experiment,
            run_name=run_name,
            enqueue=list(enqueue or []),
            prune_startup_trials=prune_startup_trials,
            prune_warmup_steps=prune_warmup_steps,
            poll=poll,
        )
        return search.run(self, key, progress=progress)  # type: ignore[arg-type]
