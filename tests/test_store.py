"""The encrypted blob store, on real files: format, ranges, tampering, crashes, memory, key wrapping."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from sanctum.store import (
    BlobExists,
    BlobNotFound,
    DiskFull,
    IntegrityError,
    InvalidBlobId,
    InvalidRange,
    LocalBlobStore,
    SegmentReader,
    SegmentWriter,
    StoreError,
    decrypt_range,
    encrypt_stream,
    new_data_key,
    plaintext_size,
    unwrap,
    wrap,
)
from sanctum.store import local as local_module
from sanctum.store.stream import HEADER_SIZE, PREFIX, STREAM_HEADER_SIZE, TAG_SIZE, Geometry

SEG = 4096
FIRST = SEG - STREAM_HEADER_SIZE  # segment 0 carries the stream header
GEO = Geometry(SEG)
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def key() -> bytes:
    return new_data_key()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs", segment_size=SEG)


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def read(store: LocalBlobStore, blob_id: str, key: bytes, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.open_range(blob_id, key, start, end))


def parts(store: LocalBlobStore) -> list[Path]:
    return list((store.root / "tmp").glob("*.part"))


# --- round trips and layout -------------------------------------------------------------------

SIZES = [
    0,
    1,
    FIRST - 1,
    FIRST,
    FIRST + 1,
    SEG - 1,
    SEG,
    SEG + 1,
    FIRST + SEG,
    FIRST + SEG + 1,
    3 * SEG + SEG // 2,
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunk", [7, SEG, 10_000])
def test_round_trip(store: LocalBlobStore, key: bytes, size: int, chunk: int) -> None:
    data = data_of(size)
    info = store.put_stream(pieces(data, chunk), key)
    assert (info.size, info.sha256) == (size, hashlib.sha256(data).hexdigest())
    assert info.ciphertext_size == store.path(info.blob_id).stat().st_size == GEO.ciphertext_size(size)
    assert store.size(info.blob_id) == size
    assert read(store, info.blob_id, key) == data


def test_default_segment_size_round_trip_and_ranges(tmp_path: Path, key: bytes) -> None:
    store = LocalBlobStore(tmp_path / "blobs")  # 1 MiB segments
    data = data_of(3 * (1 << 20) + 123)
    rng = random.Random(7)
    chunks, pos = [], 0
    while pos < len(data):
        step = rng.randint(1, 300_000)
        chunks.append(data[pos : pos + step])
        pos += step
    info = store.put_stream(chunks, key)
    assert read(store, info.blob_id, key) == data
    for boundary in ((1 << 20) - STREAM_HEADER_SIZE, 2 * (1 << 20) - STREAM_HEADER_SIZE):
        assert read(store, info.blob_id, key, boundary - 5, boundary + 5) == data[boundary - 5 : boundary + 5]


def test_empty_blob_is_authenticated(store: LocalBlobStore, key: bytes) -> None:
    info = store.put_stream([], key)
    assert info.ciphertext_size == HEADER_SIZE + TAG_SIZE
    assert read(store, info.blob_id, key) == b""
    with pytest.raises(IntegrityError):
        read(store, info.blob_id, new_data_key())
    path = store.path(info.blob_id)
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="segment 0 of 1 failed authentication"):
        read(store, info.blob_id, key)


def test_range_reads_at_every_boundary_and_at_random(store: LocalBlobStore, key: bytes) -> None:
    data = data_of(3 * SEG + SEG // 2)
    info = store.put_stream(pieces(data, 999), key)
    n = len(data)
    boundaries = [GEO.pt_start(i) for i in range(GEO.segment_count(n))] + [n]
    ranges = set()
    for b in boundaries:
        for lo, hi in ((b - 1, b), (b, b + 1), (b - 1, b + 1), (0, b), (b, n), (b, b)):
            if 0 <= lo <= hi <= n:
                ranges.add((lo, hi))
    rng = random.Random(42)
    for _ in range(300):
        lo = rng.randint(0, n)
        ranges.add((lo, rng.randint(lo, n)))
    for lo, hi in sorted(ranges):
        assert read(store, info.blob_id, key, lo, hi) == data[lo:hi], (lo, hi)
    assert read(store, info.blob_id, key, 100) == data[100:]


def test_range_reads_only_the_segments_they_need(key: bytes) -> None:
    data = data_of(10 * SEG)
    blob = b"".join(encrypt_stream(pieces(data, SEG), key, "b" * 32, segment_size=SEG))
    reads: list[tuple[int, int]] = []

    def read_at(offset: int, length: int) -> bytes:
        reads.append((offset, length))
        return blob[offset : offset + length]

    start = GEO.pt_start(5) + 10
    got = b"".join(decrypt_range(read_at, len(blob), key, "b" * 32, start, start + 100))
    assert got == data[start : start + 100]
    assert reads == [(0, HEADER_SIZE), (GEO.ct_start(5), SEG + TAG_SIZE)]


@pytest.mark.parametrize(("start", "end"), [(-1, 10), (0, 10**9), (20, 10), (10**9, None)])
def test_bad_ranges_are_refused_before_reading(
    store: LocalBlobStore, key: bytes, start: int, end: int
) -> None:
    info = store.put_stream([data_of(1000)], key)
    with pytest.raises(InvalidRange, match="outside the blob"):
        store.open_range(info.blob_id, key, start, end)  # raised at the call, not at next()


# --- tampering ----------------------------------------------------------------------------------


@pytest.fixture
def four(store: LocalBlobStore, key: bytes) -> tuple[str, bytes, Path]:
    """A blob of exactly four segments (the last one partial)."""
    data = data_of(3 * SEG + 100)
    info = store.put_stream([data], key)
    assert GEO.segment_count(len(data)) == 4
    return info.blob_id, data, store.path(info.blob_id)


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (0, "magic bytes are wrong"),
        (8, "unsupported blob format version"),
        (9, "unsupported blob format version"),
        (10, "segment 0 of 1 failed authentication"),  # 16 MiB segments: one layout, wrong subkey
        (13, "segment 0 of .* failed authentication"),  # another valid segment size: another subkey
        (14, "stream header length"),
        (20, "segment 0 of 4 failed authentication"),  # salt
        (HEADER_SIZE - 3, "segment 0 of 4 failed authentication"),  # nonce prefix
    ],
)
def test_flipped_header_byte(
    store: LocalBlobStore, key: bytes, four: tuple, offset: int, message: str
) -> None:
    blob_id, _, path = four
    flip(path, offset)
    with pytest.raises(IntegrityError, match=message):
        read(store, blob_id, key)


@pytest.mark.parametrize("ct_segment", [0, 100, 0xFFFFFFFF])
def test_absurd_segment_size_is_refused_before_any_allocation(
    store: LocalBlobStore, key: bytes, four: tuple, ct_segment: int
) -> None:
    blob_id, _, path = four
    raw = bytearray(path.read_bytes())
    raw[10:14] = ct_segment.to_bytes(4, "big")
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=r"segment size .* is out of range"):
        store.open_range(blob_id, key)


def test_flipped_byte_in_a_middle_segment(store: LocalBlobStore, key: bytes, four: tuple) -> None:
    blob_id, data, path = four
    flip(path, GEO.ct_start(2) + 100)
    with pytest.raises(IntegrityError) as caught:
        read(store, blob_id, key)
    assert str(caught.value) == (
        f"blob {blob_id}: segment 2 of 4 failed authentication: the blob was modified, truncated, "
        "extended, reordered or swapped with another blob, or the key is wrong"
    )
    assert read(store, blob_id, key, 0, FIRST + SEG) == data[: FIRST + SEG]  # untouched segments still read


def test_flipped_byte_in_a_tag(store: LocalBlobStore, key: bytes, four: tuple) -> None:
    blob_id, _, path = four
    flip(path, GEO.ct_start(2) - 1)  # last byte of segment 1's tag
    with pytest.raises(IntegrityError, match="segment 1 of 4 failed"):
        read(store, blob_id, key)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda size: GEO.ct_start(3), "segment 2 of 3 failed"),  # drop the last segment
        (lambda size: GEO.ct_start(2), "segment 1 of 2 failed"),  # at a boundary in the middle
        (lambda size: GEO.ct_start(2) + 500, "segment 2 of 3 failed"),  # mid-segment
        (lambda size: size - 1, "segment 3 of 4 failed"),
        (lambda size: HEADER_SIZE + 3, "blob is truncated"),
        (lambda size: 20, "blob is truncated"),
        (lambda size: 0, "blob is truncated"),
    ],
)
def test_truncation(store: LocalBlobStore, key: bytes, four: tuple, cut: object, message: str) -> None:
    blob_id, _, path = four
    raw = path.read_bytes()
    path.write_bytes(raw[: cut(len(raw))])  # type: ignore[operator]
    with pytest.raises(IntegrityError, match=message):
        read(store, blob_id, key)


@pytest.mark.parametrize("garbage", [b"\x00", b"x" * TAG_SIZE, b"y" * (SEG + TAG_SIZE), b"z" * 5000])
def test_appended_garbage(store: LocalBlobStore, key: bytes, four: tuple, garbage: bytes) -> None:
    blob_id, _, path = four
    path.write_bytes(path.read_bytes() + garbage)
    with pytest.raises(IntegrityError, match="failed authentication"):
        read(store, blob_id, key)


def test_swapped_segments(store: LocalBlobStore, key: bytes, four: tuple) -> None:
    blob_id, _, path = four
    raw = path.read_bytes()
    s1, s2, s3 = GEO.ct_start(1), GEO.ct_start(2), GEO.ct_start(3)
    path.write_bytes(raw[:s1] + raw[s2:s3] + raw[s1:s2] + raw[s3:])
    with pytest.raises(IntegrityError, match="segment 1 of 4 failed"):
        read(store, blob_id, key)


def test_blob_copied_over_another_id(store: LocalBlobStore, key: bytes) -> None:
    a = store.put_stream([data_of(2 * SEG, seed=1)], key)
    b = store.put_stream([data_of(2 * SEG, seed=2)], key)
    store.path(b.blob_id).write_bytes(store.path(a.blob_id).read_bytes())
    with pytest.raises(IntegrityError, match=f"blob {b.blob_id}: segment 0 of 3 failed"):
        read(store, b.blob_id, key)


def test_segment_spliced_from_another_blob_under_the_same_key(store: LocalBlobStore, key: bytes) -> None:
    a = store.put_stream([data_of(3 * SEG, seed=1)], key)
    b = store.put_stream([data_of(3 * SEG, seed=2)], key)
    ra, rb = store.path(a.blob_id).read_bytes(), store.path(b.blob_id).read_bytes()
    s1, s2 = GEO.ct_start(1), GEO.ct_start(2)
    store.path(b.blob_id).write_bytes(rb[:s1] + ra[s1:s2] + rb[s2:])
    with pytest.raises(IntegrityError, match="segment 1 of 4 failed"):
        read(store, b.blob_id, key)


def test_wrong_key(store: LocalBlobStore, key: bytes) -> None:
    info = store.put_stream([data_of(5000)], key)
    with pytest.raises(IntegrityError, match="or the key is wrong"):
        read(store, info.blob_id, new_data_key())


# --- the pure stream API and interoperability --------------------------------------------------


def test_encrypt_stream_and_decrypt_range_in_memory(key: bytes) -> None:
    data = data_of(5 * SEG + 3)
    gen = encrypt_stream(pieces(data, 1234), key, "c" * 32, segment_size=SEG)
    out = []
    try:
        while True:
            out.append(next(gen))
    except StopIteration as stop:
        assert stop.value == (len(data), hashlib.sha256(data).hexdigest())
    blob = b"".join(out)
    assert plaintext_size(blob[:HEADER_SIZE], len(blob)) == len(data)
    assert b"".join(decrypt_range(lambda o, n: blob[o : o + n], len(blob), key, "c" * 32)) == data
    reader = SegmentReader(lambda o, n: blob[o : o + n], len(blob), key, "c" * 32)
    assert (reader.segment_count, reader.size) == (6, len(data))


def test_segment_writer_accepts_any_buffer_and_refuses_writes_after_close(key: bytes) -> None:
    out: list[bytes] = []
    writer = SegmentWriter(key, "d" * 32, out.append, segment_size=SEG)
    assert out == [writer.header.to_bytes()] and out[0].startswith(b"SNCTSTR1")
    writer.write(bytearray(b"ab"))
    writer.write(memoryview(b"cd"))
    assert writer.close() == writer.close() == (4, hashlib.sha256(b"abcd").hexdigest())
    with pytest.raises(StoreError, match="write after close"):
        writer.write(b"e")


# A ciphertext made by Google Tink 1.16.1 (AES-GCM-HKDF streaming, 272-byte ciphertext segments,
# HKDF-SHA256), with key bytes(range(32)) and associated data = the 14-byte Sanctum prefix + blob id.
TINK_VECTOR = bytes.fromhex(
    "534e435453545231010100000110282c9dbf8da454294ef26362f276a13d97ea26ad72197cb785351d00deac8369da45"
    "bcdc3ad6e72b57bd5ecb903d6672a4c58192f185c7d5d537b40eea907fd3e62e405f2c56914dcfd478d122120f68961b"
    "548a5cab33aa2588c6752d72759c8305af7955f3c86f3cf0fec68020d4545403ebf59e160bb9d577679f861a512076cd"
    "5e031dd5cca037a8f5a849f3f690b97c55adf4052b592b5a7e6590b99c297ae0566ac7e85dd5d64954152e4de89ec4bb"
    "ef0a4773c41eb75e242987108293b0aacd9b44cf8adfdb7f406ade4faef2cbf7bc6b6259c24e5911b49b159140bb5a78"
    "b8a1a11898131528c83f4dfbc4864c722c8512bd2ac427606f72ebb1df9f5102cf654a7f800794809ad7f0dc001bc365"
    "27be22294574c1d7ef79d28b518a8b0808c9ebb678d4c6de5a182a68f9145fe9c10fa3e70cc5283e6809890bc9d6daab"
    "cbca589c48b0058ec6d501eae0125a3322c54193641efcd6b8a0166493833b01073d06a31f9464f9ba80d5191371694e"
    "98e8d83976ad167ef88bac2f7450fd6049a660890a54119cad4729746263bfceb389a2a1bd2ec9a9f2b73d043121917e"
    "c471b875d561d88330cec22f230ed567044cdc6a22ec64fcc484dddb439b5c2afd2454e2351bca9477d64b449aba3a77"
    "6d3905ee1b65d06ad9b8907a5def9c0f7dc0e5e3adbf1bbc4f643beb1e5d4549fab415f2a80f7d59dfe6dd9264dfeae7"
    "febd393163efd22f4f769cb9b3af8d22d63f1d7dba994f3b3293c8175ec5d142af3ec6c1d2831f14f405fc8e4971fb0e"
    "7d9ce4812ac513711b01528ab61e8577259a5039b07c1a91ddafcde70890246730402541c8bc1b6c6a97e19044b0bded"
    "e972fc767862086db05708c2807868b72bd73cdb08f165a4498a9f47383002467d68494d2ae66ad2a3d2057f1120b737"
    "7131fcc38f1b8a64c4f732b7f140e3e651eb3b74b665743c05f70191d01a"
)
TINK_BLOB_ID = "0123456789abcdef0123456789abcdef"


def test_decrypts_a_ciphertext_made_by_tink() -> None:
    key = bytes(range(32))
    expected = bytes((i * 7 + 3) % 256 for i in range(600))
    read_at = lambda o, n: TINK_VECTOR[o : o + n]  # noqa: E731
    assert b"".join(decrypt_range(read_at, len(TINK_VECTOR), key, TINK_BLOB_ID)) == expected
    assert (
        b"".join(decrypt_range(read_at, len(TINK_VECTOR), key, TINK_BLOB_ID, 200, 500)) == expected[200:500]
    )
    assert len(TINK_VECTOR) == Geometry(256).ciphertext_size(600)


def test_tink_cross_check_live(key: bytes) -> None:
    """Tink decrypts what we write and we decrypt what Tink writes (tink is a test dependency)."""
    import tink
    from tink import secret_key_access, streaming_aead
    from tink.proto import aes_gcm_hkdf_streaming_pb2 as pb
    from tink.proto import common_pb2, tink_pb2

    streaming_aead.register()
    params = pb.AesGcmHkdfStreamingParams(
        ciphertext_segment_size=SEG + TAG_SIZE, derived_key_size=32, hkdf_hash_type=common_pb2.SHA256
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                    value=pb.AesGcmHkdfStreamingKey(
                        version=0, params=params, key_value=key
                    ).SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    primitive = handle.primitive(streaming_aead.StreamingAead)
    blob_id = "e" * 32
    for size in (0, FIRST, FIRST + 1, 3 * SEG + 7):
        data = data_of(size)
        ours = b"".join(encrypt_stream([data], key, blob_id, segment_size=SEG))
        ad = ours[: PREFIX.size] + blob_id.encode()
        with primitive.new_decrypting_stream(io.BytesIO(ours[PREFIX.size :]), ad) as stream:
            assert stream.read() == data

        class Keep(io.BytesIO):
            def close(self) -> None:
                pass

        sink = Keep()
        with primitive.new_encrypting_stream(sink, ad) as stream:
            stream.write(data)
        theirs = ours[: PREFIX.size] + sink.getvalue()
        assert len(theirs) == len(ours)
        assert b"".join(decrypt_range(lambda o, n, t=theirs: t[o : o + n], len(theirs), key, blob_id)) == data


# --- the local store: ids, layout, operations ---------------------------------------------------


def test_layout_ids_and_operations(store: LocalBlobStore, key: bytes) -> None:
    a = store.put_stream([b"first"], key)
    b = store.put_stream([b"second"], key, blob_id="ab" * 16)
    assert len(a.blob_id) == 32 and int(a.blob_id, 16) >= 0
    path = store.path(b.blob_id)
    assert path == store.root / "ab" / "ab" / ("ab" * 16)
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(store.iter_blob_ids()) == sorted([a.blob_id, b.blob_id])
    assert store.stats() == (2, a.ciphertext_size + b.ciphertext_size)
    assert store.exists(b.blob_id)
    with pytest.raises(BlobExists):
        store.put_stream([b"again"], key, blob_id=b.blob_id)
    assert read(store, b.blob_id, key) == b"second"
    assert store.delete(b.blob_id) is True
    assert store.delete(b.blob_id) is False
    assert not store.exists(b.blob_id)
    with pytest.raises(BlobNotFound):
        store.open_range(b.blob_id, key)
    with pytest.raises(BlobNotFound):
        store.size(b.blob_id)
    assert store.stats() == (1, a.ciphertext_size)


@pytest.mark.parametrize(
    "bad", ["../" + "a" * 29, "a/" + "b" * 30, "A" * 32, "a" * 31, "a" * 33, "g" * 32, "", "a" * 31 + "\n"]
)
def test_blob_ids_are_validated_strictly(store: LocalBlobStore, key: bytes, bad: str) -> None:
    for call in (
        lambda: store.put_stream([b"x"], key, blob_id=bad),
        lambda: store.open_range(bad, key),
        lambda: store.exists(bad),
        lambda: store.delete(bad),
    ):
        with pytest.raises(InvalidBlobId, match="invalid blob id"):
            call()
    assert parts(store) == []


def test_abandoned_read_closes_its_file(store: LocalBlobStore, key: bytes) -> None:
    info = store.put_stream([data_of(5 * SEG)], key)
    before = len(os.listdir("/proc/self/fd"))
    pieces_iter = store.open_range(info.blob_id, key)
    next(pieces_iter)
    assert len(os.listdir("/proc/self/fd")) == before + 1
    pieces_iter.close()  # type: ignore[attr-defined]
    assert len(os.listdir("/proc/self/fd")) == before


# --- crashes and full disks ---------------------------------------------------------------------


def test_failing_chunk_source_leaves_nothing(store: LocalBlobStore, key: bytes) -> None:
    def chunks():
        yield data_of(3 * SEG)
        assert parts(store), "the write goes to a .part file"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError, match="client went away"):  # the caller's error, unchanged
        store.put_stream(chunks(), key)
    assert list(store.iter_blob_ids()) == [] and parts(store) == []
    assert store.cleanup_temp() == 0


def _fail_for_part_files(real, after: int):
    """Wraps os.write/os.fsync: raises ENOSPC for .part files once ``after`` calls went through."""
    calls = 0

    def fake(fd: int, *args):
        nonlocal calls
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            calls += 1
            if calls > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, *args)

    return fake


@pytest.mark.parametrize(("name", "after"), [("write", 3), ("write", 0), ("fsync", 0)])
def test_disk_full(
    store: LocalBlobStore, key: bytes, monkeypatch: pytest.MonkeyPatch, name: str, after: int
) -> None:
    monkeypatch.setattr(local_module.os, name, _fail_for_part_files(getattr(os, name), after))
    with pytest.raises(DiskFull, match="disk full while writing blob") as caught:
        store.put_stream(pieces(data_of(10 * SEG), SEG), key)
    assert isinstance(caught.value, StoreError)
    monkeypatch.undo()
    assert list(store.iter_blob_ids()) == [] and parts(store) == []


def test_killed_writer_leaves_only_a_part_file_until_cleanup(store: LocalBlobStore, key: bytes) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from sanctum.store import LocalBlobStore
        block = bytes(1 << 20)
        def endless():
            while True:
                yield block
        LocalBlobStore(Path({str(store.root)!r})).put_stream(endless(), bytes.fromhex({key.hex()!r}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 16 << 20 for p in parts(store)):
            assert child.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer made no progress"
            time.sleep(0.02)
        assert store.cleanup_temp() == 0, "a live writer's .part file must survive cleanup"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert list(store.iter_blob_ids()) == [] and len(parts(store)) == 1
    assert store.cleanup_temp() == 1
    assert parts(store) == [] and list(store.iter_blob_ids()) == []


def test_cleanup_leaves_a_running_write_alone(store: LocalBlobStore, key: bytes) -> None:
    halfway, resume = threading.Event(), threading.Event()
    result = {}

    def chunks():
        yield data_of(2 * SEG)
        halfway.set()
        resume.wait(10)
        yield data_of(SEG)

    worker = threading.Thread(target=lambda: result.update(info=store.put_stream(chunks(), key)))
    worker.start()
    assert halfway.wait(10)
    assert store.cleanup_temp() == 0 and len(parts(store)) == 1
    resume.set()
    worker.join(10)
    assert store.exists(result["info"].blob_id) and parts(store) == []


# --- memory -------------------------------------------------------------------------------------


def test_256_mib_streams_in_constant_memory(tmp_path: Path, key: bytes) -> None:
    store = LocalBlobStore(tmp_path / "blobs")  # default 1 MiB segments
    block = data_of(1 << 20)
    total = 256

    def chunks():
        for _ in range(total):
            yield block

    tracemalloc.start()
    try:
        info = store.put_stream(chunks(), key)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        for piece in store.open_range(info.blob_id, key):
            digest.update(piece)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == total << 20 and digest.hexdigest() == info.sha256
    assert write_peak < 16 << 20, f"put_stream peak {write_peak / 2**20:.1f} MiB"
    assert read_peak < 16 << 20, f"open_range peak {read_peak / 2**20:.1f} MiB"


# --- key wrapping -------------------------------------------------------------------------------


def test_envelope_wrap_and_unwrap() -> None:
    master, project_key, data_key = new_data_key(), new_data_key(), new_data_key()
    wrapped_project = wrap(master, project_key, "project:12")
    wrapped_data = wrap(project_key, data_key, "dataset:34")
    assert len(wrapped_data) == 61 and wrap(project_key, data_key, "dataset:34") != wrapped_data
    opened = unwrap(master, wrapped_project, "project:12")
    assert unwrap(opened, wrapped_data, "dataset:34") == data_key


@pytest.mark.parametrize(
    ("kek", "context", "tamper"),
    [
        ("right", "dataset:35", None),  # moved to another row
        ("right", "project:34", None),
        ("wrong", "dataset:34", None),
        ("right", "dataset:34", 20),  # modified bytes
    ],
)
def test_unwrap_refuses_wrong_context_key_or_bytes(kek: str, context: str, tamper: int | None) -> None:
    right, data_key = new_data_key(), new_data_key()
    wrapped = bytearray(wrap(right, data_key, "dataset:34"))
    if tamper is not None:
        wrapped[tamper] ^= 1
    with pytest.raises(IntegrityError, match="does not unwrap"):
        unwrap(right if kek == "right" else new_data_key(), bytes(wrapped), context)


def test_wrap_refuses_bad_keys_and_malformed_input() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        wrap(b"short", new_data_key(), "dataset:1")
    with pytest.raises(ValueError, match="32 bytes"):
        wrap(new_data_key(), b"short", "dataset:1")
    with pytest.raises(ValueError, match="context"):
        wrap(new_data_key(), new_data_key(), "")
    with pytest.raises(IntegrityError, match="malformed"):
        unwrap(new_data_key(), b"\x01" * 10, "dataset:1")
