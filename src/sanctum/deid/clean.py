"""What the C ("clean") action of PS3.15 Table E.1-1 does to one element, by its VR.

The standard defines C as "replace with values of similar meaning known not to contain identifying
information". Software cannot know that of free text, so Sanctum's reading is deliberately narrow:

- text is kept only when every value is on the project's reviewed list ``Options.safe_values``
  (e.g. ``"CHEST PA"``, ``"T1 AXIAL"``); otherwise it is replaced by an empty value, or by a neutral
  dummy where an empty value would break the object (a content item's Text Value is Type 1);
- a sequence is kept and its items are walked with the profile (coded concepts stay, see
  ``CODE_KEYWORDS`` in ``dicom``), so an SR keeps its tree and codes while names, dates, UIDs and
  text inside it are pseudonymised or replaced;
- UIDs are pseudonymised and dates handled as elsewhere (shifted, kept or emptied by the date options);
- numbers (curve dimensions, overlay geometry) are kept: they describe shapes, not people;
- binary values (overlay bitmaps, curve data, maker notes) cannot be read by software, so they are
  removed: a bitmap overlay can carry burned-in text just as pixel data can.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement

from sanctum.deid.profile import DATE_VRS, Options

#: VRs whose value is text the safe-value list can vouch for.
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR", "PN"})
#: VRs holding numbers only.
NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
#: Attributes that must not be empty where they occur (content item values): cleaned to a dummy.
NEUTRAL_KEYWORDS = frozenset({"TextValue", "UnformattedTextValue", "PersonName"})
#: Content-item text the Basic Profile does not list (so the VR net would remove it): inside a
#: sequence being cleaned it is cleaned instead, keeping the content item valid.
CONTENT_TEXT_KEYWORDS = frozenset({"TextValue"})


def is_safe(elem: DataElement, safe_values: frozenset[str]) -> bool:
    """Whether every value of a text element is on the reviewed safe list (case and padding ignored)."""
    if not safe_values or elem.value is None or elem.value == "":
        return False
    values = [elem.value] if isinstance(elem.value, str) else list(elem.value)
    allowed = {v.strip().casefold() for v in safe_values}
    return all(str(v).strip().casefold() in allowed for v in values)


def clean_action(elem: DataElement, options: Options) -> str:
    """The concrete action that carries out C on ``elem``.

    Returns K (keep), Z (empty), D (neutral dummy), U (pseudonymise), S (shift), X (remove) or
    RC (keep the sequence and walk its items in cleaning mode).
    """
    vr = elem.VR
    if vr == "SQ":
        return "RC"
    if vr == "UI":
        return "K" if options.retain_uids else "U"
    if vr in DATE_VRS:
        if options.longitudinal == "full" or (options.longitudinal == "modified" and vr == "TM"):
            return "K"
        if options.longitudinal == "modified":
            return "S"
        return "Z"
    if vr in TEXT_VRS:
        if is_safe(elem, options.safe_values):
            return "K"
        return "D" if elem.keyword in NEUTRAL_KEYWORDS else "Z"
    if vr in NUMERIC_VRS:
        return "K"
    return "X"
