"""Sanctum's Slurm wrapper and node Prolog against a real single-node Slurm (tests/slurm_cluster.py)."""

from __future__ import annotations

import secrets
import stat
import subprocess
import time
from pathlib import Path

import pytest

from sanctum.jobs import slurm
from sanctum.jobs.slurm_install import prolog_script, slurm_conf_lines, write_prolog

URL = "https://sanctum.example:8443"

# Refuses a job whose script, as the controller holds it, contains TAMPERED. This is how a Prolog
# sees the batch script on 22.05: the script is not in slurmd's spool yet when the Prolog runs.
TAMPER_PROLOG = """#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
if scontrol write batch_script "$SLURM_JOB_ID" - | grep -q TAMPERED; then
    echo "job $SLURM_JOB_ID: script was tampered with" >&2
    exit 1
fi
exit 0
"""

# Stands in for the sanctum binary: records how the Prolog called it, exits with the code in a file.
FAKE_SANCTUM = """#!/bin/sh
echo "$SLURM_JOB_ID $SANCTUM_URL $*" >> "$(dirname "$0")/calls"
exit "$(cat "$(dirname "$0")/exit_code")"
"""


@pytest.fixture
def cluster(slurm_cluster):
    yield slurm_cluster
    slurm_cluster.reset()


def _submit(cluster, tmp_path: Path, body: str, *, name: str = "t") -> tuple[str, Path]:
    output = tmp_path / f"{name}.out"
    job_id = slurm.submit(
        cluster.settings,
        f"#!/bin/sh\n{body}\n",
        job_name=name,
        cpus=1,
        memory_mb=64,
        time_limit_s=120,
        workdir=tmp_path,
        output=output,
    )
    return job_id, output


def _wait_state(cluster, job_id: str, state: str, timeout_s: float = 20) -> slurm.SlurmJob:
    deadline = time.monotonic() + timeout_s
    while (current := slurm.job(cluster.settings, job_id)).state != state:
        assert time.monotonic() < deadline, current
        time.sleep(0.1)
    return current


def _fake_sanctum(tmp_path: Path, exit_code: int) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / "exit_code").write_text(f"{exit_code}\n")
    fake = folder / "sanctum"
    write_prolog(fake, FAKE_SANCTUM)
    return fake


def _assert_refused(cluster, job_id: str, output: Path, log_says: str) -> None:
    refused = slurm.wait(cluster.settings, job_id, timeout_s=30)
    assert refused.held and (refused.state, refused.reason) == ("PENDING", "launch_failed_requeued_held")
    assert not output.exists(), "the job's script ran (or slurmd wrote its output) despite the Prolog"
    assert cluster.node_state() == ("drained", "Prolog error")
    assert log_says in (cluster.root / "log" / "slurmd.log").read_text()
    slurm.cancel(cluster.settings, job_id)
    assert slurm.job(cluster.settings, job_id).state == "CANCELLED"
    cluster.resume_node()


# --------------------------------------------------------------------------- the wrapper


def test_a_batch_job_runs_to_completed_and_writes_its_output(cluster, tmp_path: Path) -> None:
    job_id, output = _submit(cluster, tmp_path, 'echo "ran in $(pwd)"')
    done = slurm.wait(cluster.settings, job_id, timeout_s=30)
    assert (done.state, done.exit_code, done.node) == ("COMPLETED", 0, cluster.node)
    assert output.read_text() == f"ran in {tmp_path}\n"
    slurm.cancel(cluster.settings, job_id)  # cancelling a finished job is not an error
    assert slurm.job(cluster.settings, job_id).state == "COMPLETED"


def test_a_failing_script_is_failed_with_its_exit_code(cluster, tmp_path: Path) -> None:
    job_id, _ = _submit(cluster, tmp_path, "exit 3")
    done = slurm.wait(cluster.settings, job_id, timeout_s=30)
    assert (done.state, done.exit_code) == ("FAILED", 3)


