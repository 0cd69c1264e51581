"""Read a DICOM data set element by element from bytes, for the fast de-identification path.

Why not pydicom's reader: building a full ``Dataset`` (an object per element, every value
decoded, then encoded again on write) is most of what de-identification costs. The fast path only
needs where each element's header and value lie, so this module records offsets (``Element``
tuples); a value is decoded only when a rule needs it (``dicom_raw_text``). It also reads the file
meta group and says which transfer syntaxes the fast path handles.

Two kinds of refusal, meaning different things:

- ``Malformed``: the bytes are not a well-formed data set (a length past the end of the file or of
  its item, an item or sequence that never closes, nesting too deep, bytes left over). The file is
  rejected with this reason. pydicom reads many such files leniently and writes a shortened copy,
  which would be a partial output.
- ``Unsupported``: well formed, but something pydicom reads in its own way that this reader does
  not reproduce (elements out of order, a VR encoding switch, an ambiguous VR that needs context,
  an explicit UN for an attribute pydicom knows, a value pydicom cannot convert, ...). The caller
  then runs the reference path, so the two paths never give different results.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from pydicom import filewriter
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, keyword_dict, private_dictionary_VR
from pydicom.tag import Tag
from pydicom.uid import UID, ImplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, STANDARD_VR

#: ``(tag, vr, start, vstart, vend, end, items)``: where the element's header starts, where its
#: value starts and ends, and where the element ends (after a delimiter, if any). ``vr`` is the VR
#: pydicom would give it; ``items`` lists a sequence's items, else ``None``.
Element = tuple[int, str, int, int, int, int, "list[Item] | None"]
#: ``(elements, start, end, dropped)``: one sequence item (``dropped``: see ``Reader``).
Item = tuple[list[Element], int, int, int]

ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010
SPECIFIC_CHARACTER_SET = 0x00080005
PIXEL_REPRESENTATION = 0x00280103
LUT_DATA = 0x00283006
#: Nesting deeper than this is refused: no real object nests so deep, and a crafted one would
#: otherwise exhaust the interpreter's stack.
MAX_DEPTH = 48

VRS = {vr.value.encode(): vr.value for vr in STANDARD_VR}
LONG_VRS = frozenset(vr.value for vr in EXPLICIT_VR_LENGTH_32)
#: Explicit VR bytes → (VR, whether its length field is 4 bytes).
_EXPLICIT_VRS = {raw: (vr, vr in LONG_VRS) for raw, vr in VRS.items()}
#: Bytes per value of the binary numeric VRs: pydicom refuses (or truncates, for AT) a value
#: whose length is not a multiple.
NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "UV": 8, "SV": 8, "AT": 4}
#: VRs whose text is decoded with the Specific Character Set (all others use the default encoding).
CHARSET_VRS = frozenset({"PN", "SH", "LO", "ST", "LT", "UC", "UT"})
#: 'US or SS' attributes, which pydicom resolves from Pixel Representation when it reads them in
#: implicit VR (falling back to every 'US or SS' attribute of the dictionary).
US_OR_SS = frozenset(
    getattr(filewriter, "_AMBIGUOUS_US_SS_TAGS", ())
    or {tag for tag in keyword_dict.values() if dictionary_VR(tag) == "US or SS"}
)

_OB_OR_OW = frozenset(getattr(filewriter, "_AMBIGUOUS_OB_OW_TAGS", ()))
_IMPLICIT = struct.Struct("<HHL").unpack_from
_EXPLICIT = struct.Struct("<HH2sH").unpack_from
_U32 = struct.Struct("<L").unpack_from
_ITEM_BYTES = b"\xfe\xff\x00\xe0"
#: File meta attributes the fast path reads, with the VR pydicom expects (others are refused).
META_VRS = {0x00020003: "UI", 0x00020010: "UI", 0x00020016: "AE", 0x00020017: "AE", 0x00020018: "AE"}


class Malformed(ValueError):
    """Not a well-formed DICOM data set; the message says where (offsets and tags, never values)."""


class Unsupported(Exception):
    """Well formed, but read by pydicom in a way this reader does not reproduce: use the reference."""


def tag_text(tag: int) -> str:
    """``(gggg,eeee)``, as pydicom prints a tag."""
    return str(Tag(tag))


@lru_cache(maxsize=65536)
def public_vr(tag: int) -> str:
    """The dictionary VR of a public tag ('' when unknown), as pydicom resolves it for implicit VR."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UL" if tag & 0xFFFF == 0 else ""


@lru_cache(maxsize=8192)
def private_vr(tag: int, creator: str) -> str:
    """The VR pydicom gives a private element of ``creator`` (``UN`` when its dictionary lacks it)."""
    try:
        return str(private_dictionary_VR(tag, creator))
    except KeyError:
        return "UN"


