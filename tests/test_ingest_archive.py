"""Ingest building blocks without a server: content detection, archive safety, and per-file outcomes.

Archive safety is checked entry by entry (links, unsafe names, bombs, sizes): a bad entry is
refused with a reason and the rest is read. Per-file outcomes come from the worker function itself
(``pipeline.process``): truncated or malformed DICOM, odd transfer syntaxes, CSVs with ragged rows
or the wrong encoding each get a clear error (or, when valid, are stored), never a crash.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pydicom.data
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO

from ingest_helpers import CSV_TEXT, POLICY, dicom_bytes, tar_body
from sanctum.config import load_settings
from sanctum.datasets import tables
from sanctum.deid.profile import Options
from sanctum.deid.pseudonyms import Pseudonymiser
from sanctum.deid.table_policy import dump_policy, load_policy
from sanctum.ingest import archive
from sanctum.ingest.detect import Kind, detect
from sanctum.ingest.pipeline import Processor, WorkItem, WorkSettings, dicom_problem, process
from sanctum.ingest.workers import IngestWorkers

SECRET = b"k" * 32
LIMITS = archive.Limits(max_file_bytes=10 * 1024 * 1024, max_total_bytes=64 * 1024 * 1024, max_ratio=100)
MiB = 1024 * 1024
SAMPLES = Path(pydicom.data.__file__).parent / "test_files"


def settings(*, policy: dict | None = None, table_dataset: bool = False) -> WorkSettings:
    text = dump_policy(load_policy(policy)) if policy is not None else None
    return WorkSettings(SECRET, Options(longitudinal="modified"), "shift", text, table_dataset, 1 << 30)


def run(data: bytes, name: str = "f", **kwargs: object):
    return process(settings(**kwargs), WorkItem(0, name, data, "c" * 64))


def sample(name: str) -> bytes:
    return Path(get_testdata_file(name)).read_bytes()


def bare(data: bytes, *, implicit: bool = True) -> bytes:
    """The dataset of a Part 10 file without preamble and file meta (as old PACS exports write it)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    pydicom.filewriter.write_dataset(out, ds)
    return out.getvalue()


# --------------------------------------------------------------------------- detection


def test_kinds_are_detected_by_content_not_by_name() -> None:
    ct, _ = dicom_bytes(0, 0)
    parquet = io.BytesIO()
    pq.write_table(pa.table({"a": [1]}), parquet)
    assert detect(ct) is Kind.DICOM
    assert detect(bare(ct)) is Kind.DICOM and detect(bare(ct, implicit=False)) is Kind.DICOM
    assert detect(parquet.getvalue()) is Kind.TABLE
    assert detect(CSV_TEXT.encode()) is Kind.TABLE
    assert detect(CSV_TEXT.encode("latin-1") + "é,ü\n".encode("latin-1")) is Kind.TABLE  # told apart later
    edf = Path(__import__("pyedflib").__file__).parent / "data" / "test_generator.edf"
    assert detect(edf.read_bytes()) is Kind.EDF
    for other in (os.urandom(4096), b"", b"just some words without delimiters\n", tar_body({"a": b"1"})):
        assert detect(other) is Kind.UNKNOWN
    result = run(tar_body({"a": b"1"}), "nested.tar")
    assert result.outcome == "error" and "archive inside the upload is not opened" in result.reasons[0]


# --------------------------------------------------------------------------- archives


