"""Object storage port: Scaleway Object Storage (S3 protocol) or a local folder, one backend per module.

    base    the ObjectStore interface, its errors (ObjectNotFound, ObjectRetained, StorageError), shared checks
    s3      S3ObjectStore: Scaleway Object Storage through boto3 (imported only when the backend is built)
    folder  LocalObjectStore: objects as files, signed local download links

`build_object_store(settings)` picks one from the configuration: an S3 endpoint selects S3.
"""

from __future__ import annotations

from shared.platform.config import Settings
from shared.ports.storage.base import (
    MAX_PRESIGN_SECONDS,
    Body,
    DeleteTarget,
    ObjectInfo,
    ObjectNotFound,
    ObjectRetained,
    ObjectStore,
    ObjectVersion,
    StorageError,
)
from shared.ports.storage.folder import (
    LocalObjectStore,
    local_signing_key,
    verify_local_signature,
)
from shared.ports.storage.s3 import S3ObjectStore

__all__ = [
    "MAX_PRESIGN_SECONDS",
    "Body",
    "DeleteTarget",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectRetained",
    "ObjectStore",
    "ObjectVersion",
    "S3ObjectStore",
    "StorageError",
    "build_object_store",
    "verify_local_signature",
]


def build_object_store(settings: Settings) -> ObjectStore:
    if settings.s3_endpoint_url:
        return S3ObjectStore(settings)
    return LocalObjectStore(
        settings.data_dir / "objects",
        signing_key=local_signing_key(settings),
        base_url=settings.local_base_url,
    )
