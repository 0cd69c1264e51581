"""De-identify one DICOM file from its raw bytes: the reference's result, without pydicom's round trip.

Why: ``dicom.deidentify`` reads the whole file into a pydicom ``Dataset``, converts every value,
applies the profile and encodes every value again; for a CT slice that is several milliseconds,
most of it spent on elements the profile keeps. This path parses element headers only
(``dicom_raw_parse``), decides each element's action with the same shared function as the
reference (``dicom.element_action``), rewrites only the elements the rules touch, copies every
other element — pixel data and encapsulated fragments included — byte for byte, writes the same
markers and file meta, and runs the same byte scan (``dicom_raw_scan``, same hits, faster).

Same input, same key, same options → the same ``Result`` as the reference: the same report, the
same quarantine reasons and an output whose elements pydicom reads back equal to the reference's
(``tests/test_deid_dicom_raw.py`` checks this on every pydicom test file and on the privacy
generator's files). Where this path cannot be sure of that — big endian, deflated, no file meta,
and the rarer constructs listed in ``dicom_raw_parse`` — it raises ``Unsupported`` and
``deidentify_bytes`` runs the reference instead. Where the bytes are not well-formed DICOM it
rejects the file, where pydicom would often write a shortened copy.

Callers use ``deidentify_bytes``: same signature and result type as ``dicom.deidentify``. A caller
that needs more of the file than the ``Result`` (the ingest worker: its completeness check and
metadata row) uses ``deidentify_seen``, which also returns what the walk saw (``Seen``), so the file
is not parsed a second time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cache, lru_cache

from pydicom.datadict import dictionary_has_tag, dictionary_keyword, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.tag import Tag

from sanctum.deid.clean import TEXT_VRS, clean_action
from sanctum.deid.dicom import (
    CODE_KEYWORDS,
    DEFAULT_BURNED_IN_RULES,
    META_SCANNED,
    PIXEL_DATA_TAGS,
    STANDARD_UID_PREFIX,
    STRING_VRS,
    Report,
    Result,
    burned_in_reasons_for,
    conclude,
    deidentify,
    element_action,
    nested_action,
    pseudonymise_uid,
)
from sanctum.deid.dicom_raw_parse import (
    META_VRS,
    SPECIFIC_CHARACTER_SET,
    Element,
    Item,
    Malformed,
    Reader,
    Unsupported,
    read_file_meta,
    tag_text,
    transfer_syntax,
)
from sanctum.deid.dicom_raw_scan import scan_fast
from sanctum.deid.dicom_raw_seen import Seen
from sanctum.deid.dicom_raw_text import encodings_for, text_values
from sanctum.deid.dicom_raw_write import Encoder, file_meta, markers
from sanctum.deid.profile import Options, Table, load_table
from sanctum.deid.pseudonyms import Pseudonymiser, shift_da, shift_dt

__all__ = ["Seen", "Unsupported", "deidentify_bytes", "deidentify_raw", "deidentify_seen"]

#: Entries kept per cache of decisions (tags seen): far above the dictionary's, bounded for crafted files.
_CACHE_LIMIT = 50_000
#: VRs whose original values the byte scan searches for (``_Walk.remember``).
_SCANNED_VRS = STRING_VRS - {"IS", "DS"}
#: Value VRs the U, P and S actions can be applied to as pydicom does (str or a list of str).
_TEXT_VALUE_VRS = frozenset(
    ("UI", "LO", "SH", "CS", "AE", "AS", "DA", "DT", "TM", "UC", "UR", "ST", "LT", "UT")
)
#: Attributes read before the walk (the patient key, the burned-in check, the file meta).
_PATIENT_ID, _SOP_CLASS, _SOP_INSTANCE = 0x00100020, 0x00080016, 0x00080018
_MODALITY, _MANUFACTURER, _BURNED_IN = 0x00080060, 0x00080070, 0x00280301
#: The reference's scanned file meta attributes (``dicom.META_SCANNED``), by tag.
_META_TAGS = {tag_for_keyword(keyword): keyword for keyword in META_SCANNED}
_NOTHING: frozenset[int] = frozenset()


def deidentify_bytes(
    data: bytes,
    pseudonymiser: Pseudonymiser,
    options: Options | None = None,
    burned_in_rules: tuple[tuple[str, str], ...] = DEFAULT_BURNED_IN_RULES,
) -> Result:
    """De-identify one DICOM file: the raw path when it applies, else the reference ``deidentify``.

    Same arguments and result as ``sanctum.deid.dicom.deidentify``; never raises on bad input.
    """
    try:
        return deidentify_raw(data, pseudonymiser, options, burned_in_rules)
    except Unsupported:
        return deidentify(data, pseudonymiser, options, burned_in_rules)


def deidentify_raw(
    data: bytes,
    pseudonymiser: Pseudonymiser,
    options: Options | None = None,
    burned_in_rules: tuple[tuple[str, str], ...] = DEFAULT_BURNED_IN_RULES,
) -> Result:
    """The raw path alone: raises ``Unsupported`` where it does not apply (the reference then does)."""
    return deidentify_seen(data, pseudonymiser, options, burned_in_rules)[0]


def deidentify_seen(
    data: bytes,
    pseudonymiser: Pseudonymiser,
    options: Options | None = None,
    burned_in_rules: tuple[tuple[str, str], ...] = DEFAULT_BURNED_IN_RULES,
    capture: frozenset[int] = _NOTHING,
) -> tuple[Result, Seen | None]:
    """``deidentify_raw``, and what the walk saw (``None`` when the file is rejected as malformed).

    ``capture``: top-level tags whose output elements ``Seen.written`` should hold. The output is
    the same whatever is captured.
    """
    options = options or Options()
    try:
        walk = _RawWalk(data, pseudonymiser, options, capture)
        result = walk.run(burned_in_rules)
    except Malformed as exc:
        report = Report(table_edition=load_table().edition)
        return Result(None, report, rejected=f"malformed DICOM: {exc}"), None
    except Unsupported:
        raise
    except Exception as exc:  # a case this path did not foresee: the reference decides, never a crash
        raise Unsupported(f"unexpected {type(exc).__name__}") from exc
    seen = Seen(data, walk.enc.implicit, walk.top, walk.sop_class, walk.manufacturer, walk.written)
    return result, seen


@lru_cache(maxsize=65536)
def keyword(tag: int) -> str:
    """pydicom's ``DataElement.keyword``: registered keyword, else ''."""
    return dictionary_keyword(tag) if dictionary_has_tag(tag) else ""


