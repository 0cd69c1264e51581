"""Byte scan of a de-identified output for the original identifying values.

Why a scan after the transform: the transform is rule-driven, and a rule gap (a new attribute, a
value copied into an unexpected place, a private tag, text in the preamble) would leak silently.
Searching the finished bytes for every original value that the profile changed catches any such
gap, whatever its cause; a hit quarantines the file.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Values shorter than this are not searched: "M", "CT" or "1" occur by chance in any file.
MIN_SCAN_LENGTH = 5


def needles(value: str) -> set[str]:
    """The strings to search for one original value: the whole value and its name/list parts."""
    text = value.strip("\x00 ")
    found = {text}
    for sep in ("\\", "^", "="):
        found |= {part.strip() for chunk in list(found) for part in chunk.split(sep)}
    return {n for n in found if len(n) >= MIN_SCAN_LENGTH}


def scan(output: bytes, originals: Iterable[tuple[str, str]]) -> list[str]:
    """Attribute names whose original value still occurs in ``output`` (no values returned).

    ``originals`` yields ``(attribute name, original value)``. Both the ASCII/UTF-8 form and the
    UTF-16 form are searched; the report names only the attribute, never the value.
    """
    hits: set[str] = set()
    for name, value in originals:
        for needle in needles(value):
            raw = needle.encode("utf-8", "surrogateescape")
            if raw in output or needle.encode("utf-16-le") in output:
                hits.add(name)
                break
    return sorted(hits)
