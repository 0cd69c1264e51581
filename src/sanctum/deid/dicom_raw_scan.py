"""The byte scan of ``sanctum.deid.scan`` with the same hits, without searching every byte per value.

Why: ``scan`` runs ``value in output`` twice (UTF-8 and UTF-16) for every needle, so its cost is
needles × file size; on a CT slice that is most of a millisecond, more than the whole fast
de-identification. Almost every needle is printable ASCII, and an occurrence of such a needle lies
inside a run of at least five printable bytes (UTF-8), or of at least five (printable, NUL) pairs
(UTF-16). Those runs are found in one pass by a regular expression with a literal prefix over a
translated copy of the output, and the needles are searched in the runs only: a small haystack in
image data, which is rarely text-like. Needles that are not printable ASCII are searched in the
whole output, exactly as ``scan`` does. ``tests/test_deid_dicom_raw.py`` checks both agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sanctum.deid.scan import MIN_SCAN_LENGTH, needles

_PRINTABLE = range(0x20, 0x7F)
#: A byte's class: printable → 1, NUL → 2, anything else → 0.
_CLASSES = bytes(1 if b in _PRINTABLE else 2 if b == 0 else 0 for b in range(256))
_RUN_8 = re.compile(b"\x01" * MIN_SCAN_LENGTH + b"\x01*")
_RUN_16 = re.compile(b"\x01\x02" * MIN_SCAN_LENGTH + b"(?:\x01\x02)*")


def quick_needles(value: str) -> set[str]:
    """``scan.needles`` with a shortcut for values without separators (UIDs, dates, IDs)."""
    text = value.strip("\x00 ")
    if "\\" in text or "^" in text or "=" in text:
        return needles(value)
    return {n for n in (text, text.strip()) if len(n) >= MIN_SCAN_LENGTH}


class _Haystacks:
    """The printable runs of one output, built on first use."""

    def __init__(self, output: bytes) -> None:
        self.output = output
        self._classes: bytes | None = None
        self._utf8: bytes | None = None
        self._utf16: bytes | None = None

    @property
    def classes(self) -> bytes:
        if self._classes is None:
            self._classes = self.output.translate(_CLASSES)
        return self._classes

    @property
    def utf8(self) -> bytes:
        if self._utf8 is None:
            out = self.output
            spans = _RUN_8.finditer(self.classes)
            self._utf8 = b"\x00".join([out[m.start() : m.end()] for m in spans])
        return self._utf8

    @property
    def utf16(self) -> bytes:
        """The characters of every UTF-16LE run of printable ASCII, one byte each."""
        if self._utf16 is None:
            out = self.output
            spans = _RUN_16.finditer(self.classes)
            self._utf16 = b"\x00".join([out[m.start() : m.end() : 2] for m in spans])
        return self._utf16


def scan_fast(output: bytes, originals: Iterable[tuple[str, str]]) -> list[str]:
    """Attribute names whose original value occurs in ``output``; the same list ``scan`` returns."""
    by_needle: dict[str, set[str]] = {}
    seen: set[tuple[str, str]] = set()
    for original in originals:
        if original in seen:
            continue
        seen.add(original)
        for needle in quick_needles(original[1]):
            by_needle.setdefault(needle, set()).add(original[0])
    hits: set[str] = set()
    hay = _Haystacks(output)
    for needle, names in by_needle.items():
        if names <= hits:
            continue
        if needle.isascii() and needle.isprintable():
            raw = needle.encode("ascii")
            found = raw in hay.utf8 or raw in hay.utf16
        else:
            found = (
                needle.encode("utf-8", "surrogateescape") in output or needle.encode("utf-16-le") in output
            )
        if found:
            hits |= names
    return sorted(hits)
