"""sanctum.jobs.dask on a real LocalCluster of two worker processes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import cloudpickle
import dask
import httpx
import pytest
from distributed import LocalCluster

from sanctum.jobs.dask import MapError, dask_client, get_client, map_files

# Workers cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x: int) -> int:
    return x * x


def slow_reverse(x: int) -> int:
    time.sleep(0.05 * (5 - x))  # later items finish first: the order must still hold
    return x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is not allowed")
    return x


def dies_on_two(x: int) -> int:
    if x == 2:
        os._exit(1)
    return x


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Started separately, as an administrator's scheduler would be; a dead worker fails its task
    at once (allowed-failures 0) so the test does not wait through Dask's three retries, and holds
    one task at a time (worker-saturation 1.0), as get_client's clusters do."""
    settings = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with dask.config.set(settings):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.timeout(60)
def test_results_come_back_in_order_through_a_scheduler_address(cluster):
    assert map_files(slow_reverse, list(range(5)), scheduler=cluster.scheduler_address) == list(range(5))
    with dask_client(cluster.scheduler_address) as client:
        assert map_files(square, list(range(10)), client=client, chunk=3) == [x * x for x in range(10)]
        assert len(client.scheduler_info()["workers"]) == 2
    assert map_files(square, [], scheduler=cluster.scheduler_address) == []


@pytest.mark.timeout(60)
def test_an_exception_names_the_item_that_failed(cluster):
    message = r"failed on item 3: ValueError: three is not allowed"
    with dask_client(cluster.scheduler_address) as client, pytest.raises(MapError, match=message) as err:
        map_files(fails_on_three, [1, 2, 3, 4], client=client, chunk=2)
    assert err.value.item == 3 and isinstance(err.value.__cause__, ValueError)


@pytest.mark.timeout(60)
def test_a_worker_killed_mid_task_is_an_error_not_a_hang(cluster):
    with dask_client(cluster.scheduler_address) as client:
        started = time.monotonic()
        with pytest.raises(
            MapError, match=r"worker died while running 'dies_on_two' on (one of )?item"
        ) as err:
            map_files(dies_on_two, [1, 2, 3], client=client, timeout=30)
        # Dask may have handed the dying worker item 3 ahead of time: it is then named too.
        assert 2 in err.value.items and set(err.value.items) <= {2, 3}
        assert time.monotonic() - started < 30
        # The nanny restarts the worker: the cluster is still usable afterwards.
        assert map_files(square, [4], client=client, timeout=30) == [16]


@pytest.mark.timeout(60)
def test_the_default_is_an_owned_local_cluster_of_single_threaded_processes():
    client = get_client(n_workers=2)
    try:
        workers = client.scheduler_info()["workers"].values()
        assert len(workers) == 2 and all(w["nthreads"] == 1 for w in workers)
        assert client.run(os.getpid).keys() and os.getpid() not in client.run(os.getpid).values()
        # No Bokeh dashboard: only the scheduler's health endpoint, on loopback.
        port = client.scheduler_info()["services"]["dashboard"]
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/status").status_code == 404
    finally:
        client.close()
    assert client.cluster.status.name == "closed"


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="chunk"):
        map_files(square, [1], chunk=0)
