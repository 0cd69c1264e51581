"""Decode a raw DICOM value the way pydicom does, for the fast de-identification path.

Why: the fast path must search for, pseudonymise and shift exactly the strings the reference sees
(``str`` of each value of a pydicom ``DataElement``), yet converting every element with pydicom is
the cost it avoids. Plain ASCII — nearly every value — is decoded here with pydicom's rules for each
VR (what is stripped, what is split on backslashes); anything else (other character sets, escape
sequences, name component groups) goes through pydicom's own converter.
``tests/test_deid_dicom_raw.py`` compares both on random values of every text VR.
"""

from __future__ import annotations

from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.values import convert_value

from sanctum.deid.dicom_raw_parse import CHARSET_VRS, Unsupported, charset_encodings


def text_values(vr: str, raw: bytes, charset: bytes | None) -> list[str]:
    """``str`` of each value pydicom decodes from ``raw`` (``[]`` when empty), at a fraction of its cost.

    Plain ASCII (the usual case) is decoded here with pydicom's stripping and splitting rules for
    each VR; anything else goes through pydicom's own converter with the data set's character sets.
    """
    if not raw:
        return []
    kind = _TEXT_KINDS.get(vr)
    if kind is None:
        raise Unsupported("a text value of a VR this reader does not decode")
    if vr in CHARSET_VRS and (not raw.isascii() or b"\x1b" in raw or (vr == "PN" and b"=" in raw)):
        return _pydicom_values(vr, raw, charset)  # escapes, non-ASCII, or name component groups
    text = raw.decode("latin-1")  # pydicom's default encoding; exact for ASCII
    if kind == "whole":  # ST, LT, UT: one value, backslashes included
        return [text.rstrip("\x00 ")]
    if kind == "each":  # SH, LO, UC: split, then each value stripped
        return [value.rstrip("\x00 ") for value in text.split("\\")]
    if kind == "ae":
        return [value.strip() for value in text.split("\\")]
    if kind == "ur":
        return [text.rstrip()]
    if kind == "ui":  # pydicom's UID class strips each value of whitespace
        return [value.strip() for value in text.rstrip("\x00 ").split("\\")]
    return text.rstrip("\x00 ").split("\\")  # PN, AS, CS, DA, DT, TM: stripped, then split


#: How ``text_values`` splits and strips each text VR (pydicom's converters, rule for rule).
_TEXT_KINDS = {
    **dict.fromkeys(("ST", "LT", "UT"), "whole"),
    **dict.fromkeys(("SH", "LO", "UC"), "each"),
    **dict.fromkeys(("PN", "AS", "CS", "DA", "DT", "TM"), "split"),
    "AE": "ae",
    "UR": "ur",
    "UI": "ui",
}


def encodings_for(charset: bytes | None) -> list[str]:
    """Python codecs for a raw Specific Character Set value, as pydicom derives them."""
    return list(charset_encodings(charset))


def _pydicom_values(vr: str, raw: bytes, charset: bytes | None) -> list[str]:
    """Decode with pydicom's converter and the data set's character sets (non-ASCII text)."""
    element = RawDataElement(Tag(0), vr, len(raw), raw, 0, False, True)
    value = convert_value(vr, element, encodings_for(charset))
    if isinstance(value, MultiValue | list):
        return [str(v) for v in value]
    return [str(value)]
