"""The SDK's dataset methods against a real server over real HTTP (``live_server``): versions of
files and tables, streamed uploads and downloads, archives, shares, queries and erasure."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import unicodedata
import zipfile
from pathlib import Path

import pytest

from sanctum.accounts.tokens import TokenKind
from sanctum.schemas.datasets import FilePublic
from sanctum.sdk import Client, SanctumAPIError
from sanctum.sdk.upload_plan import UploadError, UploadItem


@pytest.fixture
def owner(as_) -> Client:
    client = as_("owner")
    client.create_dataset("alpha", "scans", description="test files")
    return client


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TREE = {
    "readme.txt": b"hello\n",
    "a/b/c.bin": os.urandom(3 * 1024 * 1024 + 17),  # several chunks, not a multiple of one
    "ünïcode dir/file with spaces.txt": "ßüñ ✓\n".encode(),
    "empty.dat": b"",
}


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def manifest(client: Client, dataset: str = "scans", version: int = 1, project: str = "alpha") -> dict:
    return {f.path: (f.size, f.sha256) for f in client.list_files(project, dataset, version)}


def expected(files: dict[str, bytes]) -> dict:
    return {unicodedata.normalize("NFC", p): (len(d), sha(d)) for p, d in files.items()}


def memory_item(path: str, data: bytes) -> UploadItem:
    return UploadItem(path, len(data), lambda: io.BytesIO(data), path)


def api_error(excinfo: pytest.ExceptionInfo) -> tuple[int, str]:
    return excinfo.value.status, excinfo.value.code


# --------------------------------------------------------------------------- datasets and versions


def test_dataset_version_lifecycle(as_, tmp_path) -> None:
    owner = as_("owner")
    created = owner.create_dataset("alpha", "scans", description="CT scans")
    assert (created.name, created.kind, created.project, created.access, created.latest_version) == (
        "scans", "files", "alpha", "owner", None)
    assert [d.name for d in owner.list_datasets("alpha")] == ["scans"]
    assert owner.get_dataset("alpha", "scans").description == "CT scans"

    draft = owner.create_version("alpha", "scans")
    assert (draft.number, draft.state) == (1, "draft")
    assert owner.list_versions("alpha", "scans") == []
    assert [v.state for v in owner.list_versions("alpha", "scans", drafts=True)] == ["draft"]

    source = tmp_path / "from-disk.bin"
    source.write_bytes(b"x" * 5000)
    sent: list[int] = []
    entries = [
        owner.upload_file("alpha", "scans", 1, "bytes.txt", b"raw bytes"),
        owner.upload_file("alpha", "scans", 1, "dir/from-disk.bin", source, progress=sent.append),
        owner.upload_file("alpha", "scans", 1, "stream.bin", io.BytesIO(b"stream")),
    ]
    assert sum(sent) == 5000
    assert entries[1] == FilePublic(path="dir/from-disk.bin", size=5000, sha256=sha(b"x" * 5000))
    assert owner.get_version("alpha", "scans", 1).state == "draft"

    committed = owner.commit_version("alpha", "scans", 1)
    assert (committed.state, committed.file_count, committed.total_size) == ("committed", 3, 9 + 5000 + 6)
    assert owner.get_dataset("alpha", "scans").latest_version == 1
    assert [f.path for f in owner.list_files("alpha", "scans", 1)] == [
        "bytes.txt", "dir/from-disk.bin", "stream.bin"]

    with pytest.raises(SanctumAPIError) as immutable:
        owner.upload_file("alpha", "scans", 1, "late.txt", b"too late")
    assert api_error(immutable) == (409, "immutable")
    with pytest.raises(SanctumAPIError) as empty:
        owner.commit_version("alpha", "scans", owner.create_version("alpha", "scans").number)
    assert api_error(empty) == (422, "empty_version")
    with pytest.raises(SanctumAPIError) as exists:
        owner.create_dataset("alpha", "scans")
    assert api_error(exists) == (409, "dataset_exists")
    with pytest.raises(SanctumAPIError) as bad_kind:
        owner.create_dataset("alpha", "other", kind="blobs")
    assert api_error(bad_kind) == (422, "invalid_kind")


def test_upload_directory_nested_unicode_and_empty_files(owner, tmp_path, caplog) -> None:
    root = make_tree(tmp_path / "tree", TREE)
    (root / "link.txt").symlink_to(root / "readme.txt")
    (root / "linked-dir").symlink_to(root / "a")
    outside = make_tree(tmp_path / "outside", {"secret.txt": b"not part of the upload"})
    (root / "escape").symlink_to(outside)
    moved: list[int] = []
    with caplog.at_level(logging.WARNING, logger="sanctum.sdk"):
        version = owner.upload_directory("alpha", "scans", root, progress=moved.append)
    assert (version.number, version.state, version.file_count) == (1, "committed", len(TREE))
    assert sum(moved) == sum(len(d) for d in TREE.values())
    assert manifest(owner) == expected(TREE)
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "link.txt (symbolic link)" in warnings and "linked-dir (symbolic link to a folder)" in warnings
    assert "escape" in warnings

    for path, data in TREE.items():
        target = tmp_path / "out" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        assert owner.download_file("alpha", "scans", 1, path, target) == target
        assert target.read_bytes() == data

    again = owner.upload_directory("alpha", "scans", root / "a", prefix="more")
    assert again.number == 2
    assert list(manifest(owner, version=2)) == ["more/b/c.bin"]


def test_paths_the_server_would_refuse_are_refused_before_sending(owner, tmp_path) -> None:
    draft = owner.create_version("alpha", "scans").number
    for bad, reason in [("../up.txt", "'..' segment"), ("/etc/passwd", "relative"),
                        ("a\\b.txt", "backslashes"), ("a\x00b", "NUL"), ("x" * 256, "255 bytes"),
                        ("a//b", "empty"), ("", "empty")]:
        with pytest.raises(UploadError) as refused:
            owner.upload_file("alpha", "scans", draft, bad, b"data")
        assert refused.value.code == "invalid_path" and reason in refused.value.message, refused.value
    assert owner.list_files("alpha", "scans", draft) == []

    owner.upload_file("alpha", "scans", draft, "once.txt", b"1")
    with pytest.raises(SanctumAPIError) as duplicate:
        owner.upload_file("alpha", "scans", draft, "once.txt", b"2")
    assert api_error(duplicate) == (409, "duplicate_path")

    # Local names the server would refuse: nothing is sent, no draft is created.
    backslash = make_tree(tmp_path / "bs", {"ok.txt": b"1", "bad\\name.txt": b"2"})
    with pytest.raises(UploadError, match=r"bad\\name.txt: file path must use '/'"):
        owner.upload_directory("alpha", "scans", backslash)
    nfc, nfd = unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")
    twins = make_tree(tmp_path / "twins", {nfc: b"1", nfd: b"2"})
    with pytest.raises(UploadError) as twin:
        owner.upload_directory("alpha", "scans", twins)
    assert twin.value.code == "duplicate_path"
    with pytest.raises(UploadError) as nothing:
        owner.upload_directory("alpha", "scans", make_tree(tmp_path / "void", {}))
    assert nothing.value.code == "empty_upload"
    assert [v.number for v in owner.list_versions("alpha", "scans", drafts=True)] == [draft]


def test_a_failing_file_leaves_the_version_an_uncommitted_draft(owner, tmp_path) -> None:
    class Shrinking(io.BytesIO):
        """A file that changed while uploading: shorter than announced."""

    items = [
        UploadItem("first.txt", 5, lambda: io.BytesIO(b"first"), "first.txt"),
        UploadItem("second.txt", 100, lambda: Shrinking(b"only 17 bytes now"), "/data/second.txt"),
        UploadItem("third.txt", 5, lambda: io.BytesIO(b"third"), "third.txt"),
    ]
    with pytest.raises(UploadError) as failed:
        owner.upload_items("alpha", "scans", items)
    assert failed.value.code == "source_changed"
    assert failed.value.message.startswith("/data/second.txt (version 1 left uncommitted): the source ended "
                                           "after 17 of 100 bytes")
    assert owner.list_versions("alpha", "scans") == []
    (draft,) = owner.list_versions("alpha", "scans", drafts=True)
    assert draft.state == "draft"
    assert [f.path for f in owner.list_files("alpha", "scans", 1)] == ["first.txt"]  # nothing half-written

    # The server refusing a file: a table version holds one table.
    owner.create_dataset("alpha", "visits", kind="table")
    tables = make_tree(tmp_path / "tables", {"a.csv": b"id\n1\n", "b.csv": b"id\n2\n"})
    with pytest.raises(SanctumAPIError) as refused:
        owner.upload_directory("alpha", "visits", tables)
    assert api_error(refused) == (409, "duplicate_path")
    assert refused.value.message == (f"{tables}/b.csv (version 1 left uncommitted): "
                                     "a table version holds one table; create a new version")
    assert owner.get_dataset("alpha", "visits").latest_version is None


def test_table_dataset_upload_and_query(as_) -> None:
    owner, scientist = as_("owner"), as_("scientist")
    owner.create_dataset("alpha", "clinical-visits", kind="table")
    csv = b"id,age,site\n" + b"".join(b"%d,%d,s%d\n" % (i, 20 + i, i % 3) for i in range(50))
    version = owner.upload_items("alpha", "clinical-visits", [memory_item("visits.csv", csv)])
    assert (version.row_count, [c["name"] for c in version.table_schema]) == (50, ["id", "age", "site"])
    assert [f.path for f in owner.list_files("alpha", "clinical-visits", 1)] == ["table.parquet"]

    result = owner.query("alpha", "select count(*) as n, max(age) as oldest from clinical_visits")
    assert (result.columns, result.rows, result.truncated) == (["n", "oldest"], [[50, 69]], False)
    capped = owner.query("alpha", "select id from clinical_visits order by id", max_rows=7)
    assert (capped.row_count, capped.truncated, capped.row_limit) == (7, True, 7)

    owner.update_project_settings("alpha", query_row_limit=10)
    seen = scientist.query("alpha", "select * from clinical_visits")
    assert (seen.row_count, seen.truncated, seen.row_limit) == (10, True, 10)
    assert scientist.query("alpha", "select * from clinical_visits", max_rows=100).row_limit == 10

    with pytest.raises(SanctumAPIError) as passwd:
        scientist.query("alpha", "select * from read_csv('/etc/passwd')")
    assert api_error(passwd) == (422, "invalid_query")
    with pytest.raises(SanctumAPIError) as settings:
        scientist.update_project_settings("alpha", query_row_limit=1000)
    assert settings.value.status == 403
    with pytest.raises(SanctumAPIError) as zero:
        owner.update_project_settings("alpha", query_row_limit=0)
    assert api_error(zero) == (422, "invalid_input")


# --------------------------------------------------------------------------- archives


def zip_of(path: Path, entries: dict[str, bytes], *, mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.create_system, info.external_attr = 3, mode << 16
            zf.writestr(info, data)
    return path


def tar_of(path: Path, entries: dict[str, bytes], *, extra: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra:
            tf.addfile(info)
    return path


def test_zip_and_tar_uploads_stream_their_entries(owner, tmp_path) -> None:
    entries = {"./notes/ünï code.txt": "ü\n".encode(), "data/big.bin": os.urandom(2 * 1024 * 1024 + 3),
               "data/empty": b"", "data/": b""}
    files = {"notes/ünï code.txt": entries["./notes/ünï code.txt"], "data/big.bin": entries["data/big.bin"],
             "data/empty": b""}
    version = owner.upload_archive("alpha", "scans", zip_of(tmp_path / "batch.zip", entries))
    assert (version.number, version.file_count) == (1, 3)
    assert manifest(owner) == expected(files)

    tar_entries = {k: v for k, v in entries.items() if not k.endswith("/")}
    dirinfo = tarfile.TarInfo("data")
    dirinfo.type = tarfile.DIRTYPE
    version = owner.upload_archive("alpha", "scans", tar_of(tmp_path / "batch.tar.gz", tar_entries,
                                                            extra=[dirinfo]), prefix="batch-2")
    assert version.number == 2
    assert manifest(owner, version=2) == expected({f"batch-2/{p}": d for p, d in files.items()})


def _nul_zip(path: Path) -> Path:
    """zipfile cannot write a NUL in a name; patch one into both headers."""
    zip_of(path, {"ok.txt": b"fine", "evilXname.txt": b"bad"})
    path.write_bytes(path.read_bytes().replace(b"evilXname", b"evil\x00name"))
    return path


def _special(kind: bytes, name: str = "link", target: str = "/etc/passwd") -> list[tarfile.TarInfo]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return [info]


UNSAFE = {
    "zip-dotdot": lambda p: zip_of(p / "x.zip", {"ok.txt": b"1", "../../evil.sh": b"2"}),
    "zip-nested-dotdot": lambda p: zip_of(p / "x.zip", {"ok.txt": b"1", "a/../../evil.sh": b"2"}),
    "zip-absolute": lambda p: zip_of(p / "x.zip", {"ok.txt": b"1", "/etc/cron.d/evil": b"2"}),
    "zip-drive": lambda p: zip_of(p / "x.zip", {"ok.txt": b"1", "C:/Windows/evil.dll": b"2"}),
    "zip-backslash": lambda p: zip_of(p / "x.zip", {"ok.txt": b"1", "..\\..\\evil.sh": b"2"}),
    "zip-nul": lambda p: _nul_zip(p / "x.zip"),
    "zip-symlink": lambda p: zip_of(p / "x.zip", {"ok.txt": b"1", "link": b"/etc/passwd"}, mode=0o120777),
    "tar-dotdot": lambda p: tar_of(p / "x.tar.gz", {"ok.txt": b"1", "../evil.sh": b"2"}),
    "tar-absolute": lambda p: tar_of(p / "x.tar.gz", {"ok.txt": b"1", "/tmp/evil.sh": b"2"}),
    "tar-symlink": lambda p: tar_of(p / "x.tar.gz", {"ok.txt": b"1"}, extra=_special(tarfile.SYMTYPE)),
    "tar-hardlink": lambda p: tar_of(p / "x.tar.gz", {"ok.txt": b"1"}, extra=_special(tarfile.LNKTYPE)),
    "tar-device": lambda p: tar_of(p / "x.tar.gz", {"ok.txt": b"1"}, extra=_special(tarfile.CHRTYPE, "tty")),
    "tar-duplicate": lambda p: tar_of(p / "x.tar.gz", {"ok.txt": b"1", "./ok.txt": b"2"}),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive_entries_are_refused_before_anything_is_sent(owner, tmp_path, case) -> None:
    archive = UNSAFE[case](tmp_path)
    with pytest.raises(UploadError) as refused:
        owner.upload_archive("alpha", "scans", archive)
    code = "duplicate_path" if case == "tar-duplicate" else "unsafe_entry"
    assert refused.value.code == code, refused.value.message
    assert refused.value.message.startswith(("x.zip:", "'x.zip:", "x.tar.gz:")), refused.value.message
    # Decided: no version at all, not even a draft (the listing is checked before the draft exists).
    assert owner.list_versions("alpha", "scans", drafts=True) == []


def test_a_broken_archive_is_a_clear_error(owner, tmp_path) -> None:
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(UploadError) as refused:
        owner.upload_archive("alpha", "scans", broken)
    assert refused.value.code == "bad_archive" and "not a readable archive" in refused.value.message
    assert owner.list_versions("alpha", "scans", drafts=True) == []


# --------------------------------------------------------------------------- downloads


def test_download_checks_sha256_and_supports_ranges(owner, tmp_path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 5)
    owner.upload_items("alpha", "scans", [memory_item("dir/blob.bin", data)])

    into_dir = owner.download_file("alpha", "scans", 1, "dir/blob.bin", tmp_path)
    assert into_dir == tmp_path / "blob.bin" and into_dir.read_bytes() == data
    assert (into_dir.stat().st_mode & 0o777) == 0o600  # sensitive data lands private
    stream = io.BytesIO()
    got: list[int] = []
    assert owner.download_file("alpha", "scans", 1, "dir/blob.bin", stream, progress=got.append) is None
    assert stream.getvalue() == data and sum(got) == len(data)

    part = io.BytesIO()
    owner.download_file("alpha", "scans", 1, "dir/blob.bin", part, byte_range=(1000, 1010))
    assert part.getvalue() == data[1000:1010]
    tail = owner.download_file("alpha", "scans", 1, "dir/blob.bin", tmp_path / "tail.bin",
                               byte_range=(len(data) - 7, None))
    assert tail.read_bytes() == data[-7:]
    with pytest.raises(SanctumAPIError) as outside:
        owner.download_file("alpha", "scans", 1, "dir/blob.bin", io.BytesIO(), byte_range=(len(data), None))
    assert api_error(outside) == (416, "range_not_satisfiable")

    # A body that does not match the manifest: an error, and the target name never appears.
    wrong = FilePublic(path="dir/blob.bin", size=len(data), sha256="0" * 64)
    with pytest.raises(SanctumAPIError) as mismatch:
        owner.download_file("alpha", "scans", 1, "dir/blob.bin", tmp_path / "checked.bin", expected=wrong)
    assert api_error(mismatch) == (502, "checksum_mismatch")
    assert not (tmp_path / "checked.bin").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    with pytest.raises(SanctumAPIError) as missing:
        owner.download_file("alpha", "scans", 1, "no/such.file", tmp_path / "x")
    assert api_error(missing) == (404, "not_found")
    assert not (tmp_path / "x").exists()


def test_scientists_are_sent_to_the_airlock(as_, owner) -> None:
    scientist = as_("scientist")
    owner.upload_items("alpha", "scans", [memory_item("a.txt", b"a")])
    draft = owner.create_version("alpha", "scans").number
    assert [d.name for d in scientist.list_datasets("alpha")] == ["scans"]  # names and manifests: yes
    assert [f.path for f in scientist.list_files("alpha", "scans", 1)] == ["a.txt"]
    with pytest.raises(SanctumAPIError) as create:
        scientist.create_version("alpha", "scans")
    with pytest.raises(SanctumAPIError) as upload:  # larger than socket buffers: the answer still arrives
        scientist.upload_file("alpha", "scans", draft, "big.bin", b"\0" * (8 * 1024 * 1024))
    with pytest.raises(SanctumAPIError) as download:
        scientist.download_file("alpha", "scans", 1, "a.txt", io.BytesIO())
    for refused in (create, upload, download):
        assert refused.value.status == 403 and "airlock" in refused.value.message, refused.value
    assert owner.list_files("alpha", "scans", draft) == []


# --------------------------------------------------------------------------- sharing and erasure


def test_share_accept_use_and_revoke(as_) -> None:
    owner, other = as_("owner"), as_("other_owner")
    owner.create_dataset("alpha", "labs", kind="table")
    csv = b"id,value\n1,10\n2,20\n"
    owner.upload_items("alpha", "labs", [memory_item("labs.csv", csv)])

    share = owner.share_dataset("alpha", "labs", "beta")
    assert (share.dataset, share.source_project, share.target_project, share.access, share.state) == (
        "labs", "alpha", "beta", "read", "pending")
    assert [s.id for s in other.list_shares("beta")] == [share.id]
    assert other.list_datasets("beta") == []
    assert other.accept_share("beta", share.id).state == "accepted"
    (shared,) = other.list_datasets("beta")
    assert (shared.name, shared.project, shared.access, shared.latest_version) == (
        "alpha.labs", "alpha", "read", 1)
    assert other.query("beta", "select sum(value) from alpha__labs").rows == [[30]]
    with pytest.raises(SanctumAPIError) as read_only:
        other.create_version("beta", "alpha.labs")
    assert api_error(read_only) == (403, "read_only_share")
    with pytest.raises(SanctumAPIError) as not_owner:
        other.shred_dataset("beta", "alpha.labs", confirm="labs")
    assert api_error(not_owner) == (422, "not_owner")

    owner.revoke_share("alpha", share.id)
    with pytest.raises(SanctumAPIError) as gone:
        other.get_dataset("beta", "alpha.labs")
    assert api_error(gone) == (404, "not_found")

    again = owner.share_dataset("alpha", "labs", "beta", access="write")
    assert other.decline_share("beta", again.id).state == "declined"
    assert [s.state for s in owner.list_shares("alpha")] == ["revoked", "declined"]
    with pytest.raises(SanctumAPIError) as invalid:
        owner.share_dataset("alpha", "labs", "beta", access="admin")
    assert api_error(invalid) == (422, "invalid_access")


def test_shred_dataset_and_delete_project(as_, live_server) -> None:
    owner = as_("owner")
    owner.create_dataset("alpha", "scans")
    owner.upload_items("alpha", "scans", [memory_item("a.txt", b"abc")])
    with pytest.raises(SanctumAPIError) as wrong:
        owner.shred_dataset("alpha", "scans", confirm="scan")
    assert api_error(wrong) == (422, "confirm")
    assert owner.get_dataset("alpha", "scans").latest_version == 1
    with pytest.raises(SanctumAPIError) as scientist:
        as_("scientist").shred_dataset("alpha", "scans", confirm="scans")
    assert scientist.value.status == 403

    owner.shred_dataset("alpha", "scans", confirm="scans")
    with pytest.raises(SanctumAPIError) as gone:
        owner.get_dataset("alpha", "scans")
    assert api_error(gone) == (404, "not_found")
    assert owner.create_dataset("alpha", "scans").latest_version is None  # the name is free again

    with pytest.raises(SanctumAPIError) as unconfirmed:
        owner.delete_project("alpha", confirm="")
    assert api_error(unconfirmed) == (422, "confirm")
    owner.delete_project("alpha", confirm="alpha")
    assert [p.name for p in owner.list_projects()] == []


# --------------------------------------------------------------------------- memory


MEMORY_PROBE = r"""
import json, sys, tracemalloc
from pathlib import Path
from sanctum.sdk import Client

