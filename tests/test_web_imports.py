"""The import request form (airlock in), driven as a browser without JavaScript would: a data
scientist asks with a file, a data owner approves it on the same page, the file lands as a dataset
version. Every refusal shows the page again (or the error page, for the guards), with what was
typed, and leaves nothing in the store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select
from tests.conftest import free_port
from tests.test_fsck_and_crashes import _serve
from tests.test_web import Browser, csrf_of, strict

from airlock_helpers import events
from sanctum.accounts.tokens import TokenKind
from sanctum.airlock.models import ImportRequest
from sanctum.airlock.rules import ImportRules
from sanctum.api.deps import SESSION_COOKIE
from sanctum.db.models import Token

PAGE = "/projects/alpha/imports"
CODES = b"code,label\nI21,acute myocardial infarction\nI10,essential hypertension\n"
REASON = "ICD-10 labels for the figures <b>now</b>"
BOUNDARY = "----sanctumtestboundary7MA4YWxk"


@pytest.fixture
def as_(app, world):
    """``as_("scientist")``: a logged-in browser of one of the world's people."""

    def make(name: str) -> Browser:
        b = Browser(app)
        b.login(getattr(world, name))
        return b

    return make


def ask(b: Browser, fields: dict[str, str], file: tuple[str, bytes] | None = ("icd10.csv", CODES), **kw):
    """Post the form as a browser does: the CSRF token (unless given), the fields, the file last."""
    data = {"csrf": b.csrf(PAGE), **fields} if "csrf" not in fields else fields
    files = {"file": (file[0], file[1], "text/csv")} if file is not None else None
    return strict(b.http.post(PAGE, data=data, files=files, **kw))


def browser_body(fields: dict[str, str], filename: str, data: bytes, *, close: bool = True) -> bytes:
    """A multipart body shaped byte for byte as Chromium sends it (``filename=""`` when no file
    was chosen, which httpx would leave out)."""
    out = b""
    for name, value in fields.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    out += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return out + data + (f"\r\n--{BOUNDARY}--\r\n".encode() if close else b"")


def part(name: str, value: str, *, filename: str | None = None) -> bytes:
    """One more part and the closing boundary, to follow a body cut before its closing boundary."""
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n--{BOUNDARY}--\r\n".encode()


def raw_post(b: Browser, body, **headers: str):
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", **headers}
    return strict(b.http.post(PAGE, content=body, headers=headers))


def requests_of(runtime) -> list[tuple[int, str, str | None]]:
    with runtime.db.session(write=False) as db:
        rows = db.execute(
            select(ImportRequest.number, ImportRequest.state, ImportRequest.blob_id).order_by(
                ImportRequest.number
            )
        ).all()
    return [tuple(r) for r in rows]


def stored(runtime) -> list[str]:
    """Every blob in the store, and no upload left half-written."""
    assert list(runtime.store.root.joinpath("tmp").glob("*.part")) == []
    return list(runtime.store.iter_blob_ids())


def fields(dataset: str = "reference", justification: str = REASON, **more: str) -> dict[str, str]:
    return {"dataset": dataset, "justification": justification, **more}


# --------------------------------------------------------------------------- the happy path


