"""Safe listing of what an ingest reads: a folder, a .zip, a .tar(.gz|.bz2|.xz), or a batch body.

The same checks run on the client (walking the user's folder or archive before anything is sent)
and on the server (opening each batch it receives, or an archive uploaded from a browser), so a
modified client gains nothing. Every entry is checked on its own and refused *with a reason*
instead of failing the whole ingest:

- links (symbolic or hard), devices, pipes and encrypted zip entries are never opened;
- names that are absolute, climb out (``..``), use backslashes or drive letters, or hold control
  characters are refused (zip slip), as is a name seen twice;
- a file above the per-file limit is refused before it is read;
- decompression bombs: a zip entry that expands more than ``max_ratio`` times (above 1 MiB), a
  compressed tar whose members add up to more than ``max_ratio`` times the archive, and anything
  past ``max_total_bytes`` uncompressed are refused. Sizes come from the archive's own headers;
  reads are capped at the declared size, so a header that lies cannot make a read grow.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from sanctum.datasets import paths
from sanctum.errors import InvalidInput

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
RATIO_FLOOR = 1024 * 1024  # below this, a high ratio is harmless (a small file of zeros)
_UNSAFE_NAME = "unsafe name (absolute, '..', backslash, drive letter or control characters): refused"


class ArchiveError(InvalidInput):
    """The archive as a whole cannot be read (not an archive, corrupt, unreadable)."""

    code = "bad_archive"


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_total_bytes: int
    max_ratio: int


@dataclass(frozen=True)
class Entry:
    """A regular file that passed every check: its canonical path, size and how to read it."""

    path: str
    size: int
    open: Callable[[], BinaryIO]


@dataclass(frozen=True)
class Refusal:
    """An entry that was not read, with why; ``path`` is its name as found (possibly unsafe)."""

    path: str
    reason: str


@dataclass
class Listing:
    entries: list[Entry] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass(frozen=True)
class _Raw:
    """An entry as the container describes it, before any check."""

    name: str
    kind: str  # file | dir | symlink | hardlink | special | encrypted
    size: int
    compressed: int | None
    open: Callable[[], BinaryIO]


def source_path(name: str) -> str | None:
    """The canonical relative path for an entry name, or None when the name is unsafe."""
    if "\x00" in name:
        return None
    while name.startswith("./"):  # ``tar -C dir .`` writes ./a/b: harmless and common
        name = name[2:]
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return None
    try:
        return paths.file_path(name)
    except InvalidInput:
        return None


def is_archive(source: Path) -> bool:
    return source.name.lower().endswith(ARCHIVE_SUFFIXES)


def _check(
    raws: Iterator[_Raw], limits: Limits, archive_bytes: int | None, *, streaming: bool = False
) -> Listing:
    """Apply every per-entry rule. ``archive_bytes``: the compressed size of a compressed tar.

    ``streaming`` (a tar): once the total or ratio bound is passed, stop reading instead of
    decompressing the rest of a bomb just to name its entries; one refusal covers the rest.
    """
    listing = Listing()
    seen: set[str] = set()
    total = 0
    over: str | None = None
    what = {
        "symlink": "a symbolic link",
        "hardlink": "a hard link",
        "special": "a device, pipe or socket",
        "encrypted": "an encrypted zip entry",
    }
    for raw in raws:
        if raw.kind == "dir":
            continue
        if raw.kind != "file":
            listing.refusals.append(Refusal(raw.name, f"entry is {what[raw.kind]}; refused"))
            continue
        path = source_path(raw.name)
        if path is None:
            listing.refusals.append(Refusal(raw.name, _UNSAFE_NAME))
            continue
        if path in seen:
            listing.refusals.append(Refusal(raw.name, "the same name appears twice; the second is refused"))
            continue
        seen.add(path)
        if raw.size > limits.max_file_bytes:
            listing.refusals.append(
                Refusal(path, f"larger than the per-file limit of {limits.max_file_bytes} bytes")
            )
            continue
        if (
            raw.compressed is not None
            and raw.size > RATIO_FLOOR
            and raw.size > limits.max_ratio * max(raw.compressed, 1)
        ):
            listing.refusals.append(
                Refusal(path, f"expands more than {limits.max_ratio} times (a decompression bomb?); refused")
            )
            continue
        total += raw.size
        if over is None and total > limits.max_total_bytes:
            over = f"the archive exceeds the total limit of {limits.max_total_bytes} bytes"
        bomb = archive_bytes is not None and total > limits.max_ratio * archive_bytes + RATIO_FLOOR
        if over is None and bomb:
            over = f"the archive expands more than {limits.max_ratio} times (a decompression bomb?); refused"
        if over is not None:
            listing.refusals.append(Refusal(path, over))
            if streaming:
                listing.refusals.append(Refusal("(rest of the archive)", "not read: " + over))
                break
            continue
        listing.entries.append(Entry(path, raw.size, raw.open))
    return listing


def read_entry(entry: Entry, limit: int) -> bytes:
    """The bytes of an entry, never more than its declared size (nor ``limit``)."""
    with entry.open() as stream:
        data = stream.read(min(entry.size, limit) + 1)
    if len(data) != entry.size:
        raise ArchiveError("an entry is not the size its header declares (changed or corrupt)")
    return data


# --------------------------------------------------------------------------- containers


def _folder(root: Path) -> Iterator[_Raw]:
    def on_error(exc: OSError) -> None:
        raise ArchiveError(f"cannot read {exc.filename}: {exc.strerror}")

    for current, dirs, files in os.walk(root, onerror=on_error):
        for name in sorted(dirs):
            full = Path(current, name)
            if full.is_symlink():
                yield _Raw(full.relative_to(root).as_posix(), "symlink", 0, None, _never)
        dirs.sort()
        for name in sorted(files):
            full = Path(current, name)
            info = full.lstat()
            kind = (
                "file"
                if stat.S_ISREG(info.st_mode)
                else "symlink"
                if stat.S_ISLNK(info.st_mode)
                else "special"
            )
            yield _Raw(
                full.relative_to(root).as_posix(),
                kind,
                info.st_size,
                None,
                lambda full=full: cast(BinaryIO, full.open("rb")),
            )


def _never() -> BinaryIO:  # pragma: no cover - refused entries are never opened
    raise AssertionError("a refused entry was opened")


def _zip(zf: zipfile.ZipFile) -> Iterator[_Raw]:
    for info in zf.infolist():
        name = info.orig_filename  # ``filename`` is cut at a NUL; the original shows it
        mode = info.external_attr >> 16
        kind_bits = stat.S_IFMT(mode)
        if info.is_dir() and "\x00" not in name:
            kind = "dir"
        elif info.create_system == 3 and kind_bits and kind_bits != stat.S_IFREG:  # unix attributes
            kind = "symlink" if kind_bits == stat.S_IFLNK else "special"
        elif info.flag_bits & 0x1:
            kind = "encrypted"
        else:
            kind = "file"
        yield _Raw(
            name, kind, info.file_size, info.compress_size, lambda info=info: cast(BinaryIO, zf.open(info))
        )


def _tar(tf: tarfile.TarFile) -> Iterator[_Raw]:
    for member in tf:
        if member.isdir():
            kind = "dir"
        elif member.issym():
            kind = "symlink"
        elif member.islnk():
            kind = "hardlink"
        elif not member.isreg():
            kind = "special"
        else:
            kind = "file"

        def opener(member: tarfile.TarInfo = member) -> BinaryIO:
            stream = tf.extractfile(member)
            assert stream is not None  # regular members always have data
            return cast(BinaryIO, stream)

        yield _Raw(member.name, kind, member.size, None, opener)


def _compressed_tar(head: bytes) -> bool:
    return head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))


@contextmanager
def walk(source: Path, limits: Limits) -> Iterator[Listing]:
    """What ingesting ``source`` (a folder, an archive or one file) would read, checked.

    Archives are read entry by entry while the listing is in use (nothing is extracted to disk).
    """
    with ExitStack() as stack:
        try:
            listing = _list(source, limits, stack)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise ArchiveError(f"{source.name}: not a readable archive ({type(exc).__name__})") from None
        except OSError as exc:
            raise ArchiveError(f"cannot read {source}: {exc.strerror or exc}") from None
        yield listing


def _list(source: Path, limits: Limits, stack: ExitStack) -> Listing:
    if source.is_dir():
        return _check(_folder(source), limits, None)
    if not source.is_file():
        raise ArchiveError(f"{source} is not a folder or a regular file")
    if zipfile.is_zipfile(source):
        zf = stack.enter_context(zipfile.ZipFile(source))
        return _check(_zip(zf), limits, None)
    if is_archive(source):
        with source.open("rb") as probe:
            head = probe.read(8)
        tf = stack.enter_context(tarfile.open(source, "r:*"))  # noqa: SIM115 - closed by the stack
        compressed = source.stat().st_size if _compressed_tar(head) else None
        return _check(_tar(tf), limits, compressed, streaming=True)
    raw = _Raw(source.name, "file", source.stat().st_size, None, lambda: cast(BinaryIO, source.open("rb")))
    return _check(iter([raw]), limits, None)


def read_batch(body: bytes, limits: Limits) -> tuple[list[tuple[str, bytes]], list[Refusal]]:
    """The files of a batch body (tar, tar.gz or zip), read into memory, and the refused entries.

    Raises ``ArchiveError`` only when the body as a whole is not a readable archive.
    """
    try:
        if body.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            with zipfile.ZipFile(io.BytesIO(body)) as zf:
                listing = _check(_zip(zf), limits, None)
                files = [(e.path, read_entry(e, limits.max_file_bytes)) for e in listing.entries]
        else:
            compressed = len(body) if _compressed_tar(body[:8]) else None
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tf:
                listing = _check(_tar(tf), limits, compressed, streaming=True)
                files = [(e.path, read_entry(e, limits.max_file_bytes)) for e in listing.entries]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise ArchiveError(
            f"the batch is not a readable tar or zip archive ({type(exc).__name__}); nothing was stored"
        ) from None
    return files, listing.refusals


def pack_batch(files: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar of ``files`` (path, bytes): what the client sends as one batch."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()
