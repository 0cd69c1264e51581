"""The ingest page's upload: raw patient files are read into memory, never spooled to disk.

Starlette's ``request.form()`` would spool each file over 1 MiB to a temporary file in plaintext;
these tests make that parser and every ``tempfile`` constructor raise and still upload. They also
feed the body in chunks straight to the app (``Pulled`` counts the chunks the app asked for), to
see that a refused CSRF token or role, or an oversize body, stops the reading early.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Iterable

import httpx
import pydicom
import pytest
import sqlalchemy as sa
from tests.test_web import BASE, Browser, strict
from tests.test_web_ingest import PAGES, login, sessions, zip_of

from ingest_helpers import dicom_bytes
from sanctum.ingest.models import IngestSource

BOUNDARY = "----sanctumingestboundary5Qx8Lm"
CHUNK = 16 * 1024


@pytest.fixture
def owner(app, world) -> Browser:
    return login(app, world.owner)


def big_dicom(p: int, rows: int, columns: int) -> bytes:
    """A CT instance of patient ``p`` with ``rows`` x ``columns`` random 16-bit pixels."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(p, 0)[0]))
    ds.Rows, ds.Columns = rows, columns
    ds.PixelData = os.urandom(rows * columns * 2)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def form_body(fields: dict[str, str], files: Iterable[tuple[str, bytes]], *, close: bool = True) -> bytes:
    """A multipart body shaped as a browser sends it: the fields in page order, then the files."""
    out = b""
    for name, value in fields.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for filename, data in files:
        out += (
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    return out + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def typed(b: Browser, **more: str) -> dict[str, str]:
    return {"csrf": b.csrf("/me/2fa"), "dataset": "scans", "kind": "files", "dates": "shift", **more}


def raw_post(b: Browser, body: bytes):
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return strict(b.http.post(PAGES, content=body, headers=headers))


class Pulled:
    """The app, counting the body chunks it asked for; after ``cut_after`` the client is gone."""

    def __init__(self, app, cut_after: int | None = None) -> None:
        self.app, self.cut_after, self.pulled = app, cut_after, 0

    async def __call__(self, scope, receive, send) -> None:
        async def counted():
            if self.cut_after is not None and self.pulled >= self.cut_after:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request" and message.get("body"):
                self.pulled += 1
            return message

        await self.app(scope, counted, send)


def chunked_post(app, b: Browser, body: bytes, *, declare: bool = True, cut_after: int | None = None):
    """Post ``body`` in 16 KiB chunks, with or without a Content-Length; (response, chunks pulled)."""
    counting = Pulled(app, cut_after)

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(body), CHUNK):
            yield body[at : at + CHUNK]

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=counting)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, cookies=b.http.cookies) as http:
            headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
            if declare:
                headers["content-length"] = str(len(body))
            return await http.post(PAGES, content=chunks(), headers=headers)

    return asyncio.run(go()), counting.pulled


def outcomes(runtime) -> list[tuple[str, int]]:
    with runtime.db.session(write=False) as db:
        rows = db.execute(sa.select(IngestSource.outcome, IngestSource.size).order_by(IngestSource.id))
        return [tuple(r) for r in rows]


def chunks_in(body: bytes) -> int:
    return -(-len(body) // CHUNK)


# --------------------------------------------------------------------------- happy paths


def test_a_multi_mib_file_is_read_in_memory_never_spooled(app, client, world, runtime, owner, monkeypatch):
    """With Starlette's form parser and every temporary file made to fail, a 3 MiB DICOM uploads
    and is stored whole (its pixels byte for byte)."""
    import tempfile

    import starlette.formparsers

    large = big_dicom(1, 1024, 1536)
    assert len(large) > 3 * 1024 * 1024
    fields = typed(owner)

    def refuse(*_a, **_k):
        raise AssertionError("the ingest upload must not be spooled")

    monkeypatch.setattr("starlette.requests.Request.form", refuse)
    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)
    # the trap is armed: a form FastAPI parses (for its Form() parameters) cannot be read
    armed = owner.post(f"{PAGES}/1/quarantine/1/masks", {"csrf": fields["csrf"], "x": "1"})
    assert armed.status_code == 400 and "Bad request" in armed.text

    r = raw_post(owner, form_body(fields, [("Quux Zebulon1/big.dcm", large)]))
    assert r.status_code == 303, r.text[-2000:]
    r = chunked_post(app, owner, form_body(typed(owner), [("again.dcm", big_dicom(2, 1024, 1536))]))[0]
    assert r.status_code == 303, r.text[-2000:]
    monkeypatch.undo()

    assert [o for o, _ in outcomes(runtime)] == ["stored", "stored"]
    assert outcomes(runtime)[0][1] == len(large)
    h = world.h["owner"]
    (entry,) = client.get("/api/v1/projects/alpha/datasets/scans/versions/1/files", headers=h).json()
    got = client.get(f"/api/v1/projects/alpha/datasets/scans/versions/1/files/{entry['path']}", headers=h)
    stored = pydicom.dcmread(io.BytesIO(got.content))
    assert stored.PixelData == pydicom.dcmread(io.BytesIO(large)).PixelData
    assert "Zebulon" not in str(stored.PatientName)


