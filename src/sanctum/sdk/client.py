"""``Client``: one method per REST endpoint, speaking the wire schemas the server itself uses."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from sanctum.config import is_loopback
from sanctum.schemas.admin import UserCreate, UserPublic
from sanctum.schemas.audit import AuditPage, AuditVerifyPublic
from sanctum.schemas.auth import (
    LoginRequest,
    LoginResponse,
    MePublic,
    RecoveryCodes,
    TotpBegin,
    TotpConfirm,
    TotpEnrolment,
)
from sanctum.schemas.projects import MemberCreate, MemberPublic, MemberUpdate, ProjectCreate, ProjectPublic
from sanctum.schemas.tokens import TokenCreate, TokenCreated, TokenPublic
from sanctum.sdk import credentials
from sanctum.sdk.airlock import AirlockMixin
from sanctum.sdk.datasets import DatasetsMixin
from sanctum.sdk.dicom import DicomMixin
from sanctum.sdk.dmp import DmpMixin
from sanctum.sdk.errors import SanctumAPIError, SanctumConfigError, SanctumConnectionError
from sanctum.sdk.ingest import IngestMixin
from sanctum.sdk.jobs import JobsMixin
from sanctum.sdk.tracking import TrackingMixin

API = "/api/v1"


@lru_cache(maxsize=64)
def _adapter(shape: Any) -> TypeAdapter[Any]:
    return TypeAdapter(shape)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def _body(schema: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """Validate a request with the shared schema before it leaves (the server would answer 422)."""
    try:
        return schema(**fields).model_dump(mode="json")
    except ValidationError as exc:
        raise SanctumAPIError(422, "invalid_input", _validation_message(exc)) from None


def _segment(value: str) -> str:
    return quote(value, safe="")


def normalise_url(url: str, *, insecure_http: bool = False) -> str:
    """``https://host[:port]`` (plain http only to this machine): a token never crosses a network bare."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SanctumConfigError(f"invalid server URL {url!r}: use https://host[:port]", code="invalid_url")
    if parts.scheme == "http" and not insecure_http and not is_loopback(parts.hostname):
        raise SanctumConfigError(
            f"refusing to send credentials over plain http to {parts.hostname}; use https://",
            code="insecure_url",
        )
    return url


def _api_error(response: httpx.Response) -> SanctumAPIError:
    try:
        error = response.json()["error"]
        return SanctumAPIError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        snippet = " ".join(response.text.split())[:200] or response.reason_phrase
        return SanctumAPIError(
            response.status_code,
            f"http_{response.status_code}",
            f"HTTP {response.status_code} from {response.request.url.host}: {snippet}",
        )


