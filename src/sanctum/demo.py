"""The demo instance ``make demo`` starts: a project with a Data Owner and a Data Scientist.

Credentials are generated once, kept in ``demo-credentials.json`` (mode 0600) inside the data dir
and printed on every start, so a newcomer can always find them again.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from sanctum import demo_ingest, demo_tracking
from sanctum.access.permissions import Permission, Role
from sanctum.access.policy import Principal
from sanctum.accounts import twofactor
from sanctum.accounts.users import create_user
from sanctum.api.runtime import Runtime
from sanctum.audit import AuditContext
from sanctum.db.models import User
from sanctum.projects import members
from sanctum.projects import service as projects

DEMO_PROJECT = "demo"
CREDENTIALS_FILE = "demo-credentials.json"
PEOPLE = (
    ("admin", "admin@demo.example.org", True),
    ("data_owner", "owner@demo.example.org", True),
    ("data_scientist", "scientist@demo.example.org", False),
)


def _password() -> str:
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))


def _owner_principal(user: User) -> Principal:
    return Principal(
        user_id=user.id,
        email=user.email,
        is_admin=False,
        can_create_projects=True,
        token_id=0,
        token_kind="demo",  # noqa: S106 - a kind name, not a secret
        scopes=frozenset(Permission),
    )


def ensure_demo(runtime: Runtime) -> dict[str, Any]:
    """Create the demo people and project once; return their credentials."""
    path = Path(runtime.settings.data_dir) / CREDENTIALS_FILE
    if path.exists():
        return json.loads(path.read_text())
    ctx = AuditContext(actor_email="sanctum demo")
    creds: dict[str, Any] = {"project": DEMO_PROJECT, "people": {}}
    with runtime.db.session() as db:
        users: dict[str, User] = {}
        for role, email, with_totp in PEOPLE:
            password = _password()
            user = create_user(
                db,
                ctx,
                email,
                password,
                admin=(role == "admin"),
                can_create_projects=(role != "data_scientist"),
            )
            entry: dict[str, Any] = {"email": email, "password": password}
            if with_totp:
                enrolment = twofactor.begin(db, ctx, user, runtime.totp_box)
                import pyotp

                entry["totp_secret"] = enrolment.secret
                entry["otpauth_uri"] = enrolment.otpauth_uri
                entry["recovery_codes"] = twofactor.confirm(
                    db, ctx, user, runtime.totp_box, pyotp.TOTP(enrolment.secret).now()
                )
            users[role] = user
            creds["people"][role] = entry
        project = projects.create(
            db,
            _owner_principal(users["data_owner"]),
            name=DEMO_PROJECT,
            title="Demo project",
            description="Synthetic data only.",
        )
        members.add(db, project, users["data_scientist"].email, Role.DATA_SCIENTIST)
    # after the block: the ingest pipeline writes in its own sessions (and its worker pool)
    creds["ingests"] = demo_ingest.load(runtime, project)
    creds["experiment"] = demo_tracking.log_grid_search(runtime, DEMO_PROJECT, users["data_scientist"].email)
    creds["job"] = _submit_demo_job(runtime, users["data_owner"], users["data_scientist"])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(creds, out, indent=2)
    return creds


def _submit_demo_job(runtime: Runtime, owner: User, scientist: User) -> str:
    """Queue the sleep-staging example for the demo scientist; the server runs it once it serves.

    The demo scientist's signing key is made here and kept in the data dir (mode 0600) only because
    this is a demo: a real researcher makes theirs on their own machine with ``sanctum key create``.
    """
    import shutil
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from sanctum.accounts.tokens import TokenKind, issue
    from sanctum.api.app import create_app
    from sanctum.db.types import utcnow
    from sanctum.sdk import Client, signing_keys
    from sanctum.sdk.jobs import public_key_text

    if shutil.which("bwrap") is None:
        return "not queued: bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        from sanctum.demo_jobs import run_demo_job
    except ImportError as exc:  # pyedflib (synthetic recordings) comes with the test extras
        return f"not queued: {exc}"
    with runtime.db.session() as db:
        tokens = {
            u.id: issue(
                db, u, TokenKind.LOGIN, expires_at=utcnow() + timedelta(minutes=10), name="demo"
            ).secret
            for u in (owner, scientist)
        }
    http = TestClient(create_app(runtime=runtime))  # in process, no lifespan: nothing starts here
    key = signing_keys.create(Path(runtime.settings.data_dir) / "demo-scientist-signing-key.pem")
    with (
        Client("http://testserver", tokens[owner.id], http=http) as as_owner,
        Client("http://testserver", tokens[scientist.id], http=http) as as_scientist,
    ):
        as_scientist.register_key(public_key_text(key), name="demo")
        number = run_demo_job(as_owner, as_scientist, DEMO_PROJECT, key)
    return f"sleep-staging example queued as job {number}; see the Jobs page"
