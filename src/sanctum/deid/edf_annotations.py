"""Scrub the texts of EDF+/BDF+ annotation signals (TALs), keeping every onset and duration.

Why an allow-list rather than a search for names and dates: annotation texts are typed by
technicians during the night ("pt asleep, mother called", "Dr Smith 02-MAR-2024 reviewed"), and
no pattern list can find every name in free text. The labels a sleep study needs are few and
standard (the EDF+ standard texts and the AASM scoring manual), so those are kept verbatim and
everything else becomes a neutral placeholder. Onsets and durations are numbers relative to the
file start and carry no identity, so they are written back byte for byte; the recording's time
line (including the time-keeping TAL of every data record, which EDF+D depends on) is unchanged.

TAL syntax (EDF+ §2.2.2): ``+Onset[\\x15Duration]\\x14[Text\\x14]...\\x00``, TALs back to back,
the rest of the signal's bytes in the data record zero. A block that does not follow it cannot
be told apart into numbers and text, so it raises ``TalError`` and the caller rejects the file.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

#: Written instead of any text not on the allow-list (cut short only where a record has no room).
PLACEHOLDER = b"annotation"

_STAGES = ("W", "1", "2", "3", "4", "R", "?", "N", "N1", "N2", "N3", "REM")
#: Standard event labels: EDF+ standard texts (sleep stages, hypnogram), AASM events, markers.
ALLOWED_LABELS: frozenset[str] = frozenset(
    {
        *(f"Sleep stage {stage}" for stage in _STAGES),
        *_STAGES,
        "Wake",
        "Movement time",
        "Movement",
        "Lights off",
        "Lights on",
        "Recording starts",
        "Recording ends",
        "Arousal",
        "EEG arousal",
        "Respiratory effort related arousal",
        "RERA",
        "Apnea",
        "Obstructive apnea",
        "Central apnea",
        "Mixed apnea",
        "Hypopnea",
        "Obstructive hypopnea",
        "Central hypopnea",
        "Mixed hypopnea",
        "Desaturation",
        "Oxygen desaturation",
        "SpO2 desaturation",
        "Snore",
        "Snoring",
        "Limb movement",
        "Leg movement",
        "Periodic limb movement",
        "Periodic leg movement",
        "Bruxism",
        "Bradycardia",
        "Tachycardia",
        "Asystole",
        "Atrial fibrillation",
        "Cheyne-Stokes breathing",
        "Hypoventilation",
        "Artifact",
        "Artefact",
        "Body position: supine",
        "Body position: prone",
        "Body position: left",
        "Body position: right",
        "Body position: upright",
        "Impedance check",
        "Calibration",
    }
)
_CANONICAL = {label.casefold(): label for label in ALLOWED_LABELS}
_ONSET = re.compile(rb"[+-][0-9]+(\.[0-9]*)?")
_DURATION = re.compile(rb"[0-9]+(\.[0-9]*)?")


class TalError(ValueError):
    """An annotation block that is not a valid sequence of TALs (message holds no text from it)."""


@dataclass
class Tal:
    """One time-stamped annotation list: onset and duration bytes as read, and its texts."""

    onset: bytes
    duration: bytes | None
    texts: list[bytes]

    def encode(self) -> bytes:
        """The TAL's bytes, in the layout it was read in."""
        stamp = self.onset if self.duration is None else self.onset + b"\x15" + self.duration
        return stamp + b"\x14" + b"".join(text + b"\x14" for text in self.texts) + b"\x00"


def parse_tals(block: bytes) -> list[Tal]:
    """The TALs in one annotation signal's bytes of one data record; ``TalError`` if malformed."""
    tals: list[Tal] = []
    pos = 0
    while pos < len(block) and block[pos] != 0:
        end = block.find(b"\x00", pos)
        if end < 0:
            raise TalError("a TAL is not terminated by a zero byte")
        tals.append(_parse_tal(block[pos:end]))
        pos = end + 1
    return tals


def _parse_tal(raw: bytes) -> Tal:
    """One TAL without its terminating zero byte."""
    stamp, sep, rest = raw.partition(b"\x14")
    if not sep:
        raise TalError("a TAL has no time stamp terminator (0x14)")
    onset, has_duration, duration = stamp.partition(b"\x15")
    if not _ONSET.fullmatch(onset):
        raise TalError("a TAL onset is not a signed number of seconds")
    if has_duration and not _DURATION.fullmatch(duration):
        raise TalError("a TAL duration is not a number of seconds")
    if rest and not rest.endswith(b"\x14"):
        raise TalError("a TAL annotation is not terminated by 0x14")
    texts = rest.split(b"\x14")[:-1] if rest else []
    return Tal(onset, duration if has_duration else None, texts)


def scrub_text(text: bytes, cut: bool = False) -> tuple[bytes, str]:
    """The text to write for one annotation and the action taken (``kept``/``scrubbed``/``empty``).

    ``cut`` shortens the placeholder to the original's byte length, for a record with no room.
    """
    if not text:
        return text, "empty"  # the time-keeping annotation, or an empty one: nothing to hide
    normalised = " ".join(text.decode("utf-8", "replace").split()).casefold()
    label = _CANONICAL.get(normalised)
    if label is not None and len(label) <= len(text):
        return label.encode("ascii"), "kept"
    return (PLACEHOLDER[: len(text)] if cut else PLACEHOLDER), "scrubbed"


def scrub_block(block: bytes) -> tuple[bytes, Counter[str]]:
    """The block with every text scrubbed, re-padded with zeros to the same length, and counts.

    The full placeholder is used where the record has room; in a record whose annotation signal
    would overflow, placeholders are cut to the original texts' lengths, which always fits since
    nothing then gets longer. Anything after the last TAL (meant to be zero padding) is zeroed.
    """
    tals = parse_tals(block)
    for cut in (False, True):
        counts: Counter[str] = Counter()
        out = bytearray()
        for tal in tals:
            texts = []
            for text in tal.texts:
                new, action = scrub_text(text, cut)
                counts[f"annotations:{action}"] += 1
                texts.append(new)
            out += Tal(tal.onset, tal.duration, texts).encode()
        if len(out) <= len(block):
            return bytes(out) + b"\x00" * (len(block) - len(out)), counts
    raise TalError("scrubbed annotations do not fit the annotation signal")  # pragma: no cover
