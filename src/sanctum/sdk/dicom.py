"""The DICOM receiver routes half of ``Client`` (data owners)::

    with Client.from_config() as client:
        client.set_dicom_route("cardio", "CT_SCANNER_1", "ct-incoming")          # that PACS → ct-incoming
        client.set_dicom_route("cardio", "MR_3T", "mr", options=IngestOptions(dates="keep"))
        for route in client.list_dicom_routes("cardio"):
            print(route.ae_title, route.dataset, route.active)
        client.delete_dicom_route("cardio", "MR_3T")

An AE title another project routes raises ``SanctumAPIError`` (409, ``ae_title_taken``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sanctum.schemas.dicom import DicomRoutePublic, DicomRouteSet
from sanctum.schemas.ingest import IngestOptions
from sanctum.sdk import client as _wire


def _routes(project: str) -> str:
    return f"/projects/{_wire._segment(project)}/dicom-routes"


class DicomMixin:
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

    def list_dicom_routes(self, project: str) -> list[DicomRoutePublic]:
        return self._call("GET", _routes(project), list[DicomRoutePublic])

    def get_dicom_route(self, project: str, ae_title: str) -> DicomRoutePublic:
        return self._call("GET", f"{_routes(project)}/{_wire._segment(ae_title)}", DicomRoutePublic)

    def set_dicom_route(
        self, project: str, ae_title: str, dataset: str, *, options: IngestOptions | None = None
    ) -> DicomRoutePublic:
        """Route the sender ``ae_title`` into ``dataset`` (created on its first reception), with these
        de-identification options; the receiver acts for you from then on."""
        body = _wire._body(DicomRouteSet, dataset=dataset, options=options or IngestOptions())
        return self._call(
            "PUT", f"{_routes(project)}/{_wire._segment(ae_title)}", DicomRoutePublic, json=body
        )

    def delete_dicom_route(self, project: str, ae_title: str) -> None:
        self._call("DELETE", f"{_routes(project)}/{_wire._segment(ae_title)}")
