"""The search space, samplers and pruners of a hyperparameter search, checked before anything runs.

Why everything is validated here, in full, before the first job: each trial is a signed job that
costs compute and leaves an audit trail, so a typo in the space (``"hi"`` for ``"high"``, an empty
list of choices, ``low`` above ``high``) must end the command with one clear line, not a half-run
search. The space is plain JSON (a file or a dict), so it can be reviewed and versioned like code::

    {"C":      {"type": "float", "low": 0.01, "high": 10, "log": true},
     "kernel": {"type": "categorical", "choices": ["rbf", "linear"]},
     "depth":  {"type": "int", "low": 2, "high": 8}}

Parameter names become job parameters (``SANCTUM_PARAM_<NAME>``), so they follow the manifest's
rule: a letter or ``_``, then letters, digits or ``_``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sanctum.jobs.manifest import PARAM_NAME
from sanctum.tracking.trial import valid_name

if TYPE_CHECKING:
    from sanctum.tracking.hpo import Search

MAX_PARAMS = 100  # MLflow logs at most 100 params per batch; a trial logs its params in one
SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc", "gp", "nsgaii")
PRUNERS = ("none", "median", "halving", "hyperband")
DIRECTIONS = ("maximize", "minimize")
_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# Samplers that need a package optuna does not install itself.
_NEEDS = {"cmaes": "cmaes", "gp": "torch", "qmc": "scipy"}

Space = dict[str, BaseDistribution]


class SpaceError(ValueError):
    """A search that must not start: the message says what to change."""


def _number(name: str, field: str, value: Any, *, whole: bool = False) -> float:
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpaceError(f"parameter {name!r}: {field} must be {kind}, got {value!r}")
    if whole and not float(value).is_integer():
        raise SpaceError(f"parameter {name!r}: {field} must be {kind}, got {value!r}")
    return value


def _range(name: str, spec: Mapping[str, Any], whole: bool) -> BaseDistribution:
    for field in ("low", "high"):
        if field not in spec:
            raise SpaceError(f"parameter {name!r}: {field} is missing")
    low = _number(name, "low", spec["low"], whole=whole)
    high = _number(name, "high", spec["high"], whole=whole)
    if low > high:
        raise SpaceError(f"parameter {name!r}: low ({low}) is greater than high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"parameter {name!r}: log must be true or false, got {log!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(name, "step", step, whole=whole)
        if step <= 0:
            raise SpaceError(f"parameter {name!r}: step must be greater than 0, got {step}")
        if log:
            raise SpaceError(f"parameter {name!r}: log and step cannot be combined")
    if log and low <= 0:
        raise SpaceError(f"parameter {name!r}: a log scale needs low > 0, got {low}")
    if whole:
        return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
    return FloatDistribution(float(low), float(high), log=log, step=None if step is None else float(step))


def _categorical(name: str, spec: Mapping[str, Any]) -> BaseDistribution:
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise SpaceError(f"parameter {name!r}: choices must be a non-empty list")
    for choice in choices:
        if not isinstance(choice, str | int | float | bool) or (
            isinstance(choice, float) and not math.isfinite(choice)
        ):
            raise SpaceError(
                f"parameter {name!r}: each choice must be a string, number or true/false, got {choice!r}"
            )
    if any(isinstance(c, str) and (len(c) > 4096 or "\x00" in c) for c in choices):
        raise SpaceError(f"parameter {name!r}: a choice is longer than 4096 characters or holds NUL")
    if len({json.dumps(c) for c in choices}) != len(choices):
        raise SpaceError(f"parameter {name!r}: choices repeat a value")
    return CategoricalDistribution(choices)


def parse_space(document: Any) -> Space:
    """A JSON object of parameter name -> spec, as optuna distributions; ``SpaceError`` if not."""
    if not isinstance(document, Mapping) or not document:
        raise SpaceError("the search space must be a non-empty JSON object of parameter name -> spec")
    if len(document) > MAX_PARAMS:
        raise SpaceError(f"the search space has {len(document)} parameters; at most {MAX_PARAMS}")
    space: Space = {}
    for name, spec in document.items():
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            raise SpaceError(
                f"parameter name {str(name)[:64]!r}: use a letter or _ then letters, digits or _ "
                "(it becomes SANCTUM_PARAM_<NAME> in the job)"
            )
        if not isinstance(spec, Mapping):
            raise SpaceError(
                f'parameter {name!r}: expected an object such as {{"type": "float", "low": 0, "high": 1}}'
            )
        kind = spec.get("type")
        if kind not in _KEYS:
            raise SpaceError(f"parameter {name!r}: unknown type {kind!r}; use float, int or categorical")
        unknown = sorted(set(spec) - _KEYS[kind])
        if unknown:
            raise SpaceError(
                f"parameter {name!r}: unknown field(s) {', '.join(map(repr, unknown))} for type {kind}; "
                f"allowed: {', '.join(sorted(_KEYS[kind] - {'type'}))}"
            )
        space[name] = _categorical(name, spec) if kind == "categorical" else _range(name, spec, kind == "int")
    return space


def load_space(source: Mapping[str, Any] | str | Path) -> Space:
    """``parse_space`` of a dict, or of a JSON file named by a path."""
    return parse_space(read_document(source))


def read_document(source: Mapping[str, Any] | str | Path) -> Any:
    """The space as written: the dict itself, or the JSON of the file a path names."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(f"cannot read the search space {path}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise SpaceError(f"the search space {path} is not valid JSON: {exc}") from None
    return document


