"""The dataset pages: lists, one dataset, downloads, shares, shredding and the query page, per role.

Data is put in place through the REST API (as the CLI and SDK do); the pages are then driven
through their forms as a browser without JavaScript would.
"""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select, update
from tests.routes import _calls, api_routes
from tests.test_web import Browser, csrf_of

from sanctum.access.permissions import ROLE_PERMISSIONS, Permission, Role
from sanctum.api.deps import InProject
from sanctum.datasets.shred import blob_ids
from sanctum.db.models import AuditEvent, Dataset, Project, Share
from sanctum.web.session import ProjectPage, web_principal

CSV = b"id,age,site\n1,34,north\n2,51,south\n3,29,north\n4,62,east\n"
SCAN = b"MRI " * 5000
NOTES = "notes/readme & more.txt"  # a path that needs quoting in a URL


@pytest.fixture
def browser(app):
    return lambda: Browser(app)


def api_dataset(client, h, name, kind, files, project="alpha"):
    """Create a dataset with one committed version holding ``files``, through the REST API."""
    base = f"/api/v1/projects/{project}/datasets"
    r = client.post(
        base, json={"name": name, "kind": kind, "description": f"{name} for the tests"}, headers=h
    )
    assert r.status_code == 201, r.text
    r = client.post(f"{base}/{name}/versions", headers=h)
    assert r.status_code == 201, r.text
    number = r.json()["number"]
    for path, body in files.items():
        r = client.put(f"{base}/{name}/versions/{number}/files/{path}", content=body, headers=h)
        assert r.status_code == 201, r.text
    r = client.post(f"{base}/{name}/versions/{number}/commit", headers=h)
    assert r.status_code == 200, r.text


@pytest.fixture
def data(client, world):
    """alpha holds a table ``visits`` and a files dataset ``scans``; beta a table ``secret``."""
    h = world.h["owner"]
    api_dataset(client, h, "visits", "table", {"visits.csv": CSV})
    api_dataset(client, h, "scans", "files", {"sub-01/T1w.nii": SCAN, NOTES: b"read me"})
    api_dataset(client, world.h["other_owner"], "secret", "table", {"s.csv": b"x\n1\n"}, project="beta")
    return world


def events(runtime, action: str) -> list[AuditEvent]:
    """Audit events whose action is ``action`` or, for ``"share."``, starts with it."""
    match = AuditEvent.action.startswith(action) if action.endswith(".") else AuditEvent.action == action
    with runtime.db.session(write=False) as db:
        return list(db.scalars(select(AuditEvent).where(match).order_by(AuditEvent.seq)))


def login(browser, person) -> Browser:
    b = browser()
    b.login(person)
    return b


def dataset_row(runtime, name: str) -> Dataset | None:
    with runtime.db.session(write=False) as db:
        return db.scalar(select(Dataset).where(Dataset.name == name))


# --------------------------------------------------------------------------- routes


EXPECTED = {
    ("GET", "/projects/{project}/datasets"): Permission.DATASETS_READ,
    ("POST", "/projects/{project}/datasets"): Permission.DATASETS_MANAGE,
    ("GET", "/projects/{project}/datasets/{dataset}"): Permission.DATASETS_READ,
    (
        "GET",
        "/projects/{project}/datasets/{dataset}/versions/{version}/files/{path:path}",
    ): Permission.DATA_DOWNLOAD,
    ("POST", "/projects/{project}/datasets/{dataset}/shares"): Permission.DATASETS_SHARE,
    ("POST", "/projects/{project}/datasets/{dataset}/shred"): Permission.DATASETS_SHRED,
    # the ingest pages' views of a dataset (pages_ingest_tables; tested in test_web_ingest)
    ("GET", "/projects/{project}/datasets/{dataset}/anonymity"): Permission.DATA_IMPORT,
    ("GET", "/projects/{project}/datasets/{dataset}/versions/{version}/anonymity"): Permission.DATASETS_READ,
    ("GET", "/projects/{project}/datasets/{dataset}/metadata"): Permission.DATA_QUERY,
    ("GET", "/projects/{project}/shares"): Permission.DATASETS_READ,
    ("POST", "/projects/{project}/shares/{share_id}/accept"): Permission.DATASETS_SHARE,
    ("POST", "/projects/{project}/shares/{share_id}/decline"): Permission.DATASETS_SHARE,
    ("POST", "/projects/{project}/shares/{share_id}/revoke"): Permission.DATASETS_SHARE,
    ("GET", "/projects/{project}/query"): Permission.DATA_QUERY,
    ("POST", "/projects/{project}/query"): Permission.DATA_QUERY,
}


