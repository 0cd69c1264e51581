"""The DMP enforced, not just stored: each rule refuses with its code and an audit event, and the
paths it must not block (ingest, allowed locations) still work. Jobs record the plan's version."""

from __future__ import annotations

import base64
import json

import pytest
from nacl.public import PrivateKey
from sqlalchemy import select

from airlock_helpers import SAFE_TABLE, job_output, make_airlock_world
from dmp_helpers import dataset, plan, put
from ingest_helpers import CSV_TEXT, POLICY, tar_body
from jobs_helpers import SUMMARY_JOB, write_code
from sanctum.airlock.rules import DEFAULT_EXPORT_TYPES, export_rules, normalise_name
from sanctum.db.models import AuditEvent, DatasetVersion, Project, Share
from sanctum.errors import Denied
from sanctum.jobs import bundle as bundles
from sanctum.jobs import manifest as manifests
from sanctum.jobs import nodes
from sanctum.jobs.models import Job
from sanctum.jobs.states import JobState
from sanctum.sdk import Client
from sanctum.sdk.errors import SanctumAPIError
from sanctum.sdk.jobs import encode_bundle, public_key_text, sign_manifest
from sanctum.security import signing

API = "/api/v1/projects/alpha"


@pytest.fixture
def settings(settings):
    """No job runs here (only submission is checked); this server's local executor is in Germany."""
    settings.job_runner = False
    settings.location = "DE"
    settings.slurm_partition = "batch"
    return settings


def events(runtime, action: str, outcome: str = "denied") -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(
            db.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.outcome == outcome)
                .order_by(AuditEvent.seq)
            )
        )


def set_plan(client, world, *datasets, controls=None) -> int:
    r = put(client, world.h["owner"], plan(*datasets, controls=controls))
    assert r.status_code == 201, r.text
    return r.json()["number"]


def upload(client, h, name: str, body: bytes, path: str = "data.csv", kind: str = "files"):
    base = f"{API}/datasets"
    if client.get(f"{base}/{name}", headers=h).status_code == 404:
        assert client.post(base, json={"name": name, "kind": kind}, headers=h).status_code == 201
    r = client.post(f"{base}/{name}/versions", headers=h)
    assert r.status_code == 201, r.text
    return client.put(f"{base}/{name}/versions/{r.json()['number']}/files/{path}", content=body, headers=h)


def test_raw_upload_into_personal_data_is_refused_but_ingest_stays_open(client, world, runtime) -> None:
    h = world.h["owner"]
    assert upload(client, h, "clinical", CSV_TEXT.encode(), kind="table").status_code == 201  # no plan yet
    set_plan(
        client, world, dataset("clinical", personal="yes"), dataset("codes", sensitive="yes"), dataset("free")
    )
    r = upload(client, h, "clinical", CSV_TEXT.encode(), kind="table")
    assert r.status_code == 403
    error = r.json()["error"]
    assert error["code"] == "deid_required" and "de-identifying ingest" in error["message"]
    assert "personal data" in error["message"] and "DMP version 1" in error["message"]
    r = upload(client, h, "codes", b"x")
    assert r.status_code == 403 and "sensitive data" in r.json()["error"]["message"]
    assert upload(client, h, "free", b"anything").status_code == 201  # a dataset the plan does not restrict
    with runtime.db.session(write=False) as db:
        drafts = db.scalars(select(DatasetVersion).where(DatasetVersion.state == "draft")).all()
        assert {v.file_count for v in drafts} == {0, 1}  # the refused drafts hold nothing
    refused = events(runtime, "dataset.import")
    assert [(e.target, json.loads(e.details)["code"]) for e in refused] == [
        ("clinical@2", "deid_required"),
        ("codes@1", "deid_required"),
    ]
    # De-identifying ingest into the same dataset is not blocked.
    r = client.post(f"{API}/ingests", json={"dataset": "clinical", "policy": POLICY}, headers=h)
    assert r.status_code == 201, r.text
    number = r.json()["id"]
    r = client.post(
        f"{API}/ingests/{number}/batches", content=tar_body({"v.csv": CSV_TEXT.encode()}), headers=h
    )
    assert r.status_code == 200 and r.json()["outcomes"][0]["outcome"] == "stored", r.text
    assert client.post(f"{API}/ingests/{number}/finish", headers=h).status_code == 200


