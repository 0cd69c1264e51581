"""The MLflow REST API at the HTTP level: shapes, errors, limits, isolation and the role matrix."""

from __future__ import annotations

from typing import Any

import pytest

from sanctum.access.permissions import ROLE_PERMISSIONS, Permission, Role

M = "/api/2.0/mlflow"
ROLES = {
    "owner": Role.DATA_OWNER,
    "scientist": Role.DATA_SCIENTIST,
    "checker": Role.OUTPUT_CHECKER,
    "auditor": Role.AUDITOR,
}


def h(world: Any, name: str, project: str = "alpha") -> dict[str, str]:
    return {**world.h[name], "X-MLFLOW-WORKSPACE": project}


def make_run(client: Any, headers: dict[str, str], experiment: str = "e1", **extra: Any) -> tuple[str, str]:
    r = client.get(f"{M}/experiments/get-by-name", params={"experiment_name": experiment}, headers=headers)
    if r.status_code == 404:
        r = client.post(f"{M}/experiments/create", json={"name": experiment}, headers=headers)
        assert r.status_code == 200, r.text
        exp_id = r.json()["experiment_id"]
    else:
        exp_id = r.json()["experiment"]["experiment_id"]
    r = client.post(f"{M}/runs/create", json={"experiment_id": exp_id, **extra}, headers=headers)
    assert r.status_code == 200, r.text
    return exp_id, r.json()["run"]["info"]["run_id"]


