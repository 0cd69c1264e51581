"""MLflow's artifact proxy at the HTTP level: storage, paths, limits, isolation, roles and the airlock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.test_tracking_api import ROLES, h, make_run

from sanctum.access.permissions import ROLE_PERMISSIONS, Permission
from sanctum.db.models import AuditEvent
from sanctum.tracking.registry_models import Artifact

A = "/api/2.0/mlflow-artifacts/artifacts"


def run_root(client: Any, world: Any, name: str = "owner") -> str:
    exp_id, run_id = make_run(client, h(world, name))
    return f"{exp_id}/{run_id}/artifacts"


def events(runtime: Any, action: str) -> list[tuple[str, dict[str, Any], str | None]]:
    with runtime.db.session(write=False) as db:
        rows = db.execute(
            select(AuditEvent.outcome, AuditEvent.details, AuditEvent.actor_email)
            .where(AuditEvent.action == action)
            .order_by(AuditEvent.seq)
        ).all()
    return [(outcome, json.loads(details), actor) for outcome, details, actor in rows]


def stored(runtime: Any) -> tuple[int, int]:
    """(catalogued artifacts, blobs on disk)."""
    with runtime.db.session(write=False) as db:
        rows = db.scalar(select(func.count()).select_from(Artifact))
    return rows or 0, runtime.store.stats()[0]


def test_upload_list_download_round_trip(client, world, runtime) -> None:
    hs = h(world, "scientist")
    root = run_root(client, world, "scientist")
    body = b"PLANTED-PLAINTEXT " * 4000
    r = client.put(f"{A}/{root}/model/weights.bin", content=body, headers=hs)
    assert r.status_code == 200, r.text
    assert client.put(f"{A}/{root}/readme.txt", content=b"hi", headers=hs).status_code == 200
    assert client.put(f"{A}/{root}/empty", content=b"", headers=hs).status_code == 200

    r = client.get(A, params={"path": root}, headers=hs)
    assert r.json() == {
        "files": [
            {"path": "empty", "is_dir": False, "file_size": 0},
            {"path": "model", "is_dir": True},
            {"path": "readme.txt", "is_dir": False, "file_size": 2},
        ]
    }
    assert client.get(A, params={"path": f"{root}/model"}, headers=hs).json()["files"] == [
        {"path": "weights.bin", "is_dir": False, "file_size": len(body)}
    ]
    # The tracking API's own listing, relative to the run's root.
    run_id = root.split("/")[1]
    r = client.get("/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "model"}, headers=hs)
    assert r.json()["files"] == [{"path": "model/weights.bin", "is_dir": False, "file_size": len(body)}]

    r = client.get(f"{A}/{root}/model/weights.bin", headers=hs)
    assert r.status_code == 200 and r.content == body
    assert client.get(f"{A}/{root}/empty", headers=hs).content == b""
    # Logging the same path again replaces it (MLflow's semantics) and drops the old blob.
    assert client.put(f"{A}/{root}/readme.txt", content=b"v2", headers=hs).status_code == 200
    assert client.get(f"{A}/{root}/readme.txt", headers=hs).content == b"v2"
    assert stored(runtime) == (3, 3)

    # Encrypted at rest: the plaintext is in no blob file.
    blobs = [p for p in runtime.store.root.rglob("*") if p.is_file()]
    assert blobs and not any(b"PLANTED-PLAINTEXT" in p.read_bytes() for p in blobs)

    uploads = events(runtime, "artifact.upload")
    assert uploads[0][1]["path"] == f"{root.split('/', 1)[1]}/model/weights.bin"
    downloads = events(runtime, "artifact.download")
    assert [(o, d["size"], a) for o, d, a in downloads][:1] == [("ok", len(body), world.scientist.email)]
    assert downloads[0][1]["path"].endswith("model/weights.bin")


@pytest.mark.parametrize(
    "path",
    [
        "{root}/%2E%2E/%2E%2E/other/x",  # encoded, so no HTTP client folds the dots away first
        "{root}/a/%2E/b",
        "{root}//x",
        "{root}/a%5Cb",
        "{root}/a%00b",
        "%2F{root}/x",
    ],
)
def test_bad_paths_are_refused_and_store_nothing(client, world, runtime, path: str) -> None:
    root = run_root(client, world)
    hs = h(world, "owner")
    r = client.put(f"{A}/{path.format(root=root)}", content=b"x", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), r.text
    r = client.get(f"{A}/{path.format(root=root)}", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE"), r.text
    assert stored(runtime) == (0, 0)


def test_writes_land_only_under_runs_and_models(client, world, runtime) -> None:
    hs = h(world, "owner")
    exp_id, run_id = make_run(client, hs)
    r = client.put(f"{A}/{exp_id}/loose.txt", content=b"x", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    r = client.put(f"{A}/{exp_id}/{'0' * 32}/artifacts/x", content=b"x", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = client.put(f"{A}/{exp_id}/models/m-nope/artifacts/x", content=b"x", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = client.get(f"{A}/{exp_id}/{run_id}/artifacts/missing", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    r = client.get(f"{A}/999999/{run_id}/artifacts/x", headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert stored(runtime) == (0, 0)


def test_oversize_upload_is_refused_and_stores_nothing(client, world, runtime) -> None:
    runtime.settings = runtime.settings.model_copy(update={"max_upload_bytes": 4096})
    root = run_root(client, world)
    hs = h(world, "owner")
    r = client.put(f"{A}/{root}/big", content=b"x" * 5000, headers=hs)
    assert (r.status_code, r.json()["error_code"]) == (413, "INVALID_PARAMETER_VALUE")
    # Streamed without a length: cut off once it passes the limit.
    r = client.put(f"{A}/{root}/big", content=iter([b"x" * 3000, b"x" * 3000]), headers=hs)
    assert r.status_code == 413
    assert stored(runtime) == (0, 0)
    # Past the JSON body limit but under the file limit: artifacts stream.
    runtime.settings = runtime.settings.model_copy(update={"max_upload_bytes": 4 << 20})
    assert client.put(f"{A}/{root}/big", content=b"y" * (2 << 20), headers=hs).status_code == 200


def test_other_projects_artifacts_do_not_exist(client, world, runtime) -> None:
    root = run_root(client, world)
    assert client.put(f"{A}/{root}/secret.txt", content=b"s", headers=h(world, "owner")).status_code == 200
    other = h(world, "other_owner", "beta")
    for r in (
        client.get(f"{A}/{root}/secret.txt", headers=other),
        client.get(A, params={"path": root}, headers=other),
        client.put(f"{A}/{root}/planted.txt", content=b"p", headers=other),
    ):
        assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert stored(runtime) == (1, 1)
    assert [o for o, _, _ in events(runtime, "artifact.download")] == []


def test_role_matrix(client, world) -> None:
    root = run_root(client, world)
    assert client.put(f"{A}/{root}/f", content=b"f", headers=h(world, "owner")).status_code == 200
    for name, role in ROLES.items():
        allowed = ROLE_PERMISSIONS[role]
        r = client.put(f"{A}/{root}/by-{name}", content=b"x", headers=h(world, name))
        expected = 200 if Permission.EXPERIMENTS_WRITE in allowed else 403
        assert r.status_code == expected, f"{name} upload: {r.text}"
        assert client.get(f"{A}/{root}/f", headers=h(world, name)).status_code == 200
        assert client.get(A, params={"path": root}, headers=h(world, name)).status_code == 200
    for name in ("outsider", "admin"):
        for r in (
            client.put(f"{A}/{root}/x", content=b"x", headers=h(world, name)),
            client.get(f"{A}/{root}/f", headers=h(world, name)),
        ):
            assert (r.status_code, r.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST"), name
    for r in (client.get(f"{A}/{root}/f"), client.put(f"{A}/{root}/f", content=b"x")):
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthenticated")


def test_airlock_setting_keeps_artifacts_with_the_owners(client, world, runtime) -> None:
    root = run_root(client, world)
    assert client.put(f"{A}/{root}/f", content=b"f", headers=h(world, "owner")).status_code == 200
    settings = "/api/v1/projects/alpha/settings"
    r = client.patch(settings, json={"artifact_download": "airlock"}, headers=world.h["scientist"])
    assert r.status_code == 403
    r = client.patch(settings, json={"artifact_download": "airlock"}, headers=world.h["owner"])
    assert r.status_code == 200 and r.json()["artifact_download"] == "airlock"
    assert r.json()["query_row_limit"] == 1000  # the other setting is left as it was
    assert (
        client.patch(settings, json={"artifact_download": "nope"}, headers=world.h["owner"]).status_code
        == 422
    )
    for name in ("scientist", "checker", "auditor"):
        r = client.get(f"{A}/{root}/f", headers=h(world, name))
        assert (r.status_code, r.json()["error_code"]) == (403, "PERMISSION_DENIED")
        assert "airlock" in r.json()["message"]
        assert client.get(A, params={"path": root}, headers=h(world, name)).status_code == 200
    assert client.get(f"{A}/{root}/f", headers=h(world, "owner")).content == b"f"
    outcomes = [(o, a) for o, _, a in events(runtime, "artifact.download")]
    assert outcomes == [
        ("denied", world.scientist.email),
        ("denied", world.checker.email),
        ("denied", world.auditor.email),
        ("ok", world.owner.email),
    ]
    r = client.patch(settings, json={"artifact_download": "allowed"}, headers=world.h["owner"])
    assert client.get(f"{A}/{root}/f", headers=h(world, "scientist")).status_code == 200