def _zip(entries: list[tuple[str, bytes]], *, symlink: str | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.create_system = 3
            info.external_attr = (0o120777) << 16
            zf.writestr(info, "/etc/passwd")
    return out.getvalue()


def test_zip_entries_are_checked_one_by_one_and_bombs_refused(tmp_path: Path) -> None:
    good = [("ok/a.dcm", b"a" * 100), ("./ok/b.csv", b"x,y\n1,2\n")]
    unsafe = [("../escape.txt", b"x"), ("/abs/path", b"x"), ("C:/win.txt", b"x"), ("a\\b.txt", b"x")]
    bomb = ("bomb.bin", b"\0" * (20 * MiB))  # deflates ~1000:1, and is larger than the file limit too
    small_bomb = ("zeros.bin", b"\0" * (5 * MiB))  # under the file limit, over the ratio
    body = _zip([*good, *unsafe, bomb, small_bomb, ("ok/a.dcm", b"again")], symlink="link")
    path = tmp_path / "upload.zip"
    path.write_bytes(body)
    with archive.walk(path, LIMITS) as listing:
        assert [e.path for e in listing.entries] == ["ok/a.dcm", "ok/b.csv"]
        assert [archive.read_entry(e, LIMITS.max_file_bytes) for e in listing.entries] == [
            b"a" * 100,
            b"x,y\n1,2\n",
        ]
        reasons = {r.path: r.reason for r in listing.refusals}
    for name, _ in unsafe:
        assert reasons[name].startswith("unsafe name")
    assert "per-file limit" in reasons["bomb.bin"]
    assert "expands more than 100 times" in reasons["zeros.bin"]
    assert "symbolic link" in reasons["link"]
    assert "appears twice" in reasons["ok/a.dcm"]
    files, refused = archive.read_batch(body, LIMITS)  # the server applies the same rules
    assert [name for name, _ in files] == ["ok/a.dcm", "ok/b.csv"]
    assert {r.path for r in refused} == set(reasons)


def test_tar_links_devices_and_decompression_bombs_are_refused(tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for name, kind in (("sym", tarfile.SYMTYPE), ("hard", tarfile.LNKTYPE), ("fifo", tarfile.FIFOTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/shadow"
            tf.addfile(info)
        for i in range(12):  # 12 × 8 MiB of zeros: ~96 MiB from a few hundred KiB
            info = tarfile.TarInfo(f"zeros{i:02}.bin")
            info.size = 8 * MiB
            tf.addfile(info, io.BytesIO(b"\0" * info.size))
    body = out.getvalue()
    files, refused = archive.read_batch(body, LIMITS)
    reasons = {r.path: r.reason for r in refused}
    assert (
        "symbolic link" in reasons["sym"] and "hard link" in reasons["hard"] and "device" in reasons["fifo"]
    )
    # members are read until they add up to 100 × the archive (+1 MiB), then reading stops
    assert 0 < len(files) < 12
    assert sum(len(d) for _, d in files) <= LIMITS.max_ratio * len(body) + MiB
    assert "decompression bomb" in reasons[f"zeros{len(files):02}.bin"]
    assert "not read" in reasons["(rest of the archive)"]
    assert len(reasons) == 5  # the bomb was not decompressed to name every member
    (tmp_path / "b.tar.gz").write_bytes(body)
    with archive.walk(tmp_path / "b.tar.gz", LIMITS) as listing:
        assert len(listing.entries) == len(files) and len(listing.refusals) == 5


def test_a_folder_walk_refuses_links_and_oversized_files(tmp_path: Path) -> None:
    root = tmp_path / "export"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.dcm").write_bytes(b"a")
    (root / "big.bin").write_bytes(b"b" * (LIMITS.max_file_bytes + 1))
    (root / "link.dcm").symlink_to(tmp_path / "outside.txt")
    (root / "dirlink").symlink_to(tmp_path)
    os.mkfifo(root / "pipe")
    with archive.walk(root, LIMITS) as listing:
        assert [e.path for e in listing.entries] == ["sub/a.dcm"]
        reasons = {r.path: r.reason for r in listing.refusals}
    assert "symbolic link" in reasons["link.dcm"] and "symbolic link" in reasons["dirlink"]
    assert "device, pipe" in reasons["pipe"] and "per-file limit" in reasons["big.bin"]


def test_batches_round_trip_and_garbage_is_refused_whole() -> None:
    files = [("a/b.dcm", b"1" * 10), ("c.csv", b"")]
    assert archive.read_batch(archive.pack_batch(files), LIMITS) == (files, [])
    with pytest.raises(archive.ArchiveError, match="not a readable tar or zip"):
        archive.read_batch(b"this is not an archive" * 100, LIMITS)


# --------------------------------------------------------------------------- per-file outcomes


def test_bad_dicom_gets_a_clear_error_and_valid_odd_encodings_are_stored() -> None:
    ct, _ = dicom_bytes(0, 0)
    for cut in (700, 5000, len(ct) - 2000, len(ct) - 1):
        result = run(ct[:cut])
        assert result.outcome == "error" and result.output is None, cut
        assert result.reasons[0].startswith(("truncated", "an image without pixel data", "cannot")), (
            result.reasons
        )
    name_tag, id_tag = b"\x10\x00\x10\x00PN", b"\x10\x00\x20\x00LO"
    assert name_tag in ct and id_tag in ct
    for wrong in (ct.replace(name_tag, name_tag[:4] + b"US"), ct.replace(id_tag, id_tag[:4] + b"ZZ")):
        result = run(wrong)  # a name stored as numbers, an ID with a VR that does not exist
        assert result.outcome in ("stored", "error"), result.reasons
        if result.outcome == "error":
            assert result.reasons[0].startswith(("cannot", "truncated")), result.reasons
        else:  # whatever the VR claims, the identifying value must be gone
            assert b"Zebulon0" not in result.output and b"MRNZ884420" not in result.output
    for data in (bare(ct), sample("MR_small_bigendian.dcm"), sample("image_dfl.dcm")):
        result = run(data)
        assert result.outcome in ("stored", "quarantined") and result.output, result.reasons
        assert pydicom.dcmread(io.BytesIO(result.output)).PatientIdentityRemoved == "YES"
    fragment = run(sample("no_meta.dcm"))  # a dataset fragment with a stray byte in front
    assert fragment.outcome == "error" and fragment.reasons
    no_sop = pydicom.dcmread(io.BytesIO(ct))
    del no_sop.SOPInstanceUID
    out = io.BytesIO()
    no_sop.save_as(out)
    assert run(out.getvalue()).reasons == ["no SOPInstanceUID: not a composite DICOM instance"]


def test_tables_are_fail_closed_and_keep_leading_zeros() -> None:
    missing = run(CSV_TEXT.encode(), "visits.csv")
    assert missing.outcome == "error" and "column policy" in missing.reasons[0]
    unknown = run(
        CSV_TEXT.encode(),
        "visits.csv",
        policy={**POLICY, "columns": {"patient_id": {"action": "drop"}, "hba1c": {"action": "keep"}}},
    )
    assert unknown.outcome == "error" and "is not in the policy" in unknown.reasons[0]
    ragged = run((CSV_TEXT + "00789,only,three\n").encode(), "visits.csv", policy=POLICY)
    assert ragged.outcome == "error" and "line 4 has 3 field(s) but the header has 5" in ragged.reasons[0]
    latin = run(
        (CSV_TEXT + "00789,Zoë Quux,MRNZ-3,2021-05-01,5.0\n").encode("latin-1"), "visits.csv", policy=POLICY
    )
    assert latin.outcome == "error" and "not UTF-8" in latin.reasons[0]
    assert "Zo" not in latin.reasons[0]
    good = run(CSV_TEXT.encode(), "exports/visits.csv", policy=POLICY)
    assert good.outcome == "stored" and good.stored_path == "tables/exports/visits.parquet"
    table = tables.from_parquet_bytes(good.output)
    assert table.column_names == ["patient_id", "mrn", "admitted", "hba1c"]
    # "00123" was read as text, so it links with a DICOM PatientID "00123" (not 123)
    assert table.column("patient_id").to_pylist()[0] == Pseudonymiser(SECRET).patient_id("00123")
    as_table = run(CSV_TEXT.encode(), "visits.csv", policy=POLICY, table_dataset=True)
    assert as_table.stored_path == "table.parquet" and as_table.table[1] == 2
    dicom_into_table = run(dicom_bytes(0, 0)[0], "a.dcm", table_dataset=True)
    assert dicom_into_table.outcome == "error" and "files dataset" in dicom_into_table.reasons[0]


class _KillsItsWorker(Processor):
    """A file that kills the process de-identifying it, as a crashing decoder would."""

    def __call__(self, item: WorkItem):
        if item.name == "boom.dcm":
            os._exit(3)
        return super().__call__(item)


def test_a_file_that_kills_its_worker_is_an_error_and_the_batch_goes_on() -> None:
    workers = IngestWorkers(load_settings(None, ingest_workers=1))
    try:
        items = [
            WorkItem(i, name, dicom_bytes(0, i)[0], "c" * 64)
            for i, name in enumerate(("a.dcm", "boom.dcm", "b.dcm"))
        ]
        results = list(workers.run(_KillsItsWorker(settings()), items))
        assert [r.outcome for r in results] == ["stored", "error", "stored"]
        assert results[1].reasons == ["the de-identification worker crashed on this file"]
        assert [r.outcome for r in workers.run(Processor(settings()), items[:1])] == ["stored"]  # a new pool
    finally:
        workers.close()


def test_no_pydicom_sample_is_mistaken_for_truncated_and_odd_ones_get_an_outcome() -> None:
    flagged = set()
    for path in sorted(SAMPLES.glob("*.dcm")):  # the wheel's files (get_testdata_files would download)
        problem, _ = dicom_problem(path.read_bytes())
        if problem and ("truncated" in problem or "pixel data" in problem):
            flagged.add(path.name)
    # the two that are cut short, and a fragment with a stray byte in front
    assert flagged == {"MR_truncated.dcm", "rtplan_truncated.dcm", "no_meta.dcm"}
    expected = {
        "ExplVR_BigEndNoMeta.dcm": "stored",  # bare explicit-VR big-endian dataset
        "MR_small_RLE.dcm": "stored",
        "MR_small_jp2klossless.dcm": "stored",
        "waveform_ecg.dcm": "stored",
        "SC_rgb_rle_2frame.dcm": "quarantined",  # secondary capture: burned-in text likely
        "liver_1frame.dcm": "quarantined",  # the byte scan still finds an original value
        "nested_priv_SQ.dcm": "error",  # no SOP Class/Instance: not a composite instance
        "zipMR.gz": "error",  # an archive inside the upload
    }
    for name, outcome in expected.items():
        result = run((SAMPLES / name).read_bytes(), name)
        assert result.outcome == outcome, (name, result.reasons)
        assert result.outcome == "stored" or result.reasons
        assert (result.output is not None) == (outcome == "stored" or result.stored_path is not None)


def test_the_metadata_row_comes_from_the_de_identified_file() -> None:
    plain = run(dicom_bytes(0, 0)[0])
    row = plain.metadata
    p = Pseudonymiser(SECRET)
    assert row["patient_id"] == p.patient_id("MRNZ884420") and row["study_uid"].startswith("2.25.")
    assert row["modality"] == "CT" and (row["image_rows"], row["image_columns"], row["frames"]) == (
        128,
        128,
        1,
    )
    assert row["manufacturer"] == "GE MEDICAL SYSTEMS"  # the vendor, from the original
    shifted = p.date_offset_days(row["patient_id"])
    assert row["study_date"] == (dt.date(2021, 3, 14) + dt.timedelta(days=shifted)).isoformat()
    assert plain.stored_path == "/".join(
        ("dicom", row["patient_id"], row["study_uid"], row["series_uid"], row["instance_uid"] + ".dcm")
    )
    # a "manufacturer" that carries the patient's name is left empty
    leaky = run(dicom_bytes(0, 1, Manufacturer="Zebulon0 Imaging Ltd")[0])
    assert leaky.outcome == "stored" and leaky.metadata["manufacturer"] is None
