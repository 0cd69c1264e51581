"""One ingest session run to the end in process: start, one batch, finish (cancel on failure).

For server-side sources that hold all their files at once: a browser upload and ``sanctum demo``.
The CLI and SDK drive the same steps over HTTP, batch by batch, resumably.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from sanctum.db.models import Project
from sanctum.errors import NotFound
from sanctum.ingest import batches, service
from sanctum.ingest.archive import Refusal
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import IngestCreate

if TYPE_CHECKING:
    from sanctum.api.runtime import Runtime


def run(
    runtime: Runtime,
    ctx: ProjectContext,
    body: IngestCreate,
    files: Sequence[tuple[str, bytes]],
    refused: Sequence[Refusal] = (),
) -> int:
    """Ingest ``files`` (name, raw bytes) into ``body.dataset``; return the session's number.

    The session starts with the project loaded in its own writing session: the caller's object
    may belong to a read-only or closed session, and a project's key is made (on its first
    dataset) only in the session that holds the project.
    """
    with runtime.db.session() as session:
        project = session.get(Project, ctx.project.id)
        if project is None:
            raise NotFound("project not found")
        ctx = replace(ctx, project=project)
        number = service.start(session, ctx, runtime.keyring, body).number
    try:
        batches.ingest_files(runtime, ctx, body.dataset, number, files, refused)
        service.finish(runtime, ctx, number)
    except BaseException:
        service.cancel(runtime, ctx, number)
        raise
    return number