def test_experiment_lifecycle_and_mlflow_error_shape(client, world) -> None:
    hs = h(world, "scientist")
    r = client.get(f"{M}/experiments/get-by-name", params={"experiment_name": "nope"}, headers=hs)
    assert r.status_code == 404
    assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST" and "nope" in r.json()["message"]
    exp_id = client.post(f"{M}/experiments/create", json={"name": "e1"}, headers=hs).json()["experiment_id"]
    r = client.post(f"{M}/experiments/create", json={"name": "e1"}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")
    got = client.get(f"{M}/experiments/get", params={"experiment_id": exp_id}, headers=hs).json()
    assert got["experiment"]["name"] == "e1" and got["experiment"]["lifecycle_stage"] == "active"
    assert (
        client.post(f"{M}/experiments/delete", json={"experiment_id": exp_id}, headers=hs).status_code == 200
    )
    found = client.post(f"{M}/experiments/search", json={}, headers=hs).json()
    assert found == {"experiments": []}
    found = client.post(
        f"{M}/experiments/search", json={"view_type": "ALL", "filter": "name = 'e1'"}, headers=hs
    )
    assert [e["name"] for e in found.json()["experiments"]] == ["e1"]
    client.post(f"{M}/experiments/restore", json={"experiment_id": exp_id}, headers=hs)
    r = client.get(f"{M}/experiments/get", params={"experiment_id": "999"}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = client.post(f"{M}/experiments/create", content=b"{not json", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "MALFORMED_REQUEST")
    r = client.get(f"{M}/no-such-endpoint", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    # The rest of the API keeps the platform's own shape.
    assert "error_code" not in client.get("/api/v1/projects/nope", headers=hs).json()


def test_runs_log_and_read_back(client, world) -> None:
    hs = h(world, "scientist")
    tags = [{"key": "mlflow.user", "value": "mallory"}, {"key": "t", "value": "x"}]
    _, run_id = make_run(client, hs, run_name="r1", tags=tags, user_id="mallory")
    batch = {
        "run_id": run_id,
        "metrics": [
            {"key": "m", "value": 0.5, "timestamp": 10, "step": 0},
            {"key": "m", "value": 0.7, "timestamp": 11, "step": 1},
            {"key": "n", "value": "NaN", "timestamp": 11, "step": 0},
        ],
        "params": [{"key": "p", "value": "a"}],
        "tags": [{"key": "mlflow.parentRunId", "value": "abc"}],
    }
    assert client.post(f"{M}/runs/log-batch", json=batch, headers=hs).json() == {}
    r = client.post(f"{M}/runs/log-parameter", json={"run_id": run_id, "key": "p", "value": "a"}, headers=hs)
    assert r.status_code == 200  # the same value again is fine
    r = client.post(f"{M}/runs/log-parameter", json={"run_id": run_id, "key": "p", "value": "b"}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    run = client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=hs).json()["run"]
    assert run["info"]["user_id"] == world.scientist.email
    assert run["info"]["run_name"] == "r1"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics == {"m": 0.7, "n": "NaN"}
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}["mlflow.user"] == world.scientist.email
    history = client.get(
        f"{M}/metrics/get-history", params={"run_id": run_id, "metric_key": "m"}, headers=hs
    ).json()
    assert [(m["step"], m["value"]) for m in history["metrics"]] == [(0, 0.5), (1, 0.7)]
    r = client.post(
        f"{M}/runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": 99}, headers=hs
    )
    assert r.json()["run_info"]["status"] == "FINISHED" and r.json()["run_info"]["end_time"] == 99
    r = client.get(f"{M}/runs/get", params={"run_id": "0" * 32}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert client.post(f"{M}/runs/delete", json={"run_id": run_id}, headers=hs).status_code == 200
    r = client.post(f"{M}/runs/set-tag", json={"run_id": run_id, "key": "k", "value": "v"}, headers=hs)
    assert r.status_code == 400  # a deleted run takes no more data
    assert client.post(f"{M}/runs/restore", json={"run_id": run_id}, headers=hs).status_code == 200


@pytest.mark.parametrize(
    ("field", "item", "most"),
    [
        ("metrics", {"key": "m", "value": 1.0, "timestamp": 1, "step": 0}, 1000),
        ("params", None, 100),
        ("tags", None, 100),
    ],
)
def test_batch_limits(client, world, field: str, item: dict[str, Any] | None, most: int) -> None:
    hs = h(world, "scientist")
    _, run_id = make_run(client, hs)

    def items(n: int) -> list[dict[str, Any]]:
        return [item or {"key": f"k{i}", "value": "v"} for i in range(n)]

    r = client.post(f"{M}/runs/log-batch", json={"run_id": run_id, field: items(most + 1)}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    run = client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=hs).json()["run"]
    assert run["data"].get(field, []) == ([] if field != "tags" else run["data"]["tags"])
    r = client.post(f"{M}/runs/log-batch", json={"run_id": run_id, field: items(most)}, headers=hs)
    assert r.status_code == 200, r.text


def test_search_filters_and_orders_in_sql(client, world) -> None:
    hs = h(world, "scientist")
    exp_id, a = make_run(client, hs, run_name="a", start_time=1)
    _, b = make_run(client, hs, run_name="b", start_time=2)
    _, c = make_run(client, hs, run_name="c", start_time=3)
    for run_id, acc, model in ((a, 0.9, "rf"), (b, 0.3, "rf"), (c, 0.6, "svm")):
        body = {
            "run_id": run_id,
            "metrics": [{"key": "acc", "value": acc, "timestamp": 1, "step": 0}],
            "params": [{"key": "model", "value": model}],
            "tags": [{"key": "team", "value": "x" if run_id != b else "y"}],
        }
        client.post(f"{M}/runs/log-batch", json=body, headers=hs)
    client.post(f"{M}/runs/update", json={"run_id": a, "status": "FINISHED"}, headers=hs)

    def names(**query: Any) -> list[str]:
        r = client.post(f"{M}/runs/search", json={"experiment_ids": [exp_id], **query}, headers=hs)
        assert r.status_code == 200, r.text
        return [run["info"]["run_name"] for run in r.json().get("runs", [])]

    assert names() == ["c", "b", "a"]
    assert names(filter="metrics.acc > 0.5") == ["c", "a"]
    assert names(filter="params.model = 'rf' AND metrics.acc < 0.5") == ["b"]
    assert names(filter="tags.team = 'x'", order_by=["metrics.acc DESC"]) == ["a", "c"]
    assert names(filter="attributes.status = 'FINISHED'") == ["a"]
    assert names(filter="params.model IN ('svm', 'other')") == ["c"]
    assert names(filter="attributes.run_name LIKE 'b%'") == ["b"]
    assert names(order_by=["attributes.start_time"]) == ["a", "b", "c"]
    assert names(order_by=["metrics.acc"]) == ["b", "c", "a"]
    first = client.post(f"{M}/runs/search", json={"experiment_ids": [exp_id], "max_results": 2}, headers=hs)
    token = first.json()["next_page_token"]
    assert names(max_results=2, page_token=token) == ["a"]
    for bad in ("metrics.acc > 'x'", "nonsense", "params.model > 'a'", "datasets.x = 'y'"):
        r = client.post(f"{M}/runs/search", json={"experiment_ids": [exp_id], "filter": bad}, headers=hs)
        assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), bad


def test_projects_are_isolated(client, world, people) -> None:
    exp_id, run_id = make_run(client, h(world, "owner"))
    other = h(world, "other_owner", "beta")
    assert (
        client.get(f"{M}/experiments/get", params={"experiment_id": exp_id}, headers=other).status_code == 404
    )
    assert client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=other).status_code == 404
    r = client.post(f"{M}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1}, headers=other)
    assert r.status_code == 404
    r = client.post(f"{M}/runs/search", json={"experiment_ids": [exp_id]}, headers=other)
    assert r.json() == {"runs": []}
    # Not a member of the named workspace: the project does not exist for them.
    r = client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=h(world, "other_owner"))
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    # No project at all: a clear 400.
    r = client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=world.h["owner"])
    assert r.status_code == 400 and "X-MLFLOW-WORKSPACE" in r.json()["message"]
    # A token bound to alpha selects it without a header, and refuses another workspace.
    token = client.post("/api/v1/tokens", json={"name": "ml", "project": "alpha"}, headers=world.h["owner"])
    bound = {"Authorization": f"Bearer {token.json()['token']}"}
    assert client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=bound).status_code == 200
    r = client.get(
        f"{M}/runs/get", params={"run_id": run_id}, headers={**bound, "X-MLFLOW-WORKSPACE": "beta"}
    )
    assert (r.status_code, r.json()["error_code"]) == (403, "PERMISSION_DENIED")
    r = client.get(f"{M}/runs/get", params={"run_id": run_id})
    assert (r.status_code, r.json()["error_code"]) == (401, "UNAUTHENTICATED")


