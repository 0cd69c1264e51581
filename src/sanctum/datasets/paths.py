"""What a file path inside a dataset version may be.

Paths come from uploads and archive entries and later become paths in a job's sandbox, so they are
checked strictly: relative, POSIX separators, no empty, ``.`` or ``..`` segments, no control
characters or backslashes, bounded length. Names are normalised to NFC so two spellings of the
same name cannot coexist.
"""

from __future__ import annotations

import unicodedata

from sanctum.errors import InvalidInput

MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255


def file_path(value: str) -> str:
    """The canonical form of ``value``, or InvalidInput saying what is wrong with it."""
    if not value:
        raise InvalidInput("file path must not be empty", code="invalid_path")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput("file path must not contain control characters (or NUL)", code="invalid_path")
    if "\\" in value:
        raise InvalidInput("file path must use '/' as separator, not backslashes", code="invalid_path")
    if value.startswith("/"):
        raise InvalidInput("file path must be relative (no leading '/')", code="invalid_path")
    path = unicodedata.normalize("NFC", value)
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidInput(f"file path {value!r} has an empty, '.' or '..' segment", code="invalid_path")
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise InvalidInput(f"a file name may be at most {MAX_SEGMENT_BYTES} bytes", code="invalid_path")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise InvalidInput(f"file path may be at most {MAX_PATH_BYTES} bytes", code="invalid_path")
    return path
