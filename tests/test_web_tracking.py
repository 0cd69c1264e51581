"""The experiment, run and model registry pages, per role, through the test client as a browser
without JavaScript would use them; the demo's grid search; the SVG line charts.

Runs are logged the way researchers log them: the demo's grid search through the tracking
services (``sanctum.demo_tracking``), everything else through the MLflow REST API. What a page
shows is compared with what the MLflow API answers for the same question.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.routes import _calls, api_routes
from tests.test_tracking_api import h, make_run
from tests.test_web import Browser, events

from sanctum.access.permissions import Permission
from sanctum.api.deps import InProject
from sanctum.demo_tracking import ALIAS, EPOCHS, EXPERIMENT, GRID, MODEL, log_grid_search
from sanctum.errors import Denied, NotFound
from sanctum.tracking.models import Experiment, Run
from sanctum.web import charts
from sanctum.web.session import ProjectPage

M = "/api/2.0/mlflow"
A = "/api/2.0/mlflow-artifacts/artifacts"
READERS = ("owner", "scientist", "checker", "auditor")
RUN_LINK = re.compile(r'<a href="/projects/alpha/runs/([0-9a-f]{32})">([^<]*)</a>')
SCRIPT_PARAM = "<script>alert(1)</script>"
REPORT = "report <1>.html"


@pytest.fixture
def browser(app):
    return lambda: Browser(app)


def login(browser, person) -> Browser:
    b = browser()
    b.login(person)
    return b


def table_runs(page: str) -> list[str]:
    """Run names in the runs table, top to bottom (each row's first run link is its own)."""
    match = re.search(r'<table class="table" id="runs">.*?<tbody>(.*?)</tbody>', page, re.DOTALL)
    if not match:
        return []
    rows = match.group(1).split("<tr")[1:]
    return [RUN_LINK.search(row).group(2) for row in rows]  # type: ignore[union-attr]


# --------------------------------------------------------------------------- data


@dataclass
class Grid:
    experiment_id: str
    parent: dict[str, Any]
    children: list[dict[str, Any]]  # MLflow's Run JSON, as search_runs answers
    best_run_id: str

    @property
    def everything(self) -> list[dict[str, Any]]:
        return [self.parent, *self.children]


def metric(run: dict[str, Any], key: str) -> float:
    return next(float(m["value"]) for m in run["data"]["metrics"] if m["key"] == key)


def param(run: dict[str, Any], key: str) -> str:
    return next(p["value"] for p in run["data"]["params"] if p["key"] == key)


def tag(run: dict[str, Any], key: str) -> str | None:
    return next((t["value"] for t in run["data"]["tags"] if t["key"] == key), None)


def search(client, world, experiment_id: str, filter_string: str = "", **extra: Any) -> list[dict[str, Any]]:
    body = {"experiment_ids": [experiment_id], "filter": filter_string, "max_results": 1000, **extra}
    r = client.post(f"{M}/runs/search", json=body, headers=h(world, "auditor"))
    assert r.status_code == 200, r.text
    return r.json().get("runs", [])


@pytest.fixture
def grid(runtime, client, world) -> Grid:
    assert "12 trials" in log_grid_search(runtime, "alpha", world.scientist.email)
    r = client.get(
        f"{M}/experiments/get-by-name", params={"experiment_name": EXPERIMENT}, headers=h(world, "auditor")
    )
    experiment_id = r.json()["experiment"]["experiment_id"]
    runs = search(client, world, experiment_id)
    parent = next(r for r in runs if tag(r, "mlflow.parentRunId") is None)
    children = [r for r in runs if tag(r, "mlflow.parentRunId") == parent["info"]["run_id"]]
    return Grid(experiment_id, parent, children, tag(parent, "best_run_id") or "")


@dataclass
class Odd:
    """A run with hostile names and values, long and odd metric histories, an artifact and a
    logged model; and a run of project beta."""

    experiment_id: str
    run_id: str
    beta_experiment_id: str
    beta_run_id: str


@pytest.fixture
def odd(client, world) -> Odd:
    hs = h(world, "scientist")
    exp_id, run_id = make_run(client, hs, experiment="<b>odd</b>", run_name="<i>odd run</i>")
    batch = {
        "run_id": run_id,
        "params": [{"key": "note", "value": SCRIPT_PARAM}, {"key": "C", "value": "1"}],
        "tags": [{"key": "owner_note", "value": "<img src=x onerror=alert(1)>"}],
    }
    assert client.post(f"{M}/runs/log-batch", json=batch, headers=hs).status_code == 200
    for start in range(0, 5000, 1000):  # MLflow's limit: 1,000 metrics per batch
        points = [
            {"key": "loss", "value": 1 / (s + 1), "timestamp": 1000 + s, "step": s}
            for s in range(start, start + 1000)
        ]
        assert (
            client.post(
                f"{M}/runs/log-batch", json={"run_id": run_id, "metrics": points}, headers=hs
            ).status_code
            == 200
        )
    odd_points = [
        {"key": "single", "value": 0.5, "timestamp": 1, "step": 0},
        *(
            {"key": "gaps", "value": v, "timestamp": 1, "step": s}
            for s, v in enumerate([1, "NaN", 2, "Infinity", 3])
        ),
    ]
    assert (
        client.post(
            f"{M}/runs/log-batch", json={"run_id": run_id, "metrics": odd_points}, headers=hs
        ).status_code
        == 200
    )
    r = client.put(f"{A}/{exp_id}/{run_id}/artifacts/{REPORT}", content=b"<script>x</script>", headers=hs)
    assert r.status_code == 200, r.text
    r = client.post(
        f"{M}/logged-models",
        json={"experiment_id": exp_id, "name": "clf", "source_run_id": run_id},
        headers=hs,
    )
    assert r.status_code == 200, r.text
    beta_exp, beta_run = make_run(
        client, h(world, "other_owner", "beta"), experiment="beta-exp", run_name="beta-run"
    )
    return Odd(exp_id, run_id, beta_exp, beta_run)


# --------------------------------------------------------------------------- routes and access

EXPECTED = {
    "/projects/{project}/experiments",
    "/projects/{project}/experiments/{experiment_id}",
    "/projects/{project}/runs/{run_id}",
    "/projects/{project}/runs/{run_id}/artifacts/{path:path}",
    "/projects/{project}/models",
    "/projects/{project}/models/{name}",
}


def test_every_tracking_page_is_a_get_guarded_by_experiments_read(app) -> None:
    seen = set()
    for route in api_routes(app):
        if not route.path.startswith(
            ("/projects/{project}/experiments", "/projects/{project}/runs", "/projects/{project}/models")
        ):
            continue
        guards = [c for c in _calls(route.dependant) if isinstance(c, InProject)]
        assert len(guards) == 1 and isinstance(guards[0], ProjectPage), route.path
        assert guards[0].permission is Permission.EXPERIMENTS_READ, route.path
        assert route.methods - {"HEAD"} == {"GET"}, route.path
        seen.add(route.path)
    assert seen == EXPECTED


def test_members_read_every_page_and_everyone_else_finds_nothing(grid, odd, browser, world) -> None:
    parent = grid.parent["info"]["run_id"]
    base = "/projects/alpha"
    pages = {
        f"{base}/experiments": [f'href="{base}/experiments/{grid.experiment_id}"', EXPERIMENT],
        f"{base}/experiments/{grid.experiment_id}": ["grid-search", "trial-12", "12 child runs"],
        f"{base}/runs/{parent}": ["trials.csv", "<svg", "trial-01"],
        f"{base}/runs/{parent}/artifacts/trials.csv": ["trial,run_id,C,learning_rate"],
        f"{base}/models": [f'href="{base}/models/{MODEL}"', f"@{ALIAS}"],
        f"{base}/models/{MODEL}": [f'href="{base}/runs/{grid.best_run_id}"'],
    }
    for name in READERS:
        b = login(browser, getattr(world, name))
        for path, expected in pages.items():
            page = b.get(path)
            assert page.status_code == 200, (name, path)
            for text in expected:
                assert text in page.text, (name, path, text)
        nav = b.get(f"{base}/jobs").text  # the project's other pages link here
        assert f'href="{base}/experiments"' in nav and f'href="{base}/models"' in nav
    for name in ("outsider", "other_owner", "admin"):
        b = login(browser, getattr(world, name))
        for path in pages:
            assert b.get(path).status_code == 404, (name, path)
    # Ids and names of another project, in this project's pages, do not exist: even for its owner.
    owner = login(browser, world.owner)
    for path in (
        f"{base}/runs/{odd.beta_run_id}",
        f"{base}/runs/{odd.beta_run_id}/artifacts/x.txt",
        f"{base}/experiments/{odd.beta_experiment_id}",
        f"{base}/experiments/{grid.experiment_id}?parent={odd.beta_run_id}",
        f"{base}/runs/{'0' * 32}",
        f"{base}/experiments/999999",
        f"{base}/experiments/not-a-number",
        f"{base}/models/no-such-model",
        f"{base}/models/a%00b",
        f"{base}/runs/a%00b",
        f"{base}/experiments/{grid.experiment_id}?parent=a%00b",
    ):
        page = owner.get(path)
        assert page.status_code == 404 and "Not found" in page.text, path
    other = login(browser, world.other_owner)
    assert other.get(f"/projects/beta/runs/{parent}").status_code == 404
    assert other.get(f"/projects/beta/experiments/{grid.experiment_id}").status_code == 404
    assert other.get(f"/projects/beta/runs/{odd.beta_run_id}").status_code == 200
    anonymous = browser().get(f"{base}/experiments")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


# --------------------------------------------------------------------------- the runs table


def test_runs_table_sorts_filters_and_pages_as_search_runs_does(grid, client, world, browser) -> None:
    b = login(browser, world.checker)
    url = f"/projects/alpha/experiments/{grid.experiment_id}"
    page = b.get(url)
    assert page.status_code == 200
    assert ">val_auc<" in page.text  # the first metric seen is the default column
    assert len(table_runs(page.text)) == 13 and "Runs 1–13 of 13" in page.text
    assert "12 child runs" in page.text and page.text.count('class="run-child"') == 12
    assert "scientist@example.org" in page.text and "finished" in page.text

    def by_metric(descending: bool) -> list[str]:
        runs = sorted(grid.everything, key=lambda r: r["info"]["run_id"])  # ties: newest start, then id
        runs = sorted(runs, key=lambda r: -r["info"]["start_time"])
        return [
            r["info"]["run_name"]
            for r in sorted(runs, key=lambda r: metric(r, "val_auc"), reverse=descending)
        ]

    for direction in ("desc", "asc"):
        shown = table_runs(b.get(url, params={"sort": "metric", "direction": direction}).text)
        assert shown == by_metric(direction == "desc"), direction
    header = re.search(
        r'aria-sort="descending"><a href="([^"]+)">val_auc', b.get(url, params={"sort": "metric"}).text
    )
    assert header and "direction=asc" in header.group(1).replace("&amp;", "&")  # click again: reverse
    names = table_runs(b.get(url, params={"sort": "name", "direction": "asc"}).text)
    assert names == ["grid-search", *(f"trial-{i:02d}" for i in range(1, 13))]
    durations = table_runs(b.get(url, params={"sort": "duration", "direction": "desc"}).text)
    assert durations[0] == "grid-search"  # the parent spans all its trials

    wanted = "params.C = '1.0' and metrics.val_auc > 0.5"
    expected = sorted(r["info"]["run_name"] for r in search(client, world, grid.experiment_id, wanted))
    assert len(expected) == 3
    shown = b.get(url, params={"filter": wanted})
    assert shown.status_code == 200 and sorted(table_runs(shown.text)) == expected
    assert "params.C = &#39;1.0&#39; and metrics.val_auc &gt; 0.5" in shown.text  # kept in the box

    mine = {"filter": f"attributes.user_id = '{world.scientist.email}'", "sort": "user"}
    assert len(table_runs(b.get(url, params=mine).text)) == 13
    assert len(table_runs(b.get(url, params={"state": "FINISHED"}).text)) == 13
    assert "No runs match." in b.get(url, params={"state": "RUNNING"}).text
    assert table_runs(b.get(url, params={"show": "top"}).text) == ["grid-search"]
    children = b.get(url, params={"parent": grid.parent["info"]["run_id"]})
    assert "Showing the child runs of" in children.text and len(table_runs(children.text)) == 12
    assert "grid-search" not in table_runs(children.text)

    first = b.get(url, params={"per": 10, "sort": "name", "direction": "asc"})
    assert table_runs(first.text)[:2] == ["grid-search", "trial-01"] and len(table_runs(first.text)) == 10
    assert "Runs 1–10 of 13" in first.text and "Page 1 of 2" in first.text
    following = re.search(r'<a href="([^"]+)" rel="next">', first.text).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert table_runs(b.get(following).text) == ["trial-10", "trial-11", "trial-12"]
    assert (
        "Runs 11–13 of 13" in b.get(url, params={"per": 10, "page": 99}).text
    )  # past the end: the last page

    other_metric = b.get(url, params={"metric": "val_loss", "sort": "metric", "direction": "asc"})
    best_loss = min(grid.everything[1:], key=lambda r: metric(r, "val_loss"))
    assert (
        ">val_loss<" in other_metric.text
        and table_runs(other_metric.text)[0] == best_loss["info"]["run_name"]
    )
    unknown = b.get(url, params={"metric": "<nope>"})
    assert (
        unknown.status_code == 200
        and "no metric of that name" in unknown.text
        and "&lt;nope&gt;" not in unknown.text
    )


BAD_FILTERS = (
    "params.C = 'a\x00b'",
    "metrics.val_auc >> 1",
    "params.C > '1'",
    "nonsense = 'x'",
    "params.C = '1.0",
    "metrics.val_auc > 'high'",
    "<script>alert(1)</script>",
)


def test_a_bad_filter_or_state_is_a_clear_message_and_shows_no_runs(grid, world, browser, db_kind) -> None:
    b = login(browser, world.auditor)
    url = f"/projects/alpha/experiments/{grid.experiment_id}"
    for bad in BAD_FILTERS:
        page = b.get(url, params={"filter": bad})  # Browser.get: no <script in the page
        assert page.status_code == 400, bad
        assert "This filter cannot be used:" in page.text and 'role="alert"' in page.text, bad
        assert table_runs(page.text) == [] and "trial-01" not in page.text, bad
    # A LIKE pattern ending in its escape character is refused up front, the same on both databases.
    trailing = b.get(url, params={"filter": "params.C LIKE '1.\\\\'"})
    assert table_runs(trailing.text) == []
    assert trailing.status_code == 400 and "ends in a lone escape" in trailing.text
    assert table_runs(b.get(url, params={"filter": "params.C LIKE '1.%'"}).text)  # the session still works
    state = b.get(url, params={"state": "bogus"})
    assert state.status_code == 400 and "Unknown run state" in state.text and table_runs(state.text) == []
    assert b.get(url, params={"sort": "bogus"}).status_code == 422
    assert b.get(url, params={"per": 0}).status_code == 422


# --------------------------------------------------------------------------- the run page


def path_points(page: str, key: str) -> list[tuple[float, float]]:
    figure = re.search(rf"<h3>{re.escape(key)}</h3>.*?</figure>", page, re.DOTALL)
    assert figure, key
    d = re.search(r'<path d="M([^"]+)"', figure.group(0)).group(1)  # type: ignore[union-attr]
    return [tuple(map(float, p.split())) for p in d.split(" L")]  # type: ignore[misc]


def test_run_page_shows_everything_escaped_with_charts(grid, odd, browser, world, runtime) -> None:
    b = login(browser, world.scientist)
    page = b.get(f"/projects/alpha/runs/{odd.run_id}")  # Browser.get fails on any <script or inline style
    text = page.text
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<h1>Run &lt;i&gt;odd run&lt;/i&gt;</h1>" in text
    assert "<code>owner_note</code>" in text and "mlflow.runName" not in text
    assert "MLflow keeps for itself" in text
    assert "<code>mlflow.runName</code>" in b.get(f"/projects/alpha/runs/{odd.run_id}?tags=all").text

    loss = path_points(text, "loss")
    assert "5,000 points, drawn as 1,000" in text and len(loss) == 1000
    assert loss == sorted(loss)  # x only grows: logging order kept through the downsampling
    assert "max 1 (step 0)" in text and "min 0.0002 (step 4999)" in text
    assert re.search(r'<svg role="img" aria-labelledby="chart-\d+-title"', text)
    assert "loss: 5,000 points, step 0 to 4999" in text  # the chart's accessible name
    assert "One value; a chart needs two." in text  # "single"
    assert len(path_points(text, "gaps")) == 3 and "2 NaN or infinite values not drawn" in text

    link = f'href="/projects/alpha/runs/{odd.run_id}/artifacts/report%20%3C1%3E.html" download'
    assert link in text and "18 bytes" in text
    assert "clf" in text and "logged by this run" in text
    download = b.get(f"/projects/alpha/runs/{odd.run_id}/artifacts/report%20%3C1%3E.html")
    assert download.status_code == 200 and download.content == b"<script>x</script>"
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert [e.actor_email for e in events(runtime, "artifact.download")] == [world.scientist.email]
    for bad in ("../../x", "nothing-here.txt"):
        assert b.get(f"/projects/alpha/runs/{odd.run_id}/artifacts/{bad}").status_code in (400, 404)

    parent = b.get(f"/projects/alpha/runs/{grid.parent['info']['run_id']}").text
    assert all(f'href="/projects/alpha/runs/{c["info"]["run_id"]}"' in parent for c in grid.children)
    assert "grid.C" in parent and "best_run_id" in parent and "trials.csv" in parent
    best = b.get(f"/projects/alpha/runs/{grid.best_run_id}").text
    assert f'href="/projects/alpha/runs/{grid.parent["info"]["run_id"]}"' in best  # its parent
    assert f'href="/projects/alpha/models/{MODEL}">{MODEL} version 1</a>' in best
    assert "model/weights.json" in best and "No child runs." in best
    curve = path_points(best, "val_auc")
    assert len(curve) == EPOCHS


def test_airlock_setting_hides_download_links_and_refuses_downloads(
    odd, client, world, browser, runtime
) -> None:
    r = client.patch(
        "/api/v1/projects/alpha/settings", json={"artifact_download": "airlock"}, headers=world.h["owner"]
    )
    assert r.status_code == 200
    path = f"/projects/alpha/runs/{odd.run_id}"
    scientist = login(browser, world.scientist)
    page = scientist.get(path).text
    assert "report &lt;1&gt;.html" in page and "/artifacts/report" not in page
    assert "export request in the airlock" in page
    refused = scientist.get(f"{path}/artifacts/report%20%3C1%3E.html")
    assert refused.status_code == 403 and "airlock" in refused.text and "<script>x" not in refused.text
    owner = login(browser, world.owner)
    assert f'href="{path}/artifacts/report%20%3C1%3E.html"' in owner.get(path).text
    assert owner.get(f"{path}/artifacts/report%20%3C1%3E.html").content == b"<script>x</script>"
    outcomes = [(e.actor_email, e.outcome) for e in events(runtime, "artifact.download")]
    assert outcomes == [(world.scientist.email, "denied"), (world.owner.email, "ok")]


# --------------------------------------------------------------------------- the registry


def test_registry_pages_list_models_versions_aliases_and_source_runs(
    grid, odd, client, world, browser
) -> None:
    hs = h(world, "scientist")
    name = "risk score #2 <v>"
    assert client.post(f"{M}/registered-models/create", json={"name": name}, headers=hs).status_code == 200
    for _ in range(2):
        body = {"name": name, "source": f"runs:/{odd.run_id}/model", "run_id": odd.run_id}
        assert client.post(f"{M}/model-versions/create", json=body, headers=hs).status_code == 200
    b = login(browser, world.auditor)
    listing = b.get("/projects/alpha/models").text
    quoted = "risk%20score%20%232%20%3Cv%3E"
    assert f'href="/projects/alpha/models/{quoted}">risk score #2 &lt;v&gt;</a>' in listing
    assert f"<code>@{ALIAS}</code> → 1" in listing and "version 2" in listing
    page = b.get(f"/projects/alpha/models/{quoted}")
    assert page.status_code == 200 and page.text.count(f'href="/projects/alpha/runs/{odd.run_id}"') == 2
    assert "No aliases." in page.text
    demo = b.get(f"/projects/alpha/models/{MODEL}").text
    assert f"models:/{MODEL}@{ALIAS}</code> → version 1" in demo and f"runs:/{grid.best_run_id}/model" in demo
    assert "ready" in demo and "scientist@example.org" in demo
    assert b.get("/projects/beta/models").status_code == 404
    beta = login(browser, world.other_owner)
    assert beta.get(f"/projects/beta/models/{MODEL}").status_code == 404
    assert "No registered models yet." in beta.get("/projects/beta/models").text


# --------------------------------------------------------------------------- the demo


def test_demo_grid_search_is_logged_once_as_the_scientist(grid, client, world, runtime) -> None:
    assert "logged before" in log_grid_search(runtime, "alpha", world.scientist.email)
    assert len(grid.children) == len(GRID["C"]) * len(GRID["learning_rate"]) == 12
    assert {r["info"]["user_id"] for r in grid.everything} == {world.scientist.email}
    assert {r["info"]["status"] for r in grid.everything} == {"FINISHED"}
    combos = {(param(r, "C"), param(r, "learning_rate")) for r in grid.children}
    assert combos == {(str(c), str(lr)) for c in GRID["C"] for lr in GRID["learning_rate"]}
    best = max(grid.children, key=lambda r: metric(r, "val_auc"))
    assert metric(grid.parent, "val_auc") == metric(best, "val_auc")
    assert grid.best_run_id in {
        r["info"]["run_id"] for r in grid.children if metric(r, "val_auc") == metric(best, "val_auc")
    }
    history = client.get(
        f"{M}/metrics/get-history",
        params={"run_id": best["info"]["run_id"], "metric_key": "val_auc"},
        headers=h(world, "auditor"),
    ).json()["metrics"]
    assert [m["step"] for m in history] == list(range(EPOCHS)) and history[-1]["value"] == metric(
        best, "val_auc"
    )
    assert 0.6 < metric(best, "val_auc") < 1  # the synthetic outcome is learnable, not trivially
    r = client.get(
        f"{A}/{grid.experiment_id}/{grid.parent['info']['run_id']}/artifacts/trials.csv",
        headers=h(world, "owner"),
    )
    assert r.status_code == 200 and len(r.text.strip().splitlines()) == 13
    alias = client.get(
        f"{M}/registered-models/alias", params={"name": MODEL, "alias": ALIAS}, headers=h(world, "auditor")
    )
    assert alias.json()["model_version"]["run_id"] == grid.best_run_id
    created = events(runtime, "experiment.create")
    assert [(e.actor_email, e.project_name) for e in created] == [(world.scientist.email, "alpha")]


def test_demo_grid_search_failing_part_way_leaves_nothing(runtime, client, world) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        log_grid_search(
            runtime, "alpha", world.scientist.email, grid={"C": [1.0, -1.0], "learning_rate": [0.1]}
        )
    with runtime.db.session(write=False) as db:
        assert db.scalar(select(func.count()).select_from(Experiment)) == 0
        assert db.scalar(select(func.count()).select_from(Run)) == 0
    assert events(runtime, "experiment.create") == [] and events(runtime, "artifact.upload") == []
    assert "2 trials" in log_grid_search(
        runtime, "alpha", world.scientist.email, grid={"C": [1.0, 2.0], "learning_rate": [0.1]}, epochs=3
    )
    with pytest.raises(NotFound):
        log_grid_search(runtime, "alpha", world.outsider.email)  # not a member: the project does not exist
    with pytest.raises(Denied):
        log_grid_search(runtime, "alpha", world.checker.email)  # a member who may only read


# --------------------------------------------------------------------------- charts


def test_downsampling_keeps_order_ends_and_extremes() -> None:
    points = [
        (float(i), math.sin(i / 300) + (5.0 if i == 77_777 else 0.0) - (7.0 if i == 12_345 else 0.0))
        for i in range(100_000)
    ]
    drawn = charts.downsample(points, 1000)
    assert len(drawn) <= 1000 and drawn[0] == points[0] and drawn[-1] == points[-1]
    assert drawn == sorted(drawn) and set(drawn) <= set(points)
    assert (77_777.0, points[77_777][1]) in drawn and (12_345.0, points[12_345][1]) in drawn
    assert charts.downsample(points[:50], 1000) == points[:50]


def test_line_chart_geometry_labels_and_edge_cases() -> None:
    assert charts.line_chart("m", []) is None and charts.line_chart("m", [(0.0, 1.0)]) is None
    chart = charts.line_chart("acc", [(0.0, 0.1), (1.0, 0.2), (2.0, 0.30000000000000004), (3.0, 0.25)])
    assert chart is not None and chart.total == chart.drawn == 4
    assert chart.high.label == "max 0.3 (step 2)" and chart.low.label == "min 0.1 (step 0)"
    labels = [t.label for t in chart.y_ticks]
    assert labels and all(len(label) <= 5 for label in labels), labels  # no float noise
    assert [t.label for t in chart.x_ticks] == ["0", "1", "2", "3"]
    coords = [tuple(map(float, p.split())) for p in chart.path[1:].split(" L")]
    assert all(chart.left <= x <= chart.right and chart.top <= y <= chart.bottom for x, y in coords)
    assert coords[2][1] == min(y for _, y in coords)  # the highest value is drawn highest
    flat = charts.line_chart("flat", [(5.0, 2.0), (5.0, 2.0), (5.0, 2.0)])
    assert flat is not None and flat.x_label == "logged value (in order)"
    assert [t.label for t in flat.x_ticks] == ["0", "1", "2"] and flat.high.label.startswith("max 2 (# ")
    assert charts.number(float("nan")) == "NaN" and charts.number(1234567.0) == "1.23457e+06"
    assert charts.ticks(0.71, 0.93) == pytest.approx([0.75, 0.8, 0.85, 0.9])
    assert charts.ticks(0, 99_999, 6, integer=True) == [0, 20_000, 40_000, 60_000, 80_000]
