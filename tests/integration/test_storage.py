"""Object storage port: the local folder and S3 (over a moto server) keep the same promises."""

from __future__ import annotations

import datetime as dt
import io
import os
import stat
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.ports.backends import get_storage
from shared.ports.storage import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectRetained,
    S3ObjectStore,
    verify_local_signature,
)
from shared.ports.storage import folder as folder_storage
from shared.ports.storage import s3 as s3_storage

# The storage port never touches the database: one database backend is enough here.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

UTC = dt.UTC


@pytest.fixture(params=["local", "s3"])
def backend(request, env):
    """(store, settings) for the folder, then for S3 on moto."""
    settings = request.getfixturevalue("s3_env") if request.param == "s3" else env
    store = get_storage()
    assert isinstance(store, S3ObjectStore if request.param == "s3" else LocalObjectStore)
    return store, settings


@pytest.fixture
def s3(s3_env):
    return get_storage(), s3_env


@pytest.fixture
def local(env):
    return get_storage(), env


def test_put_head_get_list_delete_round_trip(backend):
    store, settings = backend
    bucket = settings.exports_bucket
    before = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(seconds=1)

    store.put(bucket, "exports/a/1.json", b'{"n": 1}', content_type="application/json", metadata={"request-id": "r1"})
    store.put(bucket, "exports/a/2.json", io.BytesIO(b'{"n": 2}'), content_type="application/json")
    store.put(bucket, "exports/b/1.json", b"{}", content_type="application/json")

    head = store.head(bucket, "exports/a/1.json")
    assert head["size"] == 8
    assert head["content_type"] == "application/json"
    assert head["metadata"] == {"request-id": "r1"}
    assert head["last_modified"].tzinfo is not None and head["last_modified"] >= before
    assert store.exists(bucket, "exports/a/2.json")
    assert store.get_bytes(bucket, "exports/a/2.json") == b'{"n": 2}'
    with store.open(bucket, "exports/a/1.json") as stream:
        assert stream.read() == b'{"n": 1}'

    listed = list(store.list(bucket, "exports/a/"))
    assert [item.key for item in listed] == ["exports/a/1.json", "exports/a/2.json"]
    assert [item.size for item in listed] == [8, 8]
    assert all(item.last_modified.utcoffset() == dt.timedelta(0) for item in listed)
    assert [item.key for item in store.list(bucket, "exports/")] == [
        "exports/a/1.json",
        "exports/a/2.json",
        "exports/b/1.json",
    ]

    assert store.delete_many(bucket, ["exports/a/1.json", "exports/a/2.json"]) == 2
    assert store.head(bucket, "exports/a/1.json") is None
    assert not store.exists(bucket, "exports/a/2.json")
    with pytest.raises(ObjectNotFound):
        store.get_bytes(bucket, "exports/a/1.json")
    assert [item.key for item in store.list(bucket, "")] == ["exports/b/1.json"]


def test_upload_file_and_delete_prefix(backend, tmp_path):
    store, settings = backend
    source = tmp_path / "export.zip"
    source.write_bytes(b"PK" + os.urandom(1000))
    store.upload_file(settings.exports_bucket, "exports/s1/export.zip", source, content_type="application/zip")
    store.put(settings.exports_bucket, "exports/s1/manifest.json", b"{}", content_type="application/json")
    store.put(settings.exports_bucket, "exports/s2/manifest.json", b"{}", content_type="application/json")

    assert store.get_bytes(settings.exports_bucket, "exports/s1/export.zip") == source.read_bytes()
    assert store.head(settings.exports_bucket, "exports/s1/export.zip")["content_type"] == "application/zip"
    assert store.delete_prefix(settings.exports_bucket, "exports/s1/") == 2
    assert [i.key for i in store.list(settings.exports_bucket, "exports/")] == ["exports/s2/manifest.json"]


def test_delete_objects_is_batched_by_at_most_1000_keys(s3):
    store, settings = s3
    bucket = settings.documents_bucket
    real = [f"docs/{i:04d}" for i in range(0, 2500, 100)]
    for key in real:
        store.put(bucket, key, b"x", content_type="text/plain")
    batches: list[tuple[int, bool]] = []

    def record(params, **_):
        batches.append((len(params["Delete"]["Objects"]), params["Delete"]["Quiet"]))

    store.client.meta.events.register("before-parameter-build.s3.DeleteObjects", record)
    deleted = store.delete_many(bucket, (f"docs/{i:04d}" for i in range(2500)))

    assert batches == [(1000, True), (1000, True), (500, True)]
    assert deleted == 2500
    assert list(store.list(bucket, "docs/")) == []


