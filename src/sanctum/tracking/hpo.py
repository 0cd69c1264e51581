"""Hyperparameter search where every trial is a signed job and a child run of one parent run.

The driver runs where the researcher's token and signing key are (a laptop, Jupyter), never on the
server and never inside a job: trials run sandboxed with no network, so they cannot reach the
tracking server, and the driver is the one that can. It uses optuna's ask-and-tell interface with
an in-memory study: ask for a point, sign and submit a job with the point as its parameters, open
a child run, and keep at most ``parallel`` such jobs in flight. While a local job runs, the driver
reads its live log for ``sanctum-metric`` lines (``sanctum.tracking.trial.report``), logs them to
the run with their steps and gives them to the pruner; when the pruner says so, the job is
cancelled (real compute saved) and the run ends KILLED. When a job ends, its final metrics come
from the server (what the job wrote to ``/output/metrics.json``).

Why one code bundle for the whole search: it is packed once, so every trial runs the same code
even if the folder changes meanwhile; after the first trial the server re-uses the stored bundle
(checked against the signed hash), so a large folder is uploaded once. Why a refusal at submission
ends the search but a failed trial does not: only the parameters differ between trials, so a
refusal (no permission, unregistered key, missing input) would repeat for every trial, whereas a
trial that crashes or scores nothing is a result worth recording and the search goes on.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna
from optuna.trial import TrialState

from sanctum.errors import SanctumError
from sanctum.jobs import bundle as bundles
from sanctum.jobs import manifest as manifests
from sanctum.sdk.errors import SanctumAPIError
from sanctum.sdk.jobs import DEFAULT_MAX_BUNDLE, FINAL_STATES, parse_input, sign_manifest
from sanctum.security import signing
from sanctum.tracking import hpo_space, trial

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sanctum.schemas.jobs import JobDetail
    from sanctum.sdk import Client

PARENT_TAG = "mlflow.parentRunId"
TABLE_ARTIFACT = "hpo/trials.json"
TrialOutcome = Literal["running", "complete", "pruned", "failed"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


class HpoError(RuntimeError):
    """The search could not run, or ended without a single successful trial."""


@dataclass
class TrialResult:
    number: int
    params: dict[str, Any]
    run_id: str
    job: int | None = None
    state: TrialOutcome = "running"
    value: float | None = None
    reason: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0  # intermediate values received

    def row(self) -> dict[str, Any]:
        return {
            "trial": self.number,
            "params": self.params,
            "value": self.value,
            "state": self.state,
            "job": self.job,
            "run_id": self.run_id,
            "reason": self.reason,
        }


@dataclass
class SearchResult:
    experiment_id: str
    parent_run_id: str
    metric: str
    direction: str
    trials: list[TrialResult]
    best: TrialResult | None

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best.params) if self.best else {}

    @property
    def best_value(self) -> float | None:
        return self.best.value if self.best else None

    def table(self) -> list[dict[str, Any]]:
        return [t.row() for t in self.trials]


@dataclass
class Progress:
    """What a progress display needs after each event."""

    total: int
    running: int
    complete: int
    pruned: int
    failed: int
    best: TrialResult | None
    event: str

    @property
    def done(self) -> int:
        return self.complete + self.pruned + self.failed


@dataclass
class Search:
    """One search, checked in full by ``check`` before the first job is submitted."""

    project: str
    code: Path
    entrypoint: str | list[str]
    space: Mapping[str, Any] | str | Path
    metric: str
    direction: str = "maximize"
    sampler: Any = "tpe"
    trials: int = 20
    parallel: int = 1
    pruner: Any = "none"
    seed: int | None = None
    inputs: list[str] = field(default_factory=list)
    fixed_params: dict[str, manifests.Scalar] = field(default_factory=dict)
    executor: Literal["local", "slurm"] = "local"
    resources: manifests.Resources | None = None
    output: str = "job-outputs"
    experiment: str = "hpo"
    run_name: str | None = None
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    prune_startup_trials: int = 5
    prune_warmup_steps: int = 0
    poll: float = 1.0
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE

    def check(self) -> tuple[dict[str, Any], hpo_space.Space, int, list[str]]:
        """The space as written and parsed, how many trials will run, and the entry point's argv;
        ``SpaceError`` if anything is unfit."""
        return hpo_space.check_search(self)

    def run(
        self, client: Client, key: Ed25519PrivateKey, *, progress: Callable[[Progress], None] | None = None
    ) -> SearchResult:
        document, space, count, argv = self.check()
        sampler = hpo_space.make_sampler(self.sampler, space, seed=self.seed, parallel=self.parallel)
        pruner = hpo_space.make_pruner(
            self.pruner, startup_trials=self.prune_startup_trials, warmup_steps=self.prune_warmup_steps
        )
        try:
            packed = bundles.pack(self.code, max_bytes=self.max_bundle_bytes)
        except (SanctumError, OSError) as exc:  # data files, too large, symlinks, no such folder
            raise HpoError(f"cannot pack {self.code}: {getattr(exc, 'message', exc)}") from None
        pinned = [_pin(client, self.project, text) for text in self.inputs]
        study = optuna.create_study(direction=self.direction, sampler=sampler, pruner=pruner)
        for point in self.enqueue:
            study.enqueue_trial(point)
        plan = _Plan(document, space, count, argv, packed, pinned)
        return _Driver(self, client, key, study, plan, progress).run()


def _pin(client: Client, project: str, text: str) -> manifests.InputRef:
    """Every trial reads the same version of each input: the latest committed one when none is named."""
    name, version = parse_input(text)
    if version is None:
        committed = client.list_versions(project, name)
        if not committed:
            raise HpoError(f"{name} has no committed version to run on")
        version = committed[-1].number
    return manifests.InputRef(dataset=name, version=version)


@dataclass
class _Plan:
    document: dict[str, Any]  # the space as written, for the parent run's tags
    space: hpo_space.Space
    count: int
    argv: list[str]
    packed: bundles.Bundle
    pinned: list[manifests.InputRef]


@dataclass
class _Active:
    result: TrialResult
    trial: optuna.trial.Trial
    run: dict[str, Any]
    seen: set[tuple[str, int]] = field(default_factory=set)
    last_step: dict[str, int] = field(default_factory=dict)
    pruned_at: int | None = None


class _Driver:
    def __init__(
        self,
        search: Search,
        client: Client,
        key: Ed25519PrivateKey,
        study: optuna.Study,
        plan: _Plan,
        progress: Callable[[Progress], None] | None,
    ) -> None:
        self.s, self.client, self.key, self.study, self.plan = search, client, key, study, plan
        self.signer = signing.fingerprint(signing.public_key_raw(key))
        self.on_progress = progress
        self.results: list[TrialResult] = []
        self.active: dict[int, _Active] = {}
        self.starting: _Active | None = None  # a trial whose run exists but whose job is not in active yet
        self.bundle_job: int | None = None  # a job whose stored bundle later trials re-use
        self.experiment_id = ""
        self.parent: dict[str, Any] = {}

    # -- the search --------------------------------------------------------------------------
    def run(self) -> SearchResult:
        s = self.s
        self.experiment_id = self.client.get_or_create_experiment(s.project, s.experiment)
        name = s.run_name or f"hpo-{s.metric}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        tags = self._config_tags()
        self.parent = self.client.create_run(s.project, self.experiment_id, name=name, tags=tags)
        try:
            while True:
                while len(self.active) < s.parallel and len(self.results) < self.plan.count:
                    self._start()
                if not self.active:
                    break
                if not self._poll():
                    time.sleep(s.poll)
        except BaseException as exc:
            self._abort(exc)
            raise
        return self._conclude()

    def _config_tags(self) -> dict[str, str]:
        s = self.s
        sampler = s.sampler if isinstance(s.sampler, str) else type(s.sampler).__name__
        pruner = s.pruner if isinstance(s.pruner, str) else type(s.pruner).__name__
        return {
            "sanctum.hpo.metric": s.metric,
            "sanctum.hpo.direction": s.direction,
            "sanctum.hpo.sampler": sampler,
            "sanctum.hpo.pruner": pruner,
            "sanctum.hpo.trials": str(self.plan.count),
            "sanctum.hpo.parallel": str(s.parallel),
            "sanctum.hpo.executor": s.executor,
            "sanctum.hpo.seed": "" if s.seed is None else str(s.seed),
            "sanctum.hpo.space": json.dumps(self.plan.document, sort_keys=True)[:8000],
        }

    def _start(self) -> None:
        s, client = self.s, self.client
        asked = self.study.ask(self.plan.space)
        params = {**s.fixed_params, **asked.params}
        tags = {PARENT_TAG: self.parent["info"]["run_id"], "sanctum.hpo.trial": str(asked.number)}
        run = client.create_run(s.project, self.experiment_id, name=f"trial-{asked.number}", tags=tags)
        result = TrialResult(asked.number, dict(asked.params), run["info"]["run_id"])
        self.results.append(result)
        client.log_run(s.project, result.run_id, params=params)
        active = self.starting = _Active(result, asked, run)
        try:
            job = self._submit(params)
        except SanctumAPIError as exc:
            self._end(active, "failed", f"refused at submission: {exc.message}")
            raise HpoError(
                f"trial {asked.number} was refused at submission ({exc.message}); "
                "every trial would be, so the search stopped"
            ) from None
        result.job = job.id
        self.bundle_job = self.bundle_job or job.id
        client.log_run(s.project, result.run_id, tags={"sanctum.job": str(job.id)})
        self.active[job.id] = active
        self.starting = None
        self._tell_progress(f"trial {asked.number} started as job {job.id}")

    def _submit(self, params: dict[str, manifests.Scalar]) -> Any:
        s = self.s
        manifest = manifests.new(
            project=s.project,
            bundle_sha256=self.plan.packed.sha256,
            bundle_size=len(self.plan.packed.data),
            entrypoint=self.plan.argv,
            signer=self.signer,
            inputs=self.plan.pinned,
            parameters=params,
            output=s.output,
            resources=s.resources,
            executor=s.executor,
        )
        document = manifest.document()
        signature = sign_manifest(self.key, document)
        if self.bundle_job is None:
            return self.client.submit_signed(s.project, document, signature, self.plan.packed.data)
        return self.client.submit_signed(
            s.project, document, signature, None, bundle_from_job=self.bundle_job
        )

    # -- following the jobs ------------------------------------------------------------------
    def _poll(self) -> bool:
        """One look at every job in flight; True when any of them ended."""
        ended = False
        for number, active in list(self.active.items()):
            job = self.client.get_job(self.s.project, number)
            if job.state in FINAL_STATES:
                self._finished(active, job)
                del self.active[number]
                ended = True
            elif job.state == "running" and self.s.executor == "local" and active.pruned_at is None:
                logs = self.client.job_logs(self.s.project, number)
                self._take(active, trial.parse_log(logs.stdout, complete_lines_only=logs.live), prune=True)
        return ended

    def _take(self, active: _Active, points: list[trial.Point], *, prune: bool) -> None:
        """Log new intermediate values to the run; report the optimised one to the pruner."""
        new = [p for p in points if (p.name, p.step) not in active.seen]
        if not new:
            return
        for p in new:
            active.seen.add((p.name, p.step))
            active.last_step[p.name] = max(p.step, active.last_step.get(p.name, 0))
        active.result.steps += len(new)
        points = [(p.name, p.value, p.step) for p in new]
        self.client.log_run(self.s.project, active.result.run_id, metrics=points)
        reported = sorted((p for p in new if p.name == self.s.metric), key=lambda p: p.step)
        for p in reported:
            active.trial.report(p.value, p.step)
        if prune and reported and active.trial.should_prune():
            active.pruned_at = reported[-1].step
            number = active.result.job
            assert number is not None
            with contextlib.suppress(SanctumAPIError):  # it ended meanwhile: the next poll sees how
                self.client.cancel_job(self.s.project, number)
            self._tell_progress(f"trial {active.result.number} pruned at step {active.pruned_at}")

    def _finished(self, active: _Active, job: JobDetail) -> None:
        logs = self.client.job_logs(self.s.project, job.id)
        self._take(active, trial.parse_log(logs.stdout), prune=False)
        metric = self.s.metric
        if active.pruned_at is not None:
            self._end(active, "pruned", f"pruned at step {active.pruned_at}; job {job.id} {job.state}")
            return
        if job.state != "succeeded":
            self._end(active, "failed", f"job {job.id} {job.state}: {job.reason}")
            return
        metrics = {k: v for k, v in (job.metrics or {}).items() if trial.valid_name(k)}
        active.result.metrics = metrics
        if metric not in metrics:
            found = ", ".join(sorted(metrics)) or "none"
            why = f"the trial's final metrics have no {metric!r} (found: {found}); use trial.finish()"
            if "metrics" in job.reason:
                why += f" ({job.reason})"
            self._end(active, "failed", why)
            return
        finals = [(k, v, active.last_step.get(k, 0)) for k, v in metrics.items()]
        self.client.log_run(self.s.project, active.result.run_id, metrics=finals)
        active.result.value = metrics[metric]
        self._end(active, "complete", "")

    def _end(self, active: _Active, state: TrialOutcome, reason: str, *, status: str | None = None) -> None:
        """Tell optuna, close the run, and tag it with the outcome."""
        result = active.result
        result.state, result.reason = state, reason
        if state == "complete":
            self.study.tell(active.trial, result.value)
        else:
            self.study.tell(active.trial, state=TrialState.PRUNED if state == "pruned" else TrialState.FAIL)
        tags = {"sanctum.hpo.state": state}
        if reason:
            tags["sanctum.hpo.reason"] = reason[:8000]
        self.client.log_run(self.s.project, result.run_id, tags=tags)
        status = status or {"complete": "FINISHED", "pruned": "KILLED"}.get(state, "FAILED")
        self.client.end_run(self.s.project, result.run_id, status)  # type: ignore[arg-type]
        score = f" ({self.s.metric} {result.value:.6g})" if result.value is not None else ""
        self._tell_progress(f"trial {result.number} {state}{score}" + (f": {reason}" if reason else ""))

    # -- the end -----------------------------------------------------------------------------
    def _best(self) -> TrialResult | None:
        done = [r for r in self.results if r.state == "complete" and r.value is not None]
        if not done:
            return None
        pick = max if self.s.direction == "maximize" else min
        return pick(done, key=lambda r: r.value)  # type: ignore[arg-type,return-value]

    def _conclude(self) -> SearchResult:
        s, client = self.s, self.client
        parent_id = self.parent["info"]["run_id"]
        best = self._best()
        self._store_table()
        result = SearchResult(self.experiment_id, parent_id, s.metric, s.direction, self.results, best)
        if best is None:
            first = next((r.reason for r in self.results if r.reason), "no reason given")
            failed = sum(r.state == "failed" for r in self.results)
            pruned = len(self.results) - failed
            message = f"no trial completed ({failed} failed, {pruned} pruned); the first: {first}"
            client.log_run(s.project, parent_id, tags={"sanctum.hpo.reason": message[:8000]})
            client.end_run(s.project, parent_id, "FAILED")
            raise HpoError(message)
        client.log_run(
            s.project,
            parent_id,
            metrics=[(s.metric, best.value, 0)],  # type: ignore[list-item]
            params={**s.fixed_params, **best.params},
            tags={
                "sanctum.hpo.best_trial": str(best.number),
                "sanctum.hpo.best_run": best.run_id,
                "sanctum.hpo.best_job": str(best.job),
                "sanctum.hpo.complete": str(sum(r.state == "complete" for r in self.results)),
                "sanctum.hpo.pruned": str(sum(r.state == "pruned" for r in self.results)),
                "sanctum.hpo.failed": str(sum(r.state == "failed" for r in self.results)),
            },
        )
        client.end_run(s.project, parent_id, "FINISHED")
        return result

    def _abort(self, exc: BaseException) -> None:
        """Interrupted (Ctrl-C, a lost connection, a refusal): stop what runs, close what is open."""
        self.on_progress = None  # a display that raised must not be called while cleaning up
        interrupted = isinstance(exc, KeyboardInterrupt)
        why = "the search was interrupted" if interrupted else f"the search stopped: {exc}"
        status = "KILLED" if interrupted else "FAILED"
        # Best effort throughout: the server may be what failed, and the original error is re-raised.
        for number, active in list(self.active.items()):
            with contextlib.suppress(Exception):
                self.client.cancel_job(self.s.project, number)
            with contextlib.suppress(Exception):
                self._end(active, "failed", why, status=status)
        self.active.clear()
        if self.starting is not None and self.starting.result.state == "running":
            with contextlib.suppress(Exception):
                self._end(self.starting, "failed", why, status=status)
        if not self.parent:
            return
        with contextlib.suppress(Exception):
            parent_id = self.parent["info"]["run_id"]
            self._store_table()
            self.client.log_run(self.s.project, parent_id, tags={"sanctum.hpo.reason": why[:8000]})
            self.client.end_run(self.s.project, parent_id, status)  # type: ignore[arg-type]

    def _store_table(self) -> None:
        table = json.dumps([r.row() for r in self.results], indent=2).encode()
        self.client.upload_artifact(self.s.project, self.parent, TABLE_ARTIFACT, table)

    def _tell_progress(self, event: str) -> None:
        if self.on_progress is None:
            return
        states = [r.state for r in self.results]
        self.on_progress(
            Progress(
                total=self.plan.count,
                running=states.count("running"),
                complete=states.count("complete"),
                pruned=states.count("pruned"),
                failed=states.count("failed"),
                best=self._best(),
                event=event,
            )
        )
