"""Login, the current user and TOTP enrolment."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel


class LoginRequest(Model):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    totp: str | None = Field(default=None, max_length=64, description="TOTP code or a recovery code")


class LoginResponse(PublicModel):
    token: str
    expires_at: datetime
    enrol_only: bool = Field(
        default=False, description="True while the account must enrol 2FA: the token reaches only /api/v1/me*"
    )


class MePublic(PublicModel):
    id: int
    email: str
    is_admin: bool
    can_create_projects: bool
    totp_enabled: bool
    must_enrol_2fa: bool
    recovery_codes_left: int


class TotpBegin(Model):
    """Re-enrolment (replacing an active second factor) needs the password and a current code."""

    password: str | None = Field(default=None, max_length=1024)
    code: str | None = Field(default=None, max_length=64)


class TotpEnrolment(PublicModel):
    secret: str
    otpauth_uri: str


class TotpConfirm(Model):
    code: str = Field(max_length=64)


class RecoveryCodes(PublicModel):
    recovery_codes: list[str]