def test_every_dataset_page_has_its_permission_and_forms_check_csrf(app) -> None:
    seen = {}
    for route in api_routes(app):
        if route.path.startswith("/api/") or not re.match(
            r"/projects/\{project\}/(datasets|shares|query)", route.path
        ):
            continue
        calls = list(_calls(route.dependant))
        guards = [c for c in calls if isinstance(c, InProject)]
        assert len(guards) == 1 and isinstance(guards[0], ProjectPage), route.path
        for method in route.methods - {"HEAD"}:
            seen[(method, route.path)] = guards[0].permission
            if method != "GET":
                assert web_principal in calls, route.path
    assert seen == EXPECTED


def test_every_dataset_page_follows_the_role_table(app, browser, world) -> None:
    """Each role (with a valid CSRF token) is refused exactly what its role lacks; a non-member
    finds no project. Refused is 403; anything else means the policy let the request through."""
    fill = {"{dataset}": "no-such-dataset", "{version}": "1", "{path:path}": "a.txt", "{share_id}": "999999"}
    sessions = {}
    for name, role in (
        ("owner", Role.DATA_OWNER),
        ("scientist", Role.DATA_SCIENTIST),
        ("checker", Role.OUTPUT_CHECKER),
        ("auditor", Role.AUDITOR),
        ("other_owner", None),
    ):
        b = login(browser, getattr(world, name))
        sessions[name] = (b, role, b.csrf())
    for (method, path), permission in EXPECTED.items():
        url = path.replace("{project}", "alpha")
        for placeholder, value in fill.items():
            url = url.replace(placeholder, value)
        for name, (b, role, csrf) in sessions.items():
            r = b.get(url) if method == "GET" else b.post(url, {"csrf": csrf})
            if role is None:
                assert r.status_code == 404 and "Project not found." in r.text, (name, method, url)
            elif permission in ROLE_PERMISSIONS[role]:
                assert r.status_code != 403 and "Project not found." not in r.text, (name, method, url)
            else:
                assert r.status_code == 403 and f"may not {permission.value}" in r.text, (name, method, url)


def test_pages_need_a_login(browser) -> None:
    b = browser()
    for path in (
        "/projects/alpha/datasets",
        "/projects/alpha/datasets/visits",
        "/projects/alpha/shares",
        "/projects/alpha/query",
    ):
        r = b.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path


# --------------------------------------------------------------------------- roles


def test_owner_sees_versions_files_hashes_and_every_control(browser, data, runtime) -> None:
    b = login(browser, data.owner)
    project = b.get("/projects/alpha")
    assert 'href="/projects/alpha/datasets"' in project.text

    page = b.get("/projects/alpha/datasets")
    assert page.status_code == 200
    text = page.text
    assert (
        'href="/projects/alpha/datasets/visits"' in text and 'href="/projects/alpha/datasets/scans"' in text
    )
    assert "Create a dataset" in text and 'href="/projects/alpha/query"' in text
    assert "secret" not in text, "beta's dataset is not listed"

    page = b.get("/projects/alpha/datasets/scans")
    text = page.text
    assert page.status_code == 200 and "scans for the tests" in text
    assert hashlib.sha256(SCAN).hexdigest() in text and hashlib.sha256(b"read me").hexdigest() in text
    assert f"{len(SCAN):,}" in text and "19.5 KiB" in text
    link = "/projects/alpha/datasets/scans/versions/1/files/notes/readme%20%26%20more.txt"
    assert f'href="{link}"' in text
    assert "Offer share" in text and "Shred permanently" in text and "irreversible erasure" in text
    (listed,) = [e for e in events(runtime, "dataset.list_files") if e.target == "scans@1"]
    assert listed.actor_email == data.owner.email

    r = b.get(link)
    assert r.status_code == 200 and r.content == b"read me"
    assert r.headers["content-disposition"] == "attachment; filename*=UTF-8''readme%20%26%20more.txt"
    assert r.headers["etag"] == f'"{hashlib.sha256(b"read me").hexdigest()}"'
    r = b.get(
        "/projects/alpha/datasets/scans/versions/1/files/sub-01/T1w.nii", headers={"Range": "bytes=0-3"}
    )
    assert r.status_code == 206 and r.content == b"MRI "
    downloads = events(runtime, "dataset.download")
    assert [(e.target, e.actor_email) for e in downloads] == [("scans@1", data.owner.email)] * 2
    assert NOTES in downloads[0].details

    page = b.get("/projects/alpha/datasets/visits")
    text = page.text
    assert "Table schema" in text and "<code>age</code>" in text and "<code>int64</code>" in text
    assert "4 rows" in text and "query it as <code>visits</code>" in text
    assert "/projects/alpha/datasets/visits/versions/1/files/table.parquet" in text