def test_a_scientist_asks_an_owner_approves_and_the_file_lands(as_, client, world, runtime):
    scientist = as_("scientist")
    page = scientist.get(PAGE).text
    assert "Ask for a file to come in" in page and 'enctype="multipart/form-data"' in page
    assert "One file of at most 100.0 MiB" in page
    made = ask(scientist, fields())
    assert made.status_code == 303 and made.headers["location"] == f"{PAGE}?done=import_requested"
    page = scientist.get(made.headers["location"]).text
    assert "Import requested: the file waits, encrypted" in page
    assert "icd10.csv" in page and "Pending" in page and "Withdraw import 1" in page
    assert "ICD-10 labels for the figures &lt;b&gt;now&lt;/b&gt;" in page
    ((number, state, blob),) = requests_of(runtime)
    assert (number, state) == (1, "pending") and stored(runtime) == [blob]
    assert CODES not in runtime.store.path(blob).read_bytes()  # held encrypted
    assert [e.action for e in events(runtime, "import.")] == ["import.create", "import.upload"]

    owner = as_("owner")
    page = owner.get(PAGE).text
    assert "Approve import 1" in page and "scientist@example.org" in page
    approved = owner.form(f"{PAGE}/1/approve", {"reason": "public data"}, page=PAGE)
    assert approved.status_code == 303 and approved.headers["location"] == f"{PAGE}?done=import_approved"
    page = owner.get(PAGE).text
    assert "Approved" in page and 'href="/projects/alpha/datasets/reference?version=1"' in page

    h = world.h["owner"]
    files = client.get("/api/v1/projects/alpha/datasets/reference/versions/1/files", headers=h).json()
    assert [(f["path"], f["size"]) for f in files] == [("icd10.csv", len(CODES))]
    got = client.get("/api/v1/projects/alpha/datasets/reference/versions/1/files/icd10.csv", headers=h)
    assert got.status_code == 200 and got.content == CODES
    assert blob not in stored(runtime) and len(stored(runtime)) == 1  # the held copy is gone
    assert [e.action for e in events(runtime, "import.")] == [
        "import.create",
        "import.upload",
        "import.approve",
    ]
    (event,) = events(runtime, "import.approve")
    assert "scientist@example.org" in event.details and "reference@1" in event.details


def test_an_approval_whose_commit_fails_leaves_no_landed_copy(as_, runtime, monkeypatch):
    """The approval writes the file as a new version's blob before its transaction commits; if the
    commit fails, that blob is referenced by nothing and is deleted at once, the request stays
    pending with its held copy, and no version appears."""
    from sqlalchemy.orm import Session

    from sanctum.web import pages_imports

    assert ask(as_("scientist"), fields()).status_code == 303
    ((_, _, held),) = requests_of(runtime)
    approved: list[bool] = []
    real_approve, real_commit = pages_imports.imports.approve, Session.commit

    def approve(*args, **kwargs):
        landed = real_approve(*args, **kwargs)
        approved.append(True)
        return landed

    def commit(self) -> None:
        if approved and approved.pop():
            raise OSError("the database went away")
        real_commit(self)

    monkeypatch.setattr(pages_imports.imports, "approve", approve)
    monkeypatch.setattr(Session, "commit", commit)
    owner = as_("owner")
    with pytest.raises(OSError, match="went away"):
        owner.form(f"{PAGE}/1/approve", {"reason": "public data"}, page=PAGE)
    monkeypatch.undo()
    assert stored(runtime) == [held]  # the landed copy is gone, the held one is kept
    assert [(n, state) for n, state, _ in requests_of(runtime)] == [(1, "pending")]
    assert "Approve import 1" in owner.get(PAGE).text


def test_a_named_file_into_an_existing_dataset_streams_without_buffering(
    as_, client, world, runtime, monkeypatch
):
    """A file of several MiB, named in a folder, into a dataset the page offers; Starlette's form
    parser (which spools files to disk in plaintext) is never called."""
    assert (
        client.post(
            "/api/v1/projects/alpha/datasets", json={"name": "lookups"}, headers=world.h["owner"]
        ).status_code
        == 201
    )
    scientist = as_("scientist")
    assert '<option value="lookups">' in scientist.get(PAGE).text
    token = scientist.csrf(PAGE)

    def refuse(*_a, **_k):
        raise AssertionError("the import form must not be parsed by request.form()")

    monkeypatch.setattr("starlette.requests.Request.form", refuse)
    large = os.urandom(3 * 1024 * 1024 + 17)
    made = ask(scientist, {"csrf": token, **fields("lookups", name="tables/big.bin")}, ("ignored.bin", large))
    assert made.status_code == 303, made.text
    monkeypatch.undo()
    owner = as_("owner")
    assert owner.form(f"{PAGE}/1/approve", {}, page=PAGE).status_code == 303
    h = world.h["owner"]
    got = client.get("/api/v1/projects/alpha/datasets/lookups/versions/1/files/tables/big.bin", headers=h)
    assert got.status_code == 200 and got.content == large


