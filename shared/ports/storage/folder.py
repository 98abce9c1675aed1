"""Objects in a local folder: the embedded default of the storage port (local runs and tests)."""

from __future__ import annotations

import builtins
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from shared.platform.clock import UTC, parse_iso, utcnow
from shared.platform.config import Settings, get_settings
from shared.ports.storage.base import (
    MAX_PRESIGN_SECONDS,
    Body,
    DeleteTarget,
    ObjectInfo,
    ObjectNotFound,
    ObjectRetained,
    ObjectVersion,
    StorageError,
    check_bucket,
    check_expires_in,
    check_key,
    check_metadata,
    check_prefix,
    check_retain_until,
    temporary_tag,
)

# Linux's view of this process's open files, each a link to the real path of what was opened (None elsewhere).
_OPEN_FILES = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else None


def local_signing_key(settings: Settings) -> bytes:
    # A subkey, so a local download link never reveals anything about pseudonyms.
    return hmac.new(settings.effective_pseudonym_key, b"local-object-url", hashlib.sha256).digest()


def _sign(signing_key: bytes, bucket: str, key: str, expires: int) -> str:
    return hmac.new(signing_key, f"{bucket}\n{key}\n{expires}".encode(), hashlib.sha256).hexdigest()


def verify_local_signature(bucket: str, key: str, expires: str | int, signature: str) -> bool:
    """Check a link made by LocalObjectStore.presigned_get_url with the configured key."""
    return _verify(local_signing_key(get_settings()), bucket, key, expires, signature)


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

    concurrent_reads = 1  # a file is read in microseconds: no round trip to overlap

    def __init__(self, root: Path, *, signing_key: bytes, base_url: str):
        self.root = Path(root)
        self._signing_key = signing_key
        self._base_url = base_url.rstrip("/")
        self._real_buckets: dict[Path, str] = {}

    # Paths -------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        return self.root / check_bucket(bucket)

    def _object_path(self, bucket: str, key: str) -> Path:
        bucket_dir = self._bucket_dir(bucket)
        path = bucket_dir / check_key(key)
        self._check_inside(bucket_dir, os.path.realpath(path))
        return path

    def _check_inside(self, bucket_dir: Path, real_path: str) -> None:
        # Belt and braces against symlinks: the real path must stay inside the bucket folder.
        real_bucket = self._real_buckets.get(bucket_dir)
        if real_bucket is None:  # resolved once per bucket folder (a moved folder can only make the check stricter)
            real_bucket = self._real_buckets[bucket_dir] = os.path.realpath(bucket_dir)
        if not real_path.startswith(real_bucket + os.sep):
            raise ValueError("invalid object key")

    def _meta_path(self, bucket: str, key: str) -> Path:
        return self.root / ".meta" / check_bucket(bucket) / (check_key(key) + ".json")

    def _read_meta(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            return json.loads(self._meta_path(bucket, key).read_text())
        except FileNotFoundError:
            return {}

    def _tmp_dir(self) -> Path:
        return self.root / ".tmp"

    def _atomic_write(
        self, target: Path, source: Body | Path, *, mode: int | None = None, tag: str = "untagged"
    ) -> None:
        tmp_dir = self._tmp_dir()
        tmp_dir.mkdir(parents=True, exist_ok=True)
        # `<request id>.<random>`: a crash mid-write leaves a file that names whose upload it was.
        tmp = tmp_dir / f"{tag}.{uuid.uuid4().hex}"
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
                raise StorageError(
                    "object key clashes with an existing object (a key cannot also be a folder)"
                ) from None
            if target.is_dir():
                raise StorageError("object key clashes with an existing folder of keys")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def _retained_until(self, bucket: str, key: str) -> dt.datetime | None:
        value = self._read_meta(bucket, key).get("retain_until")
        if value is None:
            return None
        until = parse_iso(value)
        return until if until > utcnow() else None

    def _write(
        self,
        bucket: str,
        key: str,
        source: Body | Path,
        content_type: str,
        metadata: dict[str, str] | None,
        retain_until: dt.datetime | None = None,
    ) -> None:
        path = self._object_path(bucket, key)
        meta = {"content_type": content_type, "metadata": check_metadata(metadata)}
        if retain_until is not None:
            meta["retain_until"] = retain_until.isoformat()
        if self._retained_until(bucket, key):
            raise ObjectRetained("a retained object cannot be overwritten before its retention date")
        self._atomic_write(path, source, mode=0o444 if retain_until else None, tag=temporary_tag(metadata))
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
        bucket_dir = self._bucket_dir(bucket)
        path = bucket_dir / check_key(key)
        if _OPEN_FILES is None:  # the path is resolved before it is opened
            self._check_inside(bucket_dir, os.path.realpath(path))
        try:
            stream = open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound("no such object") from None
        if _OPEN_FILES is not None:
            # The file actually opened is checked, in one system call where resolving the path takes one per
            # folder (an export opens thousands of documents), and with no window between check and open.
            try:
                self._check_inside(bucket_dir, os.readlink(f"{_OPEN_FILES}/{stream.fileno()}"))
            except BaseException:
                stream.close()
                raise
        return stream

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
            "retain_until": parse_iso(retain_until) if retain_until else None,
        }

    def exists(self, bucket: str, key: str) -> bool:
        return self.head(bucket, key) is not None

    def list(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        bucket_dir = self._bucket_dir(bucket)
        prefix = check_prefix(prefix)
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
        self._write(bucket, key, body, content_type, metadata, retain_until=check_retain_until(retain_until))

    def presigned_get_url(self, bucket: str, key: str, *, expires_in: int) -> str:
        expires_in = check_expires_in(expires_in)
        self._object_path(bucket, key)  # validates bucket and key
        expires = int(time.time()) + expires_in
        signature = _sign(self._signing_key, bucket, key, expires)
        return (
            f"{self._base_url}/_objects/{quote(bucket)}/{quote(key, safe='/')}?expires={expires}&signature={signature}"
        )

    def verify_local_signature(self, bucket: str, key: str, expires: str | int, signature: str) -> bool:
        return _verify(self._signing_key, bucket, key, expires, signature)

    def discard_partial(self, bucket: str, key: str, *, request_id: str) -> int:
        """Remove the temporary files of `request_id`'s uploads (one folder for every bucket)."""
        self._object_path(bucket, key)  # validates bucket and key
        tag = temporary_tag({"request-id": request_id})
        return self._remove_temporaries(lambda path: path.name.split(".", 1)[0] == tag)

    def purge_temporaries(self, bucket: str, *, older_than: dt.datetime) -> int:
        """Remove temporary files last written before `older_than` (one folder for every bucket)."""
        check_bucket(bucket)
        limit = older_than.timestamp()
        return self._remove_temporaries(lambda path: path.stat().st_mtime < limit)

    def _remove_temporaries(self, chosen: Callable[[Path], bool]) -> int:
        removed = 0
        try:
            candidates = list(self._tmp_dir().iterdir())
        except FileNotFoundError:
            return 0
        for path in candidates:
            try:
                if path.is_file() and chosen(path):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # finished or removed meanwhile
                continue
        return removed

    def _lifecycle_path(self, bucket: str) -> Path:
        return self.root / ".lifecycle" / f"{check_bucket(bucket)}.json"

    def get_lifecycle(self, bucket: str) -> builtins.list[dict[str, Any]]:
        try:
            return json.loads(self._lifecycle_path(bucket).read_text())
        except FileNotFoundError:
            return []

    def put_lifecycle(self, bucket: str, rules: builtins.list[dict[str, Any]]) -> None:
        self._atomic_write(self._lifecycle_path(bucket), json.dumps(rules, default=str).encode())
