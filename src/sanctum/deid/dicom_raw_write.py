"""Encoding for the raw-bytes fast path: elements, markers and the file meta, as pydicom writes them.

Why a module of its own: the fast path writes only what a rule changes, and each such element must
come out exactly as the reference (pydicom) would write it — padding, VR and length field size —
so that both paths give the same result. Everything here is byte layout; the decisions are in
``dicom_raw``.
"""

from __future__ import annotations

import struct
from functools import cache

from sanctum.deid.dicom import DUMMY, IMPLEMENTATION_UID, IMPLEMENTATION_VERSION, marker_values
from sanctum.deid.dicom_raw_parse import CHARSET_VRS, LONG_VRS, NUMBER_SIZES, Unsupported
from sanctum.deid.profile import Options

_IMPLICIT_HEADER = struct.Struct("<HHL").pack
_SHORT_HEADER = struct.Struct("<HH2sH").pack
_LONG_HEADER = struct.Struct("<HH2sHL").pack
_ITEM_HEADER = struct.Struct("<HHL").pack
_UL = struct.Struct("<L").pack


class Encoder:
    """Element encoding in the output's transfer syntax (little endian, implicit or explicit VR)."""

    def __init__(self, implicit: bool) -> None:
        self.implicit = implicit

    def element(self, tag: int, vr: str, value: bytes) -> bytes:
        group, number, length = tag >> 16, tag & 0xFFFF, len(value)
        if self.implicit:
            return _IMPLICIT_HEADER(group, number, length) + value
        if vr in LONG_VRS:
            return _LONG_HEADER(group, number, vr.encode(), 0, length) + value
        if length > 0xFFFF:
            raise Unsupported("a rewritten value too long for its VR (pydicom would write it as UN)")
        return _SHORT_HEADER(group, number, vr.encode(), length) + value

    def text(self, tag: int, vr: str, text: str) -> bytes:
        """A string value as pydicom writes it: padded to even length (UI with NUL, else space)."""
        if vr in CHARSET_VRS and not text.isascii():
            raise Unsupported("a rewritten text value that is not ASCII")
        value = text.encode("latin-1")
        if len(value) % 2:
            value += b"\x00" if vr == "UI" else b" "
        return self.element(tag, vr, value)

    @staticmethod
    def item(content: bytes) -> bytes:
        return _ITEM_HEADER(0xFFFE, 0xE000, len(content)) + content

    def dummy(self, tag: int, vr: str) -> bytes:
        """D on a non-UI element: the reference's non-identifying value of the same VR."""
        if vr in DUMMY:
            return self.text(tag, vr, DUMMY[vr])
        if vr == "AT":
            raise Unsupported("D on an AT value")
        if vr in NUMBER_SIZES:
            return self.element(tag, vr, b"\x00" * NUMBER_SIZES[vr])
        return self.element(tag, vr, b"\x00\x00")


@cache
def markers(options: Options, edition: str, implicit: bool) -> tuple[tuple[int, bytes], ...]:
    """The four marker elements, encoded, in tag order (the values the reference writes)."""
    method, codes, longitudinal = marker_values(options, edition)
    enc = Encoder(implicit)
    items = b"".join(
        enc.item(
            enc.text(0x00080100, "SH", code)
            + enc.text(0x00080102, "SH", "DCM")
            + enc.text(0x00080104, "LO", meaning)
        )
        for code, meaning in codes
    )
    return (
        (0x00120062, enc.text(0x00120062, "CS", "YES")),
        (0x00120063, enc.text(0x00120063, "LO", "\\".join(method))),
        (0x00120064, enc.element(0x00120064, "SQ", items)),
        (0x00280303, enc.text(0x00280303, "CS", longitudinal)),
    )


def file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, prefix and a new file meta group, byte for byte what pydicom writes for the reference."""
    meta = Encoder(False)
    rest = b"".join(
        (
            meta.element(0x00020001, "OB", b"\x00\x01"),
            meta.text(0x00020002, "UI", sop_class),
            meta.text(0x00020003, "UI", sop_instance),
            meta.text(0x00020010, "UI", transfer_syntax),
            meta.text(0x00020012, "UI", IMPLEMENTATION_UID),
            meta.text(0x00020013, "SH", IMPLEMENTATION_VERSION),
        )
    )
    return b"\x00" * 128 + b"DICM" + meta.element(0x00020000, "UL", _UL(len(rest))) + rest
