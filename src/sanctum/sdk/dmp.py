"""The data management plan half of ``Client``::

    with Client.from_config() as client:
        plan = client.get_dmp("alpha")                     # the version in force, with its summary
        client.set_dmp("alpha", json.loads(Path("dmp.json").read_text()))
        for version in client.dmp_history("alpha"):
            print(version.number, version.set_by, version.set_at)
        print(client.dmp_status("alpha").expiring_soon)
        report = client.gdpr_report("alpha")               # owners and auditors

An invalid plan raises ``SanctumAPIError`` (422, code ``dmp_invalid``) whose message names the first
problems with their paths; ``sanctum.dmp.service.validate`` checks a file offline and lists them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sanctum.schemas.dmp import DmpPublic, DmpSet, DmpSetResult, DmpStatus, DmpVersionPublic
from sanctum.sdk import client as _wire


def _dmp(project: str) -> str:
    return f"/projects/{_wire._segment(project)}/dmp"


class DmpMixin:
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

    def get_dmp(self, project: str) -> DmpPublic:
        """The DMP in force (404 ``no_dmp`` when the project has none)."""
        return self._call("GET", _dmp(project), DmpPublic)

    def set_dmp(
        self,
        project: str,
        document: dict[str, Any],
        *,
        standard: str | None = None,
        confirm_shred: bool = False,
    ) -> DmpSetResult:
        """A new version (data owners). ``confirm_shred`` accepts that datasets whose retention date
        has passed are crypto-shredded at the next lifecycle run."""
        body = _wire._body(DmpSet, document=document, standard=standard, confirm_shred=confirm_shred)
        return self._call("PUT", _dmp(project), DmpSetResult, json=body)

    def dmp_history(self, project: str) -> list[DmpVersionPublic]:
        return self._call("GET", f"{_dmp(project)}/history", list[DmpVersionPublic])

    def get_dmp_version(self, project: str, number: int) -> DmpPublic:
        return self._call("GET", f"{_dmp(project)}/history/{int(number)}", DmpPublic)

    def dmp_status(self, project: str) -> DmpStatus:
        return self._call("GET", f"{_dmp(project)}/status", DmpStatus)

    def gdpr_report(self, project: str) -> dict[str, Any]:
        """The compliance report as JSON (``sanctum.dmp.report_html.render`` makes the HTML)."""
        return self._call("GET", f"/projects/{_wire._segment(project)}/reports/gdpr", dict[str, Any])