def test_a_scientist_queries_but_sees_no_download_control(browser, data, runtime) -> None:
    b = login(browser, data.scientist)
    page = b.get("/projects/alpha/datasets")
    assert page.status_code == 200 and "Create a dataset" not in page.text
    assert 'href="/projects/alpha/query"' in page.text

    page = b.get("/projects/alpha/datasets/scans")
    text = page.text
    assert page.status_code == 200 and hashlib.sha256(SCAN).hexdigest() in text
    assert "/files/" not in text and ">Download<" not in text and " download " not in text
    assert "export request in the airlock" in text
    assert "Offer share" not in text and "Shred" not in text and "/shred" not in text

    r = b.get("/projects/alpha/datasets/scans/versions/1/files/sub-01/T1w.nii")
    assert r.status_code == 403 and "may not data:download" in r.text and "MRI" not in r.text
    assert events(runtime, "dataset.download") == []

    csrf = csrf_of(page.text)  # a valid token: only the role stands in the way
    forged = [
        ("/projects/alpha/datasets", {"name": "mine", "kind": "files"}),
        ("/projects/alpha/datasets/scans/shares", {"target": "beta", "access": "read"}),
        ("/projects/alpha/datasets/scans/shred", {"confirm": "scans"}),
    ]
    for path, form in forged:
        assert b.post(path, {"csrf": csrf, **form}).status_code == 403, path
    assert dataset_row(runtime, "scans") is not None and dataset_row(runtime, "mine") is None

    r = b.form(
        "/projects/alpha/query", {"sql": "SELECT site, count(*) AS n FROM visits GROUP BY site ORDER BY site"}
    )
    assert r.status_code == 200
    assert re.search(r"<td>east</td>\s*<td class=\"num\">1</td>", r.text)
    assert re.search(r"<td>north</td>\s*<td class=\"num\">2</td>", r.text)


@pytest.mark.parametrize("role", ["checker", "auditor"])
def test_checkers_and_auditors_see_neither_query_nor_download(browser, data, runtime, role) -> None:
    b = login(browser, getattr(data, role))
    for path in ("/projects/alpha/datasets", "/projects/alpha/datasets/scans", "/projects/alpha/shares"):
        page = b.get(path)
        assert page.status_code == 200, path
        assert "/query" not in page.text and "/files/" not in page.text, path
        assert "<textarea" not in page.text
    assert hashlib.sha256(SCAN).hexdigest() in b.get("/projects/alpha/datasets/scans").text
    assert b.get("/projects/alpha/query").status_code == 403
    r = b.post("/projects/alpha/query", {"csrf": b.csrf("/projects/alpha/datasets"), "sql": "SELECT 1"})
    assert r.status_code == 403 and events(runtime, "dataset.query") == []
    assert b.get("/projects/alpha/datasets/scans/versions/1/files/sub-01/T1w.nii").status_code == 403


# --------------------------------------------------------------------------- create


def test_owner_creates_a_dataset_through_the_form(browser, data, runtime) -> None:
    b = login(browser, data.owner)
    r = b.form(
        "/projects/alpha/datasets", {"name": "Bad Name", "kind": "table"}, page="/projects/alpha/datasets"
    )
    assert r.status_code == 422 and "Invalid dataset name" in r.text and 'value="Bad Name"' in r.text
    r = b.form(
        "/projects/alpha/datasets", {"name": "labs", "kind": "spreadsheet"}, page="/projects/alpha/datasets"
    )
    assert r.status_code == 422 and "Kind must be" in r.text
    r = b.form(
        "/projects/alpha/datasets", {"name": "visits", "kind": "table"}, page="/projects/alpha/datasets"
    )
    assert r.status_code == 409 and "already exists" in r.text
    r = b.form(
        "/projects/alpha/datasets",
        {"name": "labs", "kind": "table", "description": "blood tests"},
        page="/projects/alpha/datasets",
    )
    assert (
        r.status_code == 303 and r.headers["location"] == "/projects/alpha/datasets/labs?done=dataset_created"
    )
    page = b.get(r.headers["location"])
    assert (
        "Dataset created." in page.text
        and "blood tests" in page.text
        and "No committed versions" in page.text
    )
    assert dataset_row(runtime, "labs").kind == "table"
    assert [e.target for e in events(runtime, "dataset.create")][-1] == "labs"


