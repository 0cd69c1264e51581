"""Keyed, persistent pseudonyms for DICOM UIDs, patient IDs and per-patient date shifts.

Why keyed HMAC rather than random replacement: a project uploads the same patients many times, and
studies must link up across uploads, so the same original value has to map to the same pseudonym
within a project — without storing a lookup table that would itself be identifying. HMAC-SHA256
with the project's secret gives exactly that: deterministic inside a project, unlinkable across
projects (different keys), and not invertible without the key.

The per-patient date offset is *derived* from the project key with HMAC rather than stored: it is
therefore persistent (the same patient always gets the same shift, so intervals between studies
are preserved across uploads) and lives in the project's secret store implicitly, as the key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

#: Largest absolute date shift, in days. Offsets are in [-MAX, -1] ∪ [1, MAX] — never zero, so
#: a shifted date never accidentally equals the original.
MAX_DATE_SHIFT_DAYS = 3650

#: Root of UUID-derived UIDs (PS3.5 §B.2): "2.25." followed by a 128-bit unsigned integer.
UUID_UID_ROOT = "2.25."


@dataclass(frozen=True)
class Pseudonymiser:
    """Derives pseudonyms from one project's secret key (at least 32 bytes)."""

    key: bytes

    def __post_init__(self) -> None:
        """Refuse short keys: a weak key would make the pseudonyms guessable by brute force."""
        if len(self.key) < 32:
            raise ValueError("the project pseudonymisation key must be at least 32 bytes")

    def _mac(self, domain: str, value: str) -> bytes:
        """HMAC with a domain label, so a UID and a patient ID with equal text stay unrelated."""
        return hmac.new(
            self.key, domain.encode() + b"\x00" + value.encode("utf-8", "surrogateescape"), hashlib.sha256
        ).digest()

    def uid(self, original: str) -> str:
        """Replace a UID by ``2.25.<128-bit int>`` (≤ 44 chars, valid UI syntax)."""
        number = int.from_bytes(self._mac("uid", original.strip("\x00 "))[:16], "big")
        return f"{UUID_UID_ROOT}{number}"

    def patient_id(self, original: str) -> str:
        """Replace a patient ID by a 20-character pseudonym (fits SH/LO, upper-case base32)."""
        digest = self._mac("patient-id", original.strip("\x00 "))
        return "P" + base64.b32encode(digest).decode()[:19]

    def date_offset_days(self, patient_key: str) -> int:
        """Per-patient shift in days, non-zero, within ±MAX_DATE_SHIFT_DAYS."""
        raw = int.from_bytes(self._mac("date-offset", patient_key)[:8], "big")
        magnitude = raw % MAX_DATE_SHIFT_DAYS + 1
        return magnitude if raw >> 63 else -magnitude


def shift_da(value: str, days: int) -> str | None:
    """Shift a DA value (YYYYMMDD, possibly a range ``A-B``); ``None`` if it cannot be parsed."""
    parts = value.strip().split("-")
    out = []
    for part in parts:
        if not part:
            out.append("")
            continue
        try:
            day = dt.datetime.strptime(part[:8], "%Y%m%d").date()
            out.append((day + dt.timedelta(days=days)).strftime("%Y%m%d"))
        except (ValueError, OverflowError):
            return None
    return "-".join(out)


def shift_dt(value: str, days: int) -> str | None:
    """Shift the date part of a DT value, keeping its time and offset; ``None`` if unparsable."""
    text = value.strip()
    if len(text) < 8 or "-" in text[:8]:
        return None
    shifted = shift_da(text[:8], days)
    return None if shifted is None else shifted + text[8:]
