"""The key hierarchy: master key → project key → dataset data key.

Each key is wrapped by the one above it and bound to its owner (``project:<id>``,
``dataset:<id>``), so a wrapped key copied to another row does not unwrap. Destroying a wrapped
key — a dataset's, or a project's and with it all of its datasets' — is crypto-shredding: every
copy of the blobs it protected becomes unreadable.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sanctum.db.models import Dataset, Project
from sanctum.errors import NotFound
from sanctum.security.keys import derive_key
from sanctum.store import keys as wrapping


class Keyring:
    def __init__(self, master: bytes) -> None:
        self._kek = derive_key(master, "sanctum/project-keys/v1")

    def project_key(self, session: Session, project: Project) -> bytes:
        """The project's key, created (and wrapped, in the caller's transaction) on first use."""
        context = f"project:{project.id}"
        if project.wrapped_key is None:
            if project not in session:
                # A new key set on an object of another session would never be written, and every
                # dataset key wrapped by it would be lost: refuse rather than lose data.
                raise RuntimeError("project_key: the project must belong to the session creating its key")
            key = wrapping.new_data_key()
            project.wrapped_key = wrapping.wrap(self._kek, key, context)
            session.flush()
            return key
        return wrapping.unwrap(self._kek, project.wrapped_key, context)

    def new_dataset_key(self, session: Session, project: Project, dataset: Dataset) -> None:
        """Give a new dataset its own data key, wrapped by its project's key."""
        key = wrapping.new_data_key()
        dataset.wrapped_key = wrapping.wrap(self.project_key(session, project), key, f"dataset:{dataset.id}")

    def dataset_key(self, session: Session, dataset: Dataset) -> bytes:
        """The data key of a dataset (its own project's key unwraps it, also when shared)."""
        if dataset.wrapped_key is None:
            raise NotFound("this dataset was shredded; its data can no longer be read", code="shredded")
        project = session.get(Project, dataset.project_id)
        if project is None or project.wrapped_key is None:
            raise NotFound("this dataset's project was deleted", code="shredded")
        return wrapping.unwrap(
            self.project_key(session, project), dataset.wrapped_key, f"dataset:{dataset.id}"
        )
