"""Ingest in a real browser (headless Debian Chromium through Playwright, the app under uvicorn): an
owner uploads a zip of DICOM files, one of which is quarantined, reads the report, masks the
quarantined image and releases it into a new version."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pydicom
import pytest
from tests.test_browser_datasets import log_in, no_csp_trouble, open_page

from ingest_helpers import dicom_bytes

pytestmark = pytest.mark.browser


def test_owner_uploads_a_zip_and_releases_the_quarantined_image_masked(
    chromium, live_server, client, world, tmp_path
) -> None:
    from playwright.sync_api import expect

    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Quux Zebulon1/1.dcm", dicom_bytes(1, 0)[0])
        zf.writestr("Quux Zebulon1/2.dcm", dicom_bytes(1, 1)[0])
        zf.writestr("Quux Zebulon1/3.dcm", dicom_bytes(1, 2, BurnedInAnnotation="YES")[0])

    base = live_server.url
    console: list[str] = []
    context, page = open_page(chromium, console)
    log_in(page, base, world.owner, "/projects/alpha/datasets")
    page.get_by_role("navigation", name="Data of alpha").get_by_role("link", name="Ingest").click()
    expect(page).to_have_url(base + "/projects/alpha/ingests")

    page.get_by_label("Dataset", exact=True).fill("scans")
    page.get_by_label("Files, or a .zip / .tar archive").set_input_files(str(archive))
    page.get_by_role("button", name="Ingest", exact=True).click()
    expect(page).to_have_url(re.compile(r"/projects/alpha/ingests/1$"))
    expect(page.get_by_role("heading", name="De-identification report: ingest 1")).to_be_visible()
    counts = page.locator("#ingest-counts")
    expect(counts).to_contain_text("Stored")
    expect(page.locator("#ingest-quarantined")).to_contain_text("Quux Zebulon1/3.dcm")
    expect(page.locator("#ingest-quarantined")).to_contain_text("BurnedInAnnotation is YES")

    page.get_by_role("link", name="Review quarantined files").click()
    preview = page.get_by_role("img", name="Masked preview of Quux Zebulon1/3.dcm")
    expect(preview).to_be_visible()
    assert page.evaluate("(img) => img.naturalWidth", preview.element_handle()) == 128

    page.get_by_label("x", exact=True).fill("0")
    page.get_by_label("y", exact=True).fill("0")
    page.get_by_label("width", exact=True).fill("64")
    page.get_by_label("height", exact=True).fill("16")
    page.get_by_role("button", name="Add rectangle").click()
    expect(page.get_by_role("status")).to_contain_text("Rectangle added")
    expect(page.get_by_text("Masked: 0, 0, 64, 16")).to_be_visible()

    page.get_by_role("button", name=re.compile("Release with 1 rectangle")).click()
    expect(page.get_by_role("status")).to_contain_text("Released")
    expect(page.locator(".decision")).to_contain_text("version 2")
    no_csp_trouble(console)
    context.close()

    # what was released: the masked band is the image's minimum, the rest as the source
    h = world.h["owner"]
    (entry,) = client.get("/api/v1/projects/alpha/datasets/scans/versions/2/files", headers=h).json()
    body = client.get(f"/api/v1/projects/alpha/datasets/scans/versions/2/files/{entry['path']}", headers=h)
    released = pydicom.dcmread(io.BytesIO(body.content)).pixel_array
    source = pydicom.dcmread(io.BytesIO(dicom_bytes(1, 2)[0])).pixel_array
    assert (released[:16, :64] == source.min()).all()
    assert np.array_equal(released[16:], source[16:]) and np.array_equal(released[:, 64:], source[:, 64:])