def test_a_requester_withdraws_and_nobody_else_can(as_, runtime):
    scientist = as_("scientist")
    assert ask(scientist, fields()).status_code == 303
    ((_, _, blob),) = requests_of(runtime)
    owner = as_("owner")
    page = owner.get(PAGE).text
    assert "Withdraw import 1" not in page  # not the owner's request
    refused = owner.form(f"{PAGE}/1/withdraw", {}, page=PAGE)
    assert refused.status_code == 403 and "Only the person who made this request" in refused.text
    checker = as_("checker")
    token = csrf_of(checker.get(PAGE).text)
    assert checker.post(f"{PAGE}/1/withdraw", {"csrf": token}).status_code == 403
    assert scientist.post(f"{PAGE}/1/withdraw", {"csrf": "wrong"}).status_code == 403
    done = scientist.form(f"{PAGE}/1/withdraw", {"reason": "wrong file"}, page=PAGE)
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?done=import_withdrawn"
    assert requests_of(runtime) == [(1, "withdrawn", None)] and blob not in stored(runtime)
    page = scientist.get(done.headers["location"]).text
    assert "Import request withdrawn" in page and "wrong file" in page and "Withdraw import 1" not in page


# --------------------------------------------------------------------------- who may


def test_who_sees_the_form_and_who_may_post_it(as_, people, app, runtime):
    for name, sees_form in (("owner", True), ("scientist", True), ("checker", False), ("auditor", False)):
        b = as_(name)
        page = b.get(PAGE)
        assert page.status_code == 200, name
        assert ("Ask for a file to come in" in page.text) is sees_form, name
        r = ask(b, fields(justification=f"by {name}"), ("n.csv", CODES))
        if sees_form:
            assert r.status_code == 303, (name, r.text)
        else:
            assert r.status_code == 403 and "may not imports:request" in r.text, name
            assert f"by {name}" not in r.text
    assert [s for _, s, _ in requests_of(runtime)] == ["pending", "pending"]
    # Not a member (another project's owner, an outsider, an administrator): no such project.
    for name in ("other_owner", "outsider", "admin"):
        b = as_(name)
        assert b.get(PAGE).status_code == 404, name
        token = b.csrf("/")
        r = ask(b, {"csrf": token, **fields()})
        assert r.status_code == 404 and "Project not found" in r.text, name
        assert "alpha" not in r.text.split("<main", 1)[1], name  # nothing about the project leaks
    assert len(requests_of(runtime)) == 2 and len(stored(runtime)) == 2


def test_a_form_without_the_right_csrf_token_stores_nothing(as_, runtime):
    scientist = as_("scientist")
    other = as_("checker")
    for token in (None, "", "wrong", scientist.session, other.csrf(PAGE)):
        data = fields() if token is None else {"csrf": token, **fields()}
        r = strict(scientist.http.post(PAGE, data=data, files={"file": ("a.csv", CODES, "text/csv")}))
        assert r.status_code == 403 and "This form has expired" in r.text, token
    # The token after the file is not read before it: the file is not read without one.
    body = browser_body({}, "a.csv", CODES)[: -len(f"--{BOUNDARY}--\r\n")]
    body += part("csrf", scientist.csrf(PAGE))
    assert raw_post(scientist, body).status_code == 403
    assert requests_of(runtime) == [] and stored(runtime) == []


def test_every_import_page_has_its_permission_and_forms_check_csrf(app):
    from tests.routes import _calls, api_routes

    from sanctum.access.permissions import Permission
    from sanctum.api.deps import InProject
    from sanctum.web.pages_imports import UploadPage
    from sanctum.web.session import ProjectPage, web_principal

    seen = {}
    for route in api_routes(app):
        if not route.path.startswith("/projects/{project}/imports"):
            continue
        calls = list(_calls(route.dependant))
        (guard,) = [c for c in calls if isinstance(c, InProject)]
        assert isinstance(guard, ProjectPage)
        for method in route.methods - {"HEAD"}:
            seen[(method, route.path)] = guard.permission
            if method != "GET":
                assert web_principal in calls, route.path
    assert isinstance(
        next(
            c
            for r in api_routes(app)
            if r.path == "/projects/{project}/imports" and "POST" in r.methods
            for c in _calls(r.dependant)
            if isinstance(c, InProject)
        ),
        UploadPage,
    )
    assert seen == {
        ("GET", "/projects/{project}/imports"): Permission.AIRLOCK_READ,
        ("POST", "/projects/{project}/imports"): Permission.IMPORTS_REQUEST,
        ("POST", "/projects/{project}/imports/{number}/withdraw"): Permission.IMPORTS_REQUEST,
        ("POST", "/projects/{project}/imports/{number}/approve"): Permission.IMPORTS_APPROVE,
        ("POST", "/projects/{project}/imports/{number}/reject"): Permission.IMPORTS_APPROVE,
    }