def test_a_closed_dataset_is_not_shared_and_open_shares_end(client, world, runtime) -> None:
    h = world.h["owner"]
    assert upload(client, h, "clinical", b"a,b\n1,2\n").status_code == 201
    assert upload(client, h, "scans", b"img").status_code == 201
    share = lambda name: client.post(  # noqa: E731
        f"{API}/datasets/{name}/shares", json={"project": "beta", "access": "read"}, headers=h
    )
    assert share("clinical").status_code == 201  # offered before any plan
    r = put(client, h, plan(dataset("clinical", access="closed"), dataset("scans", access="shared")))
    assert r.status_code == 201 and r.json()["shares_revoked"] == 1
    with runtime.db.session(write=False) as db:
        assert db.scalars(select(Share.state)).all() == ["revoked"]
    r = share("clinical")
    assert r.status_code == 403 and r.json()["error"]["code"] == "dmp_closed"
    assert "'closed'" in r.json()["error"]["message"]
    assert share("scans").status_code == 201
    refused = events(runtime, "share.offer")
    assert {e.project_name for e in refused} == {"alpha"}  # the target project never learns of it
    assert json.loads(refused[0].details)["target_project"] == "beta"
    # Closing a dataset ends its open offers too; and should an offer slip past (one made in the
    # same instant as the plan), accepting it is refused all the same.
    r = put(client, h, plan(dataset("clinical", access="closed"), dataset("scans", access="closed")))
    assert r.json()["shares_revoked"] == 1
    with runtime.db.session() as db:
        source = db.scalar(select(Share).where(Share.state == "revoked"))
        slipped = Share(
            dataset_id=source.dataset_id,
            source_project_id=source.source_project_id,
            target_project_id=source.target_project_id,
            access="read",
            state="pending",
        )
        db.add(slipped)
        db.flush()
        slipped_id = slipped.id
    r = client.post(f"/api/v1/projects/beta/shares/{slipped_id}/accept", headers=world.h["other_owner"])
    assert r.status_code == 403 and r.json()["error"]["code"] == "dmp_closed"
    accepted = events(runtime, "share.accept")
    assert {e.project_name for e in accepted} == {"alpha", "beta"}
    with runtime.db.session(write=False) as db:
        assert db.get(Share, slipped_id).state == "pending"


# --------------------------------------------------------------------------- jobs


@pytest.fixture
def signer(client, world, people, tmp_path):
    """The scientist's SDK client and registered signing key, a code folder, and a vitals dataset."""
    sdk = Client("http://testserver", people.token(world.scientist), http=client)
    key = signing.new_private_key()
    sdk.register_key(public_key_text(key), name="laptop")
    assert (
        upload(client, world.h["owner"], "vitals", b"patient,hr\nP1,60\n", path="vitals.csv").status_code
        == 201
    )
    r = client.post(f"{API}/datasets/vitals/versions/1/commit", headers=world.h["owner"])
    assert r.status_code == 200, r.text
    return sdk, key, write_code(tmp_path / "code", SUMMARY_JOB)


def submit(signer, **kwargs):
    sdk, key, code = signer
    return sdk.submit_job(
        "alpha", code, key=key, entrypoint="python job.py", **{"inputs": ["vitals"], **kwargs}
    )


def test_jobs_run_only_where_every_plan_allows_and_record_its_version(client, world, runtime, signer) -> None:
    job = submit(signer)  # no plan: anywhere, and no version to record
    set_plan(client, world, dataset("vitals", personal="yes", location="NL"))
    with pytest.raises(SanctumAPIError) as err:
        submit(signer)
    assert err.value.status == 403 and err.value.code == "location_not_allowed"
    assert "input vitals may be processed only in (DMP version 1) NL" in err.value.message
    assert "this executor is in DE" in err.value.message
    # The project-wide rule of the extension applies to every job, inputs or not.
    set_plan(client, world, dataset("vitals", location="DE"), controls={"allowed_locations": ["FR", "NL"]})
    with pytest.raises(SanctumAPIError) as err:
        submit(signer, inputs=[])
    assert err.value.code == "location_not_allowed" and "allows compute only in FR, NL" in err.value.message
    refused = events(runtime, "job.submit")
    assert [json.loads(e.details)["code"] for e in refused] == ["location_not_allowed"] * 2
    version = set_plan(
        client, world, dataset("vitals", location="DE"), controls={"allowed_locations": ["DE"]}
    )
    allowed = submit(signer)
    # A Slurm job is not placed yet: it is checked when its node asks for the job's plan and keys.
    elsewhere = submit(signer, executor="slurm")
    with runtime.db.session(write=False) as db:
        recorded = dict(db.execute(select(Job.number, Job.dmp_version)).all())
    assert recorded == {job.id: None, allowed.id: version, elsewhere.id: version}


def test_a_manifest_signed_under_another_plan_version_is_refused(client, world, runtime, signer) -> None:
    _, key, code = signer
    set_plan(client, world, dataset("vitals"))
    set_plan(client, world, dataset("vitals"), controls={"reviewers": 1})
    packed = bundles.pack(code, max_bytes=1 << 20)

    def post(dmp_version: int):
        manifest = manifests.new(
            project="alpha",
            bundle_sha256=packed.sha256,
            bundle_size=len(packed.data),
            entrypoint=["python", "job.py"],
            signer=signing.fingerprint(signing.public_key_raw(key)),
            dmp_version=dmp_version,
        ).document()
        body = {
            "manifest": manifest,
            "signature": sign_manifest(key, manifest),
            "bundle": encode_bundle(packed.data),
        }
        return client.post(f"{API}/jobs", json=body, headers=world.h["scientist"])

    r = post(1)
    assert r.status_code == 409 and r.json()["error"]["code"] == "dmp_version_mismatch"
    assert "version 2 is in force" in r.json()["error"]["message"]
    assert json.loads(events(runtime, "job.submit")[0].details)["code"] == "dmp_version_mismatch"
    r = post(2)
    assert r.status_code == 201, r.text