# --------------------------------------------------------------------------- shares


def test_share_offer_accept_and_revoke(browser, data, runtime) -> None:
    owner = login(browser, data.owner)
    r = owner.form(
        "/projects/alpha/datasets/visits/shares",
        {"target": "no-such-project", "access": "read"},
        page="/projects/alpha/datasets/visits",
    )
    assert r.status_code == 404 and "No project with this name" in r.text
    assert 'value="no-such-project"' in r.text
    r = owner.form(
        "/projects/alpha/datasets/visits/shares",
        {"target": "beta", "access": "read"},
        page="/projects/alpha/datasets/visits",
    )
    assert r.status_code == 303 and r.headers["location"] == "/projects/alpha/shares?done=share_offered"
    page = owner.get(r.headers["location"])
    assert "Share offered." in page.text and "<code>beta</code>" in page.text and "pending" in page.text
    assert "Shared with" in owner.get("/projects/alpha/datasets/visits").text

    target = login(browser, data.other_owner)
    page = target.get("/projects/beta/datasets")
    assert "1 dataset offered to this project is waiting for a decision" in page.text
    assert "alpha.visits" not in page.text, "pending shares are not datasets yet"
    page = target.get("/projects/beta/shares")
    (share_id,) = re.findall(r"/projects/beta/shares/(\d+)/accept", page.text)
    assert f"/projects/beta/shares/{share_id}/decline" in page.text
    r = target.form(f"/projects/beta/shares/{share_id}/accept", {}, page="/projects/beta/shares")
    assert r.status_code == 303 and r.headers["location"] == "/projects/beta/shares?done=share_accepted"
    r = target.form(f"/projects/beta/shares/{share_id}/accept", {}, page="/projects/beta/shares")
    assert r.status_code == 409 and "This share is accepted, not pending." in r.text

    page = target.get("/projects/beta/datasets")
    assert 'href="/projects/beta/datasets/alpha.visits"' in page.text and "shared, read" in page.text
    page = target.get("/projects/beta/datasets/alpha.visits")
    assert page.status_code == 200 and "Owned by" in page.text and "<code>alpha</code>" in page.text
    assert "Offer share" not in page.text and "Shred" not in page.text, "only the owning project"
    assert "query it as <code>alpha__visits</code>" in page.text
    r = target.form("/projects/beta/query", {"sql": "SELECT count(*) AS n FROM alpha__visits"})
    assert r.status_code == 200 and re.search(r"<td class=\"num\">4</td>", r.text)

    page = owner.get("/projects/alpha/shares")
    assert f"/projects/alpha/shares/{share_id}/revoke" in page.text and "accepted" in page.text
    r = owner.form(f"/projects/alpha/shares/{share_id}/revoke", {}, page="/projects/alpha/shares")
    assert r.status_code == 303 and r.headers["location"] == "/projects/alpha/shares?done=share_revoked"
    assert "alpha.visits" not in target.get("/projects/beta/datasets").text
    assert target.get("/projects/beta/datasets/alpha.visits").status_code == 404
    history = target.get("/projects/beta/shares").text
    assert "History" in history and "revoked" in history
    assert [e.action for e in events(runtime, "share.") if e.project_name == "beta"] == [
        "share.offer",
        "share.accept",
        "share.revoke",
    ]


