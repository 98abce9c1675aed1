"""Nothing left behind (issue 14, section 3): partial uploads, erased rows in the database files, lost exports.

What must hold:
- a partial archive a crash left under the folder's `.tmp/` (named after its request id) is removed
  when the export resumes, and by the retention schedule a day on; on S3, an incomplete multipart
  upload of the archive is aborted on resume, on a failed upload and by the schedule;
- after an erasure batch on SQLite, neither the database file nor its WAL holds the erased e-mail
  address or phone number; on PostgreSQL the touched tables were vacuumed;
- an export whose message went to the dead-letter queue is queued again by the worker's CRON sweep.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa

from shared.identity.client import issue_dev_token
from shared.local.demo import create_account, populate_account
from shared.local.server import consumer_for, cron_event, http_event, invoke, load_manifest
from shared.platform.config import get_settings
from shared.ports import db
from shared.ports.backends import get_queue, get_storage
from shared.ports.db import get_engine, utcnow
from shared.ports.tables import dsr_requests
from shared.retention import enforcement
from shared.rights import erasure, export

MANIFEST = load_manifest()
CANARY_ZIP = b"PK\x03\x04 canaryPartialZip5 half an archive of personal data"
CANARY = "canaryLeftover3"
PHONE = "+33 6 12 34 56 78"


def start_export(account: dict) -> str:
    event = http_event(
        "POST",
        "/",
        headers={
            "Authorization": f"Bearer {issue_dev_token(account['id'])}",
            "X-Verification-Code": pyotp.TOTP(account["totp_secret"]).now(),
        },
    )
    response = invoke(MANIFEST.functions["export-on-request"], event)
    assert response["statusCode"] == 202, response["body"]
    return json.loads(response["body"])["request_id"]


def drain() -> int:
    return get_queue(export.QUEUE_NAME).deliver_pending(consumer_for(export.QUEUE_NAME, MANIFEST))


def state_of(request_id: str) -> str:
    with get_engine().connect() as conn:
        return conn.execute(sa.select(dsr_requests.c.state).where(dsr_requests.c.id == request_id)).scalar()


def tmp_dir() -> Path:
    return get_settings().data_dir / "objects" / ".tmp"


def leave_partial(request_id: str, *, age: dt.timedelta = dt.timedelta()) -> Path:
    """What a process killed mid-upload leaves: a temporary file named after its request."""
    folder = tmp_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{request_id}.0123abcd"
    path.write_bytes(CANARY_ZIP)
    stamp = (utcnow() - age).timestamp()
    os.utime(path, (stamp, stamp))
    return path


# --- Partial archives ---------------------------------------------------------------------------


def test_folder_temporaries_are_named_after_the_request(env, monkeypatch):
    """A write cut short names its request: os.replace fails as a crash between write and rename would."""
    storage = get_storage()
    seen: list[str] = []

    def crash(source, _target):
        seen.append(Path(source).name)
        raise KeyboardInterrupt  # the process dies: no finally of ours can be relied upon

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        storage.put(
            get_settings().exports_bucket,
            "exports/x/a.zip",
            CANARY_ZIP,
            content_type="application/zip",
            metadata={"request-id": "0b7e6a52-1c1f-4bb8-9a59-5d2f3c9b8a11"},
        )
    assert seen and seen[0].startswith("0b7e6a52-1c1f-4bb8-9a59-5d2f3c9b8a11.")


def test_partial_archive_removed_when_the_export_resumes(env):
    engine = get_engine()
    account = create_account(engine, with_2fa=True, canary=CANARY)
    populate_account(engine, get_storage(), account["id"], invoices=1, log_lines=2)
    request_id = start_export(account)
    partial = leave_partial(request_id)
    other = leave_partial("7d1c0c43-51c5-4e3e-9a3f-0f1b9a2c6d77")  # another request's upload, in flight
    drain()
    assert state_of(request_id) == "completed"
    assert not partial.exists(), "the partial archive of the interrupted run is still there"
    assert other.exists()
    assert not any(CANARY_ZIP in p.read_bytes() for p in tmp_dir().iterdir() if p != other)


def test_retention_removes_temporaries_older_than_a_day(env):
    old = leave_partial("5f0e2d1a-0000-4000-8000-000000000001", age=dt.timedelta(hours=25))
    fresh = leave_partial("5f0e2d1a-0000-4000-8000-000000000002", age=dt.timedelta(hours=2))
    result = enforcement.enforce(get_engine())
    assert result["categories"]["exports"]["temporaries"] == 1
    assert not old.exists() and fresh.exists()


def _uploads(storage, bucket: str) -> list[dict]:
    return storage.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_s3_incomplete_uploads_are_aborted(s3_env):
    storage, bucket = get_storage(), s3_env.exports_bucket
    key = "exports/acc/0123.zip"
    storage.client.create_multipart_upload(Bucket=bucket, Key=key)
    storage.client.create_multipart_upload(Bucket=bucket, Key="exports/acc/other.zip")
    assert storage.discard_partial(bucket, key, request_id="r1") == 1
    assert [u["Key"] for u in _uploads(storage, bucket)] == ["exports/acc/other.zip"]
    # (moto dates every upload in 2010: the day's margin is the folder test's and the schedule's.)
    assert storage.purge_temporaries(bucket, older_than=utcnow() + dt.timedelta(minutes=1)) == 1
    assert _uploads(storage, bucket) == []


def test_s3_failed_stream_upload_leaves_no_parts(s3_env):
    storage, bucket = get_storage(), s3_env.exports_bucket

    class Dying:
        """17 MiB then a crash: the transfer manager had started a multipart upload."""

        def __init__(self):
            self.sent = 0

        def read(self, size=-1):
            if self.sent >= 17 * 1024 * 1024:
                raise RuntimeError("the archive builder died")
            chunk = b"x" * (size if size and size > 0 else 1024 * 1024)
            self.sent += len(chunk)
            return chunk

    with pytest.raises(Exception):  # noqa: B017 - whatever the backend makes of the builder dying
        storage.put(bucket, "exports/acc/dying.zip", Dying(), content_type="application/zip")
    assert _uploads(storage, bucket) == []


def test_terraform_aborts_incomplete_uploads_of_exports():
    main = (Path(__file__).resolve().parents[2] / "infra" / "terraform" / "main.tf").read_text()
    exports = main.split('resource "scaleway_object_bucket" "exports"', 1)[1].split("\nresource ", 1)[0]
    assert "abort_incomplete_multipart_upload_days = 1" in exports


# --- Erased values in the database files ---------------------------------------------------------------


def _erase(engine, account_id: str) -> None:
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account_id, channel="client_area", actor="client")
    assert erasure.run_erasure(engine, record.id, now=utcnow() + dt.timedelta(days=60)) == "completed"


def test_no_erased_identifier_in_the_sqlite_file_or_wal(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("the SQLite file and its WAL")
    email = f"jeanne.{CANARY.lower()}@example.com"
    account = create_account(engine, email=email, phone=PHONE)
    _erase(engine, account["id"])
    path = Path(engine.url.database)
    for file in (path, path.with_name(path.name + "-wal")):
        if file.exists():
            data = file.read_bytes()
            assert email.encode() not in data, f"the erased e-mail address is still in {file.name}"
            assert PHONE.encode() not in data, f"the erased phone number is still in {file.name}"
    with engine.connect() as conn:  # secure_delete is on for every connection
        assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1


def test_postgres_tables_are_vacuumed_after_an_erasure_batch(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("VACUUM is PostgreSQL's")
    account = create_account(engine, canary=CANARY)
    _erase(engine, account["id"])
    with engine.connect() as conn:
        vacuumed = conn.exec_driver_sql(
            "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'accounts'"
        ).scalar()
    assert vacuumed is not None


def test_purge_deleted_never_fails_an_erasure(engine):
    assert db.purge_deleted(engine, ["accounts"]) is True
    assert db.purge_deleted(engine, ["no_such_table_canary"]) is (engine.dialect.name == "sqlite")


# --- Dead-lettered exports ---------------------------------------------------------------------------


def test_a_dead_lettered_export_is_queued_again_by_the_sweep(env):
    engine = get_engine()
    account = create_account(engine, with_2fa=True, canary=CANARY)
    request_id = start_export(account)
    queue = get_queue(export.QUEUE_NAME)

    def failing(_event):
        return {"statusCode": 500, "headers": {}, "body": "{}"}

    queue.deliver_pending(failing)
    assert queue.dead_letter_count() == 1 and queue.pending_count() == 0
    worker = MANIFEST.functions["export-on-request-worker"]
    sweep = next(s for s in worker.schedules if s.input == {"job": "export-sweep"})

    # Too recent: its worker may still be running.
    assert json.loads(invoke(worker, cron_event(sweep))["body"])["queued"] == 0
    with engine.begin() as conn:
        conn.execute(
            sa.update(dsr_requests)
            .where(dsr_requests.c.id == request_id)
            .values(state_changed_at=utcnow() - export.STALLED_AFTER - dt.timedelta(minutes=1))
        )
    response = invoke(worker, cron_event(sweep))
    assert response["statusCode"] == 200 and json.loads(response["body"])["queued"] == 1
    drain()
    assert state_of(request_id) == "completed"
    assert json.loads(invoke(worker, cron_event(sweep))["body"])["queued"] == 0


def test_the_sweep_sample_event_runs(env):
    event = json.loads(
        (Path(__file__).resolve().parents[2] / "events" / "export-on-request-worker" / "sweep-cron.json").read_text()
    )
    response = invoke(MANIFEST.functions["export-on-request-worker"], event)
    assert response["statusCode"] == 200 and json.loads(response["body"]) == {"queued": 0}
