"""Object storage port: Scaleway Object Storage (S3 protocol) or a local folder.

Both backends share one interface (`ObjectStore`) and the same guarantees:
uploads are encrypted at rest (S3 SSE) or written atomically (folder); deletes go
by batches of at most 1000 keys; retained objects (Object Lock COMPLIANCE, or a
read-only archive file locally) cannot be deleted before their date; download
links never live longer than 24 hours.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, Union
from urllib.parse import quote

from shared.platform.errors import ExternalServiceError
from shared.platform.config import Settings, get_settings

UTC = dt.timezone.utc
MAX_PRESIGN_SECONDS = 24 * 3600
DELETE_BATCH_SIZE = 1000  # S3 DeleteObjects limit; moto does not enforce it, so we do.
MULTIPART_CHUNK_BYTES = 16 * 1024 * 1024
MAX_MULTIPART_PARTS = 1000  # Scaleway's limit (AWS allows 10000)
SSE = "AES256"

Body = Union[bytes, IO[bytes]]
# A key, or a (key, version_id) pair as yielded by list_versions.
DeleteTarget = Union[str, tuple[str, str]]

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

    def get_lifecycle(self, bucket: str) -> list[dict[str, Any]]: ...

    def put_lifecycle(self, bucket: str, rules: list[dict[str, Any]]) -> None: ...


def build_object_store(settings: Settings) -> ObjectStore:
    if settings.s3_endpoint_url:
        return S3ObjectStore(settings)
    return LocalObjectStore(
        settings.data_dir / "objects",
        signing_key=_local_signing_key(settings),
        base_url=settings.local_base_url,
    )


# --- Checks shared by both backends ---------------------------------------------------


def _check_expires_in(expires_in: int) -> int:
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < 1:
        raise ValueError("expires_in must be a positive number of seconds")
    if expires_in > MAX_PRESIGN_SECONDS:
        raise ValueError(f"a download link may live at most {MAX_PRESIGN_SECONDS} seconds (24 h)")
    return expires_in


def _check_bucket(bucket: str) -> str:
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError("invalid bucket name")
    return bucket


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key.encode()) > 1024:
        raise ValueError("an object key is a non-empty string of at most 1024 bytes")
    if "\x00" in key or "\\" in key or key.startswith("/") or key.endswith("/"):
        raise ValueError("invalid object key")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError("invalid object key")
    return key


def _check_prefix(prefix: str) -> str:
    if not prefix:
        return ""
    if "\x00" in prefix or "\\" in prefix or prefix.startswith("/"):
        raise ValueError("invalid key prefix")
    if any(part in (".", "..") for part in prefix.split("/")[:-1]) or "//" in prefix:
        raise ValueError("invalid key prefix")
    return prefix


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    metadata = dict(metadata or {})
    for name, value in metadata.items():
        if not _METADATA_KEY_RE.match(name):
            raise ValueError("metadata names are lowercase letters, digits and dashes")
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            raise ValueError("metadata values are printable ASCII strings")
    return metadata


def _check_retain_until(retain_until: dt.datetime) -> dt.datetime:
    if retain_until.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware")
    if retain_until <= dt.datetime.now(UTC):
        raise ValueError("retain_until must be in the future")
    return retain_until.astimezone(UTC)


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- S3 -------------------------------------------------------------------------------


class S3ObjectStore:
    """Scaleway Object Storage through boto3 (path-style addressing, SSE on every upload)."""

    def __init__(self, settings: Settings):
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key,
            aws_secret_access_key=settings.s3_secret_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    @staticmethod
    def _translate(exc: Exception) -> Exception:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return StorageError(f"S3 unreachable ({type(exc).__name__})", retryable=True)
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "NotFound") or (status == 404 and code != "NoSuchBucket"):
            return ObjectNotFound("no such object")
        retryable = bool(status and (status >= 500 or status == 429)) or code in ("SlowDown", "Throttling")
        return StorageError(f"S3 refused the request ({code or status})", retryable=retryable, status=status)

    @contextmanager
    def _errors(self):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc) from exc

    @staticmethod
    def _extra_args(content_type: str, metadata: dict[str, str] | None) -> dict[str, Any]:
        args: dict[str, Any] = {"ContentType": content_type, "ServerSideEncryption": SSE}
        if metadata:
            args["Metadata"] = _check_metadata(metadata)
        return args

    def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        extra = self._extra_args(content_type, metadata)
        with self._errors():
            if isinstance(body, (bytes, bytearray, memoryview)):
                self.client.put_object(Bucket=bucket, Key=key, Body=bytes(body), **extra)
            else:
                # Streams of unknown length: the transfer manager switches to multipart when needed.
                self.client.upload_fileobj(body, bucket, key, ExtraArgs=extra, Config=self._transfer_config(None))

    def upload_file(
        self, bucket: str, key: str, path: str | Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        size = os.path.getsize(path)
        with self._errors():
            self.client.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs=self._extra_args(content_type, metadata),
                Config=self._transfer_config(size),
            )

    @staticmethod
    def _transfer_config(size: int | None):
        from boto3.s3.transfer import TransferConfig

        chunk = MULTIPART_CHUNK_BYTES
        if size:
            chunk = max(chunk, math.ceil(size / MAX_MULTIPART_PARTS))
        # A stream's parts are buffered in memory: two in flight keep a 256 MB function far from its limit.
        concurrency = 10 if size else 2
        return TransferConfig(
            multipart_threshold=MULTIPART_CHUNK_BYTES, multipart_chunksize=chunk, max_concurrency=concurrency
        )

    def open(self, bucket: str, key: str) -> IO[bytes]:
        with self._errors():
            return self.client.get_object(Bucket=bucket, Key=key)["Body"]

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self._errors():
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            with self._errors():
                response = self.client.head_object(Bucket=bucket, Key=key)
        except ObjectNotFound:
            return None
        retain_until = response.get("ObjectLockRetainUntilDate")
        return {
            "size": response["ContentLength"],
            "content_type": response.get("ContentType"),
            "last_modified": response["LastModified"].astimezone(UTC),
            "metadata": response.get("Metadata", {}),
            "version_id": response.get("VersionId"),
            "encryption": response.get("ServerSideEncryption"),
            "retain_until": retain_until.astimezone(UTC) if retain_until else None,
        }

    def exists(self, bucket: str, key: str) -> bool:
        return self.head(bucket, key) is not None

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors():
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"], item["Size"], item["LastModified"].astimezone(UTC))

    def list_versions(self, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]:
        paginator = self.client.get_paginator("list_object_versions")
        with self._errors():
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Versions", []):
                    yield ObjectVersion(
                        item["Key"], item["VersionId"], item["Size"],
                        item["LastModified"].astimezone(UTC), item["IsLatest"], False,
                    )
                for item in page.get("DeleteMarkers", []):
                    yield ObjectVersion(
                        item["Key"], item["VersionId"], 0, item["LastModified"].astimezone(UTC), item["IsLatest"], True
                    )

    def _delete_targets(self, bucket: str, keys: Iterable[DeleteTarget], versions: bool) -> Iterator[dict[str, str]]:
        for item in keys:
            if isinstance(item, tuple):
                yield {"Key": item[0], "VersionId": item[1]}
            elif versions:
                for version in self.list_versions(bucket, item):
                    if version.key == item:
                        yield {"Key": version.key, "VersionId": version.version_id}
            else:
                yield {"Key": item}

    def delete_many(self, bucket: str, keys: Iterable[DeleteTarget], *, versions: bool = False) -> int:
        """Delete keys (every version of each with versions=True, or the given (key, version) pairs).

        Returns how many objects/versions S3 accepted for deletion (absent ones count, as S3
        reports them). Raises ObjectRetained when Object Lock refused some, StorageError for
        any other per-key error; the rest of the batch is deleted either way.
        """
        deleted, failed, codes = 0, 0, set()
        for batch in _batched(self._delete_targets(bucket, keys, versions), DELETE_BATCH_SIZE):
            with self._errors():
                response = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = response.get("Errors", [])
            deleted += len(batch) - len(errors)
            failed += len(errors)
            codes.update(e.get("Code", "") for e in errors)
        if failed:
            error_class = ObjectRetained if codes == {"AccessDenied"} else StorageError
            raise error_class(f"{failed} objects could not be deleted ({', '.join(sorted(codes))})")
        return deleted

    def delete_prefix(self, bucket: str, prefix: str, *, versions: bool = False) -> int:
        if versions:
            targets: Iterator[DeleteTarget] = ((v.key, v.version_id) for v in self.list_versions(bucket, prefix))
        else:
            targets = (info.key for info in self.list(bucket, prefix))
        return self.delete_many(bucket, targets)

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
        retain_until = _check_retain_until(retain_until)
        with self._errors():
            self.client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=retain_until,
                **self._extra_args(content_type, metadata),
            )

    def presigned_get_url(self, bucket: str, key: str, *, expires_in: int) -> str:
        expires_in = _check_expires_in(expires_in)
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )

    def get_lifecycle(self, bucket: str) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                return []
            raise self._translate(exc) from exc
        except BotoCoreError as exc:
            raise self._translate(exc) from exc

    def put_lifecycle(self, bucket: str, rules: list[dict[str, Any]]) -> None:
        with self._errors():
            if rules:
                self.client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
            else:
                self.client.delete_bucket_lifecycle(Bucket=bucket)


# --- Local folder ---------------------------------------------------------------------


def _local_signing_key(settings: Settings) -> bytes:
    # A subkey, so a local download link never reveals anything about pseudonyms.
    return hmac.new(settings.effective_pseudonym_key, b"local-object-url", hashlib.sha256).digest()


def _sign(signing_key: bytes, bucket: str, key: str, expires: int) -> str:
    return hmac.new(signing_key, f"{bucket}\n{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def verify_local_signature(bucket: str, key: str, expires: str | int, signature: str) -> bool:
    """Check a link made by LocalObjectStore.presigned_get_url with the configured key."""
    return _verify(_local_signing_key(get_settings()), bucket, key, expires, signature)


def _verify(signing_key: bytes, bucket: str, key: str, expires: str | int, signature: str) -> bool:
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return False
    now = int(time.time())
    if expires_at < now or expires_at > now + MAX_PRESIGN_SECONDS:
        return False
    expected = _sign(signing_key, bucket, key, expires_at)
    return hmac.compare_digest(expected.encode(), str(signature).encode())


class LocalObjectStore:
    """Objects as files under `<root>/<bucket>/<key>`; metadata in `<root>/.meta/<bucket>/<key>.json`."""

    def __init__(self, root: Path, *, signing_key: bytes, base_url: str):
        self.root = Path(root)
        self._signing_key = signing_key
        self._base_url = base_url.rstrip("/")

    # Paths -------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        return self.root / _check_bucket(bucket)

    def _object_path(self, bucket: str, key: str) -> Path:
        bucket_dir = self._bucket_dir(bucket)
        path = bucket_dir / _check_key(key)
        # Belt and braces against symlinks: the real path must stay inside the bucket folder.
        real_bucket = os.path.realpath(bucket_dir)
        if not os.path.realpath(path).startswith(real_bucket + os.sep):
            raise ValueError("invalid object key")
        return path

    def _meta_path(self, bucket: str, key: str) -> Path:
        return self.root / ".meta" / _check_bucket(bucket) / (_check_key(key) + ".json")

    def _read_meta(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            return json.loads(self._meta_path(bucket, key).read_text())
        except FileNotFoundError:
            return {}

    def _atomic_write(self, target: Path, source: Body | Path, *, mode: int | None = None) -> None:
        tmp_dir = self.root / ".tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / uuid.uuid4().hex
        try:
            if isinstance(source, Path):
                shutil.copyfile(source, tmp)
            else:
                with open(tmp, "wb") as out:
                    if isinstance(source, (bytes, bytearray, memoryview)):
                        out.write(source)
                    else:
                        shutil.copyfileobj(source, out, 1024 * 1024)
                    out.flush()
                    os.fsync(out.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise StorageError("object key clashes with an existing object (a key cannot also be a folder)")
            if target.is_dir():
                raise StorageError("object key clashes with an existing folder of keys")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _retained_until(self, bucket: str, key: str) -> dt.datetime | None:
        value = self._read_meta(bucket, key).get("retain_until")
        if value is None:
            return None
        until = dt.datetime.fromisoformat(value)
        return until if until > dt.datetime.now(UTC) else None

    def _write(
        self, bucket: str, key: str, source: Body | Path, content_type: str, metadata: dict[str, str] | None,
        retain_until: dt.datetime | None = None,
    ) -> None:
        path = self._object_path(bucket, key)
        meta = {"content_type": content_type, "metadata": _check_metadata(metadata)}
        if retain_until is not None:
            meta["retain_until"] = retain_until.isoformat()
        if self._retained_until(bucket, key):
            raise ObjectRetained("a retained object cannot be overwritten before its retention date")
        self._atomic_write(path, source, mode=0o444 if retain_until else None)
        self._atomic_write(self._meta_path(bucket, key), json.dumps(meta).encode())

    # Interface ---------------------------------------------------------------------

    def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        self._write(bucket, key, body, content_type, metadata)

    def upload_file(
        self, bucket: str, key: str, path: str | Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        self._write(bucket, key, Path(path), content_type, metadata)

    def open(self, bucket: str, key: str) -> IO[bytes]:
        try:
            return open(self._object_path(bucket, key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound("no such object") from None

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with self.open(bucket, key) as stream:
            return stream.read()

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        path = self._object_path(bucket, key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        meta = self._read_meta(bucket, key)
        retain_until = meta.get("retain_until")
        return {
            "size": stat.st_size,
            "content_type": meta.get("content_type", "application/octet-stream"),
            "last_modified": dt.datetime.fromtimestamp(stat.st_mtime, UTC),
            "metadata": meta.get("metadata", {}),
            "version_id": "null",
            "encryption": None,
            "retain_until": dt.datetime.fromisoformat(retain_until) if retain_until else None,
        }

    def exists(self, bucket: str, key: str) -> bool:
        return self.head(bucket, key) is not None

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        bucket_dir = self._bucket_dir(bucket)
        prefix = _check_prefix(prefix)
        start = bucket_dir / prefix.rsplit("/", 1)[0] if "/" in prefix else bucket_dir
        if not start.is_dir():
            return
        keys = []
        for dirpath, _dirnames, filenames in os.walk(start):
            for name in filenames:
                key = os.path.relpath(os.path.join(dirpath, name), bucket_dir).replace(os.sep, "/")
                if key.startswith(prefix):
                    keys.append(key)
        for key in sorted(keys):  # S3 lists in key order
            try:
                stat = (bucket_dir / key).stat()
            except FileNotFoundError:  # deleted meanwhile
                continue
            yield ObjectInfo(key, stat.st_size, dt.datetime.fromtimestamp(stat.st_mtime, UTC))

    def list_versions(self, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]:
        # A folder keeps no history: each current object is its own single version.
        for info in self.list(bucket, prefix):
            yield ObjectVersion(info.key, "null", info.size, info.last_modified, True, False)

    def delete_many(self, bucket: str, keys: Iterable[DeleteTarget], *, versions: bool = False) -> int:
        """Delete keys (a folder has no versions: `versions` changes nothing); returns how many.

        Absent keys count as deleted (like S3). Retained objects are kept and reported by
        ObjectRetained once the others are gone.
        """
        deleted = retained = 0
        for item in keys:
            key = item[0] if isinstance(item, tuple) else item
            path = self._object_path(bucket, key)
            if self._retained_until(bucket, key):
                retained += 1
                continue
            meta = self._meta_path(bucket, key)
            path.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            self._prune(path.parent, self._bucket_dir(bucket))
            self._prune(meta.parent, self.root / ".meta" / bucket)
            deleted += 1
        if retained:
            raise ObjectRetained(f"{retained} retained objects cannot be deleted before their retention date")
        return deleted

    def delete_prefix(self, bucket: str, prefix: str, *, versions: bool = False) -> int:
        return self.delete_many(bucket, [info.key for info in self.list(bucket, prefix)])

    @staticmethod
    def _prune(folder: Path, stop: Path) -> None:
        """Remove folders left empty, up to the bucket folder."""
        while folder != stop and stop in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

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
        self._write(bucket, key, body, content_type, metadata, retain_until=_check_retain_until(retain_until))

    def presigned_get_url(self, bucket: str, key: str, *, expires_in: int) -> str:
        expires_in = _check_expires_in(expires_in)
        self._object_path(bucket, key)  # validates bucket and key
        expires = int(time.time()) + expires_in
        signature = _sign(self._signing_key, bucket, key, expires)
        return f"{self._base_url}/_objects/{quote(bucket)}/{quote(key, safe='/')}?expires={expires}&signature={signature}"

    def verify_local_signature(self, bucket: str, key: str, expires: str | int, signature: str) -> bool:
        return _verify(self._signing_key, bucket, key, expires, signature)

    def _lifecycle_path(self, bucket: str) -> Path:
        return self.root / ".lifecycle" / f"{_check_bucket(bucket)}.json"

    def get_lifecycle(self, bucket: str) -> list[dict[str, Any]]:
        try:
            return json.loads(self._lifecycle_path(bucket).read_text())
        except FileNotFoundError:
            return []

    def put_lifecycle(self, bucket: str, rules: list[dict[str, Any]]) -> None:
        self._atomic_write(self._lifecycle_path(bucket), json.dumps(rules, default=str).encode())
