"""Server-rendered web pages (Jinja2, no CDN, no inline script)."""

from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    """Mount the pages and static files on ``app``."""
