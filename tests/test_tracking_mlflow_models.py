"""The stock ``mlflow`` client, unchanged, logging artifacts and scikit-learn models to a live server,
registering them and loading them back; then another project's member sees none of it."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest
from tests.conftest import missing
from tests.test_tracking_mlflow_client import bound_token, run_client

pytest.importorskip("mlflow")
pytest.importorskip("sklearn")


@pytest.fixture
def flavors() -> None:
    """``mlflow.sklearn`` imports pandas, which mlflow-skinny does not bring."""
    if importlib.util.find_spec("pandas") is None:
        missing("pandas is not installed (mlflow.sklearn needs it): add it to the dev dependencies")


ARTIFACTS = textwrap.dedent(
    """
    import json, os, sys, tempfile
    import mlflow
    from mlflow import MlflowClient

    work = tempfile.mkdtemp()
    note = os.path.join(work, "note.txt")
    with open(note, "w") as f:
        f.write("PLANTED-MARKER-" + sys.argv[1])
    folder = os.path.join(work, "plots")
    os.makedirs(os.path.join(folder, "deep"))
    for name, body in (("a.csv", "x,y\\n1,2\\n"), ("deep/b.txt", "b" * 3000)):
        with open(os.path.join(folder, name), "w") as f:
            f.write(body)
    mlflow.set_experiment("artifacts")
    with mlflow.start_run() as run:
        mlflow.log_artifact(note)
        mlflow.log_artifacts(folder, artifact_path="plots")
    client = MlflowClient()
    top = [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run.info.run_id)]
    inner = [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run.info.run_id, "plots")]
    back = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=tempfile.mkdtemp())
    files = {}
    for root, _, names in os.walk(back):
        for name in names:
            path = os.path.join(root, name)
            files[os.path.relpath(path, back)] = open(path).read()
    print(json.dumps({
        "run": run.info.run_id,
        "experiment": run.info.experiment_id,
        "uri": run.info.artifact_uri,
        "top": top,
        "inner": inner,
        "files": files,
    }))
    """
)

MODEL = textwrap.dedent(
    """
    import json
    import numpy as np
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    mlflow.set_experiment("models")
    with mlflow.start_run() as run:
        clf = LogisticRegression().fit(X, y)
        info = mlflow.sklearn.log_model(clf, name="model", serialization_format="cloudpickle")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/model", "classifier")
    client = MlflowClient()
    client.set_registered_model_alias("classifier", "champion", version.version)
    uris = [
        f"runs:/{run.info.run_id}/model",
        f"models:/classifier/{version.version}",
        "models:/classifier@champion",
        info.model_uri,
    ]
    predictions = {uri: mlflow.sklearn.load_model(uri).predict(X).tolist() for uri in uris}
    again = client.get_run(run.info.run_id)
    print(json.dumps({
        "run": run.info.run_id,
        "model_id": info.model_id,
        "version": version.version,
        "source": version.source,
        "predictions": predictions,
        "expected": clf.predict(X).tolist(),
        "outputs": [o.model_id for o in again.outputs.model_outputs],
        "by_alias": client.get_model_version_by_alias("classifier", "champion").version,
        "searched": [m.name for m in client.search_registered_models()],
        "versions": [v.version for v in client.search_model_versions("name='classifier'")],
        "download_uri": client.get_model_version_download_uri("classifier", version.version),
    }))
    """
)

AUTOLOG = textwrap.dedent(
    """
    import json
    import numpy as np
    import mlflow
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    X = np.array([[float(i)] for i in range(12)])
    y = np.array([0] * 6 + [1] * 6)
    mlflow.set_experiment("autolog")
    mlflow.sklearn.autolog()
    with mlflow.start_run() as parent:
        GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=2).fit(X, y)
    mlflow.sklearn.autolog(disable=True)
    runs = MlflowClient().search_runs([parent.info.experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    print(json.dumps({
        "parent": parent.info.run_id,
        "runs": len(runs),
        "children": sorted(r.data.params.get("C") for r in children),
        "parent_params": sorted(MlflowClient().get_run(parent.info.run_id).data.params),
        "models": [m.name for m in mlflow.search_logged_models(
            experiment_ids=[parent.info.experiment_id], output_format="list")],
    }))
    """
)

OUTSIDER = textwrap.dedent(
    """
    import json, sys, tempfile
    import mlflow
    from mlflow import MlflowClient

    run_id, experiment_id, model_id = sys.argv[1:4]
    client = MlflowClient()
    result = {
        "registered": [m.name for m in client.search_registered_models()],
        "versions": [v.name for v in client.search_model_versions()],
    }

    def code(fn):
        try:
            fn()
            return "visible"
        except mlflow.exceptions.MlflowException as exc:
            return exc.error_code
        except Exception as exc:
            return type(exc).__name__ + ":" + str(getattr(getattr(exc, "response", None), "status_code", ""))

    result["get_model"] = code(lambda: client.get_registered_model("classifier"))
    result["logged_model"] = code(lambda: client.get_logged_model(model_id))
    result["list"] = code(lambda: client.list_artifacts(run_id))
    uri = f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/note.txt"
    result["download"] = code(
        lambda: mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tempfile.mkdtemp())
    )
    result["load"] = code(lambda: mlflow.sklearn.load_model(f"models:/{model_id}"))
    print(json.dumps(result))
    """
)


def test_artifacts_round_trip_encrypted_and_isolated(live_server, client, world) -> None:
    token = bound_token(client, world.h["scientist"], "alpha")
    out = run_client(live_server.url, token, ARTIFACTS, "s3cr3t")
    assert out["uri"] == f"mlflow-artifacts:/{out['experiment']}/{out['run']}/artifacts"
    assert out["top"] == [["note.txt", False, 21], ["plots", True, None]]
    assert out["inner"] == [["plots/a.csv", False, 8], ["plots/deep", True, None]]
    assert out["files"] == {
        "note.txt": "PLANTED-MARKER-s3cr3t",
        "plots/a.csv": "x,y\n1,2\n",
        "plots/deep/b.txt": "b" * 3000,
    }
    # What is on disk is ciphertext: the marker is nowhere in the blob store.
    blobs = [p for p in (live_server.runtime.settings.data_dir / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) >= 3
    assert not any(b"PLANTED-MARKER" in p.read_bytes() for p in blobs)

    other = bound_token(client, world.h["other_owner"], "beta")
    seen = run_client(live_server.url, other, OUTSIDER, out["run"], out["experiment"], "m-none")
    assert seen["list"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["download"] != "visible"


def test_sklearn_model_logs_registers_and_loads_back(live_server, client, world, flavors) -> None:
    token = bound_token(client, world.h["scientist"], "alpha")
    out = run_client(live_server.url, token, MODEL)
    assert out["version"] == "1"
    assert out["source"] == f"models:/{out['model_id']}"
    assert out["outputs"] == [out["model_id"]]
    assert set(out["predictions"]) and all(p == out["expected"] for p in out["predictions"].values())
    assert out["by_alias"] == "1"
    assert out["searched"] == ["classifier"] and out["versions"] == ["1"]
    assert out["download_uri"].startswith("mlflow-artifacts:/") and out["model_id"] in out["download_uri"]

    # Project beta can have its own "classifier"; alpha's stays invisible to it.
    other = bound_token(client, world.h["other_owner"], "beta")
    seen = run_client(live_server.url, other, OUTSIDER, out["run"], "1", out["model_id"])
    assert seen["registered"] == [] and seen["versions"] == []
    assert seen["get_model"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["logged_model"] == "RESOURCE_DOES_NOT_EXIST"
    assert seen["load"] != "visible"
    mine = run_client(live_server.url, other, MODEL)
    assert mine["version"] == "1" and mine["searched"] == ["classifier"]


def test_autolog_grid_search_logs_parent_and_children(live_server, client, world, flavors) -> None:
    token = bound_token(client, world.h["scientist"], "alpha")
    out = run_client(live_server.url, token, AUTOLOG)
    assert out["children"] == ["0.1", "1.0"]
    assert out["runs"] == 3
    assert "best_C" in out["parent_params"]
    assert out["models"]  # the best estimator, logged as a model of the parent run
