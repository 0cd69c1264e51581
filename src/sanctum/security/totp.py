"""TOTP (RFC 6238) with replay protection and QR enrolment."""

from __future__ import annotations

import io
import time

import pyotp
import segno

ISSUER = "Sanctum"
STEP_SECONDS = 30
# One step either side tolerates clock drift between the phone and the server.
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32(length=32)


def otpauth_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an inline SVG: no image host, no script, allowed by our CSP."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, xmldecl=False, svgns=True, title="TOTP QR code")
    return out.getvalue().decode()


def matching_step(secret: str, code: str, *, after_step: int | None, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to, if valid and newer than ``after_step``; else None.

    Returning the step lets the caller remember it, so the same code (or an older one) is never
    accepted twice, even within its validity window.
    """
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if after_step is not None and step <= after_step:
            continue
        if pyotp.utils.strings_equal(totp.at(step * STEP_SECONDS), code):
            return step
    return None