def test_the_job_does_not_see_the_submitting_process_environment(
    cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secrets.token_hex(16)
    monkeypatch.setenv("SANCTUM_TEST_CANARY", secret)
    monkeypatch.setenv("SBATCH_EXPORT", "ALL")  # sbatch would read it as --export=ALL
    env = cluster.settings.env()
    assert env["SANCTUM_TEST_CANARY"] == secret and "SBATCH_EXPORT" not in env  # the canary reaches sbatch
    job_id, output = _submit(cluster, tmp_path, "env")
    assert slurm.wait(cluster.settings, job_id, timeout_s=30).state == "COMPLETED"
    seen = output.read_text()
    assert f"SLURM_JOB_ID={job_id}" in seen
    assert secret not in seen and "SANCTUM_TEST_CANARY" not in seen


def test_cancelling_a_running_job(cluster, tmp_path: Path) -> None:
    job_id, output = _submit(cluster, tmp_path, "echo started; sleep 300; echo finished")
    _wait_state(cluster, job_id, "RUNNING")
    deadline = time.monotonic() + 20
    while not (output.exists() and output.read_text() == "started\n"):  # RUNNING includes the Prolog
        assert time.monotonic() < deadline
        time.sleep(0.1)
    slurm.cancel(cluster.settings, job_id)
    done = slurm.wait(cluster.settings, job_id, timeout_s=30)
    assert done.state == "CANCELLED"
    assert "finished" not in output.read_text()
    slurm.cancel(cluster.settings, job_id)  # cancelling an ended job is not an error


def test_batch_script_is_what_the_node_will_run(cluster, tmp_path: Path) -> None:
    job_id, _ = _submit(cluster, tmp_path, "sleep 300  # the job's body")
    assert slurm.batch_script(cluster.settings, job_id) == "#!/bin/sh\nsleep 300  # the job's body\n"
    slurm.cancel(cluster.settings, job_id)


def test_unknown_jobs_and_slurm_errors_are_clear(cluster) -> None:
    gone = slurm.job(cluster.settings, "999999")
    assert gone.state == slurm.GONE and gone.finished
    with pytest.raises(slurm.SlurmError, match="Invalid job id"):
        slurm.batch_script(cluster.settings, "999999")
    slurm.cancel(cluster.settings, "999999")
    wrong = slurm.SlurmSettings(partition="nosuchpartition", conf=cluster.conf)
    with pytest.raises(
        slurm.SlurmError, match=r"sbatch --export=NONE failed \(exit 1\): .*[Ii]nvalid partition"
    ):
        slurm.submit(
            wrong,
            "#!/bin/sh\n",
            job_name="x",
            cpus=1,
            memory_mb=1,
            time_limit_s=1,
            workdir=Path("/"),
            output=Path("/tmp/x.out"),
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"job_name": "a b"}, "job name"),
        ({"job_name": "--uid=0"}, "job name"),
        ({"script": "#!/bin/sh\n#SBATCH --export=ALL\nenv\n"}, "#SBATCH"),
        ({"script": "echo no shebang\n"}, "#!"),
        ({"output": Path("/tmp/%u.out")}, "'%'"),
        ({"workdir": Path("relative")}, "absolute"),
        ({"cpus": 0}, "cpus"),
    ],
)
def test_submit_refuses_unsafe_input_before_calling_slurm(change: dict, message: str) -> None:
    args = {
        "script": "#!/bin/sh\n",
        "job_name": "ok",
        "cpus": 1,
        "memory_mb": 1,
        "time_limit_s": 1,
        "workdir": Path("/tmp"),
        "output": Path("/tmp/x.out"),
    } | change
    settings = slurm.SlurmSettings(partition="p", conf=Path("/nonexistent/slurm.conf"))
    with pytest.raises(ValueError, match=message):
        slurm.submit(settings, **args)
    for bad in ("a b", "x;y", "-p", ""):
        with pytest.raises(ValueError, match="partition"):
            slurm.SlurmSettings(partition=bad)


# --------------------------------------------------------------------------- the Prolog


def test_a_failing_prolog_drains_the_node_and_holds_the_job_unrun(cluster, tmp_path: Path) -> None:
    cluster.set_prolog(TAMPER_PROLOG)
    bad_id, bad_output = _submit(cluster, tmp_path, "# TAMPERED\necho ran", name="bad")
    refused = slurm.wait(cluster.settings, bad_id, timeout_s=30)
    assert (refused.state, refused.reason) == ("PENDING", "launch_failed_requeued_held")
    assert cluster.node_state() == ("drained", "Prolog error")
    good_id, good_output = _submit(cluster, tmp_path, "echo good", name="good")
    time.sleep(1.5)
    assert slurm.job(cluster.settings, good_id).state == "PENDING"  # nothing runs on a drained node
    _assert_refused(cluster, bad_id, bad_output, f"job {bad_id}: script was tampered with")
    assert slurm.wait(cluster.settings, good_id, timeout_s=30).state == "COMPLETED"
    assert good_output.read_text() == "good\n"
    assert not bad_output.exists()


