"""Liveness, with no authentication and no database: the floor the API benchmark compares against."""

from __future__ import annotations

from fastapi import APIRouter

from sanctum.api.deps import Public

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Public])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
