"""The model registry and logged models at the HTTP level: lifecycle, sources, aliases, isolation, roles."""

from __future__ import annotations

from typing import Any

from tests.test_tracking_api import ROLES, h, make_run

from sanctum.access.permissions import ROLE_PERMISSIONS, Permission

M = "/api/2.0/mlflow"


def logged_model(client: Any, headers: dict[str, str], exp_id: str, run_id: str) -> str:
    body = {
        "experiment_id": exp_id,
        "name": "model",
        "source_run_id": run_id,
        "tags": [{"key": "k", "value": "v"}],
    }
    r = client.post(f"{M}/logged-models", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["model"]["info"]["model_id"]


def test_registered_model_and_version_lifecycle(client, world) -> None:
    hs = h(world, "scientist")
    exp_id, run_id = make_run(client, hs)
    r = client.post(f"{M}/registered-models/create", json={"name": "clf", "description": "d"}, headers=hs)
    assert r.status_code == 200 and r.json()["registered_model"]["name"] == "clf"
    r = client.post(f"{M}/registered-models/create", json={"name": "clf"}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "RESOURCE_ALREADY_EXISTS")

    source = f"runs:/{run_id}/model"
    for expected in ("1", "2"):
        body = {"name": "clf", "source": source, "run_id": run_id}
        r = client.post(f"{M}/model-versions/create", json=body, headers=hs)
        assert r.status_code == 200, r.text
        version = r.json()["model_version"]
        assert (version["version"], version["status"], version["run_id"]) == (expected, "READY", run_id)
        assert version["user_id"] == world.scientist.email
    r = client.get(f"{M}/model-versions/get-download-uri", params={"name": "clf", "version": "1"}, headers=hs)
    assert r.json() == {"artifact_uri": f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts/model"}
    r = client.patch(
        f"{M}/model-versions/update", json={"name": "clf", "version": "1", "description": "x"}, headers=hs
    )
    assert r.json()["model_version"]["description"] == "x"

    # Aliases.
    r = client.post(
        f"{M}/registered-models/alias", json={"name": "clf", "alias": "champion", "version": "1"}, headers=hs
    )
    assert r.status_code == 200
    r = client.get(f"{M}/registered-models/alias", params={"name": "clf", "alias": "champion"}, headers=hs)
    assert r.json()["model_version"]["version"] == "1" and r.json()["model_version"]["aliases"] == [
        "champion"
    ]
    for bad in ("latest", "v3", "a b", ""):
        body = {"name": "clf", "alias": bad, "version": "1"}
        r = client.post(f"{M}/registered-models/alias", json=body, headers=hs)
        assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), bad
    body = {"name": "clf", "alias": "x", "version": "9"}
    r = client.post(f"{M}/registered-models/alias", json=body, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")

    got = client.get(f"{M}/registered-models/get", params={"name": "clf"}, headers=hs).json()[
        "registered_model"
    ]
    assert got["aliases"] == [{"alias": "champion", "version": "1"}]
    assert [v["version"] for v in got["latest_versions"]] == ["2"]
    r = client.post(f"{M}/registered-models/get-latest-versions", json={"name": "clf"}, headers=hs)
    assert [v["version"] for v in r.json()["model_versions"]] == ["2"]
    found = client.get(f"{M}/model-versions/search", params={"filter": "name='clf'"}, headers=hs).json()
    assert [v["version"] for v in found["model_versions"]] == ["2", "1"]
    found = client.get(f"{M}/model-versions/search", params={"filter": f"run_id = '{run_id}'"}, headers=hs)
    assert len(found.json()["model_versions"]) == 2
    r = client.get(f"{M}/registered-models/search", params={"filter": "name LIKE 'cl%'"}, headers=hs)
    assert [m["name"] for m in r.json()["registered_models"]] == ["clf"]
    r = client.get(f"{M}/registered-models/search", params={"filter": "description = 'd'"}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")

    # Deleting the aliased version drops the alias; numbers are never reused.
    r = client.request(
        "DELETE", f"{M}/model-versions/delete", json={"name": "clf", "version": "1"}, headers=hs
    )
    assert r.status_code == 200
    r = client.get(f"{M}/registered-models/alias", params={"name": "clf", "alias": "champion"}, headers=hs)
    assert r.status_code == 404
    r = client.post(f"{M}/model-versions/create", json={"name": "clf", "source": source}, headers=hs)
    assert r.json()["model_version"]["version"] == "3"

    r = client.post(f"{M}/registered-models/rename", json={"name": "clf", "new_name": "clf2"}, headers=hs)
    assert r.json()["registered_model"]["name"] == "clf2"
    assert client.get(f"{M}/registered-models/get", params={"name": "clf"}, headers=hs).status_code == 404
    r = client.patch(f"{M}/registered-models/update", json={"name": "clf2", "description": "new"}, headers=hs)
    assert r.json()["registered_model"]["description"] == "new"
    r = client.request("DELETE", f"{M}/registered-models/delete", json={"name": "clf2"}, headers=hs)
    assert r.status_code == 200
    assert client.get(f"{M}/registered-models/search", headers=hs).json() == {"registered_models": []}


def test_version_sources_must_belong_to_the_project(client, world) -> None:
    hs = h(world, "owner")
    exp_id, run_id = make_run(client, hs)
    model_id = logged_model(client, hs, exp_id, run_id)
    other = h(world, "other_owner", "beta")
    other_exp, other_run = make_run(client, other)
    other_model = logged_model(client, other, other_exp, other_run)
    client.post(f"{M}/registered-models/create", json={"name": "clf"}, headers=hs)

    ok = {"name": "clf", "source": f"models:/{model_id}", "model_id": model_id}
    r = client.post(f"{M}/model-versions/create", json=ok, headers=hs)
    assert r.status_code == 200 and r.json()["model_version"]["model_id"] == model_id
    r = client.get(f"{M}/model-versions/get-download-uri", params={"name": "clf", "version": "1"}, headers=hs)
    assert r.json()["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/models/{model_id}/artifacts"
    for source, extra in (
        (f"runs:/{other_run}/model", {}),
        (f"models:/{other_model}", {}),
        (f"mlflow-artifacts:/{other_exp}/{other_run}/artifacts/model", {}),
        (f"runs:/{run_id}/model", {"run_id": other_run}),
        (f"runs:/{run_id}/model", {"model_id": other_model}),
    ):
        r = client.post(
            f"{M}/model-versions/create", json={"name": "clf", "source": source, **extra}, headers=hs
        )
        assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), source
    for source in (
        "/etc/passwd",
        "s3://bucket/model",
        "mlflow-artifacts://elsewhere/1/x",
        "file:///tmp/m",
        "",
    ):
        r = client.post(f"{M}/model-versions/create", json={"name": "clf", "source": source}, headers=hs)
        assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), source
    r = client.post(
        f"{M}/model-versions/create", json={"name": "nope", "source": f"models:/{model_id}"}, headers=hs
    )
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_names_are_per_project_and_invisible_across(client, world) -> None:
    alpha, beta = h(world, "owner"), h(world, "other_owner", "beta")
    assert (
        client.post(f"{M}/registered-models/create", json={"name": "classifier"}, headers=alpha).status_code
        == 200
    )
    assert (
        client.post(f"{M}/registered-models/create", json={"name": "classifier"}, headers=beta).status_code
        == 200
    )
    client.post(f"{M}/registered-models/create", json={"name": "alpha-only"}, headers=alpha)
    r = client.get(f"{M}/registered-models/search", headers=beta)
    assert [m["name"] for m in r.json()["registered_models"]] == ["classifier"]
    r = client.get(f"{M}/registered-models/get", params={"name": "alpha-only"}, headers=beta)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = client.request("DELETE", f"{M}/registered-models/delete", json={"name": "alpha-only"}, headers=beta)
    assert r.status_code == 404
    assert (
        client.get(f"{M}/registered-models/get", params={"name": "alpha-only"}, headers=alpha).status_code
        == 200
    )


def test_logged_models_and_run_outputs(client, world) -> None:
    hs = h(world, "scientist")
    exp_id, run_id = make_run(client, hs)
    model_id = logged_model(client, hs, exp_id, run_id)
    r = client.get(f"{M}/logged-models/{model_id}", headers=hs)
    info = r.json()["model"]["info"]
    assert (info["status"], info["source_run_id"], info["tags"]) == (
        "LOGGED_MODEL_PENDING",
        run_id,
        [{"key": "k", "value": "v"}],
    )
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/models/{model_id}/artifacts"
    r = client.patch(f"{M}/logged-models/{model_id}", json={"status": "LOGGED_MODEL_READY"}, headers=hs)
    assert r.json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    r = client.patch(f"{M}/logged-models/{model_id}", json={"status": "BOGUS"}, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    body = {"experiment_ids": [exp_id], "filter": "name = 'model'"}
    assert [
        m["info"]["model_id"]
        for m in client.post(f"{M}/logged-models/search", json=body, headers=hs).json()["models"]
    ] == [model_id]
    r = client.post(
        f"{M}/runs/outputs",
        json={"run_id": run_id, "models": [{"model_id": model_id, "step": 3}]},
        headers=hs,
    )
    assert r.status_code == 200
    run = client.get(f"{M}/runs/get", params={"run_id": run_id}, headers=hs).json()["run"]
    assert run["outputs"] == {"model_outputs": [{"model_id": model_id, "step": 3}]}
    r = client.put(
        f"/api/2.0/mlflow-artifacts/artifacts/{exp_id}/models/{model_id}/artifacts/MLmodel",
        content=b"m",
        headers=hs,
    )
    assert r.status_code == 200
    r = client.get(f"{M}/logged-models/{model_id}/artifacts/directories", headers=hs)
    assert r.json()["files"] == [{"path": "MLmodel", "is_dir": False, "file_size": 1}]

    other = h(world, "other_owner", "beta")
    for r in (
        client.get(f"{M}/logged-models/{model_id}", headers=other),
        client.patch(
            f"{M}/logged-models/{model_id}/tags", json={"tags": [{"key": "a", "value": "b"}]}, headers=other
        ),
        client.post(
            f"{M}/runs/outputs", json={"run_id": run_id, "models": [{"model_id": model_id}]}, headers=other
        ),
        client.get(f"{M}/logged-models/m-unknown", headers=hs),
    ):
        assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = client.post(f"{M}/logged-models/search", json={"experiment_ids": [exp_id]}, headers=other)
    assert r.json() == {"models": []}
    r = client.post(f"{M}/logged-models", json={"experiment_id": exp_id, "name": "x"}, headers=other)
    assert r.status_code == 404


WRITES = [
    ("POST", "registered-models/create", {"name": "w-{name}"}),
    ("POST", "model-versions/create", {"name": "base", "source": "runs:/{run}/model"}),
    ("POST", "registered-models/alias", {"name": "base", "alias": "a{name}", "version": "1"}),
    ("POST", "registered-models/set-tag", {"name": "base", "key": "k", "value": "v"}),
    ("PATCH", "registered-models/update", {"name": "base", "description": "d"}),
    ("POST", "logged-models", {"experiment_id": "{exp}", "name": "m"}),
]
READS = [
    ("GET", "registered-models/get", {"name": "base"}),
    ("GET", "registered-models/search", {}),
    ("GET", "model-versions/get", {"name": "base", "version": "1"}),
    ("GET", "model-versions/search", {"filter": "name='base'"}),
    ("GET", "model-versions/get-download-uri", {"name": "base", "version": "1"}),
    ("POST", "logged-models/search", {}),
]


def test_role_matrix(client, world) -> None:
    owner = h(world, "owner")
    exp_id, run_id = make_run(client, owner)
    client.post(f"{M}/registered-models/create", json={"name": "base"}, headers=owner)
    client.post(
        f"{M}/model-versions/create", json={"name": "base", "source": f"runs:/{run_id}/m"}, headers=owner
    )

    def call(method: str, path: str, fields: dict[str, Any], name: str) -> Any:
        data: dict[str, Any] = {k: v.format(exp=exp_id, run=run_id, name=name) for k, v in fields.items()}
        if path == "logged-models/search":
            data = {"experiment_ids": [exp_id]}
        if method == "GET":
            return client.get(f"{M}/{path}", params=data, headers=h(world, name))
        return client.request(method, f"{M}/{path}", json=data, headers=h(world, name))

    for perm, routes in ((Permission.EXPERIMENTS_WRITE, WRITES), (Permission.EXPERIMENTS_READ, READS)):
        for method, path, fields in routes:
            for name, role in ROLES.items():
                r = call(method, path, fields, name)
                if perm in ROLE_PERMISSIONS[role]:
                    assert r.status_code == 200, f"{name} {path}: {r.text}"
                else:
                    assert (r.status_code, r.json()["error_code"]) == (403, "PERMISSION_DENIED"), (
                        f"{name} {path}"
                    )
            for name in ("outsider", "admin", "other_owner"):
                r = call(method, path, fields, name)
                assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), (
                    f"{name} {path}"
                )
