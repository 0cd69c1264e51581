"""DICOM receiver routes: which sending PACS (calling AE title) goes into which dataset.

Data owners only (``dicom:routes``); others get 403, non-members 404. An AE title belongs to at most
one project platform-wide: claiming one another project holds is 409, and another project's route
is 404 here, as if it did not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from sanctum.api.deps import DbSession, DicomRoutesManager
from sanctum.dicom import routes
from sanctum.schemas.dicom import DicomRoutePublic, DicomRouteSet

router = APIRouter(prefix="/api/v1/projects/{project}/dicom-routes", tags=["dicom"])


@router.get("")
def list_routes(ctx: DicomRoutesManager, db: DbSession) -> list[DicomRoutePublic]:
    return [routes.public(db, r, ctx.project.name) for r in routes.list_routes(db, ctx)]


@router.get("/{ae_title}")
def get_route(ae_title: str, ctx: DicomRoutesManager, db: DbSession) -> DicomRoutePublic:
    return routes.public(db, routes.get_route(db, ctx, ae_title), ctx.project.name)


@router.put("/{ae_title}", responses={201: {"model": DicomRoutePublic}})
def put_route(
    ae_title: str, body: DicomRouteSet, ctx: DicomRoutesManager, db: DbSession, response: Response
) -> DicomRoutePublic:
    """Route that sender's instances into ``dataset`` (201 when new); the receiver acts for you."""
    route, created = routes.set_route(db, ctx, ae_title, body)
    result = routes.public(db, route, ctx.project.name)
    db.commit()
    response.status_code = 201 if created else 200
    return result


@router.delete("/{ae_title}", status_code=204)
def delete_route(ae_title: str, ctx: DicomRoutesManager, db: DbSession) -> None:
    """From now on associations from that AE title are rejected."""
    routes.delete_route(db, ctx, ae_title)
    db.commit()
