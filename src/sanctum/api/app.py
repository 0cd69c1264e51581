"""The ASGI application: routers, error handlers and middleware around one ``Runtime``."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sanctum import __version__
from sanctum.api import errors
from sanctum.api.middleware import BodyLimit, SecurityHeaders
from sanctum.api.routes import (
    admin,
    audit,
    auth,
    datasets,
    dicom_routes,
    dmp,
    exports,
    files,
    health,
    imports,
    ingest,
    ingest_review,
    jobs,
    keys,
    me,
    members,
    nodes,
    projects,
    query,
    reports,
    shares,
    tokens,
)
from sanctum.api.runtime import Runtime
from sanctum.config import Settings
from sanctum.tracking import api as tracking_api
from sanctum.tracking import artifacts_api, logged_models_api, registry_api

#: Order matters: FastAPI tries routes one by one, twice per request. The MLflow routers come
#: first because the stock client calls them hundreds of times a second from training loops
#: (measured: a quarter of a ``log-metric`` call's server time went to matching the ~140 routes in
#: front of them); the platform's own calls are human-paced and pay ~0.2 ms to pass these 60.
API_ROUTERS = (
    tracking_api.router,
    artifacts_api.router,
    logged_models_api.router,
    registry_api.router,
    health.router,
    auth.router,
    me.router,
    tokens.router,
    projects.router,
    members.router,
    audit.router,
    admin.router,
    datasets.router,
    files.router,
    shares.router,
    query.router,
    keys.router,
    jobs.router,
    exports.router,
    imports.router,
    ingest.router,
    ingest_review.router,
    dicom_routes.router,
    dmp.router,
    reports.router,
    nodes.router,
)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the app. Refuses to build (ConfigError) on an unsafe configuration."""
    if runtime is None:
        runtime = Runtime.start(settings or Settings())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything loaded so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise stall every in-flight request for tens of milliseconds.
        gc.collect()
        gc.freeze()
        dicom = None  # first: a receiver that refuses its configuration leaves nothing else running
        if runtime.settings.dicom_port is not None:
            from sanctum.dicom.receiver import start_for_server

            dicom = start_for_server(runtime)
        app.state.dicom = dicom
        started = None  # the runner this app started, and so the one it stops
        if runtime.settings.job_runner and runtime.jobs is None:
            from sanctum.jobs.runner import JobRunner

            started = runtime.jobs = JobRunner(runtime)
            started.start()
        dispatcher = None
        if (
            runtime.settings.job_runner
            and runtime.settings.slurm_partition
            and runtime.settings.slurm_spool_dir
        ):
            from sanctum.jobs.slurm_dispatch import SlurmDispatcher

            dispatcher = SlurmDispatcher(runtime)
            dispatcher.start()
        lifecycle = None
        if runtime.settings.lifecycle_interval_hours > 0:
            from sanctum.dmp.lifecycle import LifecycleScheduler

            hours = runtime.settings.lifecycle_interval_hours
            lifecycle = LifecycleScheduler(runtime, interval_s=hours * 3600)
            lifecycle.start()
        app.state.lifecycle = lifecycle
        try:
            yield
        finally:
            if dicom is not None:
                dicom.stop()
            if lifecycle is not None:
                lifecycle.stop()
            if dispatcher is not None:
                dispatcher.stop()
            if started is not None:
                started.stop()
            if runtime.jobs is started:
                runtime.jobs = None
            runtime.close()

    runtime.store.cleanup_temp()  # whatever a crashed upload left behind
    app = FastAPI(
        title="Sanctum",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    for router in API_ROUTERS:
        app.include_router(router)
    from sanctum import web
    from sanctum.web import pages_imports, pages_ingest

    web.install(app)
    errors.install(app)
    tracking_api.install(app)  # MLflow's error shape on its own paths only
    app.add_middleware(
        BodyLimit,
        max_bytes=runtime.settings.max_body_bytes,
        exempt=lambda path: (
            files.upload_path_prefix(path) or artifacts_api.upload_path(path) or imports.upload_path(path)
        ),
        larger=_larger(
            jobs.submit_body_limit(runtime.settings.max_bundle_bytes),
            ingest.batch_body_limit(runtime.settings),
            pages_ingest.upload_body_limit(runtime.settings),
            pages_imports.upload_body_limit(runtime.settings),
        ),
    )
    app.add_middleware(SecurityHeaders, hsts=runtime.settings.tls_enabled)
    return app


def _larger(*rules: Callable[[str, str], int | None]) -> Callable[[str, str], int | None]:
    """The first route-specific body limit that applies (job bundles, ingest batches)."""

    def larger(method: str, path: str) -> int | None:
        return next((limit for rule in rules if (limit := rule(method, path)) is not None), None)

    return larger


def app_from_env() -> FastAPI:
    """Entry point for ``uvicorn --factory`` and worker processes: settings from the environment."""
    return create_app(Settings())
