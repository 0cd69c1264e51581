"""What the raw walk (``dicom_raw``) saw of one file, handed to callers beside the ``Result``.

Why: the ingest worker needs more of a file than its de-identified bytes — a completeness check
over every element, the burned-in context values, and the values of its metadata row as written
to the output. Parsing the file again with pydicom for those cost more than the fast path's whole
de-identification; the walk has already read every element header, so it keeps them here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sanctum.deid.dicom_raw_parse import LONG_VRS, Element


@dataclass(frozen=True)
class Seen:
    """What the raw walk saw of one file, beyond the ``Result``: for a caller (the ingest worker) that
    would otherwise parse the file again for its completeness check and its metadata row.

    ``top`` holds the original's top-level elements by tag (private ones only when Retain Safe
    Private lists some: the reader counts the others without listing them). ``sop_class`` and
    ``manufacturer`` are the context values the walk read for the burned-in check, as the reference
    computes them (``str(ds.get(keyword, ""))``). ``written`` holds, for the top-level tags the caller
    asked for, the element exactly as it was written to the output (absent: not in the output).
    """

    buf: bytes
    implicit: bool
    top: dict[int, Element]
    sop_class: str
    manufacturer: str
    written: dict[int, bytes | memoryview]

    def written_value(self, tag: int) -> tuple[str | None, bytes] | None:
        """(header VR, value bytes) of an output element, as pydicom reads it from the output."""
        chunk = self.written.get(tag)
        if chunk is None:
            return None
        if self.implicit:
            return None, bytes(chunk[8:])
        vr = bytes(chunk[4:6]).decode("latin-1")
        return vr, bytes(chunk[12 if vr in LONG_VRS else 8 :])