def grid_values(space: Space) -> dict[str, list[Any]]:
    """Every point of each axis, for a grid search: categorical choices, or ranges with a step."""
    grid: dict[str, list[Any]] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            grid[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution) and not dist.log:
            grid[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, FloatDistribution) and dist.step is not None:
            count = math.floor((dist.high - dist.low) / dist.step + 1e-9)
            grid[name] = [round(dist.low + i * dist.step, 12) for i in range(count + 1)]
        else:
            raise SpaceError(
                f"a grid search needs every parameter to be a list of points: give {name!r} a step "
                "(and no log scale) or make it categorical"
            )
    return grid


def grid_size(space: Space) -> int:
    return math.prod(len(values) for values in grid_values(space).values())


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """optuna's grid, for ask-and-tell: the stock one calls ``study.stop()`` once every point has
    been tried, which only works inside ``study.optimize``; the driver stops at the grid's size."""

    def after_trial(self, *args: Any, **kwargs: Any) -> None:
        return None


def make_sampler(
    name: str | optuna.samplers.BaseSampler, space: Space, *, seed: int | None, parallel: int
) -> optuna.samplers.BaseSampler:
    """An optuna sampler by name (or one you built yourself), seeded for a reproducible search."""
    if isinstance(name, optuna.samplers.BaseSampler):
        return name
    if name not in SAMPLERS:
        raise SpaceError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}")
    module = _NEEDS.get(name)
    if module and importlib.util.find_spec(module) is None:
        raise SpaceError(f"the {name} sampler needs the {module!r} package: pip install {module}")
    samplers = optuna.samplers
    if name == "grid":
        return _AskTellGridSampler(grid_values(space), seed=seed)  # type: ignore[arg-type]
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "tpe":
        # With trials in flight, the "constant liar" keeps TPE from proposing the same point to all.
        return samplers.TPESampler(seed=seed, constant_liar=parallel > 1)
    if name == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    if name == "qmc":
        return samplers.QMCSampler(seed=seed)
    if name == "gp":
        return samplers.GPSampler(seed=seed)
    return samplers.NSGAIISampler(seed=seed)


def make_pruner(
    name: str | optuna.pruners.BasePruner, *, startup_trials: int = 5, warmup_steps: int = 0
) -> optuna.pruners.BasePruner:
    """``median`` stops a trial whose value at a step is worse than the median of earlier trials at
    that step (after ``startup_trials`` finished and ``warmup_steps`` steps); ``halving`` and
    ``hyperband`` keep the best share at each rung; ``none`` never prunes."""
    if isinstance(name, optuna.pruners.BasePruner):
        return name
    if name not in PRUNERS:
        raise SpaceError(f"unknown pruner {name!r}; use one of {', '.join(PRUNERS)}")
    if startup_trials < 0 or warmup_steps < 0:
        raise SpaceError("startup trials and warm-up steps must be 0 or more")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def check_direction(direction: str) -> str:
    if direction not in DIRECTIONS:
        raise SpaceError(f"direction must be maximize or minimize, got {direction!r}")
    return direction


def check_search(search: Search) -> tuple[dict[str, Any], Space, int, list[str]]:
    """Everything about a search that can be wrong before it starts, with the message to fix it:
    the space as written and parsed, how many trials will run, and the entry point's argv."""
    document = read_document(search.space)
    space = parse_space(document)
    check_direction(search.direction)
    if not valid_name(search.metric):
        raise SpaceError(f"the metric to optimise must be a metric name, got {search.metric!r}")
    if not 1 <= search.trials <= 10_000:
        raise SpaceError("trials must be between 1 and 10000")
    if not 1 <= search.parallel <= 64:
        raise SpaceError("parallel must be between 1 and 64")
    if search.executor not in ("local", "slurm"):
        raise SpaceError("the executor is local or slurm")
    make_sampler(search.sampler, space, seed=search.seed, parallel=search.parallel)
    make_pruner(
        search.pruner, startup_trials=search.prune_startup_trials, warmup_steps=search.prune_warmup_steps
    )
    overlap = sorted(set(search.fixed_params) & set(space))
    if overlap:
        raise SpaceError(f"{', '.join(overlap)}: both searched and fixed; keep one")
    for point in search.enqueue:
        unknown = sorted(set(point) - set(space))
        if unknown:
            raise SpaceError(f"an enqueued trial names {', '.join(unknown)}, which is not in the space")
    entry = search.entrypoint
    argv = shlex.split(entry) if isinstance(entry, str) else list(entry)
    if not argv:
        raise SpaceError("the entry point is empty")
    count = min(search.trials, grid_size(space)) if search.sampler == "grid" else search.trials
    return document, space, count, argv
