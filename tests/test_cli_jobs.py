"""``sanctum key`` and ``sanctum job`` against a live server whose runner executes jobs for real."""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from conftest import missing
from jobs_helpers import VITALS, write_code
from test_cli_client import Cli, private_config  # noqa: F401 (autouse fixture)


@pytest.fixture
def cli(world, people, live_server) -> Cli:
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap) is not installed")
    return Cli(world, people, live_server.url)


def _dataset(cli: Cli, tmp_path) -> None:
    (tmp_path / "vitals.csv").write_text(VITALS)
    assert cli("owner", "dataset", "create", "alpha", "vitals").exit_code == 0
    result = cli("owner", "dataset", "upload", "alpha", "vitals", str(tmp_path / "vitals.csv"))
    assert result.exit_code == 0, result.output


def test_key_create_submit_wait_logs_and_lineage(cli, tmp_path, private_config):  # noqa: F811
    _dataset(cli, tmp_path)
    created = cli("scientist", "key", "create", "--name", "laptop", "--json")
    assert created.exit_code == 0, created.output
    key_file = private_config / "signing-key.pem"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert b"PRIVATE KEY" in key_file.read_bytes()
    assert json.loads(created.output)["name"] == "laptop"
    again = cli("scientist", "key", "create")
    assert again.exit_code == 1 and "already exists" in again.output
    code = write_code(tmp_path / "code")
    result = cli(
        "scientist",
        "job",
        "submit",
        "alpha",
        str(code),
        "--entrypoint",
        "python job.py",
        "--input",
        "vitals",
        "--param",
        "scale=3",
        "--wait",
        "--json",
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.output)
    assert job["state"] == "succeeded" and job["output"] == {"dataset": "job-outputs", "version": 1}
    logs = cli("checker", "job", "logs", "alpha", str(job["id"]))
    assert "done with 3 rows" in logs.output
    listed = cli("auditor", "job", "ls", "alpha", "--json")
    assert [j["id"] for j in json.loads(listed.output)] == [job["id"]]
    crate_dir = tmp_path / "crate"
    crate_dir.mkdir()
    lineage = cli(
        "scientist", "job", "lineage", "alpha", "job-outputs@1", "--ro-crate", str(crate_dir), "--json"
    )
    assert lineage.exit_code == 0, lineage.output
    assert json.loads(lineage.output)["inputs"][0]["dataset"] == "vitals"
    crate = json.loads((crate_dir / "ro-crate-metadata.json").read_text())
    assert any(node["@type"] == "CreateAction" for node in crate["@graph"])


def test_a_failing_job_exits_non_zero_with_its_reason(cli, tmp_path):
    assert cli("scientist", "key", "create").exit_code == 0
    code = write_code(tmp_path / "code", "raise SystemExit(4)\n")
    result = cli("scientist", "job", "submit", "alpha", str(code), "--entrypoint", "python job.py", "--wait")
    assert result.exit_code == 1
    assert "failed" in result.output and "exit code 4" in result.output


def test_data_files_in_the_code_folder_are_refused_before_sending(cli, tmp_path):
    assert cli("scientist", "key", "create").exit_code == 0
    code = write_code(tmp_path / "code")
    (code / "patients.parquet").write_bytes(b"PAR1")
    result = cli("scientist", "job", "submit", "alpha", str(code), "--entrypoint", "python job.py")
    assert result.exit_code == 1 and "data, not code" in result.output


def test_submitting_without_a_key_says_how_to_make_one(cli, tmp_path):
    code = write_code(tmp_path / "code")
    result = cli("scientist", "job", "submit", "alpha", str(code), "--entrypoint", "python job.py")
    assert result.exit_code == 1 and "sanctum key create" in result.output


def test_checkers_cannot_submit(cli, tmp_path):
    assert cli("checker", "key", "create").exit_code == 0
    code = write_code(tmp_path / "code")
    result = cli("checker", "job", "submit", "alpha", str(code), "--entrypoint", "python job.py")
    assert result.exit_code == 1