class Client(DatasetsMixin, JobsMixin, TrackingMixin, IngestMixin, AirlockMixin, DmpMixin, DicomMixin):
    """A Sanctum server as seen with one credential. Use as a context manager, or call ``close()``.

    ``http`` lets you bring your own ``httpx.Client`` (a proxy, client certificates, or a FastAPI
    ``TestClient``); it is used as is (with its own timeout) and not closed here.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        http: httpx.Client | None = None,
        insecure_http: bool = False,
    ) -> None:
        self.url = normalise_url(url, insecure_http=insecure_http or http is not None)
        self.token = token
        self.timeout = timeout
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)

    @classmethod
    def login(
        cls, url: str, email: str, password: str, totp: str | None = None, **kwargs: Any
    ) -> tuple[Self, LoginResponse]:
        """Exchange a password (and a TOTP or recovery code, once enrolled) for a login token."""
        client = cls(url, **kwargs)
        try:
            result = client._call(
                "POST",
                "/auth/token",
                LoginResponse,
                json=_body(LoginRequest, email=email, password=password, totp=totp),
            )
        except BaseException:
            client.close()
            raise
        client.token = result.token
        return client, result

    @classmethod
    def from_config(cls, **kwargs: Any) -> Self:
        """The server and credential ``sanctum login`` stored, or ``SANCTUM_URL``/``SANCTUM_TOKEN``."""
        url, token = credentials.resolve()
        return cls(url, token, **kwargs)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    # ------------------------------------------------------------------ transport

    def _call(
        self,
        method: str,
        path: str,
        expect: Any = None,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        try:
            response = self._http.request(
                method, self.url + API + path, json=json, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise SanctumConnectionError(f"{self.url} did not answer in time ({exc})") from exc
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise SanctumConnectionError(f"cannot reach {self.url}: {reason}") from exc
        if response.status_code >= 400:
            raise _api_error(response)
        if expect is None:
            return None
        try:
            return _adapter(expect).validate_json(response.content)
        except ValidationError as exc:
            raise SanctumAPIError(
                response.status_code,
                "invalid_response",
                f"unexpected answer from {self.url} (is it a Sanctum server of this "
                f"version?): {_validation_message(exc)}",
            ) from None

    # ------------------------------------------------------------------ you

    def logout(self) -> None:
        """End this client's credential on the server."""
        self._call("POST", "/auth/logout")
        self.token = None

    def me(self) -> MePublic:
        return self._call("GET", "/me", MePublic)

    def begin_totp(self, password: str | None = None, code: str | None = None) -> TotpEnrolment:
        """Start 2FA enrolment; replacing an enrolled factor needs the password and a current code."""
        body = _body(TotpBegin, password=password, code=code) if password or code else None
        return self._call("POST", "/me/totp", TotpEnrolment, json=body)

    def confirm_totp(self, code: str) -> RecoveryCodes:
        return self._call("POST", "/me/totp/confirm", RecoveryCodes, json=_body(TotpConfirm, code=code))

    # ------------------------------------------------------------------ tokens

    def list_tokens(self, *, include_inactive: bool = False) -> list[TokenPublic]:
        return self._call(
            "GET",
            "/tokens",
            list[TokenPublic],
            params={"include_inactive": "true" if include_inactive else None},
        )

    def create_token(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        project: str | None = None,
        expires_in_days: int | None = None,
    ) -> TokenCreated:
        """A named API token; ``token`` on the result is the secret, shown this once."""
        body = _body(TokenCreate, name=name, scopes=scopes, project=project, expires_in_days=expires_in_days)
        return self._call("POST", "/tokens", TokenCreated, json=body)

    def revoke_token(self, token_id: int) -> None:
        self._call("DELETE", f"/tokens/{int(token_id)}")

    # ------------------------------------------------------------------ projects and members

    def list_projects(self) -> list[ProjectPublic]:
        return self._call("GET", "/projects", list[ProjectPublic])

    def create_project(self, name: str, *, title: str = "", description: str = "") -> ProjectPublic:
        body = _body(ProjectCreate, name=name, title=title, description=description)
        return self._call("POST", "/projects", ProjectPublic, json=body)

    def get_project(self, name: str) -> ProjectPublic:
        return self._call("GET", f"/projects/{_segment(name)}", ProjectPublic)

    def list_members(self, project: str) -> list[MemberPublic]:
        return self._call("GET", f"/projects/{_segment(project)}/members", list[MemberPublic])

    def add_member(self, project: str, email: str, role: str) -> MemberPublic:
        return self._call(
            "POST",
            f"/projects/{_segment(project)}/members",
            MemberPublic,
            json=_body(MemberCreate, email=email, role=role),
        )

    def set_member_role(self, project: str, email: str, role: str) -> MemberPublic:
        return self._call(
            "PATCH",
            f"/projects/{_segment(project)}/members/{_segment(email)}",
            MemberPublic,
            json=_body(MemberUpdate, role=role),
        )

    def remove_member(self, project: str, email: str) -> None:
        self._call("DELETE", f"/projects/{_segment(project)}/members/{_segment(email)}")

    # ------------------------------------------------------------------ audit

    def project_audit(
        self, project: str, *, after: int = 0, limit: int = 100, action: str | None = None
    ) -> AuditPage:
        """One page of a project's trail (owners and auditors); continue with ``after=page.next_after``."""
        return self._call(
            "GET",
            f"/projects/{_segment(project)}/audit",
            AuditPage,
            params={"after": after, "limit": limit, "action": action},
        )

    def platform_audit(
        self, *, after: int = 0, limit: int = 100, action: str | None = None, project: str | None = None
    ) -> AuditPage:
        """The whole platform's trail (admins)."""
        return self._call(
            "GET",
            "/audit",
            AuditPage,
            params={"after": after, "limit": limit, "action": action, "project": project},
        )

    def verify_audit(self) -> AuditVerifyPublic:
        """Have the server recompute the hash chain (admins)."""
        return self._call("GET", "/audit/verify", AuditVerifyPublic)

    # ------------------------------------------------------------------ administration

    def list_users(self) -> list[UserPublic]:
        return self._call("GET", "/admin/users", list[UserPublic])

    def create_user(
        self, email: str, password: str, *, admin: bool = False, can_create_projects: bool = True
    ) -> UserPublic:
        body = _body(
            UserCreate, email=email, password=password, admin=admin, can_create_projects=can_create_projects
        )
        return self._call("POST", "/admin/users", UserPublic, json=body)
