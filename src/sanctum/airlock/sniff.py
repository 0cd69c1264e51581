"""What kind of file this is, by its name and, independently, by its bytes.

Why both: an extension is a claim made by the code that wrote the file. A DICOM image renamed
``summary.csv`` or a NumPy array renamed ``notes.txt`` must not pass as what its name says, so the
automatic checks compare the claimed kind with the kind the content shows and fail on a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

# Extension (longest first wins) → the kind the name claims.
EXTENSIONS: dict[str, str] = {
    ".nii.gz": "nifti",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".json": "json",
    ".txt": "text",
    ".md": "text",
    ".log": "text",
    ".tex": "text",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".pdf": "pdf",
    ".svg": "svg",
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".npy": "npy",
    ".npz": "npz",
    ".nii": "nifti",
    ".zip": "zip",
    ".gz": "gzip",
    ".tgz": "gzip",
    ".tar": "tar",
}
#: Kinds whose content is UTF-8 text (what the bytes must look like for the name to hold).
TEXT_KINDS = frozenset({"csv", "json", "text", "svg"})
TABLE_KINDS = frozenset({"csv", "parquet"})
FIGURE_KINDS = frozenset({"png", "jpeg", "pdf", "svg"})
#: Images and raw arrays: pixel data of patients, blocked unless the project's rules allow them.
IMAGE_KINDS = frozenset({"dicom", "npy", "npz", "nifti"})
ARCHIVE_KINDS = frozenset({"zip", "gzip", "tar"})
TEXT_PROBE = 1 << 20  # how much of a file is checked for being text before the whole is parsed


@dataclass(frozen=True)
class Kind:
    claimed: str  # from the name ("unknown" when the extension is not known)
    found: str  # from the bytes ("text", "binary" or a format)

    @property
    def consistent(self) -> bool:
        if self.claimed in TEXT_KINDS:
            return self.found == "text"
        if self.claimed == "npz":
            return self.found in ("npz", "zip")
        return self.claimed == self.found


def claimed_kind(name: str) -> str:
    lower = name.lower()
    for extension in sorted(EXTENSIONS, key=len, reverse=True):
        if lower.endswith(extension):
            return EXTENSIONS[extension]
    return "unknown"


def _is_nifti(data: bytes) -> bool:
    return len(data) >= 348 and data[344:348] in (b"n+1\x00", b"ni1\x00", b"n+2\x00", b"ni2\x00")


def found_kind(data: bytes) -> str:
    """The format the bytes show, by magic numbers; UTF-8 without NUL is ``text``."""
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    if _is_nifti(data):
        return "nifti"
    signatures = (
        (b"\x93NUMPY", "npy"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpeg"),
        (b"%PDF-", "pdf"),
        (b"PAR1", "parquet"),
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),
        (b"\x1f\x8b", "gzip"),
    )
    for magic, kind in signatures:
        if data.startswith(magic):
            if kind == "parquet" and not data.endswith(b"PAR1"):
                return "binary"
            return kind
    if len(data) >= 262 and data[257:262] == b"ustar":
        return "tar"
    probe = data[:TEXT_PROBE]
    if b"\x00" in probe:
        return "binary"
    try:
        probe.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(data) > TEXT_PROBE and exc.start >= len(probe) - 3:
            return "text"  # a multi-byte character cut at the probe's end
        return "binary"
    return "text"


def kind_of(name: str, data: bytes) -> Kind:
    return Kind(claimed_kind(name), found_kind(data))
