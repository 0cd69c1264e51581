"""The project's pseudonymisation secret, and the keyed values an ingest records instead of plaintext.

Why a stored random secret (wrapped by the project key, in ``project_secrets``) and not the project
key itself: pseudonyms must survive a rotation of the project key (a rotation re-wraps this row),
while destroying the project key must still destroy them (crypto-shredding: the wrapped secret is
then noise). The per-patient date offsets derive from this secret too (``Pseudonymiser``), so they
are persistent across uploads and never stored anywhere.

From the same secret come, domain-separated, the keyed HMACs an ingest records: of a source's
content (to recognise the same file again without keeping a plain hash, which would confirm a
guess of a small file's content) and of its path (to refuse a source twice). Source paths and
per-instance metadata are sealed (AES-GCM) under a key derived from the dataset's data key, so
shredding the dataset makes them unreadable along with its blobs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Project
from sanctum.errors import NotFound
from sanctum.ingest.models import ProjectSecret
from sanctum.security.keys import SecretBox, derive_key
from sanctum.store import keys as wrapping

PSEUDONYMS = "pseudonyms"


def _context(project: Project, purpose: str) -> str:
    return f"project-secret:{project.id}:{purpose}"


def pseudonym_secret(session: Session, keyring: Keyring, project: Project, *, create: bool = False) -> bytes:
    """The project's pseudonymisation secret (32 bytes), made on first use when ``create``.

    ``create`` needs a writing session; two first uses racing (PostgreSQL) end with one secret:
    the loser's insert fails on the unique constraint inside a savepoint and it reads the winner's.
    """
    query = select(ProjectSecret).where(
        ProjectSecret.project_id == project.id, ProjectSecret.purpose == PSEUDONYMS
    )
    row = session.scalar(query)
    if row is None:
        if not create:
            raise NotFound("this project has no pseudonymisation secret yet", code="no_secret")
        secret = secrets.token_bytes(32)
        wrapped = wrapping.wrap(keyring.project_key(session, project), secret, _context(project, PSEUDONYMS))
        try:
            with session.begin_nested():
                session.add(ProjectSecret(project_id=project.id, purpose=PSEUDONYMS, wrapped=wrapped))
        except DbIntegrityError:
            row = session.scalar(query)
            assert row is not None
        else:
            return secret
    return wrapping.unwrap(keyring.project_key(session, project), row.wrapped, _context(project, PSEUDONYMS))


def content_hmac(secret: bytes, chunks: Iterable[bytes]) -> str:
    """A keyed digest of a source file's bytes: recognises the same file, confirms no guess."""
    mac = hmac.new(secret, b"sanctum/ingest/content\x00", hashlib.sha256)
    for chunk in chunks:
        mac.update(chunk)
    return mac.hexdigest()


def path_hmac(secret: bytes, path: str) -> str:
    """A keyed digest of a source path, unique per session: a source is never recorded twice."""
    data = b"sanctum/ingest/path\x00" + path.encode("utf-8", "surrogateescape")
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


class RecordBox:
    """Seals what an ingest keeps about a source (its path, its metadata row) under the dataset key.

    Each value is bound to its session and path digest, so a sealed value copied to another row
    does not open.
    """

    def __init__(self, dataset_key: bytes) -> None:
        self._box = SecretBox(derive_key(dataset_key, "sanctum/ingest-records/v1"))

    @staticmethod
    def _ad(session_id: int, path_digest: str, what: str) -> str:
        return f"ingest:{session_id}:{path_digest}:{what}"

    def seal_path(self, session_id: int, path_digest: str, path: str) -> bytes:
        return self._box.seal(
            path.encode("utf-8", "surrogateescape"), self._ad(session_id, path_digest, "path")
        )

    def open_path(self, session_id: int, path_digest: str, sealed: bytes) -> str:
        raw = self._box.open(sealed, self._ad(session_id, path_digest, "path"))
        return raw.decode("utf-8", "surrogateescape")

    def seal_meta(self, session_id: int, path_digest: str, meta: dict[str, object]) -> bytes:
        raw = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
        return self._box.seal(raw, self._ad(session_id, path_digest, "meta"))

    def open_meta(self, session_id: int, path_digest: str, sealed: bytes) -> dict[str, object]:
        return json.loads(self._box.open(sealed, self._ad(session_id, path_digest, "meta")))