#: Implicit VR of public tags, filled by ``_implicit_vr`` (a plain dict: cheaper than a cache call).
_IMPLICIT_VRS: dict[int, str] = {}


def _implicit_vr(tag: int) -> str:
    """A public element's VR as pydicom gives it after reading (ambiguous ones resolved)."""
    vr = public_vr(tag)
    if tag in US_OR_SS:
        vr = "US"  # US and SS get the same rules; only the sign of the number differs
    elif tag == LUT_DATA:
        raise Unsupported("LUT Data, whose VR pydicom resolves from the LUT Descriptor")
    elif vr == "OB or OW" and (tag in _OB_OR_OW or tag & 0xFFE1FFFF == 0x60003000):
        vr = "OW"
    if vr:
        _IMPLICIT_VRS[tag] = vr  # dictionary tags only: a crafted file cannot grow it
    return vr or "UN"


@lru_cache(maxsize=256)
def charset_encodings(charset: bytes | None) -> tuple[str, ...]:
    """Python codecs for a raw Specific Character Set value, as pydicom derives them on reading."""
    if charset is None:
        return tuple(convert_encodings(None))
    names = charset.decode("latin-1").rstrip("\x00 ").split("\\")  # a CS value, as pydicom splits it
    try:
        return tuple(convert_encodings(names[0] if len(names) == 1 else names))
    except ValueError as exc:  # pydicom fails reading such a file: the reference rejects it
        raise Unsupported("a Specific Character Set pydicom cannot use") from exc


