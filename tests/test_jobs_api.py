"""Signed jobs end to end through the API: submit, verify twice, run in bubblewrap, output + lineage."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from conftest import missing
from jobs_helpers import JobWorld, make_job_world, write_code
from sanctum.db.models import AuditEvent, Membership
from sanctum.jobs import bundle as bundles
from sanctum.jobs import manifest as manifests
from sanctum.jobs.runner import JobRunner
from sanctum.sdk.errors import SanctumAPIError
from sanctum.sdk.jobs import sign_manifest
from sanctum.security import signing


@pytest.fixture
def runner(runtime):
    """A runner the test drives by hand (``run_one``), so it can act between submit and start."""
    if shutil.which("bwrap") is None:
        missing("bubblewrap (bwrap) is not installed")
    if runtime.jobs is not None:  # an app's lifespan already started one: a test must not race it
        runtime.jobs.stop()
    runtime.jobs = JobRunner(runtime)  # present but not started: the app's lifespan leaves it alone
    return runtime.jobs


@pytest.fixture
def jw(runner, client, world, people, tmp_path) -> JobWorld:
    return make_job_world(client, world, people, tmp_path)


def _submit(jw: JobWorld, who: str = "scientist", **kwargs):
    args = {"entrypoint": "python job.py", "inputs": ["vitals"], "parameters": {"scale": 2}}
    args.update(kwargs)
    return jw.sdk[who].submit_job("alpha", jw.code, key=jw.keys[who], **args)


def _signed(jw: JobWorld, who: str = "scientist", *, code=None, **fields):
    packed = bundles.pack(code or jw.code, max_bytes=1 << 20)
    defaults = {
        "project": "alpha",
        "bundle_sha256": packed.sha256,
        "bundle_size": len(packed.data),
        "entrypoint": ["python", "job.py"],
        "signer": signing.fingerprint(signing.public_key_raw(jw.keys[who])),
        "inputs": [manifests.InputRef(dataset="vitals", version=1)],
    }
    defaults.update(fields)
    manifest = manifests.new(**defaults)
    return manifest.document(), packed.data


def _events(runtime, action: str) -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(db.scalars(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_a_signed_job_runs_and_its_output_becomes_a_version_with_lineage(jw, runner, runtime):
    job = _submit(jw)
    assert job.state == "queued" and job.id == 1 and job.inputs[0].version == 1
    assert runner.run_one()
    done = jw.sdk["scientist"].get_job("alpha", job.id)
    assert done.state == "succeeded", done.reason
    assert done.output is not None and done.output.dataset == "job-outputs" and done.output.version == 1
    assert done.signature_valid and done.manifest["entrypoint"] == ["python", "job.py"]
    # The output is a dataset version like any other: the owner can read it, byte for byte.
    files = {f.path: f for f in jw.sdk["owner"].list_files("alpha", "job-outputs", 1)}
    assert set(files) == {"summary.json", "tables/count.txt"}
    # Logs are kept, encrypted, and readable by every member (output checkers review them).
    logs = jw.sdk["checker"].job_logs("alpha", job.id)
    assert "done with 3 rows" in logs.stdout and "a warning" in logs.stderr
    # Lineage: job, manifest and code hashes, inputs by version, signer.
    lineage = jw.sdk["auditor"].lineage("alpha", "job-outputs", 1)
    assert lineage.job == 1 and lineage.manifest_sha256 == done.manifest_sha256
    assert lineage.code_sha256 == done.code_sha256 and lineage.signer == "scientist@example.org"
    assert [(i.dataset, i.version) for i in lineage.inputs] == [("vitals", 1)]
    assert {f["path"] for f in lineage.files} == set(files)
    crate = jw.sdk["scientist"].ro_crate("alpha", "job-outputs", 1)
    graph = {node["@id"]: node for node in crate["@graph"]}
    action = next(n for n in crate["@graph"] if n["@type"] == "CreateAction")
    assert graph[action["instrument"]["@id"]]["sha256"] == done.code_sha256
    assert {r["@id"] for r in action["result"]} == {"output/summary.json", "output/tables/count.txt"}
    assert graph[action["agent"]["@id"]]["name"] == "scientist@example.org"
    assert len(action["object"]) == 1
    # Staged plaintext is gone.
    assert not any((runtime.settings.data_dir / "staging").iterdir())
    assert [e.target for e in _events(runtime, "job.finish")] == ["job:1"]


def test_outputs_decrypt_to_what_the_job_wrote(jw, runner, tmp_path):
    job = _submit(jw)
    runner.run_one()
    target = tmp_path / "summary.json"
    jw.sdk["owner"].download_file("alpha", "job-outputs", 1, "summary.json", target)
    summary = json.loads(target.read_text())
    assert summary == {"n": 3, "mean_hr": 74.0, "scale": "2"}
    assert jw.sdk["scientist"].get_job("alpha", job.id).state == "succeeded"


@pytest.mark.parametrize("who", ["checker", "auditor"])
def test_roles_without_jobs_submit_are_refused(jw, who):
    key = jw.keys.get(who) or signing.new_private_key()
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk[who].submit_job("alpha", jw.code, key=key, entrypoint="python job.py", inputs=["vitals@1"])
    assert err.value.status == 403


def test_outsiders_and_other_projects_see_no_jobs(jw, world, client):
    _submit(jw)
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["outsider"].get_job("alpha", 1)
    assert err.value.status == 404
    assert client.get("/api/v1/projects/alpha/jobs", headers=world.h["other_owner"]).status_code == 404
    assert jw.sdk["other_owner"].list_jobs("beta") == []
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["other_owner"].get_job("beta", 1)
    assert err.value.status == 404
    assert [j.id for j in jw.sdk["auditor"].list_jobs("alpha")] == [1]


def test_a_wrong_signature_is_refused_and_audited(jw, runtime):
    document, data = _signed(jw)
    forged = sign_manifest(jw.keys["owner"], document)  # signed by someone else's key
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].submit_signed("alpha", document, forged, data)
    assert err.value.status == 403 and err.value.code == "bad_signature"
    denied = [e for e in _events(runtime, "job.submit") if e.outcome == "denied"]
    assert len(denied) == 1 and "bad_signature" in denied[0].details
    assert jw.sdk["scientist"].list_jobs("alpha") == []


def test_tampering_with_any_signed_field_breaks_the_signature(jw):
    document, data = _signed(jw)
    signature = sign_manifest(jw.keys["scientist"], document)
    document["resources"]["time_limit_s"] = 7200
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].submit_signed("alpha", document, signature, data)
    assert err.value.code == "bad_signature"


def test_unsigned_garbage_signature_is_a_clear_error(jw):
    document, data = _signed(jw)
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].submit_signed("alpha", document, "not-base64!", data)
    assert err.value.status == 422 and err.value.code == "invalid_signature"


def test_expired_and_replayed_manifests_are_refused(jw):
    document, data = _signed(jw)
    document["expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].submit_signed(
            "alpha", document, sign_manifest(jw.keys["scientist"], document), data
        )
    assert err.value.code == "expired"
    document, data = _signed(jw)
    signature = sign_manifest(jw.keys["scientist"], document)
    jw.sdk["scientist"].submit_signed("alpha", document, signature, data)
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].submit_signed("alpha", document, signature, data)
    assert err.value.status == 409 and err.value.code == "replayed"


def test_a_bundle_that_is_not_the_signed_one_is_refused(jw, tmp_path):
    document, _ = _signed(jw)
    other = bundles.pack(write_code(tmp_path / "other", "print('evil')"), max_bytes=1 << 20)
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].submit_signed(
            "alpha", document, sign_manifest(jw.keys["scientist"], document), other.data
        )
    assert err.value.code == "bundle_mismatch"


def test_another_users_key_cannot_sign_for_me(jw):
    document, data = _signed(jw, "owner")
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].submit_signed("alpha", document, sign_manifest(jw.keys["owner"], document), data)
    assert err.value.code == "not_signer"


def test_a_revoked_key_signs_nothing(jw):
    fingerprint = signing.fingerprint(signing.public_key_raw(jw.keys["scientist"]))
    jw.sdk["scientist"].revoke_key(fingerprint)
    with pytest.raises(SanctumAPIError) as err:
        _submit(jw)
    assert err.value.code == "unknown_key"


def test_inputs_from_another_project_are_not_found(jw):
    with pytest.raises(SanctumAPIError) as err:
        _submit(jw, "other_owner")
    # beta has no dataset "vitals", and alpha's is invisible from beta
    assert err.value.status in (404, 422)
    document, data = _signed(jw, "other_owner", project="beta")
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["other_owner"].submit_signed(
            "beta", document, sign_manifest(jw.keys["other_owner"], document), data
        )
    assert err.value.status == 404


def test_a_missing_entrypoint_and_data_in_the_bundle_are_refused(jw, tmp_path):
    with pytest.raises(SanctumAPIError) as err:
        _submit(jw, entrypoint="python nothere.py")
    assert err.value.code == "no_entrypoint"
    folder = write_code(tmp_path / "with-data")
    (folder / "patients.csv").write_text("a,b\n")
    with pytest.raises(bundles.InvalidInput) as refused:
        bundles.pack(folder, max_bytes=1 << 20)
    assert refused.value.code == "data_in_bundle"


def test_the_executor_verifies_again_before_running(jw, runner, runtime, world):
    job = _submit(jw)
    with runtime.db.session() as db:  # the scientist leaves the project while the job is queued
        db.delete(
            db.scalar(
                select(Membership).where(Membership.user_id == world.scientist.id, Membership.project_id == 1)
            )
        )
    runner.run_one()
    ended = jw.sdk["owner"].get_job("alpha", job.id)
    assert ended.state == "rejected" and "may not run jobs" in ended.reason
    assert ended.output is None


def test_a_failing_job_ends_failed_with_its_logs_and_no_output(jw, runner, tmp_path):
    code = write_code(tmp_path / "fails", "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n")
    job = jw.sdk["scientist"].submit_job("alpha", code, key=jw.keys["scientist"], entrypoint="python job.py")
    runner.run_one()
    ended = jw.sdk["scientist"].get_job("alpha", job.id)
    assert ended.state == "failed" and "exit code 3" in ended.reason and ended.output is None
    assert "boom" in jw.sdk["scientist"].job_logs("alpha", job.id).stderr


def test_cancel_before_start_and_who_may_cancel(jw, runner):
    job = _submit(jw)
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["checker"].cancel_job("alpha", job.id)
    assert err.value.status == 403
    cancelled = jw.sdk["owner"].cancel_job("alpha", job.id)  # owners may cancel anyone's job
    assert cancelled.state == "cancelled"
    assert not runner.run_one()
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].cancel_job("alpha", job.id)
    assert err.value.status == 409


def test_lineage_of_an_imported_version_says_so(jw):
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["owner"].lineage("alpha", "vitals", 1)
    assert err.value.status == 404 and err.value.code == "no_lineage"


def test_keys_are_per_user_and_validated(jw):
    assert [k.name for k in jw.sdk["scientist"].list_keys()] == ["scientist laptop"]
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["scientist"].register_key("ed25519:AAAA")
    assert err.value.status == 422
    existing = jw.sdk["scientist"].list_keys()[0].public_key
    with pytest.raises(SanctumAPIError) as err:
        jw.sdk["owner"].register_key(existing)
    assert err.value.status == 409


def test_a_server_crash_mid_job_ends_it_failed_and_wipes_its_staging(jw, runner, runtime):
    from sanctum.jobs import staging
    from sanctum.jobs.runner import recover

    job = _submit(jw)
    assert runner.claim() is not None  # the job is 'running' when the server dies
    leftover = staging.job_dir(runtime.settings.data_dir, 1)
    (leftover / "data" / "vitals").mkdir(parents=True)
    (leftover / "data" / "vitals" / "vitals.csv").write_text("P1,60\n")  # staged plaintext
    assert recover(runtime) == 1
    ended = jw.sdk["scientist"].get_job("alpha", job.id)
    assert ended.state == "failed" and "server stopped" in ended.reason and ended.output is None
    assert not leftover.exists()


def test_a_job_that_writes_symlinks_to_host_files_gets_none_of_them(jw, runner, tmp_path):
    script = (
        "import os\n"
        "os.symlink('/etc/passwd', '/output/passwd')\n"
        "os.symlink('/data/vitals', '/output/inputs')\n"
        "open('/output/ok.txt', 'w').write('fine')\n"
    )
    code = write_code(tmp_path / "links", script)
    job = jw.sdk["scientist"].submit_job(
        "alpha", code, key=jw.keys["scientist"], entrypoint="python job.py", inputs=["vitals"]
    )
    runner.run_one()
    ended = jw.sdk["scientist"].get_job("alpha", job.id)
    assert ended.state == "succeeded" and "skipped 2" in ended.reason
    assert [f.path for f in jw.sdk["owner"].list_files("alpha", "job-outputs", 1)] == ["ok.txt"]


def test_a_job_reruns_from_its_stored_bundle_with_a_fresh_signature(jw, runner):
    first = _submit(jw)
    document, _ = _signed(jw)
    rerun = jw.sdk["scientist"].submit_signed(
        "alpha", document, sign_manifest(jw.keys["scientist"], document), None, bundle_from_job=first.id
    )
    assert rerun.id == 2 and rerun.code_sha256 == first.code_sha256
    with pytest.raises(SanctumAPIError) as err:  # another project's job number is not found
        jw.sdk["other_owner"].submit_signed("beta", document, "x" * 88, None, bundle_from_job=first.id)
    assert err.value.status in (403, 404, 422)


def test_a_jobs_summary_metrics_are_returned_and_bad_ones_ignored_with_a_reason(jw, runner, tmp_path):
    script = "import json\njson.dump({'acc': 0.9, 'loss': 1}, open('/output/metrics.json', 'w'))\n"
    code = write_code(tmp_path / "metrics", script)
    job = jw.sdk["scientist"].submit_job("alpha", code, key=jw.keys["scientist"], entrypoint="python job.py")
    runner.run_one()
    done = jw.sdk["checker"].get_job("alpha", job.id)
    assert done.state == "succeeded" and done.metrics == {"acc": 0.9, "loss": 1.0}
    # The file was written by untrusted code: anything but a flat object of finite numbers is ignored.
    for index, bad in enumerate(["{'acc': float('nan')}", "[1, 2]", "{'acc': 'high'}", "{'x' * 300: 1}"]):
        script = f"import json\njson.dump({bad}, open('/output/metrics.json', 'w'))\n"
        code = write_code(tmp_path / f"bad{index}", script)
        job = jw.sdk["scientist"].submit_job(
            "alpha", code, key=jw.keys["scientist"], entrypoint="python job.py"
        )
        runner.run_one()
        done = jw.sdk["scientist"].get_job("alpha", job.id)
        assert done.state == "succeeded" and done.metrics is None
        assert "metrics ignored" in done.reason and "metrics.json" in done.reason


def test_a_running_jobs_logs_are_readable_live_and_it_can_be_stopped(jw, runner, tmp_path):
    import threading
    import time

    script = "import time\nprint('epoch 1 loss 0.9', flush=True)\ntime.sleep(60)\n"
    code = write_code(tmp_path / "slow", script)
    job = jw.sdk["scientist"].submit_job("alpha", code, key=jw.keys["scientist"], entrypoint="python job.py")
    worker = threading.Thread(target=runner.run_one)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        logs = jw.sdk["checker"].job_logs("alpha", job.id)
        while "epoch 1" not in logs.stdout and time.monotonic() < deadline:
            time.sleep(0.2)
            logs = jw.sdk["checker"].job_logs("alpha", job.id)
        assert logs.live and "epoch 1 loss 0.9" in logs.stdout
        jw.sdk["scientist"].cancel_job("alpha", job.id)
    finally:
        worker.join(90)
    ended = jw.sdk["scientist"].get_job("alpha", job.id)
    assert ended.state == "cancelled"
    logs = jw.sdk["scientist"].job_logs("alpha", job.id)
    assert not logs.live and "epoch 1 loss 0.9" in logs.stdout  # the stored log once it ended
