"""The ingest half of ``Client``: raw files from this machine in, a de-identified dataset version out.

De-identification needs the project's secret, so it runs on the server: ``ingest`` walks a folder
or archive here, checks every entry (links, unsafe names, size and decompression-bomb limits, the
same checks the server repeats), and streams the raw files to a server ingest session in batches.
It is resumable: the session's number is kept in a small state file in the config dir, and a
rerun after a crash or Ctrl-C asks the server which files it already holds and sends only the
rest (the server refuses a file twice anyway). In a notebook::

    with Client.from_config() as client:
        report = client.ingest("cardio", "ct-2024", Path("~/export/ct.zip").expanduser())
        report.counts            # {'stored': 1180, 'quarantined': 12, 'error': 3, ...}
        report.quarantined[0]    # ReportFile(path='US/IM0001', reasons=['SOP Class is ultrasound…'])
        client.query("cardio", "select modality, count(*) from ct_2024_metadata group by 1").rows
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from sanctum.ingest import archive
from sanctum.schemas.ingest import (
    BatchResult,
    IngestCreate,
    IngestOptions,
    IngestPublic,
    IngestReport,
    LookupRequest,
    LookupResult,
    RefusedEntry,
    RefusedRequest,
    SourceOutcome,
)
from sanctum.sdk import client as _wire
from sanctum.sdk import credentials
from sanctum.sdk.errors import SanctumAPIError, SanctumConnectionError, SanctumSDKError

DEFAULT_BATCH_BYTES = 32 * 1024 * 1024
DEFAULT_BATCH_FILES = 256
CLIENT_MAX_TOTAL = 1 << 42  # what one archive may expand to on this machine (4 TiB)
LOOKUP_CHUNK = 2000
BATCH_TIMEOUT = 600.0
IN_FLIGHT = 2


@dataclass
class IngestProgress:
    """Where an ingest stands, passed to ``progress`` after the plan and after every batch."""

    ingest: int
    total_files: int
    total_bytes: int
    files: int = 0  # sent (or found done) so far
    bytes: int = 0
    resumed: int = 0  # files the server already held when this run started
    outcomes: list[SourceOutcome] = field(default_factory=list)  # the last batch's


def _state_dir(state_dir: Path | None) -> Path:
    return Path(state_dir) if state_dir else credentials.config_dir() / "ingest"


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically, mode 0600 in a 0700 folder: it names a project and a local path."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(state, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class IngestMixin:
    """Ingest sessions (``Client`` inherits it; use it through ``Client``)."""

    url: str
    timeout: float
    _http: httpx.Client

    if TYPE_CHECKING:

        def _call(
            self,
            method: str,
            path: str,
            expect: Any = None,
            *,
            json: Any = None,
            params: dict[str, Any] | None = None,
        ) -> Any: ...

        def _auth_headers(self) -> dict[str, str]: ...

    # ------------------------------------------------------------------ the session API

    def _ingests(self, project: str) -> str:
        return f"/projects/{_wire._segment(project)}/ingests"

    def start_ingest(
        self,
        project: str,
        dataset: str,
        *,
        kind: str = "files",
        create: bool = True,
        options: IngestOptions | dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        dask: bool = False,
    ) -> IngestPublic:
        """Open a session on a new draft version (the dataset is created when missing)."""
        body = _wire._body(
            IngestCreate,
            dataset=dataset,
            kind=kind,
            create=create,
            options=options if options is not None else IngestOptions(),
            policy=policy,
            dask=dask,
        )
        return self._call("POST", self._ingests(project), IngestPublic, json=body)

    def get_ingest(self, project: str, ingest: int) -> IngestPublic:
        return self._call("GET", f"{self._ingests(project)}/{int(ingest)}", IngestPublic)

    def list_ingests(self, project: str) -> list[IngestPublic]:
        return self._call("GET", self._ingests(project), list[IngestPublic])

    def ingest_lookup(self, project: str, ingest: int, paths: Sequence[str]) -> list[str]:
        """Which of ``paths`` the session already recorded (any outcome)."""
        done: list[str] = []
        for start in range(0, len(paths), LOOKUP_CHUNK):
            body = _wire._body(LookupRequest, paths=list(paths[start : start + LOOKUP_CHUNK]))
            result = self._call(
                "POST", f"{self._ingests(project)}/{int(ingest)}/lookup", LookupResult, json=body
            )
            done += result.done
        return done

    def ingest_refused(
        self, project: str, ingest: int, refusals: Sequence[archive.Refusal]
    ) -> BatchResult | None:
        """Record entries refused here, unread, so the server's report lists them too."""
        result = None
        for start in range(0, len(refusals), LOOKUP_CHUNK):
            entries = [
                RefusedEntry(path=r.path[:4096], reason=r.reason[:300])
                for r in refusals[start : start + LOOKUP_CHUNK]
            ]
            body = _wire._body(RefusedRequest, entries=entries)
            result = self._call(
                "POST", f"{self._ingests(project)}/{int(ingest)}/refused", BatchResult, json=body
            )
        return result

    def ingest_batch(self, project: str, ingest: int, files: Sequence[tuple[str, bytes]]) -> BatchResult:
        """Send one batch of raw files (path, bytes) as a tar; one outcome per file comes back."""
        body = archive.pack_batch(list(files))
        url = self.url + _wire.API + f"{self._ingests(project)}/{int(ingest)}/batches"
        headers = {**self._auth_headers(), "Content-Type": "application/x-tar"}
        try:
            response = self._http.post(
                url, content=body, headers=headers, timeout=max(self.timeout, BATCH_TIMEOUT)
            )
        except httpx.TimeoutException as exc:
            raise SanctumConnectionError(f"{self.url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise SanctumConnectionError(
                f"cannot reach {self.url}: {str(exc) or type(exc).__name__}"
            ) from exc
        if response.status_code >= 400:
            raise _wire._api_error(response)
        try:
            return BatchResult.model_validate_json(response.content)
        except ValidationError as exc:
            raise SanctumAPIError(
                response.status_code, "invalid_response", f"unexpected answer from {self.url}: {exc}"
            ) from None

    def finish_ingest(self, project: str, ingest: int) -> IngestReport:
        """Commit the version and write the DICOM metadata table; the report (again, if finished)."""
        return self._call("POST", f"{self._ingests(project)}/{int(ingest)}/finish", IngestReport)

    def cancel_ingest(self, project: str, ingest: int) -> None:
        self._call("DELETE", f"{self._ingests(project)}/{int(ingest)}")

    def ingest_report(self, project: str, ingest: int) -> IngestReport:
        return self._call("GET", f"{self._ingests(project)}/{int(ingest)}/report", IngestReport)

    # ------------------------------------------------------------------ the whole thing

    def ingest(
        self,
        project: str,
        dataset: str,
        source: Path | str,
        *,
        kind: str = "files",
        options: IngestOptions | dict[str, Any] | None = None,
        policy: dict[str, Any] | None = None,
        dask: bool = False,
        resume: bool = True,
        state_dir: Path | None = None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        batch_files: int = DEFAULT_BATCH_FILES,
        progress: Callable[[IngestProgress], None] | None = None,
    ) -> IngestReport:
        """Ingest a folder, a .zip/.tar(.gz) archive or one file into ``dataset``; the report.

        Resumes the unfinished session of an earlier run for the same server, project, dataset and
        source (unless ``resume=False``): only the files the server does not hold yet are sent.
        """
        source = Path(source).expanduser()
        key = "\0".join((self.url, project, dataset, str(source.resolve())))
        state = _state_dir(state_dir) / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")
        session = self._resumable(project, state) if resume else None
        if isinstance(session, IngestReport):
            state.unlink(missing_ok=True)
            return session
        if session is None:
            session = self.start_ingest(
                project, dataset, kind=kind, options=options, policy=policy, dask=dask
            )
            _write_state(
                state, {"ingest": session.id, "project": project, "dataset": dataset, "source": str(source)}
            )
        limits = archive.Limits(
            max_file_bytes=session.limits.max_file_bytes,
            max_total_bytes=CLIENT_MAX_TOTAL,
            max_ratio=session.limits.max_ratio,
        )
        batch_bytes = max(1, min(batch_bytes, session.limits.max_batch_bytes))
        with archive.walk(source, limits) as listing:
            self._send_listing(project, session.id, listing, batch_bytes, max(1, batch_files), progress)
        report = self.finish_ingest(project, session.id)
        state.unlink(missing_ok=True)
        return report

    def _resumable(self, project: str, state: Path) -> IngestPublic | IngestReport | None:
        """The open session an earlier run left (or its report, if it finished), else None."""
        try:
            number = int(json.loads(state.read_text())["ingest"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            session = self.get_ingest(project, number)
        except SanctumAPIError as exc:
            if exc.status == 404:
                return None
            raise
        if session.state == "finished":
            return self.ingest_report(project, number)
        return session if session.state == "open" else None

    def _send_listing(
        self,
        project: str,
        number: int,
        listing: archive.Listing,
        batch_bytes: int,
        batch_files: int,
        progress: Callable[[IngestProgress], None] | None,
    ) -> None:
        names = [e.path for e in listing.entries] + [r.path for r in listing.refusals]
        done = set(self.ingest_lookup(project, number, names))
        todo = [e for e in listing.entries if e.path not in done]
        state = IngestProgress(number, len(listing.entries), listing.total_bytes)
        state.resumed = len(listing.entries) - len(todo)
        state.files = state.resumed
        state.bytes = sum(e.size for e in listing.entries if e.path in done)
        refusals = [r for r in listing.refusals if r.path not in done]
        if refusals:
            self.ingest_refused(project, number, refusals)
        if progress:
            progress(state)
        # Two batches in flight: the server de-identifies one while the next is read and sent.
        with ThreadPoolExecutor(max_workers=IN_FLIGHT) as senders:
            flying: deque[tuple[Future[BatchResult | None], int, int]] = deque()
            for batch, unreadable in _batches(todo, batch_bytes, batch_files):
                if unreadable:
                    self.ingest_refused(project, number, unreadable)
                future = senders.submit(self.ingest_batch, project, number, batch) if batch else None
                flying.append(
                    (future or _done(), len(batch) + len(unreadable), sum(len(d) for _, d in batch))
                )
                del batch
                while len(flying) >= IN_FLIGHT:
                    self._landed(flying.popleft(), state, progress)
            while flying:
                self._landed(flying.popleft(), state, progress)

    @staticmethod
    def _landed(
        flight: tuple[Future[BatchResult | None], int, int],
        state: IngestProgress,
        progress: Callable[[IngestProgress], None] | None,
    ) -> None:
        future, files, size = flight
        result = future.result()  # a refused batch raises here; the rest resumes on the next run
        state.files += files
        state.bytes += size
        state.outcomes = result.outcomes if result else []
        if progress:
            progress(state)


def _done() -> Future[BatchResult | None]:
    future: Future[BatchResult | None] = Future()
    future.set_result(None)
    return future


def _batches(
    entries: list[archive.Entry], batch_bytes: int, batch_files: int
) -> Iterator[tuple[list[tuple[str, bytes]], list[archive.Refusal]]]:
    """Entries read into batches of at most ``batch_bytes`` (one larger file goes alone) and
    ``batch_files``; a file that cannot be read (it changed, or vanished) is refused instead."""
    batch: list[tuple[str, bytes]] = []
    unreadable: list[archive.Refusal] = []
    size = 0
    for entry in entries:
        if batch and (size + entry.size > batch_bytes or len(batch) >= batch_files):
            yield batch, unreadable
            batch, unreadable, size = [], [], 0
        try:
            data = archive.read_entry(entry, entry.size)
        except (OSError, SanctumSDKError, archive.ArchiveError) as exc:
            reason = getattr(exc, "message", None) or getattr(exc, "strerror", None) or type(exc).__name__
            unreadable.append(archive.Refusal(entry.path, f"cannot be read on the client: {reason}"))
            continue
        batch.append((entry.path, data))
        size += len(data)
    if batch or unreadable:
        yield batch, unreadable