class Reader:
    """Parses one buffer; ``implicit`` is the transfer syntax's VR encoding (always little endian).

    Unless ``keep_private``, private elements other than sequences are only counted (``dataset``
    returns how many): with nothing allow-listed they are all removed, so their offsets are not
    needed. Private sequences stay listed, because the public attributes inside them are searched
    for when an enclosing sequence is removed.
    """

    def __init__(self, buf: bytes, implicit: bool, keep_private: bool = True) -> None:
        self.buf, self.n, self.implicit, self.keep_private = buf, len(buf), implicit, keep_private

    def dataset(self, pos: int, stop: int | None, depth: int = 0) -> tuple[list[Element], int, int]:
        """Elements from ``pos`` to ``stop`` (``None``: to the item delimiter), where they end, and
        how many private elements were counted but not listed."""
        if depth > MAX_DEPTH:
            raise Malformed(f"sequences nested more than {MAX_DEPTH} deep")
        buf, implicit, keep_private = self.buf, self.implicit, self.keep_private
        limit = self.n if stop is None else stop
        elements: list[Element] = []
        append = elements.append
        creators: dict[int, tuple[int, int]] = {}
        last, dropped = -1, 0
        us_or_ss = has_pixel_rep = has_pixels = False
        while pos < limit or stop is None:
            if pos + 8 > limit:
                what = "an item that never closes" if stop is None else "an element header"
                raise Malformed(f"truncated: {what} at byte {pos}")
            if implicit:
                group, number, length = _IMPLICIT(buf, pos)
            else:
                group, number, raw_vr, length = _EXPLICIT(buf, pos)
            tag = group << 16 | number
            if group == 0xFFFE:
                if tag == ITEM_END and stop is None:
                    self._check_us_or_ss(us_or_ss, has_pixel_rep, has_pixels)
                    return elements, pos + 8, dropped
                raise Malformed(f"unexpected item or delimiter tag {tag_text(tag)} at byte {pos}")
            if tag <= last:
                raise Unsupported("elements out of order or repeated")
            if last < 0:
                if depth == 0 or not implicit:
                    self._check_encoding(pos)
                if depth == 0 and group in (0x0000, 0x0002):
                    raise Unsupported("command or file meta elements inside the data set")
            last = tag
            private = group & 1
            if implicit:
                vstart = pos + 8
                if private:
                    vr = self._private_vr(tag, number, creators)
                else:
                    vr = _IMPLICIT_VRS.get(tag) or _implicit_vr(tag)
            else:
                vr, long_length = _EXPLICIT_VRS.get(raw_vr, ("", False))
                if not vr:
                    raise Unsupported("a VR pydicom reads as an implicit switch or does not know")
                if long_length:
                    if pos + 12 > limit:
                        raise Malformed(f"truncated: an element header at byte {pos}")
                    length = _U32(buf, pos + 8)[0]
                    vstart = pos + 12
                else:
                    vstart = pos + 8
                if vr == "UN":
                    vr = self._explicit_un(tag, number, creators, length)
            if length == UNDEFINED:
                vr, items, vend, end = self._undefined(tag, vr, vstart, depth)
            else:
                vend = end = vstart + length
                if vend > limit:
                    where = "its item" if depth else "the file"
                    raise Malformed(
                        f"element {tag_text(tag)} at byte {pos} declares {length} bytes, "
                        f"past the end of {where}"
                    )
                items = self.items(vstart, vend, depth + 1)[0] if vr == "SQ" else None
            size = NUMBER_SIZES.get(vr)
            if size and (vend - vstart) % size:
                raise Unsupported("a numeric value whose length is not a multiple of its size")
            if tag == SPECIFIC_CHARACTER_SET:
                charset_encodings(buf[vstart:vend])  # pydicom decodes it on reading, and can fail there
            if private:
                if 0x10 <= number <= 0xFF:
                    creators[number] = (vstart, vend)
                if not keep_private and items is None:
                    dropped += number != 0  # a group length is dropped uncounted, as the reference does
                    pos = end
                    if not implicit:
                        pos, last, dropped = self._skip_private(pos, limit, last, dropped, creators)
                    continue
            elif implicit:
                if tag in US_OR_SS and vend > vstart:
                    if (vend - vstart) % 2:
                        raise Unsupported("an odd-length 'US or SS' value")
                    us_or_ss = True
                elif tag == PIXEL_REPRESENTATION:
                    has_pixel_rep = True
                elif tag == PIXEL_DATA:
                    has_pixels = True
            append((tag, vr, pos, vstart, vend, end, items))
            pos = end
        self._check_us_or_ss(us_or_ss, has_pixel_rep, has_pixels)
        return elements, pos, dropped

    def _skip_private(
        self, pos: int, limit: int, last: int, dropped: int, creators: dict[int, tuple[int, int]]
    ) -> tuple[int, int, int]:
        """Count the private elements that follow (explicit VR, nothing kept) with the same checks
        as ``dataset``, stopping at anything else (a sequence, UN, an undefined length, a public tag)."""
        buf = self.buf
        while pos + 12 <= limit:
            group, number, raw_vr, length = _EXPLICIT(buf, pos)
            if not group & 1 or group == 0xFFFF:
                break
            vr, long_length = _EXPLICIT_VRS.get(raw_vr, ("", False))
            if vr in ("", "SQ", "UN"):
                break
            tag = group << 16 | number
            if tag <= last:
                raise Unsupported("elements out of order or repeated")
            if long_length:
                length = _U32(buf, pos + 8)[0]
                if length == UNDEFINED:
                    break
                vstart = pos + 12
            else:
                vstart = pos + 8
            vend = vstart + length
            if vend > limit:
                break  # ``dataset`` reports it
            size = NUMBER_SIZES.get(vr)
            if size and length % size:
                raise Unsupported("a numeric value whose length is not a multiple of its size")
            if 0x10 <= number <= 0xFF:
                creators[number] = (vstart, vend)
            dropped += number != 0
            last, pos = tag, vend
        return pos, last, dropped

    def items(self, pos: int, stop: int | None, depth: int) -> tuple[list[Item], int]:
        """A sequence's items from ``pos`` (``stop`` ``None``: to its delimiter), and where it ends."""
        buf, limit = self.buf, self.n if stop is None else stop
        found: list[Item] = []
        while stop is None or pos < stop:
            if pos + 8 > limit:
                raise Malformed(f"truncated: a sequence that never closes, at byte {pos}")
            group, number, length = _IMPLICIT(buf, pos)
            tag = group << 16 | number
            if tag == SEQUENCE_END:
                if stop is None:
                    return found, pos + 8
                raise Unsupported("a sequence delimiter inside a sequence of defined length")
            if tag != ITEM:
                raise Malformed(f"expected a sequence item at byte {pos}, found {tag_text(tag)}")
            if length == UNDEFINED:
                elements, end, dropped = self.dataset(pos + 8, None, depth)
            else:
                end = pos + 8 + length
                if end > limit:
                    raise Malformed(f"item at byte {pos} declares {length} bytes, past its sequence's end")
                elements, _, dropped = self.dataset(pos + 8, end, depth)
            found.append((elements, pos, end, dropped))
            pos = end
        return found, pos

    def _undefined(self, tag: int, vr: str, vstart: int, depth: int) -> tuple[str, list[Item], int, int]:
        """An undefined-length value: a sequence, or encapsulated pixel data (fragments kept as bytes)."""
        if self.implicit:
            known = "" if tag >> 16 & 1 else public_vr(tag)
            if known == "SQ" or (not known and self.buf[vstart : vstart + 4] == _ITEM_BYTES):
                vr = "SQ"  # pydicom reads an unknown element made of items as a sequence
        elif vr == "UN":
            raise Unsupported("an undefined-length UN, which pydicom reads as an implicit VR sequence")
        if vr == "SQ":
            items, end = self.items(vstart, None, depth + 1)
            return vr, items, end - 8, end
        if tag == PIXEL_DATA:
            vend = self._fragments(vstart)
            return "OB" if self.implicit else vr, [], vend, vend + 8
        raise Unsupported("an undefined length on an element that is neither a sequence nor pixel data")

    def _fragments(self, pos: int) -> int:
        """Where the delimiter of encapsulated pixel data starts (fragments are skipped whole)."""
        buf, n = self.buf, self.n
        while True:
            if pos + 8 > n:
                raise Malformed(f"truncated: encapsulated pixel data that never closes, at byte {pos}")
            group, number, length = _IMPLICIT(buf, pos)
            tag = group << 16 | number
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM or length == UNDEFINED:
                raise Unsupported("encapsulated pixel data that is not a list of items")
            if pos + 8 + length > n:
                raise Malformed(f"truncated: a pixel data fragment at byte {pos} runs past the end")
            pos += 8 + length

    def _check_encoding(self, pos: int) -> None:
        """pydicom switches VR encoding when a data set's first element looks like the other kind."""
        vr = self.buf[pos + 4 : pos + 6]
        looks_explicit = len(vr) == 2 and 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B
        if looks_explicit == self.implicit:
            raise Unsupported("a data set whose VR encoding differs from its transfer syntax")

    def _private_vr(self, tag: int, number: int, creators: dict[int, tuple[int, int]]) -> str:
        """A private element's VR as pydicom gives it: LO for creators, else its creator's dictionary."""
        if 0x10 <= number <= 0xFF:
            return "LO"
        where = creators.get(number >> 8) if number & 0xFF00 else None
        creator = self._creator(*where) if where else ""
        return private_vr(tag, creator) if creator else "UN"

    def _explicit_un(self, tag: int, number: int, creators: dict[int, tuple[int, int]], length: int) -> str:
        """An explicit UN, which pydicom replaces by the VR it knows for the attribute."""
        if not tag >> 16 & 1:
            known = public_vr(tag)
            if length == UNDEFINED or length >= 0xFFFF or known in ("", "UN"):
                return "UN"
            if known == "SQ" or " or " in known:
                raise Unsupported("an explicit UN for a sequence or an ambiguous VR")
            return known  # rules apply by this VR; a kept value is copied and read back with it
        known = self._private_vr(tag, number, creators)
        if known == "SQ":
            raise Unsupported("an explicit UN for a private sequence pydicom knows")
        return known  # kept bytes are copied as they are; pydicom reads them back with this VR

    def _creator(self, vstart: int, vend: int) -> str:
        """A private creator's value as pydicom reads it (LO), for private dictionary look-ups."""
        raw = self.buf[vstart:vend]
        if not raw.isascii() or b"\x1b" in raw or b"\\" in raw:
            raise Unsupported("a private creator that is not plain single-valued ASCII")
        return raw.decode("ascii").rstrip("\x00 ")

    @staticmethod
    def _check_us_or_ss(us_or_ss: bool, has_pixel_rep: bool, has_pixels: bool) -> None:
        """pydicom fails on a 'US or SS' value when pixel data has no Pixel Representation beside it."""
        if us_or_ss and has_pixels and not has_pixel_rep:
            raise Unsupported("a 'US or SS' value pydicom cannot resolve")


