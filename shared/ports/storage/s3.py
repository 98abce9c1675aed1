"""Scaleway Object Storage (S3 protocol) through boto3: path-style addressing, SSE on every upload."""

from __future__ import annotations

import builtins
import datetime as dt
import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from shared.platform.clock import UTC
from shared.platform.config import Settings
from shared.ports.storage.base import (
    Body,
    DeleteTarget,
    ObjectInfo,
    ObjectNotFound,
    ObjectRetained,
    ObjectVersion,
    StorageError,
    batched,
    check_expires_in,
    check_metadata,
    check_retain_until,
)

DELETE_BATCH_SIZE = 1000  # S3 DeleteObjects limit; moto does not enforce it, so we do.
MULTIPART_CHUNK_BYTES = 16 * 1024 * 1024
MAX_MULTIPART_PARTS = 1000  # Scaleway's limit (AWS allows 10000)
SSE = "AES256"


class S3ObjectStore:
    """Scaleway Object Storage through boto3 (path-style addressing, SSE on every upload)."""

    concurrent_reads = 8  # GETs in flight at once (botocore's pool holds 10 connections)

    def __init__(self, settings: Settings):
        # The SDK is deferred for cold start: only a function that builds this backend loads it.
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
        # Deferred for cold start, like boto3.
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
    def _errors(self) -> Iterator[None]:
        # Deferred for cold start, like boto3.
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (BotoCoreError, ClientError) as exc:
            raise self._translate(exc) from exc

    @staticmethod
    def _extra_args(content_type: str, metadata: dict[str, str] | None) -> dict[str, Any]:
        args: dict[str, Any] = {"ContentType": content_type, "ServerSideEncryption": SSE}
        if metadata:
            args["Metadata"] = check_metadata(metadata)
        return args

    def put(
        self, bucket: str, key: str, body: Body, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        extra = self._extra_args(content_type, metadata)
        if isinstance(body, (bytes, bytearray, memoryview)):
            with self._errors():
                self.client.put_object(Bucket=bucket, Key=key, Body=bytes(body), **extra)
            return
        # Streams of unknown length: the transfer manager switches to multipart when needed.
        with self._aborting(bucket, key), self._errors():
            self.client.upload_fileobj(body, bucket, key, ExtraArgs=extra, Config=self._transfer_config(None))

    def upload_file(
        self, bucket: str, key: str, path: str | Path, *, content_type: str, metadata: dict[str, str] | None = None
    ) -> None:
        size = os.path.getsize(path)
        with self._aborting(bucket, key), self._errors():
            self.client.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs=self._extra_args(content_type, metadata),
                Config=self._transfer_config(size),
            )

    @contextmanager
    def _aborting(self, bucket: str, key: str) -> Iterator[None]:
        """A failed upload leaves no parts behind: its multipart uploads are aborted (the transfer
        manager tries too; this covers a failure between its parts and its own cleanup)."""
        try:
            yield
        except BaseException:
            try:
                self._abort_uploads(bucket, lambda upload: upload["Key"] == key)
            except Exception:  # S3 unreachable: the bucket's AbortIncompleteMultipartUpload rule ends them
                pass
            raise

    def _abort_uploads(self, bucket: str, chosen: Callable[[dict[str, Any]], bool], prefix: str = "") -> int:
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if chosen(upload):
                    self.client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def discard_partial(self, bucket: str, key: str, *, request_id: str) -> int:
        """Abort the incomplete multipart uploads of `key` (parts are not objects: nothing else lists them)."""
        with self._errors():
            return self._abort_uploads(bucket, lambda upload: upload["Key"] == key, prefix=key)

    def purge_temporaries(self, bucket: str, *, older_than: dt.datetime) -> int:
        """Abort multipart uploads started before `older_than` (the lifecycle rule does it too, after a day)."""
        with self._errors():
            return self._abort_uploads(bucket, lambda upload: upload["Initiated"].astimezone(UTC) < older_than)

    @staticmethod
    def _transfer_config(size: int | None) -> Any:
        # Deferred for cold start, like boto3.
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
                        item["Key"],
                        item["VersionId"],
                        item["Size"],
                        item["LastModified"].astimezone(UTC),
                        item["IsLatest"],
                        False,
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
        deleted, failed = 0, 0
        codes: set[str] = set()
        for batch in batched(self._delete_targets(bucket, keys, versions), DELETE_BATCH_SIZE):
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
        retain_until = check_retain_until(retain_until)
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
        expires_in = check_expires_in(expires_in)
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )

    def get_lifecycle(self, bucket: str) -> builtins.list[dict[str, Any]]:
        # Deferred for cold start, like boto3.
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                return []
            raise self._translate(exc) from exc
        except BotoCoreError as exc:
            raise self._translate(exc) from exc

    def put_lifecycle(self, bucket: str, rules: builtins.list[dict[str, Any]]) -> None:
        with self._errors():
            if rules:
                self.client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
            else:
                self.client.delete_bucket_lifecycle(Bucket=bucket)