def test_the_installed_prolog_runs_sanctum_for_the_job(cluster, tmp_path: Path) -> None:
    fake = _fake_sanctum(tmp_path, 0)
    cluster.set_prolog(prolog_script(fake, URL, extra_args=["--log-level", "info"]))
    job_id, output = _submit(cluster, tmp_path, "echo ran")
    assert slurm.wait(cluster.settings, job_id, timeout_s=30).state == "COMPLETED"
    assert output.read_text() == "ran\n"
    assert (fake.parent / "calls").read_text() == f"{job_id} {URL} node verify-prolog --log-level info\n"


def test_the_installed_prolog_refuses_when_verification_fails(cluster, tmp_path: Path) -> None:
    fake = _fake_sanctum(tmp_path, 3)
    cluster.set_prolog(prolog_script(fake, URL))
    job_id, output = _submit(cluster, tmp_path, "echo ran")
    _assert_refused(cluster, job_id, output, f"sanctum-prolog: job {job_id}: verification failed (exit 3)")


def test_the_installed_prolog_fails_closed_without_sanctum(cluster, tmp_path: Path) -> None:
    cluster.set_prolog(prolog_script(tmp_path / "not-installed" / "sanctum", URL))
    job_id, output = _submit(cluster, tmp_path, "echo ran")
    _assert_refused(cluster, job_id, output, "missing or not executable: refusing")


def _run_prolog(tmp_path: Path, text: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "prolog"
    write_prolog(path, text)
    return subprocess.run([str(path)], env=env, capture_output=True, text=True, timeout=30)


def test_the_prolog_fails_closed_on_a_missing_job_id_or_a_hanging_check(tmp_path: Path) -> None:
    fake = _fake_sanctum(tmp_path, 0)
    assert _run_prolog(tmp_path, prolog_script(fake, URL), {"SLURM_JOB_ID": "7"}).returncode == 0
    no_job = _run_prolog(tmp_path, prolog_script(fake, URL), {})
    assert no_job.returncode == 1 and "SLURM_JOB_ID is not set" in no_job.stderr
    write_prolog(fake, "#!/bin/sh\nsleep 30\n")
    hung = _run_prolog(tmp_path, prolog_script(fake, URL, timeout_s=1), {"SLURM_JOB_ID": "7"})
    assert hung.returncode == 1 and "verification failed (exit 124)" in hung.stderr


def test_prolog_values_are_quoted_or_refused(tmp_path: Path) -> None:
    fake = _fake_sanctum(tmp_path, 0)
    hostile = "$(touch owned); `touch owned` 'x"
    result = _run_prolog(tmp_path, prolog_script(fake, URL, extra_args=[hostile]), {"SLURM_JOB_ID": "7"})
    assert result.returncode == 0
    assert (fake.parent / "calls").read_text() == f"7 {URL} node verify-prolog {hostile}\n"
    assert not (tmp_path / "owned").exists() and not Path("owned").exists()
    for url in ("https://x/'; reboot; '", "https://x/ y", "ftp://x", "https://x/$(id)"):
        with pytest.raises(ValueError, match="server_url"):
            prolog_script(fake, url)
    with pytest.raises(ValueError, match="absolute"):
        prolog_script(Path("sanctum"), URL)


def test_write_prolog_installs_an_executable_file_by_rename(tmp_path: Path) -> None:
    target = tmp_path / "prolog"
    write_prolog(target, "#!/bin/sh\nexit 0\n")
    write_prolog(target, "#!/bin/sh\nexit 1\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert target.read_text() == "#!/bin/sh\nexit 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["prolog"]
    with pytest.raises(ValueError, match="#!"):
        write_prolog(target, "exit 0\n")


def test_the_cluster_runs_the_documented_slurm_conf_lines(cluster) -> None:
    config = cluster.run("scontrol", "show", "config").stdout
    assert slurm_conf_lines(cluster.prolog) == [f"Prolog={cluster.prolog}", "PrologFlags=Alloc,DeferBatch"]
    assert f"Prolog                  = {cluster.prolog}" in config
    assert "PrologFlags             = Alloc,DeferBatch" in config
