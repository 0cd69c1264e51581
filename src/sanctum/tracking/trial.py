"""Inside a hyperparameter-search trial: read the trial's parameters, report progress, write the score.

A trial is an ordinary signed job, so it runs in the sandbox with no network and cannot talk to the
tracking server. It reports back through the two channels a job already has:

- **intermediate values** as lines on standard output, ``sanctum-metric {"name": ..., "step": ...,
  "value": ...}``; the search driver on the researcher's machine reads the job's live log, logs
  them to the trial's run and hands them to the pruner (which may stop a trial that is going badly);
- **final metrics** in ``/output/metrics.json``, a flat object of name -> finite number, which the
  server reads when the job succeeds and returns with the job.

This module is the whole protocol (the driver parses lines with ``parse_line`` from here), uses the
standard library only and imports nothing else of Sanctum, so it costs a trial nothing to import::

    from sanctum.tracking import trial

    p = trial.params({"lr": 0.1, "depth": 3})      # defaults for a run outside a search
    for epoch in range(10):
        loss = train_one_epoch(p["lr"], p["depth"])
        trial.report("val_loss", loss, step=epoch)
    trial.finish(val_loss=loss, val_acc=accuracy)
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

PREFIX = "sanctum-metric "
METRICS_FILE = "metrics.json"
MAX_NAME = 250
Scalar = str | int | float | bool


@dataclass(frozen=True)
class Point:
    """One intermediate value of a metric at a step."""

    name: str
    step: int
    value: float


def params(defaults: Mapping[str, Scalar] | None = None) -> dict[str, Scalar]:
    """The trial's parameters (``SANCTUM_PARAMS``) over ``defaults``, typed as the search chose them.

    Outside a job (no ``SANCTUM_PARAMS``) this is just ``defaults``, so the same script runs by hand.
    """
    chosen = json.loads(os.environ.get("SANCTUM_PARAMS") or "{}")
    if not isinstance(chosen, dict):
        raise ValueError("SANCTUM_PARAMS is not a JSON object")
    return {**(defaults or {}), **chosen}


def valid_name(name: object) -> bool:
    """A metric name MLflow will take: 1-250 characters, not starting with / and no .. segment."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME
        and not name.startswith("/")
        and ".." not in name.split("/")
    )


def _finite(name: object, value: object) -> float:
    if not valid_name(name):
        raise ValueError(
            f"a metric name must be 1 to {MAX_NAME} characters, not start with / nor hold a .. part, "
            f"got {name!r}"
        )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"metric {name!r} must be a finite number, got {value!r}")
    return float(value)


def format_line(name: str, value: float, step: int) -> str:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a whole number >= 0, got {step!r}")
    point = {"name": name, "step": step, "value": _finite(name, value)}
    return PREFIX + json.dumps(point, separators=(",", ":"))


def report(name: str, value: float, step: int, *, stream: TextIO | None = None) -> None:
    """Print one intermediate value (flushed at once: the driver reads the live log to prune)."""
    out = stream or sys.stdout
    out.write(format_line(name, value, step) + "\n")
    out.flush()


def parse_line(line: str) -> Point | None:
    """A ``report`` line back into a point; anything else (other output, a torn line) is None."""
    if not line.startswith(PREFIX):
        return None
    try:
        raw = json.loads(line[len(PREFIX) :])
        step = raw["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            return None
        return Point(raw["name"], step, _finite(raw["name"], raw["value"]))
    except (ValueError, KeyError, TypeError):
        return None


def parse_log(text: str, *, complete_lines_only: bool = False) -> list[Point]:
    """Every point in a log, in order. A live log's last line may still be being written: with
    ``complete_lines_only`` a line without its newline is left for the next read."""
    lines = text.split("\n")
    if complete_lines_only:
        lines = lines[:-1]
    return [p for p in map(parse_line, lines) if p is not None]


def finish(
    metrics: Mapping[str, float] | None = None,
    /,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    **named: float,
) -> Path:
    """Write the trial's final metrics to ``/output/metrics.json`` (or ``output_dir``), atomically.

    Atomic (a temporary file renamed into place) because a trial killed by its time limit while
    writing must leave no half file for the server to misread as a score.
    """
    values = {**(metrics or {}), **named}
    checked = {name: _finite(name, value) for name, value in values.items()}
    if not checked:
        raise ValueError("finish() needs at least one metric")
    folder = Path(output_dir if output_dir is not None else "/output")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(checked, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        target = folder / METRICS_FILE
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