# --------------------------------------------------------------------------- bad input


def _refused(r, status: int, message: str, typed: str = REASON) -> None:
    assert r.status_code == status, (r.status_code, r.text[-2000:])
    assert message in r.text, r.text[-2000:]
    escaped = typed.replace("<", "&lt;").replace(">", "&gt;")
    assert f">{escaped}</textarea>" in r.text, "the form keeps the typed justification"


def test_bad_forms_are_refused_on_the_page_and_store_nothing(as_, runtime):
    scientist = as_("scientist")
    secret = b"SECRET-CONTENT-7f3a"
    _refused(ask(scientist, fields(), file=None), 422, "Choose the file to bring in.")
    token = scientist.csrf(PAGE)
    no_choice = browser_body({"csrf": token, **fields()}, "", b"")
    _refused(raw_post(scientist, no_choice), 422, "Choose the file to bring in.")
    _refused(ask(scientist, fields(), ("empty.csv", b"")), 422, "The file is empty.")
    bad_name = ask(scientist, fields("Bad Name!"), ("a.csv", secret))
    _refused(bad_name, 422, "Invalid dataset name")
    assert 'value="Bad Name!"' in bad_name.text and secret.decode() not in bad_name.text
    bad_path = ask(scientist, fields(name="../up.csv"))
    _refused(bad_path, 422, "has an empty, &#39;.&#39; or &#39;..&#39; segment")
    assert 'value="../up.csv"' in bad_path.text
    _refused(ask(scientist, fields(justification="  ")), 422, "Justification must not be empty", typed="  ")
    control = "line\x07bell"
    r = ask(scientist, fields(justification=control))
    assert r.status_code == 422 and "control characters" in r.text
    assert requests_of(runtime) == [] and stored(runtime) == []
    assert events(runtime, "import.") == []


def test_an_oversize_file_is_refused_before_anything_is_stored(as_, runtime, monkeypatch):
    monkeypatch.setattr("sanctum.web.pages_imports.import_rules", lambda *_: ImportRules(max_bytes=1024))
    scientist = as_("scientist")
    assert "of at most 1.0 KiB" in scientist.get(PAGE).text
    for size in (1025, 200 * 1024):  # just over (by its exact size) and far over (by Content-Length)
        r = ask(scientist, fields(), ("big.csv", b"x" * size))
        _refused(r, 413, "The file is larger than the import limit of 1.0 KiB.")
    assert requests_of(runtime) == [] and stored(runtime) == []
    assert ask(scientist, fields(), ("fits.csv", b"y" * 1024)).status_code == 303  # the limit itself fits
    # A body without a length is counted as it streams: refused at the limit, the draft withdrawn.
    token = scientist.csrf(PAGE)
    body = browser_body({"csrf": token, **fields()}, "chunked.csv", b"z" * 5000)
    r = raw_post(scientist, iter([body[:3000], body[3000:]]))
    _refused(r, 413, "larger than the limit of 1024 bytes")
    assert [s for _, s, _ in requests_of(runtime)] == ["pending", "withdrawn"] and len(stored(runtime)) == 1
    (event,) = events(runtime, "import.withdraw")
    assert "the upload did not complete" in event.details


def test_a_dicom_file_is_refused_and_the_attempt_stays_on_record(as_, runtime):
    dicom = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    scientist = as_("scientist")
    r = ask(scientist, fields(), ("notes.txt", dicom))  # renamed, still DICOM
    _refused(r, 422, "de-identification")
    assert requests_of(runtime) == [(1, "withdrawn", None)] and stored(runtime) == []
    assert [e.action for e in events(runtime, "import.")] == ["import.create", "import.withdraw"]
    assert "Withdrawn" in r.text and "the upload did not complete" in r.text


