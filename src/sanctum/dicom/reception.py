"""One association, one ingest session: received instances in, one committed version (or nothing) out.

The ingest pipeline does the work (``sanctum.ingest.batches.ingest_files``: detect, check,
de-identify, encrypt, store, record, audit); this module decides *when*:

- the session opens with the first C-STORE (an association that only echoes leaves no trace but
  its audit event), in the same transaction as its ``DicomReception`` row and audit event;
- each instance is ingested as it arrives, and its outcome becomes the C-STORE status, so the
  sender learns at once which instances were refused;
- a release request commits the session *before* the release response leaves: a sender that saw
  its association released normally can rely on the version being there. The row is marked
  ``released`` first, so a receiver that dies while committing finishes the job at its next start;
- an abort, a dropped connection or a receiver shutdown cancels the session: its draft and
  quarantined outputs are discarded as a cancelled ingest's are, and no version appears;
- ``sanctum.dicom.recovery`` closes what a dead receiver left.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from sanctum.db.models import Project
from sanctum.db.types import utcnow
from sanctum.dicom.models import DicomReception
from sanctum.dicom.routes import Accepted
from sanctum.errors import NotFound, SanctumError
from sanctum.ingest import batches, service
from sanctum.ingest.archive import Refusal
from sanctum.ingest.models import IngestSession
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import IngestCreate, SourceOutcome

if TYPE_CHECKING:
    from sanctum.api.runtime import Runtime

log = logging.getLogger("sanctum.dicom")

# C-STORE statuses (PS3.4 Annex B.2.3, as pynetdicom documents them for EVT_C_STORE handlers).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # nothing was recorded; the sender may try again later
DOES_NOT_MATCH = 0xA900  # the data set does not match the request's SOP Class / Instance
CANNOT_UNDERSTAND = 0xC210  # not parseable, truncated, or refused by de-identification
STATUS = {"stored": SUCCESS, "quarantined": SUCCESS, "duplicate": SUCCESS, "skipped": SUCCESS}

OPEN, RELEASED, COMMITTED, CANCELLED = "open", "released", "committed", "cancelled"
RECEIVER = "dicom receiver"  # the actor of what the receiver does as itself
_UID_TEXT = re.compile(r"[^0-9.]")


class Closed(Exception):
    """The association ended (abort, shutdown) while an instance was still arriving."""


def source_name(index: int, sop_instance_uid: object) -> str:
    """The instance's name in the session's report (sealed in the catalog, shown to owners only):
    its order in the association and the sender's SOP Instance UID, so an owner can find a refused
    instance in the PACS."""
    return f"{index:06d}-{_UID_TEXT.sub('_', str(sop_instance_uid or ''))[:64] or 'no-uid'}.dcm"


def mismatch(raw: bytes, sop_class: object, sop_instance: object) -> str | None:
    """Why the data set contradicts its C-STORE request, if it does. A data set that cannot be read
    is left to the pipeline, which says why in its own words."""
    import pydicom

    try:
        ds = pydicom.dcmread(
            io.BytesIO(raw), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
        )
        found_class, found_instance = str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", ""))
    except Exception:
        return None
    if found_class and found_class != str(sop_class):
        return "the data set's SOP Class UID differs from the C-STORE request's Affected SOP Class UID"
    if found_instance and found_instance != str(sop_instance):
        return "the data set's SOP Instance UID differs from the C-STORE request's Affected SOP Instance UID"
    return None


class Reception:
    """The state of one accepted association. Thread-safe: pynetdicom calls the C-STORE and release
    handlers on the association's thread, but an abort can come from the server's shutdown and a
    dropped connection from the transport thread."""

    def __init__(self, runtime: Runtime, route: Accepted, *, peer: str, listener: str) -> None:
        self.runtime = runtime
        self.route = route
        self.peer = peer
        self.listener = listener
        self._lock = threading.Lock()
        self._count = 0
        self.number: int | None = None  # the ingest session, once the first instance arrived
        self.reception_id: int | None = None
        self.closed = False
        self._ctx = route.ctx

    @property
    def ctx(self) -> ProjectContext:
        return self._ctx

    # ------------------------------------------------------------------ instances

    def _open(self) -> tuple[int, int]:
        """The association's ingest session (opened with the first instance), and this instance's
        place in the association."""
        with self._lock:
            if self.closed:
                raise Closed
            if self.number is None:
                body = IngestCreate(dataset=self.route.dataset, options=self.route.options)
                with self.runtime.db.session() as session:
                    # The project as this session sees it: creating the first dataset creates the
                    # project key, which must land on a row this session writes.
                    project = session.get(Project, self.route.ctx.project.id)
                    if project is None:
                        raise NotFound("project not found")
                    self._ctx = replace(self.route.ctx, project=project)
                    ingest = service.start(session, self.ctx, self.runtime.keyring, body)
                    row = DicomReception(
                        project_id=self.ctx.project.id,
                        ingest_id=ingest.id,
                        ae_title=self.route.ae_title,
                        listener=self.listener,
                        peer=self.peer,
                        state=OPEN,
                    )
                    session.add(row)
                    session.flush()
                    self.ctx.record(
                        session,
                        "dicom.association",
                        target=f"ae:{self.route.ae_title}",
                        details={
                            "ingest": ingest.number,
                            "dataset": self.route.dataset,
                            "listener": self.listener,
                        },
                    )
                    self.number, self.reception_id = ingest.number, row.id
            self._count += 1
            return self.number, self._count

    def store(self, raw: bytes, sop_class: object, sop_instance: object) -> int:
        """Ingest one received instance (the encoded file, with its file meta); its C-STORE status."""
        try:
            number, index = self._open()
        except Closed:
            return OUT_OF_RESOURCES
        except Exception as exc:  # the dataset was shredded, the catalog is down, ...
            log.error("DICOM %s: cannot open an ingest session (%s)", self.route.ae_title, why(exc))
            return OUT_OF_RESOURCES
        name = source_name(index, sop_instance)
        refusal, status = None, SUCCESS
        if len(raw) > self.runtime.settings.ingest_max_file_bytes:
            refusal, status = "larger than the per-file limit (ingest_max_file_bytes)", OUT_OF_RESOURCES
        elif reason := mismatch(raw, sop_class, sop_instance):
            refusal, status = reason, DOES_NOT_MATCH
        files, refused = ([], [Refusal(name, refusal)]) if refusal else ([(name, raw)], [])
        try:
            (outcome,) = batches.ingest_files(self.runtime, self.ctx, None, number, files, refused)
        except Exception as exc:  # nothing of this instance was recorded (all or nothing)
            if not self.closed:
                log.error("DICOM %s: instance %s not ingested (%s)", self.route.ae_title, name[:6], why(exc))
            return OUT_OF_RESOURCES
        return status if refusal else _status(outcome)

    # ------------------------------------------------------------------ the end

    def release(self) -> None:
        """The sender asked to release: commit now, before the release response goes out."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.number is None:
            return
        try:
            self._mark(RELEASED, ended=False)
            service.finish(self.runtime, self.ctx, self.number)
        except Exception as exc:
            # Left open (marked released when that much worked): the next start of this receiver,
            # or an owner (POST …/ingests/{id}/finish), commits it. Nothing received is lost.
            log.error(
                "DICOM %s: ingest %s not committed yet (%s)", self.route.ae_title, self.number, why(exc)
            )
            return
        self._mark(COMMITTED)

    def abort(self) -> None:
        """Aborted, cut off or shut down: nothing of this association is committed."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.number is None:
            return
        try:
            service.cancel(self.runtime, self.ctx, self.number)
        except SanctumError:
            pass  # no longer open (or its dataset was shredded): there is nothing left to discard
        except Exception as exc:
            log.error(
                "DICOM %s: ingest %s not cancelled yet (%s)", self.route.ae_title, self.number, why(exc)
            )
            return
        self._mark(CANCELLED)

    def _mark(self, state: str, *, ended: bool = True) -> None:
        """Record how the association ended. A failure here is logged: the session itself is
        already committed or cancelled, and the next start's recovery brings the row in line."""
        try:
            self._write_mark(state, ended=ended)
        except Exception as exc:
            if not ended:
                raise  # marking 'released' must succeed before committing
            log.error(
                "DICOM %s: reception %s not marked %s (%s)",
                self.route.ae_title,
                self.reception_id,
                state,
                why(exc),
            )

    def _write_mark(self, state: str, *, ended: bool) -> None:
        with self.runtime.db.session() as session:
            row = session.get(DicomReception, self.reception_id)
            if row is None:
                return
            row.state = state
            if ended:
                row.ended_at = utcnow()
                ingest = session.get(IngestSession, row.ingest_id)
                self.ctx.record(
                    session,
                    "dicom.association.end",
                    target=f"ae:{row.ae_title}",
                    details={"ingest": self.number, "state": state, **(ingest.counts if ingest else {})},
                )


def _status(outcome: SourceOutcome) -> int:
    return STATUS.get(outcome.outcome, CANNOT_UNDERSTAND)


def why(exc: BaseException) -> str:
    """What may be logged about a failure: our own messages, else only the exception's type."""
    return exc.message if isinstance(exc, SanctumError) else type(exc).__name__
