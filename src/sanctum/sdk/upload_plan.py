"""What an upload will send, planned locally before a byte leaves the machine.

A folder, a file or an archive becomes a list of ``UploadItem`` (dataset path, size, how to open
it). Every path is checked with the server's own rules (``sanctum.datasets.paths``) and for
duplicates; archive listings are checked whole first, so an archive with one unsafe entry (zip
slip: ``..``, absolute paths, drive letters, backslashes, NUL, links, devices) sends nothing.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import quote

from sanctum.datasets import paths
from sanctum.errors import InvalidInput
from sanctum.sdk.errors import SanctumSDKError

log = logging.getLogger("sanctum.sdk")

CHUNK = 1024 * 1024
TABLE_FILE = "table.parquet"  # where the server keeps a table version's one file
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
Progress = Callable[[int], None]
"""Called with the number of bytes just moved (an increment, as ``rich``'s ``advance`` takes)."""

_DRIVE = re.compile(r"^[A-Za-z]:")


class UploadError(SanctumSDKError):
    """An upload refused on this side before it was sent, or a local file that could not be read."""

    code = "invalid_upload"


@dataclass(frozen=True)
class UploadItem:
    """One file of an upload: where it goes in the version, its size, and how to open it."""

    path: str
    size: int
    open: Callable[[], AbstractContextManager[BinaryIO]]
    origin: str  # what messages call it: the local file, or ``archive.zip:entry``


def _segment(value: str) -> str:
    return quote(value, safe="")


def _dataset_url(project: str, dataset: str) -> str:
    return f"/projects/{_segment(project)}/datasets/{_segment(dataset)}"


def _version_url(project: str, dataset: str, version: int) -> str:
    return f"{_dataset_url(project, dataset)}/versions/{int(version)}"


def _file_url(project: str, dataset: str, version: int, path: str) -> str:
    return f"{_version_url(project, dataset, version)}/files/{quote(path, safe='/')}"


def dataset_path(value: str, *, origin: str | None = None) -> str:
    """The canonical (NFC) form of a path inside a version, or ``UploadError`` saying what is wrong
    with it, as the server would (the server's own rules, applied before anything is sent)."""
    where = f"{origin}: " if origin else ""
    try:
        value.encode()
    except UnicodeEncodeError:
        raise UploadError(f"{where}file name is not valid UTF-8", code="invalid_path") from None
    try:
        return paths.file_path(value)
    except InvalidInput as exc:
        raise UploadError(f"{where}{exc.message}", code="invalid_path") from None


def _joined(prefix: str, name: str) -> str:
    """``name`` under the folder ``prefix`` (checked with it afterwards: ``/x`` stays absolute)."""
    return f"{prefix.rstrip('/')}/{name}" if prefix else name


def _check_unique(items: Sequence[UploadItem]) -> None:
    seen: dict[str, str] = {}
    for item in items:
        if item.path in seen:
            raise UploadError(
                f"{item.origin} and {seen[item.path]} would both be {item.path!r} in the version",
                code="duplicate_path",
            )
        seen[item.path] = item.origin


# --------------------------------------------------------------------------- planning uploads


def file_item(source: Path, path: str | None = None) -> UploadItem:
    """One local file, as ``path`` in the version (default: its name)."""
    try:
        info = source.stat()
    except OSError as exc:
        raise UploadError(f"cannot read {source}: {exc.strerror}", code="read_error") from None
    if not stat.S_ISREG(info.st_mode):
        raise UploadError(f"{source} is not a regular file", code="not_a_file")
    target = dataset_path(path if path is not None else source.name, origin=str(source))
    return UploadItem(target, info.st_size, lambda: source.open("rb"), str(source))


def directory_items(directory: Path, *, prefix: str = "") -> tuple[list[UploadItem], list[str]]:
    """Every regular file under ``directory`` (relative POSIX paths, under ``prefix``), and what was
    skipped: symbolic links (never followed, so nothing outside the folder is sent) and special files."""
    if not directory.is_dir():
        raise UploadError(f"{directory} is not a directory", code="not_a_directory")
    items: list[UploadItem] = []
    skipped: list[str] = []

    def on_error(exc: OSError) -> None:
        raise UploadError(f"cannot read {exc.filename}: {exc.strerror}", code="read_error")

    for root, dirs, files in os.walk(directory, onerror=on_error):
        for name in sorted(dirs):
            if os.path.islink(os.path.join(root, name)):
                skipped.append(f"{os.path.join(root, name)} (symbolic link to a folder)")
        for name in sorted(files):
            local = Path(root, name)
            try:
                info = local.lstat()
            except OSError as exc:
                raise UploadError(f"cannot read {local}: {exc.strerror}", code="read_error") from None
            if stat.S_ISLNK(info.st_mode):
                skipped.append(f"{local} (symbolic link)")
                continue
            if not stat.S_ISREG(info.st_mode):
                skipped.append(f"{local} (not a regular file)")
                continue
            relative = local.relative_to(directory).as_posix()
            path = dataset_path(_joined(prefix, relative), origin=str(local))
            items.append(UploadItem(path, info.st_size, lambda local=local: local.open("rb"), str(local)))
    items.sort(key=lambda item: item.path)
    _check_unique(items)
    return items, skipped


def is_archive(source: Path) -> bool:
    return source.name.lower().endswith(ARCHIVE_SUFFIXES)


def _entry_path(archive: Path, name: str, prefix: str) -> str:
    origin = f"{archive.name}:{name}"
    if "\x00" in name:
        raise UploadError(f"{origin!r}: entry name contains NUL", code="unsafe_entry")
    if name.startswith("/") or _DRIVE.match(name):
        raise UploadError(f"{origin}: absolute entry paths are refused (zip slip)", code="unsafe_entry")
    while name.startswith("./"):  # ``tar -C dir .`` writes ./a/b: harmless, and very common
        name = name[2:]
    try:
        return dataset_path(_joined(prefix, name))
    except UploadError as exc:
        raise UploadError(f"{origin}: {exc.message}", code="unsafe_entry") from None


def _zip_items(archive: Path, zf: zipfile.ZipFile, prefix: str) -> list[UploadItem]:
    items = []
    for info in zf.infolist():
        name = info.orig_filename  # ``filename`` is cut at a NUL; the original shows it
        if info.is_dir() and "\x00" not in name:
            continue
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if info.create_system == 3 and kind and kind != stat.S_IFREG:  # unix attributes: links, devices
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise UploadError(f"{archive.name}:{name}: entry is {what}; refused", code="unsafe_entry")
        path = _entry_path(archive, name, prefix)
        if info.flag_bits & 0x1:
            raise UploadError(
                f"{archive.name}:{name}: encrypted entries are not supported", code="unsupported_entry"
            )
        items.append(
            UploadItem(
                path,
                info.file_size,
                lambda info=info: cast(BinaryIO, zf.open(info)),
                f"{archive.name}:{name}",
            )
        )
    return items


def _tar_items(archive: Path, tf: tarfile.TarFile, prefix: str) -> list[UploadItem]:
    items = []
    for member in tf.getmembers():
        if member.isdir():
            continue
        if not member.isreg():
            what = (
                "a symbolic link"
                if member.issym()
                else "a hard link"
                if member.islnk()
                else "a device or pipe"
                if member.isdev()
                else "not a regular file"
            )
            raise UploadError(f"{archive.name}:{member.name}: entry is {what}; refused", code="unsafe_entry")
        path = _entry_path(archive, member.name, prefix)

        def opener(member: tarfile.TarInfo = member) -> BinaryIO:
            stream = tf.extractfile(member)
            assert stream is not None  # regular members always have data
            return cast(BinaryIO, stream)

        items.append(UploadItem(path, member.size, opener, f"{archive.name}:{member.name}"))
    return items


@contextmanager
def archive_items(archive: Path, *, prefix: str = "") -> Iterator[list[UploadItem]]:
    """The files of a .zip or .tar(.gz|.bz2|.xz) archive, read entry by entry from the archive while
    uploading (nothing is extracted to disk). The whole listing is checked first: absolute paths,
    ``..``, backslashes, NUL, links and devices are refused before anything is sent."""
    with ExitStack() as stack:
        try:
            if archive.name.lower().endswith(".zip"):
                zf = stack.enter_context(zipfile.ZipFile(archive))
                items = _zip_items(archive, zf, prefix)
            else:
                tf = stack.enter_context(tarfile.open(archive, "r:*"))
                items = _tar_items(archive, tf, prefix)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise UploadError(f"{archive}: not a readable archive ({exc})", code="bad_archive") from None
        except OSError as exc:
            raise UploadError(f"cannot read {archive}: {exc.strerror or exc}", code="read_error") from None
        items.sort(key=lambda item: item.path)
        _check_unique(items)
        yield items


# --------------------------------------------------------------------------- streaming
