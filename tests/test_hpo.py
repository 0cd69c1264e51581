"""Hyperparameter search end to end: every trial a real signed job in bubblewrap and a child run.

One live server (uvicorn, its own job runner with two slots) serves the whole module, so the
searches below share the set-up; each search uses a project code folder of its own and a few tiny
trials. Nothing is mocked: the driver signs and submits real jobs over HTTP, reads their live logs,
cancels them when the pruner says so, and writes runs through the MLflow-compatible API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import optuna
import pytest
import uvicorn
from typer.testing import CliRunner

from conftest import People, free_port, missing
from jobs_helpers import VITALS
from sanctum.accounts.tokens import TokenKind
from sanctum.api.app import create_app
from sanctum.api.runtime import Runtime
from sanctum.cli.main import app as cli_app
from sanctum.config import load_settings
from sanctum.jobs import sandbox
from sanctum.sdk import Client, SanctumAPIError, signing_keys
from sanctum.sdk.jobs import public_key_text
from sanctum.security.keys import create_master_key
from sanctum.server import NoDelayProtocol
from sanctum.tracking import trial
from sanctum.tracking.hpo import HpoError, Progress, Search, SearchResult
from sanctum.tracking.hpo_space import SpaceError, load_space

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sleep-staging"
FAST = {"poll": 0.1}


@dataclass
class Env:
    url: str
    runtime: Runtime
    people: People
    tokens: dict[str, str]
    key_file: Path
    root: Path

    def sdk(self, who: str, token: str | None = None) -> Client:
        return Client(self.url, token or self.tokens[who])

    def code(self, name: str, script: str) -> Path:
        folder = self.root / "code" / name
        folder.mkdir(parents=True)
        (folder / "trial.py").write_text(textwrap.dedent(script))
        return folder


@pytest.fixture(scope="module")
def env(catalog, tmp_path_factory) -> Iterator[Env]:
    reason = sandbox.available()
    if reason is not None:
        missing(f"bubblewrap sandbox unavailable: {reason}")
    root = tmp_path_factory.mktemp("hpo")
    data = root / "data"
    data.mkdir()
    create_master_key(data / "master.key")
    settings = load_settings(data, database_url=catalog.fresh_url(root), job_slots=2)
    runtime = Runtime.start(settings)
    port = free_port()
    config = uvicorn.Config(
        create_app(runtime=runtime), host="127.0.0.1", port=port, http=NoDelayProtocol, log_level="warning"
    )
    server = uvicorn.Server(config)  # its lifespan starts the job runner, and stops it at the end
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "live server did not start"
        time.sleep(0.02)
    try:
        yield _world(f"http://127.0.0.1:{port}", runtime, root)
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _world(url: str, runtime: Runtime, root: Path) -> Env:
    people = People(runtime)
    cast = {
        name: people.create(f"{name}@example.org", totp=name in ("owner", "other"))
        for name in ("owner", "scientist", "checker", "outsider", "other")
    }
    tokens = {name: people.token(p, kind=TokenKind.LOGIN, hours=2) for name, p in cast.items()}
    env = Env(url, runtime, people, tokens, root / "scientist-key.pem", root)
    with env.sdk("owner") as owner, env.sdk("other") as other:
        owner.create_project("alpha")
        other.create_project("beta")
        owner.add_member("alpha", cast["scientist"].email, "data_scientist")
        owner.add_member("alpha", cast["checker"].email, "output_checker")
        owner.create_dataset("alpha", "vitals")
        owner.upload_file(
            "alpha", "vitals", owner.create_version("alpha", "vitals").number, "vitals.csv", VITALS.encode()
        )
        owner.commit_version("alpha", "vitals", 1)
    for who, path in (("scientist", env.key_file), ("checker", root / "checker-key.pem")):
        key = signing_keys.create(path)
        with env.sdk(who) as client:
            client.register_key(public_key_text(key), name="laptop")
    return env


def _search(env: Env, code: Path, who: str = "scientist", token: str | None = None, **kwargs) -> SearchResult:
    args = {"entrypoint": "python trial.py", "inputs": ["vitals"], "metric": "score", **FAST, **kwargs}
    with env.sdk(who, token) as client:
        return client.hpo("alpha", code, key=signing_keys.load(env.key_file), **args)


def _children(client: Client, result: SearchResult) -> list[dict]:
    runs = client.search_runs(
        "alpha", [result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    return sorted(runs, key=lambda r: int(_tags(r)["sanctum.hpo.trial"]))


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def _metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


# ------------------------------------------------------------------ a grid search, end to end

GRID_TRIAL = """
    from sanctum.tracking import trial

    p = trial.params()
    rows = len(open("/data/vitals/vitals.csv").read().splitlines()) - 1
    score = p["a"] * 10 + (1 if p["b"] == "y" else 0) + rows / 100
    trial.report("score", score / 2, step=0)
    trial.report("score", score * 0.9, step=1)
    trial.report("loss", 1 / score, step=1)
    trial.finish(score=score, loss=1 / score)
    """
GRID_SPACE = {"a": {"type": "int", "low": 1, "high": 2}, "b": {"type": "categorical", "choices": ["x", "y"]}}


@pytest.fixture(scope="module")
def grid(env: Env) -> tuple[SearchResult, list[Progress]]:
    seen: list[Progress] = []
    result = _search(
        env,
        env.code("grid", GRID_TRIAL),
        space=GRID_SPACE,
        sampler="grid",
        trials=10,
        parallel=2,
        direction="maximize",
        experiment="grid-exp",
        progress=seen.append,
    )
    return result, seen


def test_a_grid_search_runs_each_point_as_a_job_and_a_child_run(env: Env, grid) -> None:
    result, seen = grid
    assert len(result.trials) == 4  # the grid's size, although 10 trials were allowed
    assert all(t.state == "complete" for t in result.trials)
    assert result.best_params == {"a": 2, "b": "y"} and result.best_value == pytest.approx(21.03)
    assert max(p.running for p in seen) == 2  # two in flight at once, never more
    with env.sdk("scientist") as client:
        jobs = {j.id: client.get_job("alpha", j.id) for j in client.list_jobs("alpha")}
        mine = [jobs[t.job] for t in result.trials if t.job is not None]
        assert len(mine) == 4 and all(j.state == "succeeded" for j in mine)
        assert len({j.code_sha256 for j in mine}) == 1  # one bundle for the whole search
        assert sorted((j.manifest["parameters"]["a"], j.manifest["parameters"]["b"]) for j in mine) == [
            (1, "x"),
            (1, "y"),
            (2, "x"),
            (2, "y"),
        ]
        assert all(
            j.metrics and j.metrics["score"] == t.value for j, t in zip(mine, result.trials, strict=True)
        )
        children = _children(client, result)
        assert len(children) == 4 and {c["info"]["status"] for c in children} == {"FINISHED"}
        for child, t in zip(children, result.trials, strict=True):
            assert _params(child) == {"a": str(t.params["a"]), "b": t.params["b"]}
            assert (
                _tags(child)["sanctum.job"] == str(t.job) and _tags(child)["sanctum.hpo.state"] == "complete"
            )
            assert _metrics(child)["score"] == t.value
            history = client.metric_history("alpha", child["info"]["run_id"], "score")
            assert [h["step"] for h in history] == [0, 1, 1]  # two reports, then the final value
            assert [h["value"] for h in history][:2] == pytest.approx([t.value / 2, t.value * 0.9])
        parent = client.get_run("alpha", result.parent_run_id)
        best = next(t for t in result.trials if t.params == {"a": 2, "b": "y"})
        assert parent["info"]["status"] == "FINISHED"
        assert _params(parent) == {"a": "2", "b": "y"} and _metrics(parent)["score"] == best.value
        tags = _tags(parent)
        assert tags["sanctum.hpo.best_run"] == best.run_id and tags["sanctum.hpo.best_job"] == str(best.job)
        assert tags["sanctum.hpo.sampler"] == "grid" and tags["sanctum.hpo.direction"] == "maximize"
    table = _artifact(env, "scientist", result, "hpo/trials.json")
    assert [(r["trial"], r["state"], r["job"], r["run_id"]) for r in table] == [
        (t.number, "complete", t.job, t.run_id) for t in result.trials
    ]
    assert {json.dumps(r["params"], sort_keys=True) for r in table} == {
        json.dumps(t.params, sort_keys=True) for t in result.trials
    }


def _artifact(env: Env, who: str, result: SearchResult, path: str) -> list[dict]:
    where = f"{result.experiment_id}/{result.parent_run_id}/artifacts/{path}"
    response = httpx.get(
        f"{env.url}/api/2.0/mlflow-artifacts/artifacts/{where}",
        headers={"Authorization": f"Bearer {env.tokens[who]}", "X-MLFLOW-WORKSPACE": "alpha"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_trials_are_visible_to_members_only(env: Env, grid) -> None:
    result, _ = grid
    with env.sdk("checker") as checker:  # an output checker reviews runs against outputs
        assert len(_children(checker, result)) == 4
    for who in ("outsider", "other"):
        with env.sdk(who) as client:
            with pytest.raises(SanctumAPIError) as err:
                client.get_run("alpha", result.parent_run_id)
            assert err.value.status == 404
            with pytest.raises(SanctumAPIError) as err:
                client.get_job("alpha", result.trials[0].job or 0)
            assert err.value.status == 404
    with env.sdk("other") as other:
        assert other.search_runs("beta", []) == []
        with pytest.raises(SanctumAPIError) as err:  # beta has no experiment of that id
            other.get_run("beta", result.parent_run_id)
        assert err.value.status == 404


# ------------------------------------------------------------------ samplers and seeds

SEEDED_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "depth": {"type": "int", "low": 2, "high": 8},
    "kernel": {"type": "categorical", "choices": ["rbf", "linear"]},
}
ECHO_TRIAL = """
    from sanctum.tracking import trial

    p = trial.params()
    trial.finish(score=-abs(p["lr"] - 0.01) - p["depth"] / 100)
    """


def test_a_seeded_random_search_proposes_what_optuna_does_with_that_seed(env: Env) -> None:
    result = _search(
        env,
        env.code("seeded", ECHO_TRIAL),
        space=SEEDED_SPACE,
        sampler="random",
        seed=7,
        trials=3,
        parallel=3,
        experiment="seeded",
    )
    reference = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    expected = [reference.ask(load_space(SEEDED_SPACE)).params for _ in range(3)]
    assert [t.params for t in result.trials] == expected
    assert all(1e-4 <= t.params["lr"] <= 1.0 and 2 <= t.params["depth"] <= 8 for t in result.trials)
    best = max(result.trials, key=lambda t: t.value or -1e9)
    assert result.best is best and all(t.state == "complete" for t in result.trials)


# ------------------------------------------------------------------ pruning

CURVE_TRIAL = """
    import time
    from sanctum.tracking import trial

    p = trial.params()
    if p["curve"] == "good":
        for step in range(3):
            trial.report("score", 0.9, step=step)
        trial.finish(score=0.9)
    else:
        for step in range(100):  # 20 s if nobody stops it
            trial.report("score", 0.1, step=step)
            time.sleep(0.2)
        trial.finish(score=0.1)
    """


def test_the_median_pruner_cancels_a_trial_with_a_bad_curve(env: Env) -> None:
    result = _search(
        env,
        env.code("curves", CURVE_TRIAL),
        space={"curve": {"type": "categorical", "choices": ["good", "bad"]}},
        sampler="grid",
        parallel=1,
        pruner="median",
        prune_startup_trials=1,
        experiment="pruning",
        enqueue=[{"curve": "good"}, {"curve": "bad"}],
    )
    good, bad = result.trials
    assert (good.state, bad.state) == ("complete", "pruned"), bad.reason
    with env.sdk("scientist") as client:
        job = client.get_job("alpha", bad.job or 0)
        assert job.state == "cancelled"  # stopped, not left to run its 20 s
        run = client.get_run("alpha", bad.run_id)
        assert run["info"]["status"] == "KILLED" and _tags(run)["sanctum.hpo.state"] == "pruned"
        history = client.metric_history("alpha", bad.run_id, "score")
        assert 1 <= len(history) < 100 and {h["value"] for h in history} == {0.1}
    assert result.best is good


# ------------------------------------------------------------------ failures

MIXED_TRIAL = """
    import sys
    from sanctum.tracking import trial

    mode = trial.params()["mode"]
    if mode == "crash":
        print("giving up", file=sys.stderr)
        sys.exit(3)
    if mode == "nometric":
        trial.finish(other=1.0)
    else:
        trial.finish(score=0.5)
    """


def test_failed_trials_are_recorded_and_the_search_goes_on(env: Env) -> None:
    result = _search(
        env,
        env.code("mixed", MIXED_TRIAL),
        sampler="grid",
        parallel=2,
        experiment="mixed",
        space={"mode": {"type": "categorical", "choices": ["crash", "nometric", "ok"]}},
    )
    by_mode = {t.params["mode"]: t for t in result.trials}
    assert {m: t.state for m, t in by_mode.items()} == {
        "crash": "failed",
        "nometric": "failed",
        "ok": "complete",
    }
    assert "exit code 3" in by_mode["crash"].reason
    assert "no 'score'" in by_mode["nometric"].reason and "other" in by_mode["nometric"].reason
    assert result.best is by_mode["ok"] and result.best_value == 0.5
    with env.sdk("scientist") as client:
        for mode in ("crash", "nometric"):
            run = client.get_run("alpha", by_mode[mode].run_id)
            assert run["info"]["status"] == "FAILED"
            assert _tags(run)["sanctum.hpo.reason"] == by_mode[mode].reason


def test_a_search_where_every_trial_fails_ends_with_a_clear_error(env: Env) -> None:
    seen: list[Progress] = []
    with pytest.raises(
        HpoError, match=r"no trial completed \(1 failed, 0 pruned\); the first: job \d+ failed: .*exit code 3"
    ):
        _search(
            env,
            env.code("doomed", MIXED_TRIAL),
            sampler="grid",
            experiment="doomed",
            progress=seen.append,
            space={"mode": {"type": "categorical", "choices": ["crash"]}},
        )
    with env.sdk("scientist") as client:
        experiment = client.get_or_create_experiment("alpha", "doomed")
        runs = client.search_runs("alpha", [experiment])
        parent = next(r for r in runs if "mlflow.parentRunId" not in _tags(r))
        assert (
            parent["info"]["status"] == "FAILED"
            and "no trial completed" in _tags(parent)["sanctum.hpo.reason"]
        )
        assert len(runs) == 2
    assert seen[-1].failed == 1


BAD_SPACES = {
    "unknown type": ({"x": {"type": "fuzzy"}}, "unknown type 'fuzzy'"),
    "low above high": ({"x": {"type": "float", "low": 2, "high": 1}}, "low (2) is greater than high (1)"),
    "empty choices": ({"x": {"type": "categorical", "choices": []}}, "choices must be a non-empty list"),
    "typo": ({"x": {"type": "int", "low": 1, "hi": 3}}, "unknown field(s) 'hi' for type int"),
    "log at zero": ({"x": {"type": "float", "low": 0, "high": 1, "log": True}}, "log scale needs low > 0"),
    "bad name": ({"x-y": {"type": "int", "low": 1, "high": 3}}, "parameter name 'x-y'"),
    "empty": ({}, "non-empty JSON object"),
}


@pytest.mark.parametrize("name", list(BAD_SPACES))
def test_a_bad_space_is_refused_before_any_job(env: Env, name: str) -> None:
    space, message = BAD_SPACES[name]
    code = env.root / "code" / "grid"  # never packed: the space is checked first
    with env.sdk("scientist") as client:
        before = len(client.list_jobs("alpha"))
        with pytest.raises(SpaceError) as err:
            client.hpo(
                "alpha",
                code,
                key=signing_keys.load(env.key_file),
                entrypoint="python trial.py",
                space=space,
                metric="score",
                experiment=f"bad-{name}",
            )
        assert message in str(err.value)
        assert len(client.list_jobs("alpha")) == before
        with pytest.raises(SanctumAPIError) as none:  # not even an experiment was created
            client._mlflow(
                "GET",
                "/api/2.0/mlflow/experiments/get-by-name",
                "alpha",
                params={"experiment_name": f"bad-{name}"},
            )
        assert none.value.status == 404


def test_grid_needs_points_and_other_settings_are_checked(env: Env) -> None:
    def check(**kwargs) -> str:
        settings = {
            "project": "alpha",
            "code": env.root,
            "entrypoint": "python trial.py",
            "metric": "score",
            "space": SEEDED_SPACE,
            **kwargs,
        }
        with pytest.raises(SpaceError) as err:
            Search(**settings).run(None, signing_keys.load(env.key_file))  # type: ignore[arg-type]
        return str(err.value)

    assert "give 'lr' a step" in check(sampler="grid")
    assert "unknown sampler 'annealing'" in check(sampler="annealing")
    assert "unknown pruner 'sometimes'" in check(pruner="sometimes")
    assert "maximize or minimize" in check(direction="up")
    assert "both searched and fixed" in check(fixed_params={"lr": 0.1})
    assert "not in the space" in check(enqueue=[{"momentum": 0.9}])
    assert "cannot read the search space" in check(space=env.root / "missing.json")


# ------------------------------------------------------------------ who may search


def test_an_output_checker_may_not_search_and_nothing_is_left_behind(env: Env) -> None:
    code = env.code("checker", ECHO_TRIAL)
    with env.sdk("checker") as checker, pytest.raises(SanctumAPIError) as err:
        checker.hpo(
            "alpha",
            code,
            key=signing_keys.load(env.root / "checker-key.pem"),
            entrypoint="python trial.py",
            space=SEEDED_SPACE,
            metric="score",
            experiment="checker",
        )
    assert err.value.status == 403
    with env.sdk("scientist") as client:
        assert [j for j in client.list_jobs("alpha") if j.submitted_by == "checker@example.org"] == []


def test_a_token_that_may_log_runs_but_not_submit_jobs_stops_at_the_first_trial(env: Env) -> None:
    scientist = env.people.create("scoped@example.org")
    with env.sdk("owner") as owner:
        owner.add_member("alpha", scientist.email, "data_scientist")
    key = signing_keys.create(env.root / "scoped-key.pem")
    full = env.people.token(scientist, kind=TokenKind.LOGIN)
    with env.sdk("", full) as client:
        client.register_key(public_key_text(key))
    scoped = env.people.token(scientist, scopes=["project:read", "experiments:read", "experiments:write"])
    with env.sdk("", scoped) as client:
        with pytest.raises(HpoError, match="refused at submission") as err:
            client.hpo(
                "alpha",
                env.code("scoped", ECHO_TRIAL),
                key=key,
                entrypoint="python trial.py",
                inputs=["vitals@1"],
                space=SEEDED_SPACE,
                metric="score",
                experiment="scoped",
                **FAST,
            )
        assert "every trial would be" in str(err.value)
        runs = client.search_runs("alpha", [client.get_or_create_experiment("alpha", "scoped")])
    statuses = sorted(
        (("child" if "mlflow.parentRunId" in _tags(r) else "parent"), r["info"]["status"]) for r in runs
    )
    assert statuses == [("child", "FAILED"), ("parent", "FAILED")]
    with env.sdk("owner") as owner:
        assert [j for j in owner.list_jobs("alpha") if j.submitted_by == scientist.email] == []


# ------------------------------------------------------------------ a crash in the middle

SLOW_TRIAL = """
    import time
    from sanctum.tracking import trial

    for step in range(300):
        trial.report("score", 0.5, step=step)
        time.sleep(0.1)
    trial.finish(score=0.5)
    """


def test_an_interrupted_search_cancels_its_jobs_and_closes_its_runs(env: Env) -> None:
    def interrupt(p: Progress) -> None:
        if p.running == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _search(
            env,
            env.code("slow", SLOW_TRIAL),
            sampler="random",
            seed=1,
            trials=5,
            parallel=2,
            space=SEEDED_SPACE,
            experiment="interrupted",
            progress=interrupt,
        )
    with env.sdk("scientist") as client:
        experiment = client.get_or_create_experiment("alpha", "interrupted")
        runs = client.search_runs("alpha", [experiment])
        assert len(runs) == 3  # the parent and the two trials that had started
        assert {r["info"]["status"] for r in runs} == {"KILLED"}
        jobs = [int(_tags(r)["sanctum.job"]) for r in runs if "sanctum.job" in _tags(r)]
        assert len(jobs) == 2
        assert {client.wait_job("alpha", n, timeout=30, poll=0.2).state for n in jobs} == {"cancelled"}


# ------------------------------------------------------------------ the command line


def test_the_cli_runs_a_search_and_refuses_a_bad_space(env: Env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SANCTUM_CONFIG_DIR", str(tmp_path / "config"))
    space = tmp_path / "space.json"
    space.write_text(
        json.dumps(
            {"a": {"type": "int", "low": 1, "high": 2}, "b": {"type": "categorical", "choices": ["y"]}}
        )
    )
    runner = CliRunner()
    cli_env = {"SANCTUM_URL": env.url, "SANCTUM_TOKEN": env.tokens["scientist"], "COLUMNS": "200"}
    args = [
        "hpo",
        str(env.root / "code" / "grid"),
        "--project",
        "alpha",
        "--entrypoint",
        "python trial.py",
        "--input",
        "vitals",
        "--space",
        str(space),
        "--metric",
        "score",
        "--sampler",
        "grid",
        "--parallel",
        "2",
        "--experiment",
        "cli",
        "--key-file",
        str(env.key_file),
        "--poll",
        "0.1",
    ]
    done = runner.invoke(cli_app, [*args, "--json"], env=cli_env)
    assert done.exit_code == 0, (done.stdout, done.stderr)
    output = json.loads(done.stdout)
    assert output["best"]["params"] == {"a": 2, "b": "y"} and len(output["trials"]) == 2
    assert {t["state"] for t in output["trials"]} == {"complete"}
    shown = runner.invoke(cli_app, [*args, "--run-name", "again"], env=cli_env)
    assert shown.exit_code == 0, (shown.stdout, shown.stderr)
    assert "best score = 21.03" in shown.stdout and "complete (score 21.03)" in shown.stdout
    space.write_text(json.dumps({"a": {"type": "int", "low": 3, "high": 1}}))
    with Client(env.url, env.tokens["scientist"]) as client:
        before = len(client.list_jobs("alpha"))
        refused = runner.invoke(cli_app, args, env=cli_env)
        assert len(client.list_jobs("alpha")) == before
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.strip() == "error: search space: parameter 'a': low (3) is greater than high (1)"


# ------------------------------------------------------------------ the in-job helper and the example


def test_trial_helper_reads_params_reports_lines_and_writes_metrics_atomically(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("SANCTUM_PARAMS", raising=False)
    assert trial.params({"lr": 0.1}) == {"lr": 0.1}  # outside a search: the defaults
    monkeypatch.setenv("SANCTUM_PARAMS", json.dumps({"lr": 0.5, "kernel": "rbf"}))
    assert trial.params({"lr": 0.1, "depth": 3}) == {"lr": 0.5, "depth": 3, "kernel": "rbf"}
    line = trial.format_line("val loss", 0.25, 4)
    assert trial.parse_line(line) == trial.Point("val loss", 4, 0.25)
    log = f"hello\n{line}\n{trial.PREFIX}{{not json\n{trial.format_line('acc', 1, 5)}"
    assert [p.step for p in trial.parse_log(log)] == [4, 5]
    assert [p.step for p in trial.parse_log(log, complete_lines_only=True)] == [4]  # last line unfinished
    for bad in (
        '{"name": "x", "step": -1, "value": 1}',
        '{"name": "x", "step": 1, "value": NaN}',
        '{"name": "../x", "step": 1, "value": 1}',
        '{"name": "x", "step": true, "value": 1}',
    ):
        assert trial.parse_line(trial.PREFIX + bad) is None
    for name, value, step in (("x", float("nan"), 0), ("x", 1.0, -1), ("", 1.0, 0), ("x", True, 0)):
        with pytest.raises(ValueError):
            trial.report(name, value, step)
    target = trial.finish({"val acc": 0.75}, output_dir=tmp_path, loss=1)
    assert json.loads(target.read_text()) == {"loss": 1.0, "val acc": 0.75}
    with pytest.raises(ValueError, match="finite"):
        trial.finish(loss=float("inf"), output_dir=tmp_path)
    assert json.loads(target.read_text()) == {"loss": 1.0, "val acc": 0.75}  # the earlier file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary left behind


def test_the_sleep_staging_trial_reports_a_curve_and_final_metrics(tmp_path) -> None:
    space = load_space(EXAMPLE / "space.json")
    assert set(space) == {"n_estimators", "max_depth", "min_samples_leaf", "max_features"}
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_synthetic
    finally:
        sys.path.remove(str(EXAMPLE))
    make_synthetic.write_recordings(tmp_path / "data" / "sleep", n=4, minutes=4)
    params = {"n_estimators": 20, "max_depth": 3, "min_samples_leaf": 2, "max_features": "sqrt"}
    done = subprocess.run(
        [sys.executable, "tune.py", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out")],
        cwd=EXAMPLE,
        env={**os.environ, "SANCTUM_PARAMS": json.dumps(params)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    points = trial.parse_log(done.stdout)
    assert [p.step for p in points] == [0, 1, 2, 3, 4] and {p.name for p in points} == {"val_accuracy"}
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(metrics) == {"val_accuracy", "val_macro_f1", "train_epochs", "val_epochs"}
    assert metrics["val_accuracy"] == points[-1].value and 0 <= metrics["val_accuracy"] <= 1
    assert metrics["val_epochs"] == 8  # one held-out recording of 4 minutes