def test_several_files_and_a_zip_in_one_post(app, runtime, owner):
    archive = zip_of({f"Quux Zebulon3/{i}.dcm": dicom_bytes(3, i)[0] for i in range(2)})
    files = [("one.dcm", dicom_bytes(4, 0)[0]), ("two.dcm", dicom_bytes(4, 1)[0]), ("export.zip", archive)]
    r = raw_post(owner, form_body(typed(owner), files))
    assert r.status_code == 303, r.text[-2000:]
    assert [o for o, _ in outcomes(runtime)] == ["stored"] * 4
    assert sessions(runtime) == 1
    # A folder picker's many parts, sent in chunks as a socket delivers them.
    folder = [(f"series/{i}.dcm", dicom_bytes(5, i)[0]) for i in range(12)]
    r, _ = chunked_post(app, owner, form_body(typed(owner), folder))
    assert r.status_code == 303, r.text[-2000:]
    assert [o for o, _ in outcomes(runtime)] == ["stored"] * 16


# --------------------------------------------------------------------------- guards


def test_a_missing_or_wrong_csrf_token_is_refused_before_any_file_is_read(app, world, runtime, owner):
    large = os.urandom(2 * 1024 * 1024)
    for token in (None, "", "forged", typed(login(app, world.checker))["csrf"]):
        fields = {k: v for k, v in typed(owner).items() if k != "csrf"}
        if token is not None:
            fields = {"csrf": token, **fields}
        body = form_body(fields, [("a.dcm", large)])
        r, pulled = chunked_post(app, owner, body)
        assert r.status_code == 403 and "This form has expired" in r.text, token
        assert pulled == 1 < chunks_in(body), token  # the fields' chunk only
    # a token sent after the files is never reached
    token = typed(owner)["csrf"]
    body = form_body({"dataset": "scans"}, [("a.dcm", large)], close=False)
    body += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{token}\r\n'.encode()
    body += f"--{BOUNDARY}--\r\n".encode()
    assert raw_post(owner, body).status_code == 403
    assert sessions(runtime) == 0


def test_the_permission_matrix_is_checked_before_any_file_is_read(app, world, runtime, owner):
    body_of = lambda b: form_body(typed(b), [("a.dcm", dicom_bytes(6, 0)[0] + os.urandom(512 * 1024))])  # noqa: E731
    scientist = login(app, world.scientist)  # a member without data:import
    r, pulled = chunked_post(app, scientist, body := body_of(scientist))
    assert r.status_code == 403 and pulled == 1 < chunks_in(body)
    assert "This form has expired" not in r.text  # its token was good: refused for the role
    outsider = login(app, world.outsider)  # not a member: the project does not exist for them
    token = outsider.csrf("/me/2fa")
    fields = {"csrf": token, "dataset": "scans"}
    r, pulled = chunked_post(app, outsider, form_body(fields, [("a.dcm", os.urandom(512 * 1024))]))
    assert r.status_code == 404 and pulled == 1
    other = login(app, world.other_owner)  # an owner of beta, posting to alpha
    fields = {"csrf": other.csrf("/me/2fa"), "dataset": "scans"}
    r, pulled = chunked_post(app, other, form_body(fields, [("a.dcm", os.urandom(512 * 1024))]))
    assert r.status_code == 404 and pulled == 1
    assert sessions(runtime) == 0
    r, _ = chunked_post(app, owner, body_of(owner))
    assert r.status_code == 303 and sessions(runtime) == 1