WRITES = [
    ("POST", "experiments/create", {"name": "new"}),
    ("POST", "runs/create", {"experiment_id": "{exp}"}),
    ("POST", "runs/log-batch", {"run_id": "{run}"}),
    ("POST", "runs/log-metric", {"run_id": "{run}", "key": "m", "value": 1}),
    ("POST", "runs/log-parameter", {"run_id": "{run}", "key": "p{name}", "value": "1"}),
    ("POST", "runs/set-tag", {"run_id": "{run}", "key": "t", "value": "1"}),
    ("POST", "runs/update", {"run_id": "{run}", "status": "RUNNING"}),
    ("POST", "experiments/update", {"experiment_id": "{exp}", "new_name": "e1"}),
    ("POST", "runs/delete", {"run_id": "{run}"}),
    ("POST", "runs/restore", {"run_id": "{run}"}),
    ("POST", "experiments/delete", {"experiment_id": "{exp}"}),
    ("POST", "experiments/restore", {"experiment_id": "{exp}"}),
]
READS = [
    ("GET", "experiments/get", {"experiment_id": "{exp}"}),
    ("GET", "experiments/get-by-name", {"experiment_name": "e1"}),
    ("POST", "experiments/search", {}),
    ("GET", "runs/get", {"run_id": "{run}"}),
    ("POST", "runs/search", {"experiment_ids": ["{exp}"]}),
    ("GET", "metrics/get-history", {"run_id": "{run}", "metric_key": "m"}),
]