def test_malformed_and_cut_short_bodies_store_nothing(as_, runtime):
    scientist = as_("scientist")
    token = scientist.csrf(PAGE)
    cut = browser_body({"csrf": token, **fields()}, "cut.csv", CODES * 2000, close=False)
    r = raw_post(scientist, cut)
    _refused(r, 422, "The upload was interrupted; nothing was stored.")
    assert requests_of(runtime) == [(1, "withdrawn", None)]
    two = browser_body({"csrf": token, **fields()}, "a.csv", CODES)[: -len(f"--{BOUNDARY}--\r\n")]
    two += part("more", "xx", filename="b.csv")
    _refused(raw_post(scientist, two), 422, "Send one file at a time.")
    garbage = raw_post(scientist, b"this is not multipart at all")
    assert garbage.status_code == 422 and "could not be read" in garbage.text
    long_fields = {"csrf": token, **fields(justification="j" * (70 * 1024))}
    assert ask(scientist, long_fields).status_code == 413
    assert requests_of(runtime) == [(1, "withdrawn", None)] and stored(runtime) == []


def test_a_browser_that_goes_away_mid_upload_leaves_no_file(live_server, people, runtime, world):
    cookie, csrf = _session(people, runtime, world.scientist)
    head = browser_body({"csrf": csrf, **fields()}, "big.bin", b"", close=False)
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            (
                f"POST {PAGE} HTTP/1.1\r\nHost: x\r\nCookie: {SESSION_COOKIE}={cookie}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                f"Content-Length: {len(head) + 1_000_000}\r\n\r\n"
            ).encode()
            + head
            + b"y" * 300_000
        )
        time.sleep(0.5)
    deadline = time.time() + 10
    while requests_of(runtime) != [(1, "withdrawn", None)] and time.time() < deadline:
        time.sleep(0.1)
    assert requests_of(runtime) == [(1, "withdrawn", None)] and stored(runtime) == []
    (event,) = events(runtime, "import.withdraw")
    assert "the upload was interrupted" in event.details


# --------------------------------------------------------------------------- a killed server


def _session(people, runtime, person) -> tuple[str, str]:
    secret = people.token(person, kind=TokenKind.SESSION)
    with runtime.db.session(write=False) as db:
        csrf = db.scalar(
            select(Token.csrf_secret).where(Token.kind == TokenKind.SESSION).order_by(Token.id.desc())
        )
    return secret, csrf


def test_a_server_killed_mid_upload_leaves_no_file_and_a_draft_to_withdraw(settings, people, runtime, world):
    """SIGKILL while the form's file streams: no blob, no half-written file after the restart;
    the request stays a draft its requester sees and withdraws."""
    cookie, csrf = _session(people, runtime, world.scientist)
    port = free_port()
    head = browser_body({"csrf": csrf, **fields()}, "big.bin", b"", close=False)
    total = 64 * 1024 * 1024
    proc = _serve(settings, port)
    try:
        sent = threading.Event()

        def upload() -> None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(
                    (
                        f"POST {PAGE} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {SESSION_COOKIE}={cookie}\r\n"
                        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                        f"Content-Length: {len(head) + total + 64}\r\n\r\n"
                    ).encode()
                    + head
                )
                for _ in range(8):
                    s.sendall(b"x" * (1024 * 1024))
                sent.set()
                time.sleep(30)  # the server dies while waiting for the rest

        thread = threading.Thread(target=upload, daemon=True)
        thread.start()
        assert sent.wait(30)
        deadline = time.time() + 10
        while not list((settings.data_dir / "blobs" / "tmp").glob("*.part")) and time.time() < deadline:
            time.sleep(0.1)
        assert list((settings.data_dir / "blobs" / "tmp").glob("*.part")), "the file should be streaming"
        assert requests_of(runtime) == [(1, "draft", None)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = _serve(settings, port)  # start-up removes what the dead process left
    try:
        assert stored(runtime) == []
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Cookie": f"{SESSION_COOKIE}={cookie}"}
        ) as c:
            page = c.get(PAGE).text
            assert "Draft" in page and "Withdraw import 1" in page
            r = c.post(f"{PAGE}/1/withdraw", data={"csrf": csrf, "reason": "the server stopped"})
            assert r.status_code == 303
        assert requests_of(runtime) == [(1, "withdrawn", None)]
    finally:
        proc.terminate()
        proc.wait(10)
