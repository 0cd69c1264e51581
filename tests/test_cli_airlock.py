"""``sanctum export`` and ``sanctum import`` against a live server."""

from __future__ import annotations

import pytest

from airlock_helpers import SAFE_TABLE, SMALL_CELL_TABLE, job_output, make_airlock_world, quiet_runner
from test_cli_client import Cli, private_config  # noqa: F401 (autouse fixture)


@pytest.fixture
def setup(runtime, request, people, tmp_path):
    quiet_runner(runtime)
    client = request.getfixturevalue("client")
    world = request.getfixturevalue("world")
    aw = make_airlock_world(runtime, client, world, people, tmp_path)
    cli = Cli(world, people, request.getfixturevalue("live_server").url)
    return aw, cli


def test_export_request_review_release_download(setup, tmp_path):
    aw, cli = setup
    dataset, version, job = job_output(aw, {"tables/t.csv": SAFE_TABLE, "small.csv": SMALL_CELL_TABLE})
    asked = cli.json(
        "scientist", "export", "request", "alpha", "--file", f"{dataset}@{version}:tables/t.csv",
        "--file", f"{dataset}@{version}:small.csv", "--justification", "Table 1", "--title", "paper",
    )  # fmt: skip
    assert asked["state"] == "submitted" and {f["name"]: f["check_verdict"] for f in asked["files"]} == {
        "tables/t.csv": "pass",
        "small.csv": "fail",
    }
    shown = cli.ok("checker", "export", "show", "alpha", "1")
    assert "small.csv: fail" in shown and "below the minimum count of 10" in shown and f"job {job}" in shown
    assert "export 1: submitted" in shown
    cli.ok("checker", "export", "review", "alpha", "1", "--approve")
    reviewed = cli.ok("owner", "export", "review", "alpha", "1", "--approve", "--comment", "ok")
    assert "export 1: approved" in reviewed
    refused = cli("owner", "export", "release", "alpha", "1")
    assert (
        refused.exit_code == 1 and "failed automatic checks block the release of small.csv" in refused.output
    )
    denied = cli("scientist", "export", "override", "alpha", "1", "small.csv", "--reason", "mine")
    assert denied.exit_code == 1
    cli.ok("owner", "export", "override", "alpha", "1", "small.csv", "--reason", "a published figure")
    assert "export 1: released" in cli.ok("owner", "export", "release", "alpha", "1")
    out = tmp_path / "out"
    out.mkdir()
    written = cli.json("scientist", "export", "download", "alpha", "1", "--to", str(out))
    assert {w["name"] for w in written} == {"tables/t.csv", "small.csv"}
    assert (out / "tables" / "t.csv").read_bytes() == SAFE_TABLE
    listed = cli.ok("auditor", "export", "ls", "alpha")
    assert "released" in listed and "scientist@example.org" in listed
    assert cli.json("scientist", "export", "ls", "alpha", "--state", "draft") == []


def test_export_refusals_are_one_line(setup):
    _, cli = setup
    bad = cli(
        "scientist", "export", "request", "alpha", "--file", "job-outputs:t.csv", "--justification", "x"
    )
    assert bad.exit_code == 1 and "DATASET@VERSION:PATH" in bad.output
    checker = cli(
        "checker", "export", "request", "alpha", "--file", "job-outputs@1:t.csv", "--justification", "x"
    )
    assert checker.exit_code == 1 and "exports:request" in checker.output
    assert len(checker.output.strip().splitlines()) == 1


def test_import_request_approve_reject_ls(setup, tmp_path):
    _, cli = setup
    source = tmp_path / "codes.csv"
    source.write_bytes(b"code,label\nI21,infarction\n")
    asked = cli.json(
        "scientist", "import", "request", "alpha", "reference", str(source), "--justification", "labels"
    )
    assert asked["state"] == "pending" and asked["original_name"] == "codes.csv"
    assert "import 1: approved as reference@1" in cli.ok("owner", "import", "approve", "alpha", "1")
    cli.ok("scientist", "import", "request", "alpha", "reference", str(source), "--justification", "again")
    assert "import 2: rejected" in cli.ok("owner", "import", "reject", "alpha", "2", "--reason", "duplicate")
    listed = cli.ok("owner", "import", "ls", "alpha")
    assert "approved" in listed and "rejected" in listed and "codes.csv" in listed
    assert cli("scientist", "import", "approve", "alpha", "2").exit_code == 1
