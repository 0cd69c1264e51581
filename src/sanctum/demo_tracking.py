"""The demo's experiment: a small grid search, so the Experiments and Models pages have something
to show on a fresh ``make demo``.

A logistic regression predicting 30-day readmission from a synthetic table (seeded: the same rows,
the same numbers on every machine; no real person is in it) is trained by full-batch gradient
descent for each point of a grid over the L2 strength ``C`` and the learning rate. Each trial is
a child run with its parameters and per-epoch metrics; the parent run holds the grid, the best
validation AUC so far after each trial, the table of all trials (``trials.csv``) and the best
trial's id; the best trial's weights are registered as ``readmission-risk`` with the alias
``champion``.

Why by hand with numpy and not scikit-learn: scikit-learn is a test dependency only, and
gradient descent gives the per-epoch curves a run page is for; numpy comes with the platform.

Why the service layer in-process: the demo already runs inside the server's process, and the
services are what the MLflow API calls, so the runs are exactly what a client would have made:
attributed to the demo scientist, audited in the same transaction, artifacts encrypted under the
project's keys. Everything is written in one unit of work: a failure part-way leaves no
experiment behind.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import Principal
from sanctum.api.runtime import Runtime
from sanctum.datasets import transfer
from sanctum.db.models import User
from sanctum.projects import service as projects
from sanctum.projects.service import ProjectContext
from sanctum.tracking import MlflowError, runlog
from sanctum.tracking import artifacts as artifact_store
from sanctum.tracking import registry as reg
from sanctum.tracking import service as svc
from sanctum.tracking.models import Run

EXPERIMENT = "readmission-grid-search"
MODEL = "readmission-risk"
ALIAS = "champion"
CLINICAL = ("age", "systolic_bp", "bmi", "smoker", "prior_admissions")
LABS = tuple(f"lab_{i:02d}" for i in range(1, 21))  # unrelated to the outcome: room to overfit
FEATURES = (*CLINICAL, *LABS)
GRID: dict[str, list[float]] = {"C": [0.01, 0.1, 1.0, 10.0], "learning_rate": [0.1, 0.3, 1.0]}
EPOCHS = 40
EPOCH_MS = 400  # the runs' timeline: how long an epoch "took", so durations read naturally
SEED = 2026
PARENT_TAG = "mlflow.parentRunId"
SOURCE_TAGS = [("mlflow.source.name", "sanctum demo"), ("mlflow.source.type", "LOCAL")]


# --------------------------------------------------------------------------- data and model


def synthetic_table(n: int = 200, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Standardised features and a 0/1 outcome drawn from a known logistic model of the five
    clinical columns; the twenty lab columns are noise, so weak regularisation overfits them
    (on this table the strongest penalty wins, as it should)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, n).astype(float)
    bp = rng.normal(132, 18, n)
    bmi = rng.normal(27, 5, n)
    smoker = (rng.random(n) < 0.25).astype(float)
    prior = rng.poisson(0.8, n).astype(float)
    labs = rng.normal(0, 1, (n, len(LABS)))
    raw = np.column_stack([age, bp, bmi, smoker, prior, labs])
    x = (raw - raw.mean(axis=0)) / raw.std(axis=0)
    logit = -1.1 + 0.9 * x[:, 0] + 0.5 * x[:, 1] + 0.35 * x[:, 2] + 0.45 * x[:, 3] + 0.7 * x[:, 4]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (average ranks for ties)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    positives = y == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class Trial:
    params: dict[str, float]
    curves: list[dict[str, float]]  # per epoch: train_loss, val_loss, val_accuracy, val_auc
    weights: np.ndarray
    bias: float

    @property
    def final(self) -> dict[str, float]:
        return self.curves[-1]


def train(data: tuple[np.ndarray, np.ndarray], c: float, learning_rate: float, epochs: int) -> Trial:
    """L2-penalised logistic regression by full-batch gradient descent on the first 75% of the
    rows, scored on the rest after every epoch."""
    if c <= 0 or learning_rate <= 0 or epochs < 1:
        raise ValueError("C, the learning rate and the number of epochs must be positive")
    x, y = data
    cut = int(len(y) * 0.75)
    xt, yt, xv, yv = x[:cut], y[:cut], x[cut:], y[cut:]
    w, b = np.zeros(x.shape[1]), 0.0
    curves = []
    for _ in range(epochs):
        p = _sigmoid(xt @ w + b)
        w = w - learning_rate * (xt.T @ (p - yt) / len(yt) + w / (c * len(yt)))
        b = b - learning_rate * float(np.mean(p - yt))
        pv = _sigmoid(xv @ w + b)
        curves.append(
            {
                "train_loss": _loss(_sigmoid(xt @ w + b), yt),
                "val_loss": _loss(pv, yv),
                "val_accuracy": float(np.mean((pv >= 0.5) == (yv == 1))),
                "val_auc": auc(pv, yv),
            }
        )
    return Trial({"C": c, "learning_rate": learning_rate}, curves, w, b)


# --------------------------------------------------------------------------- logging


def _context(db: Session, project: str, email: str) -> ProjectContext:
    user = db.scalar(select(User).where(User.email == email))
    if user is None:
        raise LookupError(f"no user {email}")
    principal = Principal(
        user_id=user.id,
        email=user.email,
        is_admin=user.is_admin,
        can_create_projects=user.can_create_projects,
        token_id=0,
        token_kind="demo",  # noqa: S106 - a kind name, not a secret
    )
    return projects.load(db, principal, project, Permission.EXPERIMENTS_WRITE)


def _pairs(items: dict[str, Any] | list[tuple[str, Any]]) -> list[dict[str, str]]:
    pairs = items.items() if isinstance(items, dict) else items
    return [{"key": k, "value": str(v)} for k, v in pairs]


def _start(
    db: Session, ctx: ProjectContext, experiment_id: int, name: str, at: int, tags: list[tuple[str, str]]
) -> Run:
    return svc.create_run(
        db, ctx, experiment_id=experiment_id, start_time=at, run_name=name, tags=_pairs([*SOURCE_TAGS, *tags])
    )


def _store(runtime: Runtime, db: Session, ctx: ProjectContext, run: Run, path: str, body: bytes) -> None:
    """An artifact as the API's upload stores it: encrypted under the experiment's key, catalogued
    with its audit event."""
    where = artifact_store.locate(db, ctx, f"{run.experiment_id}/{run.id}/artifacts/{path}")
    key = artifact_store.existing_key(db, runtime.keyring, ctx.project, run.experiment_id)
    if key is None:
        key = artifact_store.create_key(db, runtime.keyring, ctx.project.id, run.experiment_id)
    artifact_store.attach(db, ctx, where, transfer.store_blob(runtime.store, [body], key))


def _trials_csv(trials: list[Trial], runs: list[Run]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "run_id", "C", "learning_rate", "val_auc", "val_accuracy", "val_loss"])
    for i, (trial, run) in enumerate(zip(trials, runs, strict=True), 1):
        f = trial.final
        writer.writerow(
            [i, run.id, trial.params["C"], trial.params["learning_rate"]]
            + [round(f[k], 6) for k in ("val_auc", "val_accuracy", "val_loss")]
        )
    return out.getvalue().encode()


def log_grid_search(
    runtime: Runtime,
    project: str,
    email: str,
    *,
    grid: dict[str, list[float]] | None = None,
    epochs: int = EPOCHS,
) -> str:
    """Log the grid search in ``project`` as ``email`` (who must be allowed to write experiments
    there) unless the experiment exists already; return a line for the demo's printout."""
    grid = grid or GRID
    points = [(c, lr) for c in grid["C"] for lr in grid["learning_rate"]]
    data = synthetic_table()
    with runtime.db.session() as db:
        ctx = _context(db, project, email)
        try:
            svc.get_experiment_by_name(db, ctx, EXPERIMENT)
            return f"experiment {EXPERIMENT!r} was logged before"
        except MlflowError:
            pass
        experiment = svc.create_experiment(db, ctx, EXPERIMENT)
        t = svc.now_ms() - (len(points) * epochs + 2) * EPOCH_MS
        note = (
            "mlflow.note.content",
            f"Grid search over {', '.join(grid)} ({len(points)} trials), demo data",
        )
        parent = _start(db, ctx, experiment.id, "grid-search", t, [note, ("sanctum.search", "grid")])
        grid_params = {f"grid.{k}": json.dumps(v) for k, v in grid.items()}
        runlog.log_batch(
            db,
            ctx,
            parent.id,
            metrics=[],
            params=_pairs({**grid_params, "epochs": epochs, "objective": "val_auc", "direction": "maximize"}),
            tags=[],
        )
        trials: list[Trial] = []
        runs: list[Run] = []
        best = 0
        for i, (c, lr) in enumerate(points):
            t += EPOCH_MS
            run = _start(db, ctx, experiment.id, f"trial-{i + 1:02d}", t, [(PARENT_TAG, parent.id)])
            trial = train(data, c, lr, epochs)
            params = {
                "C": c,
                "learning_rate": lr,
                "epochs": epochs,
                "penalty": "l2",
                "features": ",".join(FEATURES),
            }
            metrics = [
                {"key": k, "value": v, "timestamp": t + (step + 1) * EPOCH_MS, "step": step}
                for step, curve in enumerate(trial.curves)
                for k, v in curve.items()
            ]
            runlog.log_batch(db, ctx, run.id, metrics=metrics, params=_pairs(params), tags=[])
            t += epochs * EPOCH_MS
            svc.update_run(db, run, status="FINISHED", end_time=t, run_name=None)
            trials.append(trial)
            runs.append(run)
            if trial.final["val_auc"] > trials[best].final["val_auc"]:
                best = i
            running_best = {
                "key": "val_auc",
                "value": trials[best].final["val_auc"],
                "timestamp": t,
                "step": i,
            }
            runlog.log_batch(db, ctx, parent.id, metrics=[running_best], params=[], tags=[])
        winner, top = trials[best], runs[best]
        runlog.log_batch(
            db,
            ctx,
            parent.id,
            metrics=[],
            params=[],
            tags=_pairs({"best_run_id": top.id, "best_trial": top.name}),
        )
        weights = {"features": list(FEATURES), "coef": winner.weights.tolist(), "intercept": winner.bias}
        _store(runtime, db, ctx, top, "model/weights.json", json.dumps({**weights, **winner.params}).encode())
        _store(runtime, db, ctx, parent, "trials.csv", _trials_csv(trials, runs))
        svc.update_run(db, parent, status="FINISHED", end_time=t + EPOCH_MS, run_name=None)
        _register(db, ctx, top)
        return (
            f"grid search of {len(points)} trials logged as experiment {EXPERIMENT!r}; best val_auc "
            f"{winner.final['val_auc']:.3f} ({top.name}), registered as {MODEL}@{ALIAS}"
        )


def _register(db: Session, ctx: ProjectContext, run: Run) -> None:
    try:
        reg.get_model(db, ctx, MODEL)
        return  # someone made a model of that name: leave theirs alone
    except MlflowError:
        pass
    reg.create_model(
        db, ctx, {"name": MODEL, "description": "30-day readmission risk (demo, synthetic data)"}
    )
    version = reg.create_version(
        db,
        ctx,
        {
            "name": MODEL,
            "source": f"runs:/{run.id}/model",
            "run_id": run.id,
            "description": "logistic regression weights as JSON (model/weights.json), best trial of the grid",
        },
    )
    reg.set_alias(db, ctx, MODEL, ALIAS, version.version)
