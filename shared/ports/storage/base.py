"""The object storage port: the interface both backends keep, its errors, and the checks they share.

Both backends (`s3`: Scaleway Object Storage; `folder`: a local folder) give the same
guarantees: uploads are encrypted at rest (S3 SSE) or written atomically (folder); deletes
go by batches of at most 1000 keys; retained objects (Object Lock COMPLIANCE, or a read-only
archive file locally) cannot be deleted before their date; download links never live longer
than 24 hours.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

from shared.platform.clock import UTC, utcnow
from shared.platform.errors import ExternalServiceError

MAX_PRESIGN_SECONDS = 24 * 3600

Body = bytes | IO[bytes]
# A key, or a (key, version_id) pair as yielded by list_versions.
DeleteTarget = str | tuple[str, str]

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_METADATA_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ObjectInfo(NamedTuple):
    key: str
    size: int
    last_modified: dt.datetime


class ObjectVersion(NamedTuple):
    key: str
    version_id: str
    size: int
    last_modified: dt.datetime
    is_latest: bool
    is_delete_marker: bool


class ObjectNotFound(LookupError):
    """The object does not exist."""


class StorageError(ExternalServiceError):
    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None):
        super().__init__("storage", message, retryable=retryable, status=status)


class ObjectRetained(StorageError):
    """A retained object (legal hold until a date) cannot be deleted or overwritten yet."""


class ObjectStore(Protocol):
    # How many objects a reader of many (an export's documents) is worth fetching at once: a remote store answers
    # each GET after a round trip, which parallel reads overlap; a local folder reads faster than threads hand over.
    concurrent_reads: int

    def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Store bytes or a binary stream (S3: encrypted at rest; folder: written atomically)."""

    def upload_file(
        self, bucket: str, key: str, path: str | Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        """Store a file from disk (S3: multipart above 16 MiB)."""

    def open(self, bucket: str, key: str) -> IO[bytes]:
        """A readable stream of the object; ObjectNotFound if absent."""

    def get_bytes(self, bucket: str, key: str) -> bytes: ...

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """size, content_type, last_modified (aware UTC), metadata, version_id, encryption, retain_until; or None."""

    def exists(self, bucket: str, key: str) -> bool: ...

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Current objects under the prefix, in key order, fetched page by page."""

    def list_versions(self, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]:
        """Every version and delete marker (a folder: each object as its single version)."""

    def delete_many(self, bucket: str, keys: Iterable[DeleteTarget], *, versions: bool = False) -> int:
        """Delete by batches of at most 1000; versions=True erases every version (S3 history included).

        On a versioned S3 bucket a plain delete only adds a delete marker. Raises ObjectRetained
        when a retained object was among the keys (the others are deleted).
        """

    def delete_prefix(self, bucket: str, prefix: str, *, versions: bool = False) -> int: ...

    def put_retained(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        retain_until: dt.datetime,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """Store under legal retention until the date (S3 Object Lock COMPLIANCE; folder: read-only file)."""

    def presigned_get_url(self, bucket: str, key: str, *, expires_in: int) -> str:
        """A download link valid `expires_in` seconds, at most 24 h (more raises ValueError)."""

    def discard_partial(self, bucket: str, key: str, *, request_id: str) -> int:
        """Remove what an interrupted upload of `key` left (S3: its incomplete multipart uploads;
        folder: the temporary files tagged with `request_id`); returns how many."""

    def purge_temporaries(self, bucket: str, *, older_than: dt.datetime) -> int:
        """Remove every upload left unfinished before `older_than` (the retention schedule's sweep)."""

    def get_lifecycle(self, bucket: str) -> builtins.list[dict[str, Any]]: ...

    def put_lifecycle(self, bucket: str, rules: builtins.list[dict[str, Any]]) -> None: ...


# --- Checks shared by both backends ---------------------------------------------------


def check_expires_in(expires_in: int) -> int:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < 1:
        raise ValueError("expires_in must be a positive number of seconds")
    if expires_in > MAX_PRESIGN_SECONDS:
        raise ValueError(f"a download link may live at most {MAX_PRESIGN_SECONDS} seconds (24 h)")
    return expires_in


def check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError("invalid bucket name")
    return bucket


def check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key.encode()) > 1024:
        raise ValueError("an object key is a non-empty string of at most 1024 bytes")
    if "\x00" in key or "\\" in key or key.startswith("/") or key.endswith("/"):
        raise ValueError("invalid object key")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError("invalid object key")
    return key


def check_prefix(prefix: str) -> str:
    if not prefix:
        return ""
    if "\x00" in prefix or "\\" in prefix or prefix.startswith("/"):
        raise ValueError("invalid key prefix")
    if any(part in (".", "..") for part in prefix.split("/")[:-1]) or "//" in prefix:
        raise ValueError("invalid key prefix")
    return prefix


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    metadata = dict(metadata or {})
    for name, value in metadata.items():
        if not _METADATA_KEY_RE.match(name):
            raise ValueError("metadata names are lowercase letters, digits and dashes")
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            raise ValueError("metadata values are printable ASCII strings")
    return metadata


def check_retain_until(retain_until: dt.datetime) -> dt.datetime:
    if retain_until.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware")
    if retain_until <= utcnow():
        raise ValueError("retain_until must be in the future")
    return retain_until.astimezone(UTC)


_TAG_RE = re.compile(r"[^A-Za-z0-9-]")


def temporary_tag(metadata: dict[str, str] | None) -> str:
    """The tag a temporary object carries: its request id (metadata `request-id`), safe as a file name."""
    tag = _TAG_RE.sub("", (metadata or {}).get("request-id", ""))[:64]
    return tag or "untagged"


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