def test_role_matrix(client, world) -> None:
    exp_id, run_id = make_run(client, h(world, "owner"))

    def call(method: str, path: str, fields: dict[str, Any], headers: dict[str, str], name: str) -> Any:
        def fill(v: Any) -> Any:
            if isinstance(v, list):
                return [fill(x) for x in v]
            return v.format(exp=exp_id, run=run_id, name=name) if isinstance(v, str) else v

        data = {k: fill(v) for k, v in fields.items()}
        if method == "GET":
            return client.get(f"{M}/{path}", params=data, headers=headers)
        if path == "experiments/create":
            data["name"] = f"new-{name}"
        return client.post(f"{M}/{path}", json=data, headers=headers)

    for perm, routes in ((Permission.EXPERIMENTS_WRITE, WRITES), (Permission.EXPERIMENTS_READ, READS)):
        for method, path, fields in routes:
            for name, role in ROLES.items():
                r = call(method, path, fields, h(world, name), name)
                if perm in ROLE_PERMISSIONS[role]:
                    assert r.status_code == 200, f"{name} {path}: {r.text}"
                else:
                    assert r.status_code == 403, f"{name} {path}: {r.status_code}"
                    assert r.json()["error_code"] == "PERMISSION_DENIED"
            for name in ("outsider", "admin", "other_owner"):
                r = call(method, path, fields, h(world, name), name)
                assert r.status_code == 404, f"{name} {path}: {r.status_code}"
                assert r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_server_info_needs_a_credential_not_a_project(client, world) -> None:
    r = client.get("/api/3.0/mlflow/server-info", headers=world.h["outsider"])
    assert r.status_code == 200 and r.json()["workspaces_enabled"] is True
    r = client.get("/api/3.0/mlflow/server-info")
    assert (r.status_code, r.json()["error_code"]) == (401, "UNAUTHENTICATED")


def test_search_runs_by_get_takes_repeated_keys(client, world) -> None:
    hs = h(world, "scientist")
    exp_id, run_id = make_run(client, hs)
    r = client.get(
        f"{M}/runs/search", params={"experiment_ids": [exp_id], "order_by": ["start_time"]}, headers=hs
    )
    assert [run["info"]["run_id"] for run in r.json()["runs"]] == [run_id]


def test_like_patterns_escape_the_same_way_on_every_database(client, world) -> None:
    hs = h(world, "scientist")
    exp_id, _ = make_run(client, hs, run_name="100%")
    make_run(client, hs, run_name="100x")
    make_run(client, hs, run_name="a\\b")

    def names(pattern: str) -> tuple[int, Any]:
        body = {"experiment_ids": [exp_id], "filter": f"attributes.run_name LIKE '{pattern}'"}
        r = client.post(f"{M}/runs/search", json=body, headers=hs)
        if r.status_code != 200:
            return r.status_code, r.json()
        return 200, sorted(run["info"]["run_name"] for run in r.json().get("runs", []))

    assert names("100%") == (200, ["100%", "100x"])
    assert names("100\\\\%") == (200, ["100%"])  # an escaped percent sign is literal
    assert names("a\\\\\\\\b") == (200, ["a\\b"])  # an escaped backslash is literal
    status, error = names("100\\\\")  # a pattern ending in a lone escape: refused, on both databases
    assert status == 400 and error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "escape" in error["message"]


def test_database_refusals_and_crashes_answer_in_mlflows_shape(
    app, client, world, db_kind, monkeypatch
) -> None:
    from fastapi.testclient import TestClient

    from sanctum.tracking import service as svc

    hs = h(world, "scientist")
    r = client.post(f"{M}/experiments/create", json={"name": "nul\x00name"}, headers=hs)
    if db_kind == "postgresql":  # PostgreSQL refuses a NUL byte in text; SQLite stores it
        assert r.status_code == 400
        assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "INSERT" not in r.text and "psycopg" not in r.text  # the driver's text is not echoed
    else:
        assert r.status_code == 200, r.text

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(svc, "search_experiments", broken)
    with TestClient(app, raise_server_exceptions=False) as quiet:
        r = quiet.post(f"{M}/experiments/search", json={}, headers=hs)
    assert r.status_code == 500
    assert r.json()["error_code"] == "INTERNAL_ERROR" and "secret" not in r.text
