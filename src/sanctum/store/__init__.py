"""Encrypted blob store: streaming AES-256-GCM blobs under per-dataset data keys.

``stream`` is the format (pure), ``local`` the directory backend behind the ``BlobStore`` protocol,
``keys`` the envelope key wrapping. The on-disk format is in docs/storage-format.md.
"""

from sanctum.store.batch import BlobBatch
from sanctum.store.keys import new_data_key, unwrap, wrap
from sanctum.store.local import (
    BlobExists,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    DiskFull,
    InvalidBlobId,
    LocalBlobStore,
    check_blob_id,
    new_blob_id,
)
from sanctum.store.stream import (
    DEFAULT_SEGMENT_SIZE,
    IntegrityError,
    InvalidRange,
    SegmentReader,
    SegmentWriter,
    StoreError,
    decrypt_range,
    encrypt_stream,
    plaintext_size,
)

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "BlobBatch",
    "BlobExists",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "DiskFull",
    "IntegrityError",
    "InvalidBlobId",
    "InvalidRange",
    "LocalBlobStore",
    "SegmentReader",
    "SegmentWriter",
    "StoreError",
    "check_blob_id",
    "decrypt_range",
    "encrypt_stream",
    "new_blob_id",
    "new_data_key",
    "plaintext_size",
    "unwrap",
    "wrap",
]