def read_file_meta(buf: bytes) -> tuple[int, dict[int, tuple[str, int, int]]]:
    """Where the data set starts, and the file meta group: tag → (VR, value start, value end)."""
    pos, found = 132, {}
    while pos + 8 <= len(buf):
        group, number, raw_vr, length = _EXPLICIT(buf, pos)
        if group != 2:
            break
        vr = raw_vr.decode("latin-1")
        if not vr.isalpha() or not vr.isupper():
            raise Unsupported("file meta that is not explicit VR")
        if vr in LONG_VRS:
            length, pos = _U32(buf, pos + 8)[0], pos + 12
        else:
            pos += 8
        tag = 0x00020000 | number
        if length == UNDEFINED or pos + length > len(buf):
            raise Malformed(f"file meta element {tag_text(tag)} runs past the end of the file")
        if tag in META_VRS and vr != META_VRS[tag]:
            raise Unsupported("a file meta attribute with an unexpected VR")
        found[tag] = (vr, pos, pos + length)
        pos += length
    return pos, found


@lru_cache(maxsize=64)
def transfer_syntax(uid: str) -> tuple[bool, bool]:
    """(implicit VR, pixel data encapsulated) for a syntax this path handles, else ``Unsupported``."""
    ts = UID(uid)
    if uid == ImplicitVRLittleEndian:
        return True, False
    if not ts.is_transfer_syntax or ts.is_private or not ts.is_little_endian or ts.is_deflated:
        raise Unsupported("a transfer syntax other than little endian, uncompressed or encapsulated")
    if ts.is_implicit_VR:
        raise Unsupported("an implicit VR transfer syntax other than the default")
    return False, bool(ts.is_compressed)