def test_uploads_ask_for_server_side_encryption(s3, tmp_path, monkeypatch):
    store, settings = s3
    sent: list[tuple[str, str | None]] = []

    def record(request, event_name, **_):
        value = request.headers.get("x-amz-server-side-encryption")
        sent.append((event_name.rsplit(".", 1)[-1], value.decode() if isinstance(value, bytes) else value))

    store.client.meta.events.register("before-send.s3.PutObject", record)
    store.client.meta.events.register("before-send.s3.CreateMultipartUpload", record)

    store.put(settings.documents_bucket, "small", b"x", content_type="text/plain")
    # A file above the multipart threshold goes through CreateMultipartUpload/UploadPart.
    monkeypatch.setattr(s3_storage, "MULTIPART_CHUNK_BYTES", 5 * 1024 * 1024)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    store.upload_file(settings.documents_bucket, "big", big, content_type="application/octet-stream")

    assert sent == [("PutObject", "AES256"), ("CreateMultipartUpload", "AES256")]
    assert store.head(settings.documents_bucket, "small")["encryption"] == "AES256"
    assert store.head(settings.documents_bucket, "big")["size"] == 6 * 1024 * 1024
    assert store.get_bytes(settings.documents_bucket, "big") == big.read_bytes()


def test_retained_object_cannot_be_deleted_before_its_date(backend):
    store, settings = backend
    bucket = settings.archive_bucket
    # Object Lock dates have a one-second resolution: the next whole second, plus one.
    until = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(seconds=2)
    store.put_retained(bucket, "invoices/2024/1.pdf", b"%PDF", retain_until=until, content_type="application/pdf")

    assert store.head(bucket, "invoices/2024/1.pdf")["retain_until"] == until
    with pytest.raises(ObjectRetained):
        store.delete_many(bucket, ["invoices/2024/1.pdf"], versions=True)
    with pytest.raises(ObjectRetained):
        store.delete_prefix(bucket, "invoices/", versions=True)
    assert store.get_bytes(bucket, "invoices/2024/1.pdf") == b"%PDF"

    time.sleep(max(0.0, (until - dt.datetime.now(UTC)).total_seconds()) + 0.05)
    assert store.delete_many(bucket, ["invoices/2024/1.pdf"], versions=True) >= 1
    assert not store.exists(bucket, "invoices/2024/1.pdf")
    assert list(store.list_versions(bucket, "invoices/")) == []


def test_local_archive_file_is_read_only_and_cannot_be_overwritten(local):
    store, settings = local
    until = dt.datetime.now(UTC) + dt.timedelta(days=3650)
    store.put_retained(
        settings.archive_bucket, "invoices/1.pdf", b"%PDF", retain_until=until, content_type="application/pdf"
    )

    path = settings.data_dir / "objects" / settings.archive_bucket / "invoices" / "1.pdf"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    with pytest.raises(ObjectRetained):
        store.put(settings.archive_bucket, "invoices/1.pdf", b"changed", content_type="application/pdf")
    with pytest.raises(ObjectRetained):
        store.delete_many(settings.archive_bucket, ["invoices/1.pdf"])
    assert path.read_bytes() == b"%PDF"


def test_retention_date_must_be_aware_and_future(backend):
    store, settings = backend
    with pytest.raises(ValueError):
        store.put_retained(
            settings.archive_bucket, "k", b"x", retain_until=dt.datetime(2100, 1, 1), content_type="text/plain"
        )
    with pytest.raises(ValueError):
        store.put_retained(
            settings.archive_bucket,
            "k",
            b"x",
            retain_until=dt.datetime(2000, 1, 1, tzinfo=UTC),
            content_type="text/plain",
        )
    assert not store.exists(settings.archive_bucket, "k")


def test_versions_of_a_versioned_bucket_are_all_deleted_on_request(s3):
    store, settings = s3
    bucket = settings.logs_bucket
    store.put(bucket, "logs/day1", b"v1", content_type="text/plain")
    store.put(bucket, "logs/day1", b"v2", content_type="text/plain")

    versions = list(store.list_versions(bucket, "logs/"))
    assert len(versions) == 2 and sum(v.is_latest for v in versions) == 1

    store.delete_many(bucket, ["logs/day1"])  # a plain delete leaves the history behind
    assert any(v.is_delete_marker for v in store.list_versions(bucket, "logs/"))
    assert len([v for v in store.list_versions(bucket, "logs/") if not v.is_delete_marker]) == 2

    assert store.delete_many(bucket, ["logs/day1"], versions=True) == 3
    assert list(store.list_versions(bucket, "logs/")) == []


def test_local_lists_current_objects_as_single_versions(local):
    store, settings = local
    store.put(settings.logs_bucket, "logs/day1", b"v1", content_type="text/plain")
    store.put(settings.logs_bucket, "logs/day1", b"v2", content_type="text/plain")
    [version] = store.list_versions(settings.logs_bucket, "logs/")
    assert (version.key, version.size, version.is_latest, version.is_delete_marker) == ("logs/day1", 2, True, False)


def test_presigned_url_longer_than_24_hours_is_refused(backend):
    store, settings = backend
    store.put(settings.exports_bucket, "exports/x.zip", b"zip", content_type="application/zip")
    for expires_in in (86_401, 7 * 86_400, 0, -1):
        with pytest.raises(ValueError):
            store.presigned_get_url(settings.exports_bucket, "exports/x.zip", expires_in=expires_in)
    url = store.presigned_get_url(settings.exports_bucket, "exports/x.zip", expires_in=86_400)
    assert url.startswith("http")


