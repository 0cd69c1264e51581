"""Streaming AEAD for blobs: AES-256-GCM in fixed segments (the STREAM construction).

Pure: no files, no paths. The caller gives bytes in (``SegmentWriter``) and a ``read_at(offset, length)``
function out (``SegmentReader``), so the local backend and a future S3 backend share one format.

The segment layout, nonces and per-blob key derivation are byte-for-byte Tink's AES-GCM-HKDF streaming
AEAD (a reviewed instance of STREAM), behind a 14-byte Sanctum prefix; see docs/storage-format.md.
Tink itself is not used because its Python API cannot decrypt a byte range without reading from 0.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"SNCTSTR1"
VERSION = 1
ALG_AES256GCM_HKDF_SHA256 = 1
PREFIX = struct.Struct(">8sBBI")  # magic, version, algorithm, ciphertext segment size
KEY_SIZE = 32
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
STREAM_HEADER_SIZE = 1 + KEY_SIZE + NONCE_PREFIX_SIZE  # Tink's header: its length, salt, nonce prefix
HEADER_SIZE = PREFIX.size + STREAM_HEADER_SIZE
DEFAULT_SEGMENT_SIZE = 1 << 20
MIN_SEGMENT_SIZE = 256
MAX_SEGMENT_SIZE = 64 << 20  # bounds what a reader allocates before anything is authenticated
MAX_SEGMENTS = 1 << 32  # the segment counter is a uint32


class StoreError(Exception):
    """Anything the blob store cannot do; the message is meant for an operator."""


class IntegrityError(StoreError):
    """The blob is not what was written: modified, truncated, extended, reordered, swapped, or wrong key."""


class InvalidRange(StoreError, ValueError):
    """A byte range outside the blob (start and end are plaintext offsets, end exclusive)."""


@dataclass(frozen=True, slots=True)
class Geometry:
    """Where segment ``i`` lives in plaintext and in the blob, for a plaintext segment size ``P``.

    Segment 0 carries the 40-byte stream header inside its ciphertext segment (as in Tink), so it
    holds ``P - 40`` plaintext bytes; every other full segment holds ``P``.
    """

    segment_size: int

    @property
    def ct_segment(self) -> int:
        return self.segment_size + TAG_SIZE

    def pt_start(self, i: int) -> int:
        return 0 if i == 0 else i * self.segment_size - STREAM_HEADER_SIZE

    def pt_capacity(self, i: int) -> int:
        return self.segment_size - (STREAM_HEADER_SIZE if i == 0 else 0)

    def ct_start(self, i: int) -> int:
        return HEADER_SIZE if i == 0 else PREFIX.size + i * self.ct_segment

    def segment_of(self, offset: int) -> int:
        return (offset + STREAM_HEADER_SIZE) // self.segment_size

    def segment_count(self, plaintext_size: int) -> int:
        if plaintext_size == 0:
            return 1  # one empty final segment: even an empty blob is authenticated
        return -(-(plaintext_size + STREAM_HEADER_SIZE) // self.segment_size)

    def ciphertext_size(self, plaintext_size: int) -> int:
        return HEADER_SIZE + plaintext_size + TAG_SIZE * self.segment_count(plaintext_size)

    def layout(self, ciphertext_size: int) -> tuple[int, int]:
        """(segment count, plaintext size) of a blob this long, or IntegrityError if none fits."""
        body = ciphertext_size - PREFIX.size
        if body < STREAM_HEADER_SIZE + TAG_SIZE:
            raise IntegrityError(
                f"blob is truncated: {ciphertext_size} bytes is shorter than a header and one segment"
            )
        count = -(-body // self.ct_segment)
        last = body - (count - 1) * self.ct_segment
        if last < TAG_SIZE or count > MAX_SEGMENTS:
            raise IntegrityError(f"blob is truncated or extended: {ciphertext_size} bytes fits no layout")
        return count, body - STREAM_HEADER_SIZE - TAG_SIZE * count


@dataclass(frozen=True, slots=True)
class Header:
    segment_size: int
    salt: bytes
    nonce_prefix: bytes

    @classmethod
    def new(cls, segment_size: int) -> Header:
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"segment size must be {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE} bytes")
        return cls(segment_size, secrets.token_bytes(KEY_SIZE), secrets.token_bytes(NONCE_PREFIX_SIZE))

    @property
    def prefix(self) -> bytes:
        return PREFIX.pack(MAGIC, VERSION, ALG_AES256GCM_HKDF_SHA256, self.segment_size + TAG_SIZE)

    def to_bytes(self) -> bytes:
        return self.prefix + bytes([STREAM_HEADER_SIZE]) + self.salt + self.nonce_prefix

    @classmethod
    def parse(cls, data: bytes) -> Header:
        """Structural checks only; the header's authenticity is proven when segment 0 decrypts."""
        if len(data) < HEADER_SIZE:
            raise IntegrityError(f"blob is truncated: {len(data)} bytes is shorter than the header")
        magic, version, alg, ct_segment = PREFIX.unpack_from(data)
        if magic != MAGIC:
            raise IntegrityError("not a Sanctum encrypted blob: the header's magic bytes are wrong")
        if version != VERSION or alg != ALG_AES256GCM_HKDF_SHA256:
            raise IntegrityError(f"unsupported blob format version {version} / algorithm {alg}")
        segment_size = ct_segment - TAG_SIZE
        if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
            raise IntegrityError(f"header is malformed: segment size {segment_size} is out of range")
        if data[PREFIX.size] != STREAM_HEADER_SIZE:
            raise IntegrityError(f"header is malformed: stream header length {data[PREFIX.size]}")
        salt_at = PREFIX.size + 1
        return cls(
            segment_size,
            bytes(data[salt_at : salt_at + KEY_SIZE]),
            bytes(data[salt_at + KEY_SIZE : HEADER_SIZE]),
        )

    def aead(self, key: bytes, blob_id: str) -> AESGCM:
        """The per-blob key: HKDF of the data key with this blob's random salt.

        The info (Tink's "associated data") is the Sanctum prefix and the blob id, so a changed prefix
        or a blob presented under another id yields another key and segment 0 fails.
        """
        if len(key) != KEY_SIZE:
            raise ValueError(f"data key must be {KEY_SIZE} bytes")
        info = self.prefix + blob_id.encode("ascii")
        return AESGCM(HKDF(hashes.SHA256(), KEY_SIZE, self.salt, info).derive(key))

    def nonce(self, i: int, last: bool) -> bytes:
        return self.nonce_prefix + i.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class SegmentWriter:
    """Encrypts a stream pushed in pieces of any size; hands each finished segment to ``sink``.

    A full segment is held back until more data arrives, because only then is it known not to be the
    last one. Memory: one segment of plaintext plus the segment ``sink`` is given.
    """

    def __init__(
        self,
        key: bytes,
        blob_id: str,
        sink: Callable[[bytes], object],
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
    ) -> None:
        self.header = Header.new(segment_size)
        self._aead = self.header.aead(key, blob_id)
        self._geo = Geometry(segment_size)
        self._sink = sink
        self._buf = bytearray(segment_size)
        self._fill = 0
        self._index = 0
        self._size = 0
        self._sha = hashlib.sha256()
        self._closed = False
        sink(self.header.to_bytes())

    def _emit(self, plaintext: memoryview, last: bool) -> None:
        if not last and self._index + 1 >= MAX_SEGMENTS:
            raise StoreError(f"blob too large: more than {MAX_SEGMENTS} segments")
        self._sha.update(plaintext)
        self._sink(self._aead.encrypt(self.header.nonce(self._index, last), plaintext, None))
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise StoreError("write after close")
        view = memoryview(data).cast("B")
        self._size += len(view)
        pos, end = 0, len(view)
        while pos < end:
            room = self._geo.pt_capacity(self._index) - self._fill
            if end - pos <= room:  # fits: keep it, it may be (part of) the last segment
                self._buf[self._fill : self._fill + end - pos] = view[pos:]
                self._fill += end - pos
                return
            if self._fill == 0:  # a whole segment straight from the caller's buffer: no copy
                self._emit(view[pos : pos + room], last=False)
            else:
                self._buf[self._fill : self._fill + room] = view[pos : pos + room]
                self._emit(memoryview(self._buf)[: self._fill + room], last=False)
                self._fill = 0
            pos += room

    def close(self) -> tuple[int, str]:
        """Encrypts the final segment; returns (plaintext size, plaintext sha256 hex)."""
        if not self._closed:
            self._emit(memoryview(self._buf)[: self._fill], last=True)
            self._closed = True
            self._buf = bytearray()
        return self._size, self._sha.hexdigest()