url, token, source, target = sys.argv[1:]
with Client(url, token) as client:
    draft = client.create_version("alpha", "scans").number
    tracemalloc.start()
    client.upload_file("alpha", "scans", draft, "big.bin", Path(source))
    upload = tracemalloc.get_traced_memory()[1]
    client.commit_version("alpha", "scans", draft)
    tracemalloc.reset_peak()
    client.download_file("alpha", "scans", draft, "big.bin", Path(target))
    download = tracemalloc.get_traced_memory()[1]
print(json.dumps({"upload": upload, "download": download}))
"""


def test_large_files_stream_in_bounded_memory(owner, people, world, live_server, tmp_path) -> None:
    """A 64 MiB upload and download in a separate client process: its Python heap peak stays far
    below the file size (the server runs in this process, so it is not measured)."""
    source, size = tmp_path / "big.bin", 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    with source.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
    token = people.token(world.owner, kind=TokenKind.LOGIN, hours=1)
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, live_server.url, token, str(source),
                          str(tmp_path / "back.bin")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    peaks = json.loads(run.stdout)
    assert peaks["upload"] < 16 * 1024 * 1024, peaks
    assert peaks["download"] < 16 * 1024 * 1024, peaks
    assert (tmp_path / "back.bin").stat().st_size == size
    assert owner.list_files("alpha", "scans", 1)[0].sha256 == _file_sha(source)


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()

