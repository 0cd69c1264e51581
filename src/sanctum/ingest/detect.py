"""What a source file is, decided by its content, never by its name.

Why content: hospital exports name DICOM files ``IM0001``, ``1.2.840…`` or nothing at all, and a
file called ``.csv`` can be anything. A name is used only as a hint for error messages.

- DICOM: ``DICM`` at offset 128 (Part 10), or a dataset without preamble and file meta that
  pydicom parses into public attributes starting at a plausible group (older PACS exports write
  bare implicit-VR little-endian datasets; some archives explicit-VR big-endian ones).
- EDF/EDF+/BDF: the version field of the header (``sanctum.deid.edf.sniff``).
- Parquet: ``PAR1`` at both ends.
- CSV: text (no NUL bytes, mostly printable) whose first line holds a delimiter. A CSV in another
  encoding than UTF-8 is still detected as CSV, so the table reader can say what is wrong with it.
"""

from __future__ import annotations

import io
import struct
import warnings
from enum import StrEnum

from sanctum.deid.edf import sniff as is_edf


class Kind(StrEnum):
    DICOM = "dicom"
    EDF = "edf"
    TABLE = "table"
    UNKNOWN = "unknown"


#: Groups a bare (preamble-less) dataset plausibly starts with: file meta, identifying/study groups.
_FIRST_GROUPS = frozenset({0x0002, 0x0008, 0x0010, 0x0018, 0x0020, 0x0028})
_VRS = frozenset(
    (
        b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW "
        b"PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV"
    ).split()
)
_DELIMITERS = (b",", b"\t", b";", b"|")
_SNIFF_BYTES = 64 * 1024
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def detect(data: bytes) -> Kind:
    """The kind of ``data``; ``UNKNOWN`` when it is none of DICOM, EDF/BDF, Parquet or CSV."""
    if data[128:132] == b"DICM":
        return Kind.DICOM
    if is_edf(data):
        return Kind.EDF
    if len(data) >= 8 and data[:4] == b"PAR1" and data[-4:] == b"PAR1":
        return Kind.TABLE
    if _bare_dicom(data):
        return Kind.DICOM
    if _csv_like(data):
        return Kind.TABLE
    return Kind.UNKNOWN


def unknown_reason(data: bytes) -> str:
    """Why a file was not recognised, in words that help (no content quoted)."""
    if data.startswith(_ARCHIVE_MAGIC) or data[257:262] == b"ustar":
        return "an archive inside the upload is not opened: unpack it, or ingest the archive on its own"
    if not data:
        return "the file is empty"
    return "not a recognised file type (DICOM, EDF/EDF+/BDF, CSV or Parquet)"


def _bare_dicom(data: bytes) -> bool:
    """A DICOM dataset without the 128-byte preamble: implicit or explicit VR little endian, or
    explicit VR big endian (the retired transfer syntax some old archives still hold)."""
    if len(data) < 16:
        return False
    group_le, group_be = struct.unpack_from("<H", data)[0], struct.unpack_from(">H", data)[0]
    explicit = data[4:6] in _VRS
    if group_le not in _FIRST_GROUPS and not (explicit and group_be in _FIRST_GROUPS):
        return False
    if not explicit:
        (length,) = struct.unpack_from("<I", data, 4)
        if length > len(data) - 8:
            return False
    import pydicom  # only files that look like bare DICOM pay for the import and the parse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
            public = [e for e in ds if e.keyword and not e.tag.is_private]
    except Exception:
        return False
    return len(public) >= 2


def _csv_like(data: bytes) -> bool:
    head = data[:_SNIFF_BYTES]
    if not head.strip() or b"\x00" in head:
        return False
    printable = sum(1 for b in head if b >= 0x20 or b in (0x09, 0x0A, 0x0D))
    if printable < 0.97 * len(head):
        return False
    first = head.split(b"\n", 1)[0]
    return any(d in first for d in _DELIMITERS)