def encrypt_stream(
    chunks: Iterable[bytes], key: bytes, blob_id: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> Iterator[bytes]:
    """Ciphertext pieces (header, then one per segment) for a plaintext stream, e.g. for a multipart
    upload. The generator's return value is (plaintext size, sha256 hex)."""
    out: list[bytes] = []
    writer = SegmentWriter(key, blob_id, out.append, segment_size=segment_size)
    for chunk in chunks:
        writer.write(chunk)
        yield from out
        out.clear()
    result = writer.close()
    yield from out
    return result


class SegmentReader:
    """Random access to an encrypted blob: reads and authenticates only the segments it needs.

    ``read_at(offset, length)`` returns the blob's bytes there (fewer only at its end). It may return
    a view into a buffer it reuses: each result is used up before the next call.
    """

    def __init__(
        self,
        read_at: Callable[[int, int], bytes | memoryview],
        ciphertext_size: int,
        key: bytes,
        blob_id: str,
    ) -> None:
        self._read_at = read_at
        self.blob_id = blob_id
        self.header = Header.parse(read_at(0, HEADER_SIZE))
        self._geo = Geometry(self.header.segment_size)
        self.segment_count, self.size = self._geo.layout(ciphertext_size)
        self._ciphertext_size = ciphertext_size
        self._aead = self.header.aead(key, blob_id)

    def segment(self, i: int) -> bytes:
        """Plaintext of segment ``i``, authenticated (including whether it is the last one)."""
        offset, length = self._span(i)
        return bytes(self.decrypt_segment(i, self._read_at(offset, length)))

    def decrypt_segment(
        self, i: int, data: bytes | memoryview, into: bytearray | memoryview | None = None
    ) -> bytes | memoryview:
        """Authenticates and decrypts segment ``i`` from its ciphertext ``data``, which the caller read
        at ``segment_span(i)``: the one check every reader of the format goes through.

        Why the caller reads: parallel readers (``LocalBlobStore.decrypt_to``) each read into their own
        buffer, while ``read_at`` may reuse one. Safe to call from several threads at once (the AEAD
        object is immutable; it releases the GIL). With ``into`` (at least ``len(data) - 16`` bytes) the
        plaintext is decrypted in place there and a view of it returned, with no new allocation; after
        an IntegrityError ``into`` may hold unauthenticated bytes, which the caller must discard.
        """
        _, length = self._span(i)
        if len(data) != length:
            raise IntegrityError(f"blob {self.blob_id}: segment {i} is short: the blob was truncated")
        nonce = self.header.nonce(i, i == self.segment_count - 1)
        try:
            if into is None:
                return self._aead.decrypt(nonce, data, None)
            view = memoryview(into).cast("B")[: length - TAG_SIZE]
            self._aead.decrypt_into(nonce, data, None, view)
            return view
        except InvalidTag:
            raise IntegrityError(
                f"blob {self.blob_id}: segment {i} of {self.segment_count} failed authentication: the "
                "blob was modified, truncated, extended, reordered or swapped with another blob, or the "
                "key is wrong"
            ) from None

    def segment_span(self, i: int) -> tuple[int, int]:
        """(offset, length) of segment ``i``'s ciphertext in the blob; ``i`` must be in range."""
        if not 0 <= i < self.segment_count:
            raise IndexError(f"segment {i} is outside the blob's {self.segment_count} segments")
        return self._span(i)

    def plaintext_start(self, i: int) -> int:
        """Plaintext offset of segment ``i``'s first byte (where a parallel reader writes it)."""
        return self._geo.pt_start(i)

    @property
    def max_segment_ciphertext(self) -> int:
        """The longest ciphertext a segment can have: the size of a reader's per-thread buffer."""
        return self._geo.ct_segment

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext bytes [start, end). The range is checked now, not at the first ``next()``.

        At least one segment is always authenticated, so a wrong key or a changed header fails even
        for an empty range.
        """
        end = self.size if end is None else end
        if not 0 <= start <= end <= self.size:
            raise InvalidRange(f"range [{start}, {end}) is outside the blob's {self.size} bytes")
        first = min(self._geo.segment_of(start), self.segment_count - 1)
        last = max(first, self._geo.segment_of(end - 1)) if end > start else first
        return self._pieces(first, last, start, end)

    def _span(self, i: int) -> tuple[int, int]:
        start = self._geo.ct_start(i)
        return start, min(PREFIX.size + (i + 1) * self._geo.ct_segment, self._ciphertext_size) - start

    def _pieces(self, first: int, last: int, start: int, end: int) -> Iterator[bytes]:
        # Sequential preads: the kernel's read-ahead already overlaps the disk with decryption
        # (measured: a read-ahead thread gained nothing locally and cost ~15% on cached reads).
        for i in range(first, last + 1):
            plain = self.segment(i)
            base = self._geo.pt_start(i)
            lo, hi = max(start - base, 0), min(end - base, len(plain))
            if lo == 0 and hi == len(plain):
                yield plain
            elif hi > lo:
                yield plain[lo:hi]


def decrypt_range(
    read_at: Callable[[int, int], bytes | memoryview],
    ciphertext_size: int,
    key: bytes,
    blob_id: str,
    start: int = 0,
    end: int | None = None,
) -> Iterator[bytes]:
    return SegmentReader(read_at, ciphertext_size, key, blob_id).iter_range(start, end)


def plaintext_size(header: bytes, ciphertext_size: int) -> int:
    """The plaintext length a blob of this size holds (checked against the layout, not authenticated)."""
    return Geometry(Header.parse(header).segment_size).layout(ciphertext_size)[1]