class _Stub:
    """What ``clean_action`` reads of an element when the safe-value list is not consulted."""

    __slots__ = ("VR", "keyword", "value")

    def __init__(self, vr: str, kw: str) -> None:
        self.VR, self.keyword, self.value = vr, kw, None


@cache
def _decisions(options: Options) -> dict[tuple[int, str, bool], tuple[str, str, str]]:
    """Per-options cache: (tag, VR, cleaning) → (action, report key, name), value-independent only."""
    return {}


@cache
def _nested_decisions(options: Options) -> dict[tuple[int, str], str]:
    """Per-options cache of ``nested_action`` for value-independent cases."""
    return {}


class _RawWalk:
    """One pass over one file: the reference ``_Walk`` over raw elements."""

    def __init__(
        self, data: bytes, pseudonymiser: Pseudonymiser, options: Options, capture: frozenset[int] = _NOTHING
    ) -> None:
        self.buf, self.view, self.p, self.options = data, memoryview(data), pseudonymiser, options
        self.table: Table = load_table()
        self.actions: dict[str, int] = {}
        self.originals: list[tuple[str, str]] = []
        self.decisions = _decisions(options)
        self.nested = _nested_decisions(options)
        self.allowed = options.safe_private if options.retain_safe_private else frozenset()
        self.patient_key = ""
        self._offset: int | None = None
        self.final: dict[int, str] = {}
        self.enc = Encoder(False)
        self.capture, self.written = capture, dict[int, bytes | memoryview]()
        self.top: dict[int, Element] = {}
        self.sop_class = self.manufacturer = ""

    # ------------------------------------------------------------------ the file as a whole

    def run(self, burned_in_rules: tuple[tuple[str, str], ...]) -> Result:
        buf = self.buf
        if len(buf) < 132 or buf[128:132] != b"DICM":
            raise Unsupported("no preamble and DICM prefix")
        start, meta = read_file_meta(buf)
        if 0x00020010 not in meta:
            raise Unsupported("no transfer syntax in the file meta")
        ts_uid = self.meta_text(meta[0x00020010])
        implicit, encapsulated = transfer_syntax(ts_uid)
        self.enc = Encoder(implicit)
        elements, _, dropped = Reader(buf, implicit, bool(self.allowed)).dataset(start, len(buf))
        self.top = top = {element[0]: element for element in elements}
        charset = self.charset(top.get(SPECIFIC_CHARACTER_SET))
        pixels = top.get(0x7FE00010)
        if pixels is not None and (pixels[4] != pixels[5]) != encapsulated:
            raise Unsupported("pixel data encapsulation that does not match the transfer syntax")
        self.sop_class = sop_class = self.context(top, _SOP_CLASS, charset)
        if not sop_class or not self.context(top, _SOP_INSTANCE, charset):
            raise Unsupported("not a composite instance (the reference rejects it)")
        self.manufacturer = self.context(top, _MANUFACTURER, charset)
        reasons = burned_in_reasons_for(
            self.context(top, _BURNED_IN, charset),
            sop_class,
            self.context(top, _MODALITY, charset),
            self.manufacturer,
            burned_in_rules,
        )
        self.patient_key = self.context(top, _PATIENT_ID, charset)
        body: list[bytes | memoryview] = []
        marker_elements = markers(self.options, self.table.edition, implicit)
        self.dataset(elements, False, charset, body, dropped, marker_elements)
        for tag, name in _META_TAGS.items():
            if tag in meta and not (tag == 0x00020003 and self.options.retain_uids):
                self.remember_text(name, META_VRS[tag], meta[tag][1], meta[tag][2], None)
        sop_class, sop_instance = self.final.get(_SOP_CLASS), self.final.get(_SOP_INSTANCE)
        if not sop_class or not sop_instance:
            raise Unsupported("SOP Class or Instance UID not kept or pseudonymised")
        head = file_meta(sop_class, sop_instance, ts_uid)
        output = b"".join([head, *body])
        report = Report(actions=Counter(self.actions), table_edition=self.table.edition)
        return conclude(output, report, self.originals, reasons, scan_fast)

    def meta_text(self, entry: tuple[str, int, int]) -> str:
        """The one value of a file meta text attribute (the transfer syntax)."""
        values = text_values(entry[0], self.buf[entry[1] : entry[2]], None)
        if len(values) != 1:
            raise Unsupported("an empty or multi-valued transfer syntax")
        return values[0]

    def charset(self, element: Element | None, parent: bytes | None = None) -> bytes | None:
        """The raw Specific Character Set value in force: the data set's own, else its parent's."""
        return parent if element is None else self.buf[element[3] : element[4]]

    def context(self, top: dict[int, Element], tag: int, charset: bytes | None) -> str:
        """``str(ds.get(keyword, ""))`` of a top-level attribute, as the reference computes it."""
        element = top.get(tag)
        if element is None:
            return ""
        if element[1] not in _TEXT_VALUE_VRS:
            raise Unsupported("a context attribute with an unexpected VR")
        values = text_values(element[1], self.buf[element[3] : element[4]], charset)
        if len(values) > 1:
            raise Unsupported("a multi-valued context attribute")
        return values[0] if values else ""

    @property
    def offset(self) -> int:
        """The patient's date shift in days (derived only when a date is shifted)."""
        if self._offset is None:
            self._offset = self.p.date_offset_days(self.p.patient_id(self.patient_key))
        return self._offset

    # ------------------------------------------------------------------ data sets and elements

    def dataset(
        self,
        elements: list[Element],
        cleaning: bool,
        charset: bytes | None,
        out: list[bytes | memoryview],
        dropped: int = 0,
        markers: tuple[tuple[int, bytes], ...] = (),
    ) -> None:
        """Append the de-identified encoding of ``elements`` to ``out`` (markers replace their tags).

        ``dropped`` private elements were counted, not listed, by the reader: all are removed.
        """
        view, counts, decisions = self.view, self.actions, self.decisions
        if dropped:
            counts["private:X"] = counts.get("private:X", 0) + dropped
        kept: dict[int, str] = {}
        m, n_markers = 0, len(markers)
        capture = self.capture if n_markers else _NOTHING  # markers are passed at the top level only
        for element in elements:
            tag, vr, start, vstart, vend, end, items = element
            target = out
            if n_markers:
                while m < n_markers and markers[m][0] < tag:
                    out.append(markers[m][1])
                    m += 1
                if m < n_markers and markers[m][0] == tag:
                    target = []  # processed like any element (counted, scanned), then replaced
            if not tag & 0xFFFF:
                continue  # group lengths would be stale
            if tag in PIXEL_DATA_TAGS:
                target.append(self.copy(element))
                continue
            if tag & 0x10000:
                self.private(element, kept, charset, target)
                continue
            decided = decisions.get((tag, vr, cleaning)) or self.decide(element, cleaning, charset)
            action, counted, name = decided
            counts[counted] = counts.get(counted, 0) + 1
            chunk: bytes | memoryview
            if action == "K":
                chunk = view[start:end] if not (vend - vstart) % 2 else self.copy(element)
                if n_markers and tag in (_SOP_CLASS, _SOP_INSTANCE):
                    self.final[tag] = self.single(element, charset)
            elif action == "X":
                if vr in _SCANNED_VRS:
                    self.remember_text(name, vr, vstart, vend, charset)
                elif items is not None:
                    self.remember_sequence(name, items, charset)
                continue
            elif action in ("R", "RC"):
                chunk = self.sequence(element, cleaning or action == "RC", charset)
            else:
                chunk = self.change(element, action, name, charset, bool(n_markers))
            target.append(chunk)
            if capture and tag in capture:
                self.written[tag] = chunk
        while m < n_markers:
            out.append(markers[m][1])
            m += 1

    def decide(self, element: Element, cleaning: bool, charset: bytes | None) -> tuple[str, str, str]:
        """The reference's action for a public element (cached unless it depends on the value)."""
        tag, vr = element[0], element[1]
        kw = keyword(tag)
        by_value = bool(self.options.safe_values) and vr in TEXT_VRS
        clean: Callable[[], str] = (
            (lambda: clean_action(self.pydicom_element(element, charset), self.options))
            if by_value
            else (lambda: clean_action(_Stub(vr, kw), self.options))
        )
        action = element_action(self.table, self.options, tag, vr, kw, cleaning, clean)
        name = kw or tag_text(tag)
        decided = (action, f"{name}:{action}", name)
        if not by_value and len(self.decisions) < _CACHE_LIMIT:  # a crafted file cannot grow it unbounded
            self.decisions[(tag, vr, cleaning)] = decided
        return decided

    def pydicom_element(self, element: Element, charset: bytes | None) -> object:
        """The element as pydicom converts it, for the rare decisions that read its value."""
        tag, vr, _, vstart, vend = element[:5]
        raw = RawDataElement(Tag(tag), vr, vend - vstart, self.buf[vstart:vend], vstart, False, True)
        return convert_raw_data_element(raw, encoding=encodings_for(charset))

    def copy(self, element: Element) -> bytes | memoryview:
        """An element kept as it is; an odd-length value gets the padding pydicom writes."""
        tag, vr, start, vstart, vend, end, _ = element
        if not (vend - vstart) % 2 or vend != end:
            return self.view[start:end]
        pad = b"\x00" if vr == "UI" or vr not in STRING_VRS else b" "
        return self.enc.element(tag, vr, self.buf[vstart:vend] + pad)

    def single(self, element: Element, charset: bytes | None) -> str:
        values = text_values(element[1], self.buf[element[3] : element[4]], charset)
        if len(values) != 1:
            raise Unsupported("an empty or multi-valued SOP Class or Instance UID")
        return values[0]

    def sequence(self, element: Element, cleaning: bool, charset: bytes | None) -> bytes:
        """A sequence kept, its items walked (R and RC)."""
        encoded = []
        for elements, _, _, dropped in element[6] or []:
            content: list[bytes | memoryview] = []
            self.dataset(elements, cleaning, self.item_charset(elements, charset), content, dropped)
            encoded.append(self.enc.item(b"".join(content)))
        return self.enc.element(element[0], "SQ", b"".join(encoded))

    def item_charset(self, elements: list[Element], parent: bytes | None) -> bytes | None:
        for element in elements:
            if element[0] >= SPECIFIC_CHARACTER_SET:
                return self.charset(element if element[0] == SPECIFIC_CHARACTER_SET else None, parent)
        return parent

    def change(self, element: Element, action: str, name: str, charset: bytes | None, top: bool) -> bytes:
        """X, Z, D, U, P or S: remember what is replaced, then encode the replacement."""
        tag, vr = element[0], element[1]
        if vr in _SCANNED_VRS:
            self.remember_text(name, vr, element[3], element[4], charset)
        elif element[6] is not None:
            self.remember_sequence(name, element[6], charset)
        if action == "Z":
            return self.enc.element(tag, vr, b"")
        if vr == "SQ":
            if action != "D":
                raise Unsupported(f"{action} on a sequence")
            return self.enc.element(tag, vr, b"")
        if action == "D" and vr != "UI":
            return self.enc.dummy(tag, vr)
        if vr not in _TEXT_VALUE_VRS:
            raise Unsupported(f"{action} on a value of VR {vr}")
        values = text_values(vr, self.buf[element[3] : element[4]], charset)
        present = len(values) > 1 or bool(values and values[0])
        if action in ("U", "D"):
            new = [pseudonymise_uid(self.p, v) for v in values] if present else []
            if top and tag in (_SOP_CLASS, _SOP_INSTANCE):
                self.final[tag] = "\\".join(new)
        elif action == "P":
            if len(values) > 1:
                raise Unsupported("a multi-valued Patient ID")
            new = [self.p.patient_id(values[0])] if present else []
        elif action == "S":
            shift = shift_da if vr == "DA" else shift_dt
            shifted = [shift(v, self.offset) for v in values]
            new = [] if None in shifted else [s for s in shifted if s is not None]
        else:  # pragma: no cover - element_action returns only the actions above
            raise Unsupported(f"unknown action {action}")
        return self.enc.text(tag, vr, "\\".join(new))

    def private(
        self, element: Element, kept: dict[int, str], charset: bytes | None, out: list[bytes | memoryview]
    ) -> None:
        """Remove a private element unless allow-listed, as the reference's ``private``."""
        if not self.allowed:  # only private sequences are listed then: removed like the rest
            self.actions["private:X"] = self.actions.get("private:X", 0) + 1
            return
        tag = element[0]
        number = tag & 0xFFFF
        if 0x10 <= number <= 0xFF:
            if element[1] not in ("LO", "SH"):
                raise Unsupported("a private creator that is not LO or SH text")
            values = text_values("LO", self.buf[element[3] : element[4]], charset)
            creator = (values[0] if values else "").strip()
            keep = any(creator == allowed for allowed, _ in self.allowed)
        else:
            owner = tag & 0xFFFF0000 | number >> 8
            creator = kept.get(owner, "")
            if owner in kept and not 0x10 <= owner & 0xFFFF <= 0xFF:
                raise Unsupported("a private element whose creator slot holds another element")
            keep = (creator, number & 0xFF) in self.allowed
        counted = "private:" + ("K" if keep else "X")
        self.actions[counted] = self.actions.get(counted, 0) + 1
        if keep:
            kept[tag] = creator if 0x10 <= number <= 0xFF else ""
            out.append(self.copy(element))

    # ------------------------------------------------------------------ what the byte scan looks for

    def remember_text(self, name: str, vr: str, vstart: int, vend: int, charset: bytes | None) -> None:
        """Record the original text values of one element for the byte scan (``_Walk.remember``)."""
        if vend > vstart:
            for text in text_values(vr, self.buf[vstart:vend], charset):
                if text and not text.startswith(STANDARD_UID_PREFIX):
                    self.originals.append((name, text))

    def remember_sequence(self, name: str, items: list[Item], charset: bytes | None) -> None:
        """Every value inside a removed or emptied sequence that the profile would not keep."""
        for elements, _, _, _ in items:
            inner_charset = self.item_charset(elements, charset)
            for element in elements:
                tag, vr = element[0], element[1]
                if vr == "SQ":
                    if element[6]:
                        self.remember_sequence(name, element[6], inner_charset)
                    continue
                if tag & 0x10000 or keyword(tag) in CODE_KEYWORDS or vr not in _SCANNED_VRS:
                    continue
                action = self.nested.get((tag, vr)) or self.nested_action(element, inner_charset)
                if action not in ("K", "R", "RC"):
                    self.remember_text(name, vr, element[3], element[4], inner_charset)

    def nested_action(self, element: Element, charset: bytes | None) -> str:
        tag, vr = element[0], element[1]
        by_value = bool(self.options.safe_values) and vr in TEXT_VRS
        if by_value:
            return nested_action(
                self.table,
                self.options,
                tag,
                vr,
                lambda: clean_action(self.pydicom_element(element, charset), self.options),
            )
        action = nested_action(
            self.table, self.options, tag, vr, lambda: clean_action(_Stub(vr, keyword(tag)), self.options)
        )
        if len(self.nested) < _CACHE_LIMIT:
            self.nested[(tag, vr)] = action
        return action
