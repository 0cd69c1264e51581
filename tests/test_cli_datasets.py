"""``sanctum dataset …``, ``sanctum query`` and ``sanctum project delete|settings`` against a real
server (``live_server``), in process with Typer's runner, as the world's people."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from sanctum.cli import datasets as dataset_cli
from sanctum.cli.main import app
from test_cli_client import Cli, json_error, one_error_line, private_config  # noqa: F401 (autouse fixture)

runner = CliRunner()


class DataCli(Cli):
    """``Cli`` that can also type at the prompt (``input=``)."""

    def __call__(
        self,
        who: str | None,
        *args: str,
        token: str | None = None,
        columns: int | None = None,
        input: str | None = None,
    ):
        env = {
            "SANCTUM_URL": self.url,
            "SANCTUM_TOKEN": token or (self.token(who) if who else None),
            "COLUMNS": str(columns) if columns else None,
        }
        return runner.invoke(app, list(args), env=env, input=input)


@pytest.fixture
def cli(world, people, live_server) -> DataCli:
    return DataCli(world, people, live_server.url)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


TREE = {
    "readme.txt": b"hello\n",
    "sub dir/nested/data.bin": os.urandom(1024 * 1024 + 3),
    "ünïcödé/naïve café.txt": "ßüñ ✓\n".encode(),
    "empty.dat": b"",
}


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def files_of(cli: DataCli, dataset: str = "scans", *extra: str) -> dict[str, tuple[int, str]]:
    return {
        f["path"]: (f["size"], f["sha256"])
        for f in cli.json("owner", "dataset", "ls", "alpha", dataset, *extra)
    }


def expected(files: dict[str, bytes], prefix: str = "") -> dict[str, tuple[int, str]]:
    return {prefix + p: (len(d), sha(d)) for p, d in files.items()}


# --------------------------------------------------------------------------- datasets, versions, uploads


def test_create_upload_ls_versions(cli, tmp_path) -> None:
    assert cli.ok("owner", "dataset", "ls", "alpha").strip() == "no datasets"
    assert cli.json("owner", "dataset", "ls", "alpha") == []
    out = cli.ok("owner", "dataset", "create", "alpha", "scans", "--description", "CT scans")
    assert out.strip() == "created files dataset scans in alpha"
    table = cli.json("owner", "dataset", "create", "alpha", "visits", "--kind", "table")
    assert (table["name"], table["kind"], table["access"], table["latest_version"]) == (
        "visits",
        "table",
        "owner",
        None,
    )

    root = make_tree(tmp_path / "tree", TREE)
    out = cli.ok("owner", "dataset", "upload", "alpha", "scans", str(root))
    assert out.strip() == "uploaded 4 files (1.0 MB) to alpha/scans as version 1"
    assert files_of(cli) == expected(TREE)

    single = tmp_path / "one more.txt"
    single.write_bytes(b"more")
    version = cli.json(
        "owner", "dataset", "upload", "alpha", "scans", str(single), "--as", "extra/renamed.txt"
    )
    assert (version["number"], version["state"], version["file_count"], version["total_size"]) == (
        2,
        "committed",
        1,
        4,
    )
    assert files_of(cli) == {"extra/renamed.txt": (4, sha(b"more"))}  # ls: the latest version
    assert files_of(cli, "scans", "--version", "1") == expected(TREE)

    listed = cli.ok("owner", "dataset", "ls", "alpha")
    for text in ("dataset", "latest", "owner project", "scans", "visits", "table", "owner", "4 bytes"):
        assert text in listed, text
    (scans, visits) = cli.json("owner", "dataset", "ls", "alpha")
    assert (scans["name"], scans["latest_version"], scans["latest_size"], scans["latest_files"]) == (
        "scans",
        2,
        4,
        1,
    )
    assert visits["latest_version"] is None

    files = cli.ok("owner", "dataset", "ls", "alpha", "scans", "--version", "1")
    assert "scans version 1: 4 files, 1.0 MB" in files
    for path, data in TREE.items():
        assert path in files and sha(data) in files
    versions = cli.ok("owner", "dataset", "versions", "alpha", "scans")
    assert "committed" in versions and "manifest sha256" in versions
    assert [
        (v["number"], v["file_count"]) for v in cli.json("owner", "dataset", "versions", "alpha", "scans")
    ] == [(1, 4), (2, 1)]
    assert (
        cli.json("scientist", "dataset", "versions", "alpha", "scans", "--drafts")[0]["state"] == "committed"
    )

    csv = tmp_path / "visits.csv"
    csv.write_text("id,age\n1,30\n2,41\n3,52\n")
    out = cli.ok("owner", "dataset", "upload", "alpha", "visits", str(csv))
    assert out.strip() == "uploaded a table of 3 rows to alpha/visits as version 1"
    assert list(files_of(cli, "visits")) == ["table.parquet"]


def test_upload_errors_leave_nothing_visible(cli, tmp_path) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    cli.ok("owner", "dataset", "create", "alpha", "visits", "--kind", "table")
    one_error_line(
        cli("owner", "dataset", "upload", "alpha", "scans", str(tmp_path / "nope")),
        "no such file or directory",
    )
    empty = make_tree(tmp_path / "empty", {})
    one_error_line(cli("owner", "dataset", "upload", "alpha", "scans", str(empty)), "nothing to upload")
    bad = make_tree(tmp_path / "bad", {"ok.txt": b"1", "a\\b.txt": b"2"})
    one_error_line(
        cli("owner", "dataset", "upload", "alpha", "scans", str(bad)),
        "a\\b.txt: file path must use '/' as separator, not backslashes",
    )
    json_error(
        cli("owner", "dataset", "upload", "alpha", "scans", str(tmp_path / "ok.txt"), "--json"), "not_found"
    )
    one_error_line(
        cli("owner", "dataset", "upload", "alpha", "scans", str(bad / "ok.txt"), "--as", "../x"),
        "'..' segment",
    )
    two_tables = make_tree(tmp_path / "tables", {"a.csv": b"id\n1\n", "b.csv": b"id\n2\n"})
    one_error_line(
        cli("owner", "dataset", "upload", "alpha", "visits", str(two_tables)),
        "visits is a table dataset: a version is one CSV or Parquet file",
    )
    one_error_line(
        cli("owner", "dataset", "upload", "alpha", "nope", str(bad / "ok.txt")), "dataset not found"
    )
    for dataset in ("scans", "visits"):
        assert cli.json("owner", "dataset", "versions", "alpha", dataset, "--drafts") == []

    # A file the server refuses (here: not a table) leaves the version an uncommitted draft.
    png = tmp_path / "scan.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    line = one_error_line(cli("owner", "dataset", "upload", "alpha", "visits", str(png)), "not UTF-8 text")
    assert f"{png} (version 1 left uncommitted)" in line
    assert [v["state"] for v in cli.json("owner", "dataset", "versions", "alpha", "visits", "--drafts")] == [
        "draft"
    ]
    assert cli.json("owner", "dataset", "versions", "alpha", "visits") == []
    assert "no committed version yet" in cli("owner", "dataset", "ls", "alpha", "visits").stderr


def test_symlinks_are_skipped_with_a_warning(cli, tmp_path) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    root = make_tree(tmp_path / "tree", {"real.txt": b"real"})
    (root / "link.txt").symlink_to(root / "real.txt")
    result = cli("owner", "dataset", "upload", "alpha", "scans", str(root))
    assert result.exit_code == 0, result.stderr
    assert "warning: skipped" in result.stderr and "link.txt (symbolic link)" in result.stderr
    assert list(files_of(cli)) == ["real.txt"]


def test_zip_and_tar_uploads(cli, tmp_path) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in TREE.items():
            zf.writestr(name, data)
        zf.writestr("sub dir/", b"")
    out = cli.ok("owner", "dataset", "upload", "alpha", "scans", str(archive))
    assert out.strip() == "uploaded 4 files (1.0 MB) to alpha/scans as version 1"
    assert files_of(cli) == expected(TREE)

    version = cli.json("owner", "dataset", "upload", "alpha", "scans", str(archive), "--as", "batch-1")
    assert version["number"] == 2
    assert files_of(cli) == expected(TREE, prefix="batch-1/")
    raw = cli.json("owner", "dataset", "upload", "alpha", "scans", str(archive), "--no-extract")
    assert raw["file_count"] == 1
    assert files_of(cli) == {"batch.zip": (archive.stat().st_size, sha(archive.read_bytes()))}

    import tarfile

    tgz = tmp_path / "batch.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(make_tree(tmp_path / "tree", TREE), arcname=".")
    assert cli.json("owner", "dataset", "upload", "alpha", "scans", str(tgz))["file_count"] == 4
    assert files_of(cli) == expected(TREE)


@pytest.mark.parametrize(
    "entry", ["../../home/user/.bashrc", "/etc/cron.d/evil", "ok/../../evil", "..\\evil.bat"]
)
def test_zip_slip_is_refused_before_any_upload(cli, tmp_path, entry) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("harmless.txt", b"first entry: must not be sent either")
        zf.writestr(zipfile.ZipInfo(entry), b"payload")
    line = one_error_line(
        cli("owner", "dataset", "upload", "alpha", "scans", str(archive)), f"evil.zip:{entry}"
    )
    assert "absolute" in line or "'..'" in line or "backslashes" in line
    json_error(cli("owner", "dataset", "upload", "alpha", "scans", str(archive), "--json"), "unsafe_entry")
    # Decided: the listing is checked before the draft exists, so there is no version at all.
    assert cli.json("owner", "dataset", "versions", "alpha", "scans", "--drafts") == []


def test_progress_bar_on_a_terminal(cli, tmp_path, monkeypatch) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    screen = io.StringIO()
    monkeypatch.setattr(dataset_cli, "console", Console(file=screen, force_terminal=True, width=160))
    root = make_tree(tmp_path / "tree", TREE)
    cli.ok("owner", "dataset", "upload", "alpha", "scans", str(root))
    drawn = screen.getvalue()
    assert "ünïcödé/naïve café.txt" in drawn and "1.0/1.0 MB" in drawn, drawn  # last file, done/total
    screen.truncate(0)
    cli.ok("owner", "dataset", "download", "alpha", "scans", "--all", "-o", str(tmp_path / "back"))
    assert "1.0/1.0 MB" in screen.getvalue()
    screen.truncate(0)
    cli.json("owner", "dataset", "upload", "alpha", "scans", str(root))
    assert screen.getvalue().strip("\0") == ""  # --json: no bar


# --------------------------------------------------------------------------- downloads


def test_download_one_file_and_all(cli, tmp_path, monkeypatch) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    cli.ok("owner", "dataset", "upload", "alpha", "scans", str(make_tree(tmp_path / "tree", TREE)))
    monkeypatch.chdir(tmp_path)
    path, data = "sub dir/nested/data.bin", TREE["sub dir/nested/data.bin"]

    out = cli.ok("owner", "dataset", "download", "alpha", "scans", path)
    assert out.strip() == "downloaded sub dir/nested/data.bin (1.0 MB) to data.bin; SHA-256 verified"
    assert (tmp_path / "data.bin").read_bytes() == data
    one_error_line(
        cli("owner", "dataset", "download", "alpha", "scans", path), "data.bin exists (pass --force"
    )
    cli.ok("owner", "dataset", "download", "alpha", "scans", path, "--force")

    out_dir = tmp_path / "here"
    out_dir.mkdir()
    result = cli.json(
        "owner",
        "dataset",
        "download",
        "alpha",
        "scans",
        "ünïcödé/naïve café.txt",
        "-o",
        str(out_dir),
        "--version",
        "1",
    )
    (saved,) = result["files"]
    assert (result["version"], saved["path"], saved["sha256"]) == (
        1,
        "ünïcödé/naïve café.txt",
        sha(TREE["ünïcödé/naïve café.txt"]),
    )
    assert Path(saved["saved_to"]) == out_dir / "naïve café.txt"
    cli.ok("owner", "dataset", "download", "alpha", "scans", "empty.dat", "-o", str(tmp_path / "zero"))
    assert (tmp_path / "zero").read_bytes() == b""

    out = cli.ok("owner", "dataset", "download", "alpha", "scans", "--all")
    assert out.strip() == "downloaded 4 files (1.0 MB) to scans-v1; SHA-256 verified"
    for name, content in TREE.items():
        assert (tmp_path / "scans-v1" / name).read_bytes() == content
    assert not list(tmp_path.rglob("*.part"))
    everything = cli.json("owner", "dataset", "download", "alpha", "scans", "--all", "-o", "copy")
    assert sorted(f["path"] for f in everything["files"]) == sorted(TREE)

    one_error_line(
        cli("owner", "dataset", "download", "alpha", "scans", "no/such"), "no file no/such in scans"
    )
    one_error_line(cli("owner", "dataset", "download", "alpha", "scans"), "give a PATH, or --all")
    one_error_line(
        cli("owner", "dataset", "download", "alpha", "scans", path, "--version", "9"), "version not found"
    )


def test_scientist_upload_and_download_point_to_the_airlock(cli, tmp_path) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    root = make_tree(tmp_path / "tree", {"a.txt": b"a"})
    cli.ok("owner", "dataset", "upload", "alpha", "scans", str(root))
    line = one_error_line(cli("scientist", "dataset", "upload", "alpha", "scans", str(root)), "airlock")
    assert "may not data:import" in line
    line = one_error_line(
        cli("scientist", "dataset", "download", "alpha", "scans", "a.txt", "-o", str(tmp_path / "a.txt")),
        "airlock",
    )
    assert "may not data:download" in line and not (tmp_path / "a.txt").exists()
    json_error(
        cli(
            "scientist", "dataset", "download", "alpha", "scans", "--all", "-o", str(tmp_path / "x"), "--json"
        ),
        "forbidden",
    )
    assert cli.json("scientist", "dataset", "ls", "alpha", "scans")[0]["path"] == "a.txt"  # the manifest: yes


# --------------------------------------------------------------------------- shares


def test_share_accept_decline_revoke(cli, tmp_path) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "labs", "--kind", "table")
    csv = tmp_path / "labs.csv"
    csv.write_text("id,value\n1,10\n2,20\n")
    cli.ok("owner", "dataset", "upload", "alpha", "labs", str(csv))

    out = cli.ok("owner", "dataset", "share", "alpha", "labs", "beta")
    assert out.strip() == (
        "offered labs to beta (read), share 1; an owner of beta accepts it with: "
        "sanctum dataset accept beta 1"
    )
    listed = cli.ok("other_owner", "dataset", "shares", "beta")
    for text in ("labs", "alpha", "beta", "pending", "read"):
        assert text in listed
    assert cli.json("other_owner", "dataset", "ls", "beta") == []
    out = cli.ok("other_owner", "dataset", "accept", "beta", "1")
    assert out.strip() == "accepted share 1: alpha.labs is now available in beta (read)"
    (shared,) = cli.json("other_owner", "dataset", "ls", "beta")
    assert (shared["name"], shared["project"], shared["access"]) == ("alpha.labs", "alpha", "read")
    assert "alpha.labs" in cli.ok("other_owner", "dataset", "ls", "beta")
    assert cli.json("other_owner", "query", "beta", "select sum(value) as s from alpha__labs")["rows"] == [
        [30]
    ]
    one_error_line(
        cli("other_owner", "dataset", "shred", "beta", "alpha.labs", "--yes"),
        "alpha.labs belongs to project alpha; only that project can shred it",
    )

    assert cli.json("owner", "dataset", "revoke", "alpha", "1") == {"project": "alpha", "revoked": 1}
    assert cli.json("other_owner", "dataset", "ls", "beta") == []
    one_error_line(cli("other_owner", "dataset", "ls", "beta", "alpha.labs"), "dataset not found")

    offered = cli.json("owner", "dataset", "share", "alpha", "labs", "beta", "--access", "write")
    assert (offered["id"], offered["access"], offered["state"]) == (2, "write", "pending")
    assert cli.ok("other_owner", "dataset", "decline", "beta", "2").strip() == "declined share 2 (alpha.labs)"
    assert [s["state"] for s in cli.json("owner", "dataset", "shares", "alpha")] == ["revoked", "declined"]
    one_error_line(
        cli("other_owner", "dataset", "accept", "beta", "2"), "this share is declined, not pending"
    )
    one_error_line(cli("owner", "dataset", "share", "alpha", "labs", "nowhere"), "no project with this name")
    assert (
        cli.json(
            "other_owner",
            "dataset",
            "accept",
            "beta",
            str(cli.json("owner", "dataset", "share", "alpha", "labs", "beta")["id"]),
        )["state"]
        == "accepted"
    )
    one_error_line(cli("owner", "dataset", "shares", "beta"), "project not found")


# --------------------------------------------------------------------------- erasure


def test_shred_asks_for_the_name(cli, tmp_path) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "scans")
    cli.ok("owner", "dataset", "upload", "alpha", "scans", str(make_tree(tmp_path / "t", {"a.txt": b"abc"})))
    cli.ok(
        "owner", "dataset", "upload", "alpha", "scans", str(make_tree(tmp_path / "u", {"b.txt": b"12345"}))
    )

    wrong = cli("owner", "dataset", "shred", "alpha", "scans", input="scan\n")
    assert wrong.exit_code == 1
    assert "This permanently destroys dataset scans in alpha: 2 versions, 2 files, 8 bytes" in wrong.stdout
    assert "Type the dataset name (scans) to confirm" in wrong.stderr
    assert "error: aborted: that is not the dataset name 'scans'; nothing was destroyed" in wrong.stderr
    assert cli.json("owner", "dataset", "ls", "alpha")[0]["name"] == "scans"
    assert cli("owner", "dataset", "shred", "alpha", "scans", input="").exit_code == 1  # end of input
    json_error(cli("owner", "dataset", "shred", "alpha", "scans", "--json"), "confirmation_required")
    assert cli.json("owner", "dataset", "ls", "alpha", "scans") != []
    one_error_line(cli("scientist", "dataset", "shred", "alpha", "scans", "--yes"), "may not datasets:shred")

    right = cli("owner", "dataset", "shred", "alpha", "scans", input="scans\n")
    assert right.exit_code == 0, right.stderr
    assert "shredded scans: 2 versions, 2 files, 8 bytes are unreadable from now on" in right.stdout
    assert cli.json("owner", "dataset", "ls", "alpha") == []
    one_error_line(cli("owner", "dataset", "ls", "alpha", "scans"), "dataset not found")

    cli.ok("owner", "dataset", "create", "alpha", "again")
    cli.ok("owner", "dataset", "upload", "alpha", "again", str(tmp_path / "t"))
    cli.ok("owner", "dataset", "share", "alpha", "again", "beta")
    done = cli.json("owner", "dataset", "shred", "alpha", "again", "--yes")
    assert done == {
        "project": "alpha",
        "dataset": "again",
        "shredded": True,
        "versions": 1,
        "drafts": 0,
        "files": 1,
        "bytes": 3,
        "shares_revoked": 1,
    }
    assert [s["state"] for s in cli.json("owner", "dataset", "shares", "alpha")] == ["revoked"]


def test_project_delete_and_settings(cli, tmp_path) -> None:
    out = cli.ok("owner", "project", "settings", "alpha", "--query-row-limit", "2")
    assert out.strip() == "queries in alpha now return at most 2 rows to data scientists"
    assert cli.json("owner", "project", "settings", "alpha", "--query-row-limit", "3")["query_row_limit"] == 3
    one_error_line(
        cli("scientist", "project", "settings", "alpha", "--query-row-limit", "99"), "may not datasets:manage"
    )

    cli.ok("owner", "dataset", "create", "alpha", "scans")
    cli.ok("owner", "dataset", "upload", "alpha", "scans", str(make_tree(tmp_path / "t", {"a.txt": b"abc"})))
    wrong = cli("owner", "project", "delete", "alpha", input="beta\n")
    assert wrong.exit_code == 1 and "nothing was destroyed" in wrong.stderr
    assert "destroys the keys of its 1 dataset: 1 version, 1 file, 3 bytes" in wrong.stdout
    assert [p["name"] for p in cli.json("owner", "project", "list")] == ["alpha"]
    json_error(cli("owner", "project", "delete", "alpha", "--json"), "confirmation_required")
    one_error_line(cli("scientist", "project", "delete", "alpha", "--yes"), "may not project:delete")
    right = cli("owner", "project", "delete", "alpha", input="alpha\n")
    assert right.exit_code == 0, right.stderr
    assert "deleted project alpha: 1 dataset, 1 version, 1 file, 3 bytes" in right.stdout
    assert cli.json("owner", "project", "list") == []
    assert cli.json("other_owner", "project", "delete", "beta", "--yes") == {
        "project": "beta",
        "deleted": True,
        "datasets": 0,
        "versions": 0,
        "drafts": 0,
        "files": 0,
        "bytes": 0,
    }


# --------------------------------------------------------------------------- queries


def test_query(cli, tmp_path) -> None:
    cli.ok("owner", "dataset", "create", "alpha", "clinical-visits", "--kind", "table")
    csv = tmp_path / "visits.csv"
    csv.write_text(
        "id,site,note\n" + "".join(f"{i},s{i % 2},{'[red]x' if i == 1 else ''}\n" for i in range(1, 21))
    )
    cli.ok("owner", "dataset", "upload", "alpha", "clinical-visits", str(csv))

    out = cli.ok(
        "owner", "query", "alpha", "select id, site, note from clinical_visits where id <= 2 order by id"
    )
    for text in ("id", "bigint", "site", "s1", "[red]x", "NULL", "2 rows"):
        assert text in out, text
    assert "truncated" not in out
    result = cli.json(
        "owner",
        "query",
        "alpha",
        "select site, count(*) as n from clinical_visits group by site order by site",
    )
    assert (result["columns"], result["rows"], result["truncated"]) == (
        ["site", "n"],
        [["s0", 10], ["s1", 10]],
        False,
    )

    cli.ok("owner", "project", "settings", "alpha", "--query-row-limit", "5")
    out = cli.ok("scientist", "query", "alpha", "select * from clinical_visits")
    assert "5 rows; truncated to the row limit of 5" in out
    capped = cli.json("scientist", "query", "alpha", "select * from clinical_visits", "--max-rows", "3")
    assert (capped["row_count"], capped["truncated"], capped["row_limit"]) == (3, True, 3)
    sql = tmp_path / "q.sql"
    sql.write_text("select count(*) as n from clinical_visits")
    assert cli.json("scientist", "query", "alpha", "-f", str(sql))["rows"] == [[20]]

    line = one_error_line(
        cli("scientist", "query", "alpha", "select * from read_csv('/etc/passwd')"), "/etc/passwd"
    )
    assert "disabled" in line or "not allowed" in line or "Permission" in line
    json_error(
        cli("scientist", "query", "alpha", "select * from read_csv('/etc/passwd')", "--json"), "invalid_query"
    )
    one_error_line(cli("scientist", "query", "alpha"), "give the SQL, or -f FILE")
    one_error_line(cli("outsider", "query", "alpha", "select 1"), "project not found")