def test_a_share_can_be_declined_and_only_owners_decide(browser, data, runtime, people) -> None:
    owner = login(browser, data.owner)
    r = owner.form(
        "/projects/alpha/datasets/scans/shares",
        {"target": "beta", "access": "write"},
        page="/projects/alpha/datasets/scans",
    )
    assert r.status_code == 303
    with runtime.db.session(write=False) as db:
        share_id = db.scalar(select(Share.id))
    # The source cannot accept its own offer: only the receiving project decides.
    r = owner.form(f"/projects/alpha/shares/{share_id}/accept", {}, page="/projects/alpha/shares")
    assert r.status_code == 404
    # A scientist of alpha sees the outgoing share but no buttons.
    scientist = login(browser, data.scientist)
    page = scientist.get("/projects/alpha/shares")
    assert (
        "scans" in page.text
        and "/revoke" not in page.text
        and '<button type="submit" class="button-small' not in page.text
    )
    target = login(browser, data.other_owner)
    r = target.form(f"/projects/beta/shares/{share_id}/decline", {}, page="/projects/beta/shares")
    assert r.status_code == 303 and r.headers["location"].endswith("done=share_declined")
    with runtime.db.session(write=False) as db:
        assert db.get(Share, share_id).state == "declined"
    assert "alpha.scans" not in target.get("/projects/beta/datasets").text


def test_the_receiving_project_can_leave_a_share(browser, client, data) -> None:
    r = client.post(
        "/api/v1/projects/alpha/datasets/visits/shares", json={"project": "beta"}, headers=data.h["owner"]
    )
    assert r.status_code == 201, r.text
    share_id = r.json()["id"]
    r = client.post(f"/api/v1/projects/beta/shares/{share_id}/accept", headers=data.h["other_owner"])
    assert r.status_code == 200, r.text
    target = login(browser, data.other_owner)
    page = target.get("/projects/beta/shares")
    assert 'href="/projects/beta/datasets/alpha.visits"' in page.text
    assert "Leave the share of alpha.visits" in page.text
    r = target.form(f"/projects/beta/shares/{share_id}/revoke", {}, page="/projects/beta/shares")
    assert r.status_code == 303 and r.headers["location"].endswith("done=share_revoked")
    assert "alpha.visits" not in target.get("/projects/beta/datasets").text
    r = target.form(f"/projects/beta/shares/{share_id}/revoke", {}, page="/projects/beta/shares")
    assert r.status_code == 409 and "This share is already revoked." in r.text


# --------------------------------------------------------------------------- query


def test_query_page_runs_a_select_and_shows_the_rows(browser, data, runtime) -> None:
    b = login(browser, data.owner)
    page = b.get("/projects/alpha/query")
    assert page.status_code == 200
    assert "<summary><code>visits</code>" in page.text and "SELECT * FROM visits LIMIT 20" in page.text
    assert "scans" not in page.text.split('<h2 id="tables-title">')[1], "files datasets are not tables"
    r = b.form(
        "/projects/alpha/query", {"sql": "SELECT id, age, site, NULL AS nothing FROM visits ORDER BY id"}
    )
    assert r.status_code == 200
    text = r.text
    assert "4 rows, 4 columns." in text and "truncated" not in text
    assert re.search(r"<th scope=\"col\" class=\"num\">age <span class=\"coltype\">BIGINT</span></th>", text)
    assert '<span class="null">NULL</span>' in text
    assert re.search(r"<td class=\"num\">2</td>\s*<td class=\"num\">51</td>\s*<td>south</td>", text)
    assert "SELECT id, age, site, NULL AS nothing FROM visits ORDER BY id</textarea>" in text
    (event,) = events(runtime, "dataset.query")
    assert event.outcome == "ok" and event.actor_email == data.owner.email and '"visits"' in event.details


def test_scientists_results_are_truncated_to_the_project_limit(browser, data, runtime) -> None:
    with runtime.db.session() as db:
        db.execute(update(Project).where(Project.name == "alpha").values(query_row_limit=2))
    b = login(browser, data.scientist)
    assert "at most 2 rows for your role" in b.get("/projects/alpha/query").text
    r = b.form("/projects/alpha/query", {"sql": "SELECT * FROM visits"})
    assert r.status_code == 200 and "2 rows, 3 columns." in r.text
    assert "The result was truncated to 2 rows" in r.text
    assert r.text.count('<td class="num">') == 4  # id and age of two rows


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", None),
        ("DROP TABLE visits", "Only one read-only SELECT statement is allowed"),
        ("SELECT * FROM nowhere", "nowhere"),
        ("SELEC oops", "syntax error"),
    ],
)
def test_a_refused_query_shows_its_error_in_the_page(browser, data, runtime, sql, message) -> None:
    b = login(browser, data.scientist)
    r = b.form("/projects/alpha/query", {"sql": sql})
    assert r.status_code == 422, r.text
    assert '<p class="notice notice-error" role="alert">' in r.text
    if message:
        assert message in r.text
    assert "root:" not in r.text
    assert f">{sql.replace(chr(39), '&#39;')}</textarea>" in r.text, "the SQL stays in the form"
    assert 'id="result-title"' not in r.text
    (event,) = events(runtime, "dataset.query")
    assert event.outcome == "failed"