def test_s3_presigned_url_downloads_the_object(s3):
    store, settings = s3
    store.put(settings.exports_bucket, "exports/x.zip", b"zip-bytes", content_type="application/zip")
    url = store.presigned_get_url(settings.exports_bucket, "exports/x.zip", expires_in=900)
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["900"]
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"zip-bytes"


def test_local_signed_url_verification(local, monkeypatch):
    store, settings = local
    store.put(settings.exports_bucket, "exports/s 1/x.zip", b"zip", content_type="application/zip")
    url = store.presigned_get_url(settings.exports_bucket, "exports/s 1/x.zip", expires_in=600)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == settings.local_base_url
    assert parts.path == f"/_objects/{settings.exports_bucket}/exports/s%201/x.zip"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    expires, signature = query["expires"], query["signature"]
    assert 0 < int(expires) - time.time() <= 600

    assert store.verify_local_signature(settings.exports_bucket, "exports/s 1/x.zip", expires, signature)
    assert verify_local_signature(settings.exports_bucket, "exports/s 1/x.zip", expires, signature)
    # Tampered: another key, another bucket, another expiry, another signature, garbage.
    assert not store.verify_local_signature(settings.exports_bucket, "exports/s 2/x.zip", expires, signature)
    assert not store.verify_local_signature(settings.documents_bucket, "exports/s 1/x.zip", expires, signature)
    assert not store.verify_local_signature(
        settings.exports_bucket, "exports/s 1/x.zip", str(int(expires) + 1), signature
    )
    assert not store.verify_local_signature(settings.exports_bucket, "exports/s 1/x.zip", expires, "0" * 64)
    assert not store.verify_local_signature(settings.exports_bucket, "exports/s 1/x.zip", "soon", signature)
    assert not store.verify_local_signature(settings.exports_bucket, "exports/s 1/x.zip", expires, "é")

    real_time = time.time
    monkeypatch.setattr(folder_storage.time, "time", lambda: real_time() + 601)
    assert not store.verify_local_signature(settings.exports_bucket, "exports/s 1/x.zip", expires, signature)


@pytest.mark.parametrize("key", ["../escape", "a/../../escape", "/etc/passwd", "a//b", "a/./b", "dir/", "a\\b", ""])
def test_local_keys_cannot_escape_the_bucket_folder(local, key):
    store, settings = local
    with pytest.raises(ValueError):
        store.put(settings.exports_bucket, key, b"x", content_type="text/plain")
    written = [p for p in (settings.data_dir / "objects").rglob("*") if p.is_file()]
    assert written == []


@pytest.mark.parametrize("link", ["file", "folder"])
def test_local_symlinks_cannot_lead_out_of_the_bucket_folder(local, tmp_path, link):
    store, settings = local
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.pdf").write_bytes(b"CANARY-OUTSIDE-THE-BUCKET")
    store.put(settings.exports_bucket, "exports/inside.txt", b"inside", content_type="text/plain")
    folder = settings.data_dir / "objects" / settings.exports_bucket / "exports"
    if link == "file":
        (folder / "secret.pdf").symlink_to(outside / "secret.pdf")
    else:
        (folder / "linked").symlink_to(outside, target_is_directory=True)
    key = "exports/secret.pdf" if link == "file" else "exports/linked/secret.pdf"
    with pytest.raises(ValueError):
        store.get_bytes(settings.exports_bucket, key)
    with pytest.raises(ValueError):
        store.head(settings.exports_bucket, key)
    with pytest.raises(ValueError):
        store.put(settings.exports_bucket, key, b"overwritten", content_type="text/plain")
    assert (outside / "secret.pdf").read_bytes() == b"CANARY-OUTSIDE-THE-BUCKET"
    assert store.get_bytes(settings.exports_bucket, "exports/inside.txt") == b"inside"


def test_local_writes_leave_no_temporary_files(local):
    store, settings = local
    for i in range(3):
        store.put(settings.exports_bucket, "exports/x", b"%d" % i, content_type="text/plain")
    assert [i.key for i in store.list(settings.exports_bucket)] == ["exports/x"]
    assert list((settings.data_dir / "objects" / ".tmp").iterdir()) == []


def test_lifecycle_rules_round_trip(backend):
    store, settings = backend
    assert store.get_lifecycle(settings.logs_bucket) == []
    rules = [
        {
            "ID": "logs-1y",
            "Filter": {"Prefix": "logs/"},
            "Status": "Enabled",
            "Expiration": {"Days": 365},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
        }
    ]
    store.put_lifecycle(settings.logs_bucket, rules)
    [rule] = store.get_lifecycle(settings.logs_bucket)
    assert rule["ID"] == "logs-1y"
    assert rule["Expiration"] == {"Days": 365}
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
