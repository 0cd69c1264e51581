"""A Dask client for the platform's own data-parallel work (ingest, anonymity metrics).

Why a wrapper and not ``Client()`` everywhere: the platform wants one policy in one place —
processes, not threads (the work is CPU-bound Python that holds the GIL), one thread per worker,
and no dashboard (it would be an unauthenticated web port on a host holding health data). An
administrator who runs a scheduler elsewhere (for example dask-jobqueue on Slurm) names it with
``scheduler`` and nothing else changes. See docs/dask.md.

``map_files`` exists because a bare ``client.map`` reports a failure as the worker's exception
alone; with thousands of files, the operator needs to know *which* file broke, and a worker that
died (out of memory, a crashing C library) must end the call with an error, never leave it waiting.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dask
from distributed import Client, as_completed
from distributed.scheduler import KilledWorker

T = TypeVar("T")
R = TypeVar("R")


class MapError(RuntimeError):
    """An item of a ``map_files`` call failed; ``item`` names it. When a worker died, ``items``
    are all it held at the time (the one that killed it is among them)."""

    def __init__(self, message: str, item: Any, items: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.item = item
        self.items = tuple(items) or (item,)


def get_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    allowed_failures: int | None = None,
) -> Client:
    """A client on ``scheduler`` when given, else on a new LocalCluster of worker processes.

    The LocalCluster is owned by the returned client: ``client.close()`` stops it too.
    ``allowed_failures`` is how many worker deaths a task may cause before it is declared failed
    (Dask's default is 3: a task that kills every worker it touches is retried on three more); it
    applies only to a cluster started here, since a remote scheduler has its own settings (set
    ``distributed.scheduler.worker-saturation: 1.0`` there too, so a dead worker names one item).
    """
    if scheduler:
        return Client(scheduler)
    workers = n_workers or os.cpu_count() or 1
    # Send a worker a task only when its thread is free: a worker that dies then held exactly one
    # task, so the error names the item that killed it, not a bystander queued behind it.
    overrides: dict[str, Any] = {"distributed.scheduler.worker-saturation": 1.0}
    if allowed_failures is not None:
        overrides["distributed.scheduler.allowed-failures"] = allowed_failures
    with dask.config.set(overrides):
        return Client(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            # No Bokeh dashboard; the scheduler's small health/metrics HTTP endpoint stays on
            # loopback at a free port (``dashboard_address=None`` alone would still take 8787).
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False},
        )


@contextmanager
def dask_client(
    scheduler: str | None = None,
    *,
    n_workers: int | None = None,
    allowed_failures: int | None = None,
) -> Iterator[Client]:
    """``get_client`` as a context manager: closes the client (and any cluster it started)."""
    client = get_client(scheduler, n_workers=n_workers, allowed_failures=allowed_failures)
    try:
        yield client
    finally:
        client.close()


def _run_chunk(fn: Callable[[Any], Any], items: Sequence[Any], start: int) -> list[tuple[bool, Any]]:
    """Run ``fn`` over a chunk on a worker. An exception is returned as a value, with its index,
    so the caller can name the exact item rather than only the chunk."""
    out: list[tuple[bool, Any]] = []
    for offset, item in enumerate(items):
        try:
            out.append((True, fn(item)))
        except Exception as exc:
            out.append((False, (start + offset, exc)))
            break
    return out


def _chunks(items: Sequence[T], size: int) -> Iterator[tuple[int, Sequence[T]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def map_files(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    scheduler: str | None = None,
    client: Client | None = None,
    chunk: int = 1,
    timeout: float | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` computed on a Dask cluster, in the order of ``items``.

    ``fn`` must be picklable. Items are sent ``chunk`` at a time (larger chunks for many small
    items). Uses ``client`` when given, else connects to ``scheduler``, else starts (and stops) a
    LocalCluster. The first failure raises ``MapError`` naming the item, chained to the worker's
    exception; a worker that died raises it too; ``timeout`` (seconds) bounds the whole call.
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    items = list(items)
    if not items:
        return []
    if client is not None:
        return _map(client, fn, items, chunk, timeout)
    with dask_client(scheduler) as own:
        return _map(own, fn, items, chunk, timeout)


def _map(client: Client, fn: Callable[[T], R], items: list[T], chunk: int, timeout: float | None) -> list[R]:
    futures = {
        client.submit(_run_chunk, fn, part, start, pure=False, retries=0): (start, part)
        for start, part in _chunks(items, chunk)
    }
    results: list[Any] = [None] * len(items)
    try:
        for future in as_completed(futures, timeout=timeout):
            start, _ = futures[future]
            try:
                outcome = future.result()
            except KilledWorker as exc:
                raise _died(fn, futures) from exc
            for offset, (ok, value) in enumerate(outcome):
                if not ok:
                    index, error = value
                    raise MapError(
                        f"{fn.__name__!r} failed on item {items[index]!r}: {type(error).__name__}: {error}",
                        items[index],
                    ) from error
                results[start + offset] = value
    except TimeoutError as exc:
        pending = [futures[f][1][0] for f in futures if not f.done()]
        raise MapError(
            f"{fn.__name__!r} did not finish within {timeout} s; {len(pending)} chunk(s) pending, "
            f"starting with item {pending[0]!r}"
            if pending
            else f"timed out after {timeout} s",
            pending[0] if pending else None,
        ) from exc
    finally:
        client.cancel(list(futures))
    return results


def _died(fn: Callable[..., Any], futures: dict[Any, tuple[int, Sequence[Any]]]) -> MapError:
    """The scheduler fails every task the dead worker held at once; name their items. With one
    thread per worker that is usually the culprit alone, but Dask may hand a worker a second task
    ahead of time, so a bystander can be listed with it."""
    time.sleep(0.2)  # let the other failures of the same worker death reach this client
    held = [
        item
        for future, (_, part) in futures.items()
        if future.status == "error" and isinstance(future.exception(), KilledWorker)
        for item in part
    ]
    what = f"item {held[0]!r}" if len(held) == 1 else f"one of items {held!r}"
    return MapError(f"a Dask worker died while running {fn.__name__!r} on {what}", held[0], held)
