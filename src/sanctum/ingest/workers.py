"""Where de-identification runs: one bounded process pool per server, or the configured Dask cluster.

Why a pool of processes: de-identification is CPU-bound Python, so threads would share one core.
The pool is one per server process (``Runtime.ingest``), started lazily on the first batch (a
server that never ingests never pays for it) and shut down with the app. Workers are *spawned*,
not forked: the server is multi-threaded, and a fork would copy locks held by other threads.

A file that kills its worker (a crashing decoder, memory exhaustion) must not lose the batch or
wedge the server: the pool is replaced, and the batch's files are run again one at a time, so the
one that kills a worker again is reported as an error and every other file gets its real outcome.

Dask is used only when a session asks for it and only on the scheduler the *administrator*
configured (``dask_scheduler``), else a LocalCluster on this host; a client never names one,
because the raw, identifying files travel to it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sanctum.config import Settings
from sanctum.ingest.pipeline import Processor, WorkItem, WorkResult, crashed

log = logging.getLogger("sanctum.ingest")


class IngestWorkers:
    """The server's de-identification workers. Thread-safe; ``close`` is idempotent."""

    def __init__(self, settings: Settings) -> None:
        self.size = settings.ingest_workers or os.cpu_count() or 1
        self.scheduler = settings.dask_scheduler
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._dask: Any = None
        self._closed = False

    # ------------------------------------------------------------------ process pool

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the ingest workers are shut down")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.size, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)

    def run(self, fn: Processor, items: Sequence[WorkItem], *, dask: bool = False) -> Iterator[WorkResult]:
        """``fn(item)`` for each item on the workers, yielded in order as they finish (so the caller
        can store one output while the workers go on with the next); a crashing file → its error."""
        if not items:
            return
        if dask:
            yield from self._run_dask(fn, items)
            return
        pool = self._executor()
        chunk = max(1, len(items) // (self.size * 4))
        done = 0
        try:
            for result in pool.map(fn, items, chunksize=chunk):
                done += 1
                yield result
        except BrokenProcessPool:
            log.warning("an ingest worker died; running the batch's other files one at a time")
            self._replace(pool)
            for item in items[done:]:
                yield self._one(fn, item)

    def _one(self, fn: Processor, item: WorkItem) -> WorkResult:
        pool = self._executor()
        try:
            return pool.submit(fn, item).result()
        except BrokenProcessPool:
            self._replace(pool)
            return crashed(item)

    # ------------------------------------------------------------------ Dask

    def _dask_client(self) -> Any:
        with self._lock:
            if self._closed:
                raise RuntimeError("the ingest workers are shut down")
            if self._dask is None:
                from sanctum.jobs.dask import get_client

                # One allowed failure: a file that kills a worker is not retried on the others.
                self._dask = get_client(self.scheduler, n_workers=self.size, allowed_failures=0)
            return self._dask

    def _run_dask(self, fn: Processor, items: Sequence[WorkItem]) -> list[WorkResult]:
        from sanctum.jobs.dask import MapError, map_files

        client = self._dask_client()
        chunk = max(1, len(items) // (self.size * 4))
        try:
            return map_files(fn, list(items), client=client, chunk=chunk)
        except MapError:
            log.warning("a Dask worker failed; running the batch's %d files one at a time", len(items))
        out = []
        for item in items:
            try:
                out += map_files(fn, [item], client=client)
            except MapError:
                out.append(crashed(item))
        return out

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
            dask, self._dask = self._dask, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if dask is not None:
            dask.close()


_start_lock = threading.Lock()


def workers_for(runtime: Any) -> IngestWorkers:
    """The runtime's workers, created on first use (``Runtime.close`` stops them)."""
    with _start_lock:
        if runtime.ingest is None:
            runtime.ingest = IngestWorkers(runtime.settings)
        return runtime.ingest
