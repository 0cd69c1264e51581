"""``sanctum hpo``: a hyperparameter search whose trials are signed jobs and child runs.

The search runs here, on the researcher's machine, which holds the token and the signing key;
the trials run in the project's sandbox (or on Slurm) and report back through their logs and
``/output/metrics.json``. The progress line shows trials done, running, pruned and failed and the
best value so far; the parent run in the tracking UI holds the result when the command ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.markup import escape

from sanctum.cli.client import _fail, _server
from sanctum.cli.instance import JsonFlag
from sanctum.cli.jobs import KeyFileOption, _load_key, _params
from sanctum.cli.output import console, emit_json, show
from sanctum.jobs.manifest import Resources
from sanctum.tracking.hpo import HpoError, Progress, Search, SearchResult
from sanctum.tracking.hpo_space import DIRECTIONS, PRUNERS, SAMPLERS, SpaceError


def _line(p: Progress, metric: str) -> str:
    best = f"best {metric} {p.best.value:.6g} (trial {p.best.number})" if p.best else "no result yet"
    return (
        f"trials {p.done}/{p.total} done · {p.running} running · {p.complete} complete · "
        f"{p.pruned} pruned · {p.failed} failed · {best}"
    )


def _value(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _show_result(result: SearchResult, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "experiment_id": result.experiment_id,
                "parent_run_id": result.parent_run_id,
                "metric": result.metric,
                "direction": result.direction,
                "best": result.best.row() if result.best else None,
                "trials": result.table(),
            }
        )
        return
    rows = [
        {
            "trial": str(t.number),
            "state": t.state,
            result.metric: _value(t.value),
            "job": "" if t.job is None else str(t.job),
            "params": escape(", ".join(f"{k}={v}" for k, v in t.params.items())),
            "reason": escape(t.reason),
        }
        for t in result.trials
    ]
    show(rows, as_json=False, columns=list(rows[0]) if rows else None)
    best = result.best
    if best is not None:
        console.print(
            f"best {escape(result.metric)} = {_value(best.value)}: trial {best.number}, job {best.job}, "
            f"run {best.run_id}",
            highlight=False,
            soft_wrap=True,
        )
        parent = f"parent run {result.parent_run_id} (experiment {result.experiment_id})"
        console.print(parent, highlight=False)


def hpo(
    code: Annotated[Path, typer.Argument(metavar="DIR", help="folder of code (no data files)")],
    project: Annotated[str, typer.Option(help="the project whose data the trials run on")],
    entrypoint: Annotated[str, typer.Option(help='what each trial runs, e.g. "python train.py"')],
    space: Annotated[Path, typer.Option(help="search space JSON file (see docs/hpo.md)")],
    metric: Annotated[str, typer.Option(help="the final metric to optimise, from /output/metrics.json")],
    direction: Annotated[str, typer.Option(help="maximize or minimize")] = "maximize",
    sampler: Annotated[str, typer.Option(help=", ".join(SAMPLERS))] = "tpe",
    trials: Annotated[int, typer.Option(help="how many trials (a grid stops at its size)", min=1)] = 20,
    parallel: Annotated[int, typer.Option(help="trials in flight at once", min=1, max=64)] = 1,
    pruner: Annotated[str, typer.Option(help=", ".join(PRUNERS))] = "none",
    prune_startup: Annotated[
        int, typer.Option(help="median pruner: finished trials before any pruning", min=0)
    ] = 5,
    prune_warmup: Annotated[
        int, typer.Option(help="median pruner: steps before a trial may be pruned", min=0)
    ] = 0,
    seed: Annotated[int | None, typer.Option(help="sampler seed, for a reproducible search")] = None,
    inputs: Annotated[
        list[str], typer.Option("--input", help="DATASET or DATASET@VERSION (repeatable)")
    ] = [],  # noqa: B006
    params: Annotated[
        list[str], typer.Option("--param", help="NAME=VALUE passed unchanged to every trial")
    ] = [],  # noqa: B006
    executor: Annotated[str, typer.Option(help="local, or slurm")] = "local",
    experiment: Annotated[str, typer.Option(help="experiment that receives the runs")] = "hpo",
    run_name: Annotated[str | None, typer.Option(help="name of the parent run")] = None,
    output: Annotated[str, typer.Option(help="dataset that receives each trial's /output")] = "job-outputs",
    cpus: Annotated[int, typer.Option(min=1)] = 1,
    memory: Annotated[int, typer.Option(help="memory limit per trial in MiB", min=64)] = 2048,
    time_limit: Annotated[int, typer.Option("--time", help="time limit per trial in seconds", min=1)] = 3600,
    poll: Annotated[float, typer.Option(help="seconds between looks at running trials", min=0.05)] = 1.0,
    key_file: KeyFileOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Search hyperparameters: each trial is a signed job and a child run of one parent run."""
    if direction not in DIRECTIONS:
        _fail("--direction is maximize or minimize", as_json=as_json, code="invalid_input")
    if executor not in ("local", "slurm"):
        _fail("--executor is local or slurm", as_json=as_json, code="invalid_input")
    mode: Literal["local", "slurm"] = "slurm" if executor == "slurm" else "local"
    search = Search(
        project=project,
        code=code,
        entrypoint=entrypoint,
        space=space,
        metric=metric,
        direction=direction,
        sampler=sampler,
        trials=trials,
        parallel=parallel,
        pruner=pruner,
        seed=seed,
        inputs=inputs,
        fixed_params=_params(params, as_json),
        executor=mode,
        resources=Resources(cpus=cpus, memory_mb=memory, time_limit_s=time_limit),
        output=output,
        experiment=experiment,
        run_name=run_name,
        prune_startup_trials=prune_startup,
        prune_warmup_steps=prune_warmup,
        poll=poll,
    )
    try:
        search.check()  # a bad space ends here, before the key is read or anything is sent
    except SpaceError as exc:
        _fail(f"search space: {exc}", as_json=as_json, code="invalid_space")
    key = _load_key(key_file, as_json)
    with _server(as_json) as client:
        try:
            if as_json:
                result = search.run(client, key)  # type: ignore[arg-type]
            else:
                with console.status("starting the search…") as status:

                    def progress(p: Progress) -> None:
                        console.print(escape(p.event), highlight=False, soft_wrap=True)
                        status.update(escape(_line(p, metric)))

                    result = search.run(client, key, progress=progress)  # type: ignore[arg-type]
        except (SpaceError, HpoError) as exc:
            _fail(str(exc), as_json=as_json, code="hpo_failed")
        except KeyboardInterrupt:
            _fail("interrupted: running trials were cancelled", as_json=as_json, code="interrupted")
    _show_result(result, as_json)


def register(app: typer.Typer) -> None:
    app.command("hpo")(hpo)
