"""The stock ``mlflow`` client, unchanged, against a live server.

The client keeps global state (active runs, cached server info, the tracking URI), so each
scenario runs in a subprocess of its own with the environment a user would set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mlflow")

SCRIPT = textwrap.dedent(
    """
    import json
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_experiment("exp-a")
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.set_tag("mlflow.user", "someone-else")
        mlflow.log_params({"lr": "0.1", "depth": 3})
        mlflow.log_param("model", "rf")
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("acc", 0.4)
            mlflow.log_metrics({"acc": 0.45}, step=1)
    with mlflow.start_run(run_name="failed") as failed:
        mlflow.log_param("model", "svm")
    MlflowClient().set_terminated(failed.info.run_id, status="FAILED")
    client = MlflowClient()
    good = mlflow.search_runs(
        filter_string="metrics.acc > 0.5 and params.model = 'rf'", order_by=["metrics.acc DESC"],
        output_format="list",
    )
    by_status = mlflow.search_runs(
        filter_string="attributes.status = 'FAILED'", output_format="list"
    )
    ordered = mlflow.search_runs(order_by=["attributes.start_time"], output_format="list")
    frame = mlflow.search_runs(output_format="list")  # pandas output needs pandas, not in skinny
    child_run = client.get_run(child.info.run_id)
    parent_run = client.get_run(parent.info.run_id)
    try:
        mlflow.start_run(run_id=parent.info.run_id)
        mlflow.log_param("lr", "0.2")
        changed = "accepted"
    except mlflow.exceptions.MlflowException as exc:
        changed = exc.error_code
    finally:
        mlflow.end_run()
    print(json.dumps({
        "parent": parent.info.run_id,
        "child": child.info.run_id,
        "failed": failed.info.run_id,
        "good": [r.info.run_id for r in good],
        "by_status": [r.info.run_id for r in by_status],
        "ordered": [r.info.run_name for r in ordered],
        "frame_rows": len(frame),
        "history": [[m.step, m.value] for m in client.get_metric_history(parent.info.run_id, "loss")],
        "child_parent": child_run.data.tags.get("mlflow.parentRunId"),
        "child_acc": child_run.data.metrics.get("acc"),
        "params": parent_run.data.params,
        "status": parent_run.info.status,
        "user": parent_run.info.user_id,
        "user_tag": parent_run.data.tags.get("mlflow.user"),
        "changed": changed,
    }))
    """
)

OUTSIDER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    result = {"by_name": client.get_experiment_by_name("exp-a")}
    result["experiments"] = [e.name for e in client.search_experiments()]
    try:
        client.get_run(sys.argv[1])
        result["run"] = "visible"
    except mlflow.exceptions.MlflowException as exc:
        result["run"] = exc.error_code
    try:
        client.get_metric_history(sys.argv[1], "loss")
        result["history"] = "visible"
    except mlflow.exceptions.MlflowException as exc:
        result["history"] = exc.error_code
    result["runs"] = len(client.search_runs(["1"]))
    print(json.dumps(result))
    """
)


def run_client(url: str, token: str, script: str, *args: str, workspace: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "HTTP_PROXY", "HTTPS_PROXY"))}
    env |= {
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_TRACKING_TOKEN": token,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    if workspace:
        env["MLFLOW_WORKSPACE"] = workspace
    done = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def bound_token(client, headers: dict[str, str], project: str) -> str:
    r = client.post("/api/v1/tokens", json={"name": "mlflow", "project": project}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_stock_client_logs_searches_and_reads_back(live_server, client, world, people) -> None:
    token = bound_token(client, world.h["scientist"], "alpha")
    out = run_client(live_server.url, token, SCRIPT)
    assert out["good"] == [out["parent"]]
    assert out["by_status"] == [out["failed"]]
    assert out["ordered"] == ["parent", "child", "failed"]
    assert out["frame_rows"] == 3
    assert out["history"] == [[0, 1.0], [1, 0.5], [2, 1 / 3]]
    assert out["child_parent"] == out["parent"]
    assert out["child_acc"] == 0.45
    assert out["params"] == {"lr": "0.1", "depth": "3", "model": "rf"}
    assert out["status"] == "FINISHED"
    # Who ran it is the authenticated caller, whatever the client claims.
    assert out["user"] == out["user_tag"] == world.scientist.email
    assert out["changed"] == "INVALID_PARAMETER_VALUE"

    # Another project's member sees nothing of it, with a bound token or the workspace header.
    other = bound_token(client, world.h["other_owner"], "beta")
    seen = run_client(live_server.url, other, OUTSIDER_SCRIPT, out["parent"])
    assert seen == {
        "by_name": None,
        "experiments": [],
        "run": "RESOURCE_DOES_NOT_EXIST",
        "history": "RESOURCE_DOES_NOT_EXIST",
        "runs": 0,
    }
    unbound = people.token(world.other_owner)
    seen = run_client(live_server.url, unbound, OUTSIDER_SCRIPT, out["parent"], workspace="beta")
    assert seen["run"] == "RESOURCE_DOES_NOT_EXIST" and seen["experiments"] == []


def test_workspace_header_selects_the_project(live_server, world, people) -> None:
    token = people.token(world.owner)
    out = run_client(live_server.url, token, SCRIPT, workspace="alpha")
    assert out["user"] == world.owner.email
    assert out["good"] == [out["parent"]]