def test_the_upload_route_is_guarded_by_the_streaming_guard(app):
    from tests.routes import _calls, api_routes

    from sanctum.access.permissions import Permission
    from sanctum.api.deps import InProject
    from sanctum.web.pages_ingest import IngestUploadPage, upload_form
    from sanctum.web.session import web_principal

    (route,) = [r for r in api_routes(app) if r.path == "/projects/{project}/ingests" and "POST" in r.methods]
    calls = list(_calls(route.dependant))
    (guard,) = [c for c in calls if isinstance(c, InProject)]
    assert isinstance(guard, IngestUploadPage) and guard.permission == Permission.DATA_IMPORT
    assert web_principal in calls and upload_form in calls
    assert not route.dependant.body_params  # no Form()/File() parameter: FastAPI would parse the form


# --------------------------------------------------------------------------- bad input


def test_an_oversize_upload_is_refused_on_the_page_and_nothing_is_stored(app, runtime, owner, monkeypatch):
    limit = 256 * 1024
    monkeypatch.setattr("sanctum.api.routes.ingest.batch_limit", lambda _settings: limit)
    fields = typed(owner, dataset="scans-big", kind="table", dates="remove")
    body = form_body(fields, [("big.dcm", big_dicom(7, 512, 512))])  # 512 KiB of pixels
    for r in (raw_post(owner, body), chunked_post(app, owner, body)[0]):  # by Content-Length
        assert r.status_code == 422 and "larger than the ingest limit; use the CLI" in r.text
        assert 'value="scans-big"' in r.text
        assert '<option value="table" selected>' in r.text and '<option value="remove" selected>' in r.text
    # without a length: counted as it arrives, and no more is read once past the limit
    r, pulled = chunked_post(app, owner, body, declare=False)
    assert r.status_code == 422 and "larger than the ingest limit" in r.text
    assert pulled <= limit // CHUNK + 1 < chunks_in(body)
    # several files that add up to more than the limit
    two = [("a.dcm", big_dicom(7, 256, 300)), ("b.dcm", big_dicom(8, 256, 300))]  # 150 KiB each
    r = chunked_post(app, owner, form_body(fields, two), declare=False)[0]
    assert r.status_code == 422 and "larger than the ingest limit" in r.text
    assert sessions(runtime) == 0 and outcomes(runtime) == []
    # one that fits goes in
    r = raw_post(owner, form_body(typed(owner), [("fits.dcm", big_dicom(9, 256, 400))]))
    assert r.status_code == 303, r.text[-2000:]


def test_bad_forms_are_refused_on_the_page_with_what_was_typed(runtime, owner, monkeypatch):
    one = ("a.dcm", dicom_bytes(10, 0)[0])
    fields = typed(owner, dataset="scans-typed", dates="keep")
    # no file chosen: a browser sends one part with an empty file name
    r = raw_post(owner, form_body(fields, [("", b"")]))
    assert r.status_code == 422 and "Choose one or more files" in r.text
    assert 'value="scans-typed"' in r.text and '<option value="keep" selected>' in r.text
    r = raw_post(owner, form_body(fields, []))
    assert r.status_code == 422 and "Choose one or more files" in r.text
    r = raw_post(owner, form_body({**fields, "dataset": ""}, [one]))
    assert r.status_code == 422 and "Name the dataset" in r.text
    r = raw_post(owner, form_body({**fields, "dataset": "x" * 201}, [one]))
    assert r.status_code == 422 and "longer than 200 characters" in r.text
    r = raw_post(owner, form_body(fields, [("broken.zip", b"PK\x03\x04 not really")]))
    assert r.status_code == 422 and "not a readable tar or zip" in r.text
    # cut short before the closing boundary: an interrupted upload, not fewer files
    r = raw_post(owner, form_body(fields, [one, ("b.dcm", dicom_bytes(10, 1)[0])], close=False))
    assert r.status_code == 422 and "The upload was interrupted" in r.text
    monkeypatch.setattr("sanctum.web.pages_ingest.MAX_FILES", 2)
    r = raw_post(owner, form_body(fields, [one, one, one]))
    assert r.status_code == 422 and "Send at most 2 files at a time" in r.text
    garbage = strict(owner.http.post(PAGES, content=b"not multipart", headers={"content-type": "text/plain"}))
    assert garbage.status_code == 403  # no fields, so no CSRF token
    assert sessions(runtime) == 0 and outcomes(runtime) == []


def test_a_client_gone_mid_upload_stores_nothing(app, runtime, owner):
    body = form_body(typed(owner), [("a.dcm", big_dicom(11, 512, 512))])
    r, pulled = chunked_post(app, owner, body, cut_after=4)
    assert pulled == 4 and r.status_code == 422 and "The upload was interrupted" in r.text
    assert sessions(runtime) == 0 and outcomes(runtime) == []