def _register_node(client, world, name: str, location: str) -> None:
    body = {
        "name": name,
        "public_key": signing.encode_public_key(signing.public_key_raw(signing.new_private_key())),
        "sealing_key": base64.b64encode(bytes(PrivateKey.generate().public_key)).decode(),
        "addresses": ["10.0.0.5"],
        "location": location,
    }
    assert client.post("/api/v1/admin/nodes", json=body, headers=world.h["admin"]).status_code == 201


def test_a_slurm_node_in_a_disallowed_location_gets_no_plan_or_keys(client, world, runtime, signer) -> None:
    set_plan(client, world, dataset("vitals", location="NL"))
    first = submit(signer, executor="slurm")
    second = submit(signer, executor="slurm")
    _register_node(client, world, "node-de", "DE-BY")
    _register_node(client, world, "node-nl", "nl")
    with runtime.db.session() as db:  # what the dispatcher does once sbatch accepted them
        for job in db.scalars(select(Job)).all():
            job.state, job.slurm_job_id = JobState.RUNNING, f"10{job.number}"

    def place(node_name: str, number: int) -> Job:
        with runtime.db.session() as db:
            node = db.scalar(select(nodes.Node).where(nodes.Node.name == node_name))
            job_id = db.scalar(select(Job.id).where(Job.number == number))
            return nodes.placed_job(db, node, job_id, ("RUNNING", node_name))

    with pytest.raises(Denied) as err:
        place("node-de", first.id)
    assert (
        err.value.code == "location_not_allowed" and "node node-de may not run this job" in err.value.message
    )
    assert "this executor is in DE" in err.value.message
    with runtime.db.session(write=False) as db:
        rejected = db.scalar(select(Job).where(Job.number == first.id))
        assert rejected.state == JobState.REJECTED and "may be processed only in" in rejected.reason
        assert rejected.ended_at is not None and rejected.node_id is None  # no keys were sealed to it
    (finish,) = events(runtime, "job.finish")
    assert finish.target == f"job:{first.id}" and json.loads(finish.details)["node"] == "node-de"
    assert finish.actor_email == "node:node-de" and finish.project_name == "alpha"
    # The job ended: the node cannot come back for its keys.
    with pytest.raises(Exception, match="the job is rejected"):
        place("node-de", first.id)
    # A node in an allowed location is placed as before.
    assert place("node-nl", second.id).number == second.id


def test_the_extension_feeds_the_airlock_rules(client, world, runtime) -> None:
    with runtime.db.session(write=False) as db:
        project = db.scalar(select(Project).where(Project.name == "alpha"))
        before = export_rules(db, project)
    assert before.dmp_version is None and before.approvals == 2
    controls = {
        "reviewers": 1,
        "min_cell_count": 5,
        "max_rows": 500,
        "allowed_output_types": ["csv"],
        "allow_images": True,
        "identifier_columns": ["Ward Code"],
    }
    version = set_plan(client, world, dataset("vitals"), controls=controls)
    with runtime.db.session(write=False) as db:
        project = db.scalar(select(Project).where(Project.name == "alpha"))
        rules = export_rules(db, project)
    assert (rules.approvals, rules.min_cell_count, rules.max_rows) == (1, 5, 500)
    assert rules.allowed_types == {"csv"} and rules.allow_images and rules.dmp_version == version
    assert normalise_name("Ward Code") in rules.identifier_columns and "mrn" in rules.identifier_columns
    # A plan without the extension changes nothing but the version the rules came from.
    version = set_plan(client, world, dataset("vitals"))
    with runtime.db.session(write=False) as db:
        project = db.scalar(select(Project).where(Project.name == "alpha"))
        rules = export_rules(db, project)
    assert (
        rules.approvals == 2 and rules.allowed_types == DEFAULT_EXPORT_TYPES and rules.dmp_version == version
    )


def test_exports_are_checked_against_the_plan_and_record_its_version(
    client, world, people, runtime, tmp_path
):
    aw = make_airlock_world(runtime, client, world, people, tmp_path)
    version = set_plan(
        client, world, dataset("vitals"), controls={"reviewers": 1, "allowed_output_types": ["csv"]}
    )
    name, number, _ = job_output(aw, {"t.csv": SAFE_TABLE, "notes.json": b'{"n": 12}'})
    sdk = aw.sdk["scientist"]
    export = sdk.create_export("alpha", justification="table 1 of the paper")
    sdk.add_export_file("alpha", export.number, name, number, "t.csv")
    detail = sdk.add_export_file("alpha", export.number, name, number, "notes.json")
    verdicts = {f.name: f.check_verdict for f in detail.files}
    assert verdicts["notes.json"] == "fail"  # json is a default type, but not one this plan allows
    assert verdicts["t.csv"] != "fail"
    submitted = sdk.submit_export("alpha", export.number)
    assert submitted.required_approvals == 1 and submitted.dmp_version == version