# --------------------------------------------------------------------------- CSRF, shredding, 404


def test_forms_without_csrf_change_nothing(browser, data, runtime) -> None:
    b = login(browser, data.owner)
    other = login(browser, data.scientist)
    for csrf in (None, "", "wrong", other.csrf("/projects/alpha/datasets")):
        token = {} if csrf is None else {"csrf": csrf}
        posts = [
            ("/projects/alpha/datasets", {"name": "sneaky", "kind": "files"}),
            ("/projects/alpha/datasets/scans/shares", {"target": "beta", "access": "write"}),
            ("/projects/alpha/datasets/scans/shred", {"confirm": "scans"}),
            ("/projects/alpha/query", {"sql": "SELECT * FROM visits"}),
        ]
        for path, form in posts:
            r = b.post(path, {**token, **form})
            assert r.status_code == 403, (path, csrf)
            assert "This form has expired or was not sent from this site" in r.text
    assert dataset_row(runtime, "sneaky") is None and dataset_row(runtime, "scans") is not None
    with runtime.db.session(write=False) as db:
        assert db.scalar(select(Share.id)) is None
    assert events(runtime, "dataset.query") == []


def test_shredding_needs_the_exact_name(browser, data, runtime) -> None:
    b = login(browser, data.owner)
    with runtime.db.session(write=False) as db:
        scans = blob_ids(db, [dataset_row(runtime, "scans").id])
        visits = blob_ids(db, [dataset_row(runtime, "visits").id])
    assert len(scans) == 2 and all(runtime.store.exists(blob) for blob in scans + visits)
    for wrong in ("", "Scans", "visits"):
        r = b.form(
            "/projects/alpha/datasets/scans/shred", {"confirm": wrong}, page="/projects/alpha/datasets/scans"
        )
        assert r.status_code == 422 and "To shred, confirm with the dataset&#39;s exact name." in r.text, (
            wrong
        )
        assert "Shred permanently" in r.text, "the dataset page is shown again"
    assert dataset_row(runtime, "scans").wrapped_key is not None
    assert events(runtime, "dataset.shred") == []

    r = b.form(
        "/projects/alpha/datasets/scans/shred", {"confirm": "scans"}, page="/projects/alpha/datasets/scans"
    )
    assert r.status_code == 303 and r.headers["location"] == "/projects/alpha/datasets?done=dataset_shredded"
    page = b.get(r.headers["location"])
    assert "Dataset shredded" in page.text and "/datasets/scans" not in page.text
    assert b.get("/projects/alpha/datasets/scans").status_code == 404
    assert dataset_row(runtime, "scans") is None
    (event,) = events(runtime, "dataset.shred")
    assert event.target == "scans" and event.actor_email == data.owner.email
    assert not any(runtime.store.exists(blob) for blob in scans)
    assert all(runtime.store.exists(blob) for blob in visits)


def test_another_projects_datasets_do_not_exist(browser, data) -> None:
    b = login(browser, data.owner)
    for path in (
        "/projects/beta/datasets",
        "/projects/beta/datasets/secret",
        "/projects/beta/shares",
        "/projects/beta/query",
        "/projects/beta/datasets/secret/versions/1/files/table.parquet",
        "/projects/alpha/datasets/secret",
        "/projects/alpha/datasets/beta.secret",
        "/projects/alpha/datasets/beta.secret/versions/1/files/table.parquet",
        "/projects/alpha/datasets/visits?version=2",
    ):
        r = b.get(path)
        assert r.status_code == 404, path
        assert "secret" not in r.text.split("<main")[1].replace(path, ""), path
    csrf = b.csrf("/projects/alpha/datasets")
    for path, form in (
        ("/projects/beta/datasets/secret/shred", {"confirm": "secret"}),
        ("/projects/alpha/datasets/beta.secret/shred", {"confirm": "secret"}),
        ("/projects/alpha/datasets/beta.secret/shares", {"target": "alpha"}),
        ("/projects/beta/query", {"sql": "SELECT * FROM secret"}),
    ):
        assert b.post(path, {"csrf": csrf, **form}).status_code == 404, path
    outsider = login(browser, data.other_owner)
    assert outsider.get("/projects/alpha/datasets/visits").status_code == 404
