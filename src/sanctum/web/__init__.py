"""Server-rendered web pages (Jinja2, no CDN, no inline script or style).

Pages reuse the API's authentication and policy point: every route depends on a ``Page`` or
``ProjectPage`` guard (``deps.Require`` / ``deps.InProject`` subclasses that also check the form's
CSRF token on every POST) or is marked public (the login forms, which use a double-submit token).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from sanctum.api.errors import HTML_RENDERER
from sanctum.web import (
    pages_airlock,
    pages_auth,
    pages_datasets,
    pages_dmp,
    pages_imports,
    pages_ingest,
    pages_ingest_tables,
    pages_jobs,
    pages_me,
    pages_projects,
    pages_registry,
    pages_tracking,
)
from sanctum.web.render import STATIC_DIR, render_error
from sanctum.web.session import Redirect, redirect

ROUTERS = (
    pages_auth.router,
    pages_projects.router,
    pages_datasets.router,
    pages_ingest.router,
    pages_ingest_tables.router,
    pages_jobs.router,
    pages_airlock.router,
    pages_imports.router,
    pages_tracking.router,
    pages_registry.router,
    pages_dmp.router,
    pages_me.router,
)


async def _redirect(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Redirect)
    return redirect(exc.location)


def install(app: FastAPI) -> None:
    """Mount the pages and static files on ``app``."""
    setattr(app.state, HTML_RENDERER, render_error)
    app.add_exception_handler(Redirect, _redirect)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
