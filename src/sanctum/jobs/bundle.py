"""Code bundles: a folder of code packed reproducibly, checked, and unpacked only into a sandbox dir.

Why deterministic packing (sorted names, zero times and owners, gzip without a timestamp): the
bundle's sha256 is part of the signed manifest, so packing the same folder twice must give the same
bytes, and a verifier on a Slurm node can recompute it. Why refuse data file types: a bundle is the
way *code* enters a project; data enters only through ingest or the airlock, so a CSV or a DICOM
file hidden among scripts is refused at the door, not discovered later.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sanctum.errors import InvalidInput

MAX_FILES = 5000
MAX_UNPACKED_FACTOR = 20  # a bundle may unpack to at most 20× its packed size (gzip-bomb guard)
#: File types that are data, not code. Matched on the lower-cased suffix(es).
DATA_HINT = "data, not code; data enters through ingest or the airlock"
DATA_SUFFIXES = frozenset(
    {
        ".csv",
        ".tsv",
        ".parquet",
        ".feather",
        ".arrow",
        ".xlsx",
        ".xls",
        ".sav",
        ".dta",
        ".sas7bdat",
        ".dcm",
        ".dicom",
        ".nii",
        ".nii.gz",
        ".mgz",
        ".nrrd",
        ".mha",
        ".edf",
        ".bdf",
        ".rec",
        ".npy",
        ".npz",
        ".h5",
        ".hdf5",
        ".mat",
        ".pkl",
        ".pickle",
        ".db",
        ".sqlite",
        ".sqlite3",
        ".duckdb",
        ".zip",
        ".tar",
        ".gz",
        ".tgz",
        ".bz2",
        ".xz",
        ".7z",
    }
)
SKIPPED_DIRS = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".venv", "venv", ".mypy_cache"})


@dataclass(frozen=True)
class Bundle:
    data: bytes
    sha256: str
    files: int


def _refused_suffix(name: str) -> str | None:
    lower = name.lower()
    for suffix in DATA_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    return None


def _member_path(name: str) -> str:
    path = PurePosixPath(name)
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(part in ("..", "") for part in path.parts)
        or len(name) > 1024
    ):
        raise InvalidInput(f"bundle entry {name[:200]!r} is not a plain relative path", code="invalid_bundle")
    return str(path)


def pack(folder: Path, *, max_bytes: int) -> Bundle:
    """Pack a code folder. Refuses symlinks leaving it, data files, and anything over ``max_bytes``."""
    root = folder.resolve()
    if not root.is_dir():
        raise InvalidInput(f"{folder} is not a folder", code="invalid_bundle")
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise InvalidInput(
                    f"{rel} is a symbolic link; bundles hold plain files", code="invalid_bundle"
                )
            if (suffix := _refused_suffix(rel)) is not None:
                raise InvalidInput(
                    f"{rel}: {suffix} files are {DATA_HINT}",
                    code="data_in_bundle",
                )
            if filename.endswith((".pyc", ".pyo")):
                continue
            entries.append((rel, full))
    if not entries:
        raise InvalidInput(f"{folder} holds no files", code="invalid_bundle")
    if len(entries) > MAX_FILES:
        raise InvalidInput(f"a bundle holds at most {MAX_FILES} files", code="invalid_bundle")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, full in sorted(entries):
            info = tarfile.TarInfo(rel)
            info.size = full.stat().st_size
            info.mode = 0o755 if os.access(full, os.X_OK) else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with full.open("rb") as handle:
                tar.addfile(info, handle)
            if raw.tell() > max_bytes * MAX_UNPACKED_FACTOR:
                raise InvalidInput(
                    f"the code folder is larger than {max_bytes} bytes", code="bundle_too_large"
                )
    data = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    if len(data) > max_bytes:
        raise InvalidInput(
            f"the packed code is {len(data)} bytes, over the limit of {max_bytes}", code="bundle_too_large"
        )
    return Bundle(data, hashlib.sha256(data).hexdigest(), len(entries))


def check(data: bytes, *, max_bytes: int) -> list[str]:
    """Validate a bundle without writing anything; returns its file names."""
    if len(data) > max_bytes:
        raise InvalidInput(
            f"the bundle is larger than the limit of {max_bytes} bytes", code="bundle_too_large"
        )
    names: list[str] = []
    for info, _ in _members(data, max_bytes=max_bytes, read=False):
        names.append(info.name)
    if not names:
        raise InvalidInput("the bundle holds no files", code="invalid_bundle")
    return names


def _members(data: bytes, *, max_bytes: int, read: bool) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out: list[tuple[tarfile.TarInfo, bytes | None]] = []
    budget = max_bytes * MAX_UNPACKED_FACTOR
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for info in tar:
                name = _member_path(info.name)
                if info.isdir():
                    continue
                if not info.isreg():
                    raise InvalidInput(f"bundle entry {name} is not a regular file", code="invalid_bundle")
                if (suffix := _refused_suffix(name)) is not None:
                    raise InvalidInput(
                        f"{name}: {suffix} files are {DATA_HINT}",
                        code="data_in_bundle",
                    )
                budget -= info.size
                if budget < 0:
                    raise InvalidInput(
                        "the bundle unpacks to more than its size limit allows", code="bundle_too_large"
                    )
                if len(out) >= MAX_FILES:
                    raise InvalidInput(f"a bundle holds at most {MAX_FILES} files", code="invalid_bundle")
                content = None
                if read:
                    handle = tar.extractfile(info)
                    content = handle.read() if handle else b""
                info.name = name
                out.append((info, content))
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InvalidInput(f"the bundle is not a readable .tar.gz: {exc}", code="invalid_bundle") from None
    return out


def unpack(data: bytes, target: Path, *, max_bytes: int) -> int:
    """Write the bundle's files under ``target`` (read-only copies); returns how many."""
    members = _members(data, max_bytes=max_bytes, read=True)
    for info, content in members:
        path = target / info.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as handle:
            handle.write(content or b"")
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (0o111 if info.mode & 0o100 else 0))
    return len(members)


def entry_script(entrypoint: list[str]) -> str | None:
    """The bundle file an entry point runs (``python train.py`` → ``train.py``), if it names one."""
    first = PurePosixPath(entrypoint[0]).name
    if first in {"python", "python3", "bash", "sh", "Rscript"} or first.startswith("python3."):
        rest = [a for a in entrypoint[1:] if not a.startswith("-")]
        if first.startswith("python") and len(entrypoint) > 1 and entrypoint[1] in ("-m", "-c"):
            return None
        return rest[0].removeprefix("./") if rest else None
    if entrypoint[0].startswith("./"):
        return entrypoint[0][2:]
    return None
