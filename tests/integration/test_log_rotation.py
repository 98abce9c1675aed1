"""log-rotation end to end: monthly partitions dropped on PostgreSQL, ranged deletes on SQLite,
expired log objects deleted on S3 (moto server, versioned bucket), lifecycle drift reported."""

from __future__ import annotations

import datetime as dt
import json
import math

import pytest
import sqlalchemy as sa

from shared.local.demo import create_account
from shared.local.server import cron_event, http_event, invoke, load_manifest
from shared.platform.clock import add_months
from shared.policy.rules import last_expired_day, start_of_day
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.ports.db import utcnow
from shared.records.audit import verify_chain
from shared.retention import log_rotation
from tests.fakes.moto import MOTO_ACCOUNT_ID, raw_client

pytestmark = pytest.mark.usefixtures("env")

CANARY_IP = "203.0.113.77"


@pytest.fixture
def manifest():
    return load_manifest()


def rotate_through_the_function(manifest) -> dict:
    spec = manifest.functions["log-rotation"]
    response = invoke(spec, cron_event(spec.schedules[0]))
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def bound(today: dt.date) -> dt.datetime:
    return start_of_day(last_expired_day(12, 0, today) + dt.timedelta(days=1))


def insert_logs(engine, moments: list[dt.datetime], account_id: str | None = None) -> None:
    rows = [
        {
            "account_id": account_id,
            "occurred_at": m,
            "event": "login_succeeded",
            "ip_address": CANARY_IP,
            "user_agent": "UA",
        }
        for m in moments
    ]
    access = [
        {
            "account_id": account_id,
            "occurred_at": m,
            "method": "GET",
            "path": "/factures",
            "status_code": 200,
            "ip_address": CANARY_IP,
        }
        for m in moments
    ]
    with engine.begin() as conn:
        conn.execute(schema.connection_logs.insert(), rows)
        conn.execute(schema.access_logs.insert(), access)


def occurred(engine, table: sa.Table) -> list[dt.datetime]:
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(table.c.occurred_at)).scalars())


def audit_entries(engine, prefix: str) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(schema.audit_log)
            .where(schema.audit_log.c.action.like(f"{prefix}%"))
            .order_by(schema.audit_log.c.seq)
        ).all()


# --- Database ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_drops_expired_partitions_and_deletes_the_boundary_by_range(engine, manifest):
    now = utcnow()
    first_month = add_months(now.date(), -15).replace(day=1)
    with engine.begin() as conn:
        for table in log_rotation.LOG_TABLES:
            log_rotation.ensure_partitions(conn, table, first_month, now.date())
    account = create_account(engine)
    # Every 5 days from 17 months ago (older than any partition: the default partition) to now.
    moments = [now - dt.timedelta(days=5 * i, hours=3) for i in range(0, 104)]
    insert_logs(engine, moments, account["id"])
    cut = bound(now.date())
    expected_kept = sorted(m for m in moments if m >= cut)
    with engine.connect() as conn:
        before = log_rotation.partitions(conn, "connection_logs")

    result = rotate_through_the_function(manifest)

    expired_months = [f"{p.start:%Y-%m}" for p in before if start_of_day(p.end) <= cut]
    assert expired_months and result["connection_logs"]["partitions_dropped"] == expired_months
    assert result["access_logs"]["partitions_dropped"] == expired_months
    with engine.connect() as conn:
        after = {p.start for p in log_rotation.partitions(conn, "connection_logs")}
        # The months still inside the year stay, and the coming months exist.
        assert after == {p.start for p in before if start_of_day(p.end) > cut} | {
            add_months(now.date().replace(day=1), k) for k in range(log_rotation.MONTHS_AHEAD + 1)
        }
    # The boundary month and the default partition lost exactly their expired rows.
    assert result["connection_logs"]["rows_deleted"] > 0
    assert occurred(engine, schema.connection_logs) == expected_kept
    assert occurred(engine, schema.access_logs) == expected_kept
    # The foreign key to accounts still works on the partitioned table (erasure unlinks, never cascades).
    with engine.begin() as conn:
        conn.execute(sa.delete(schema.accounts).where(schema.accounts.c.id == account["id"]))
        linked = conn.execute(
            sa.select(sa.func.count()).where(schema.connection_logs.c.account_id.is_not(None))
        ).scalar()
    assert linked == 0 and occurred(engine, schema.connection_logs) == expected_kept

    entries = audit_entries(engine, "retention.")
    assert {e.action for e in entries} >= {"retention.connection_logs", "retention.access_logs", "retention.lifecycle"}
    assert CANARY_IP not in json.dumps([e.details for e in entries])
    with engine.connect() as conn:
        assert verify_chain(conn).ok


def test_a_new_month_partition_takes_its_rows_from_the_default(engine):
    if engine.dialect.name != "postgresql":
        with engine.connect() as conn:
            assert not log_rotation.is_partitioned(conn, "connection_logs")  # SQLite keeps its plain tables
        return
    month = dt.date(2031, 5, 1)
    insert_logs(engine, [start_of_day(month) + dt.timedelta(days=3)])
    with engine.begin() as conn:
        assert log_rotation.create_partition(conn, "connection_logs", month)
        assert not log_rotation.create_partition(conn, "connection_logs", month)
        placed = conn.execute(sa.text("SELECT tableoid::regclass::text FROM connection_logs")).scalar()
    assert placed == f"{log_rotation.PARTITION_SCHEMA}.connection_logs_p203105"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_deletes_expired_rows_in_batches(engine, manifest):
    now = utcnow()
    cut = bound(now.date())
    expired = [cut - dt.timedelta(minutes=i + 1) for i in range(2300)]
    kept = [cut, cut + dt.timedelta(seconds=1), now]
    insert_logs(engine, expired + kept)
    deletes = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(_conn, _cursor, statement, *_args):
        if statement.startswith("DELETE FROM connection_logs"):
            deletes.append(statement)

    try:
        result = rotate_through_the_function(manifest)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert result["connection_logs"] == {"rows_deleted": 2300}
    assert len(deletes) == 3  # batches of at most 1000 rows
    assert occurred(engine, schema.connection_logs) == sorted(kept)
    assert occurred(engine, schema.access_logs) == sorted(kept)


# --- Objects ---------------------------------------------------------------------------------------------


def log_key(kind: str, day: dt.date, name: str) -> str:
    return f"logs/{kind}/{day:%Y/%m/%d}/{name}"


def moto_s3_backend():
    from moto.s3.models import s3_backends

    return s3_backends[MOTO_ACCOUNT_ID]["aws"]


def versions(s3, bucket: str) -> list[tuple[str, str]]:
    """(key, version id) of every version and delete marker in the bucket."""
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        found += [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    return found


def test_expired_log_objects_go_with_every_version_and_nothing_else(s3_env, moto_endpoint, engine, manifest):
    s3 = raw_client("s3", moto_endpoint)
    bucket = s3_env.logs_bucket
    today = utcnow().date()
    first_kept = last_expired_day(12, 0, today) + dt.timedelta(days=1)
    old = first_kept - dt.timedelta(days=1)
    expired = [log_key("access", old, "a.log"), log_key("connection", old - dt.timedelta(days=40), "c.log")]
    kept = [
        log_key("access", first_kept, "b.log"),
        log_key("access", today, "today.log"),
        "logs/access/README.txt",
        "logs/access/2019/13/01/not-a-date.log",
        "logs/other/2019/01/01/x.log",
    ]
    for key in expired + kept:
        s3.put_object(Bucket=bucket, Key=key, Body=b"v1")
    s3.put_object(Bucket=bucket, Key=expired[0], Body=b"v2")  # a noncurrent version
    deleted_earlier = log_key("access", old - dt.timedelta(days=3), "gone.log")
    s3.put_object(Bucket=bucket, Key=deleted_earlier, Body=b"v1")
    s3.delete_object(Bucket=bucket, Key=deleted_earlier)  # a delete marker over a noncurrent version
    s3.put_object(Bucket=bucket, Key=kept[1], Body=b"v2")

    result = rotate_through_the_function(manifest)

    assert result["log_objects.access_log_files"]["objects_deleted"] == 4  # 2 versions + version + marker
    assert result["log_objects.connection_log_files"]["objects_deleted"] == 1
    remaining = versions(s3, bucket)
    assert {key for key, _ in remaining} == set(kept)
    assert len([1 for key, _ in remaining if key == kept[1]]) == 2  # kept objects keep their versions


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_delete_objects_never_takes_more_than_1000_keys(s3_env, moto_endpoint, engine):
    s3 = raw_client("s3", moto_endpoint)
    bucket = s3_env.logs_bucket
    today = utcnow().date()
    first_kept = last_expired_day(12, 0, today) + dt.timedelta(days=1)
    expired = [log_key("access", first_kept - dt.timedelta(days=1 + i % 30), f"{i:05d}.log") for i in range(1500)]
    kept = [log_key("access", first_kept + dt.timedelta(days=i), "k.log") for i in range(5)]
    for key in expired + kept:  # arranged inside the in-process moto server: one HTTP PUT each is slow
        moto_s3_backend().put_object(bucket, key, b"x")
    calls: list[tuple[str, int]] = []

    def record(params, model, **_kw):
        calls.append((model.name, len(params["Delete"]["Objects"]) if model.name == "DeleteObjects" else 0))

    client = get_storage().client
    client.meta.events.register("before-parameter-build.s3.*", record)
    result = log_rotation.rotate(engine)
    client.meta.events.unregister("before-parameter-build.s3.*", record)

    assert result["log_objects.access_log_files"]["objects_deleted"] == 1500
    sizes = [n for name, n in calls if name == "DeleteObjects"]
    assert sizes == [1000, 500]
    listing = [name for name, _ in calls if name == "ListObjectVersions"]
    # Listing stops at the boundary: the kept objects are not paged through more than once.
    assert len(listing) <= math.ceil(1505 / 1000) + 1  # + the connection prefix (empty)
    assert {key for key, _ in versions(s3, bucket)} == set(kept)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_listing_narrows_to_the_boundary_folder_and_deletes_exactly_the_expired_set(
    s3_env, moto_endpoint, engine, monkeypatch
):
    monkeypatch.setattr(log_rotation, "S3_PAGE_SIZE", 3)  # many pages: the scope changes between them
    s3 = raw_client("s3", moto_endpoint)
    bucket = s3_env.logs_bucket
    today = utcnow().date()
    first_kept = last_expired_day(12, 0, today) + dt.timedelta(days=1)
    days = [first_kept - dt.timedelta(days=n) for n in (800, 400, 95, 40, 3, 1)]  # other years, months, the last days
    expired = [log_key("access", day, f"{n}.log") for day in days for n in range(4)]
    kept = [
        log_key("access", first_kept, "0.log"),
        log_key("access", first_kept + dt.timedelta(days=2), "1.log"),
        f"logs/access/{days[-1]:%Y/%m}/notes.txt",
    ]  # not date-partitioned: never touched
    for key in expired + kept:
        moto_s3_backend().put_object(bucket, key, b"x")
    s3.put_object(Bucket=bucket, Key=expired[-1], Body=b"v2")  # two versions of the last expired object
    prefixes: list[str] = []

    def record(params, model, **_kw):
        if model.name == "ListObjectVersions" and params["Prefix"].startswith("logs/access/"):
            prefixes.append(params["Prefix"])

    client = get_storage().client
    client.meta.events.register("before-parameter-build.s3.*", record)
    result = log_rotation.rotate(engine)
    client.meta.events.unregister("before-parameter-build.s3.*", record)

    assert result["log_objects.access_log_files"]["objects_deleted"] == len(expired) + 1
    assert {key for key, _ in versions(s3, bucket)} == set(kept)
    # From the whole prefix to the boundary's year, then its month: never wider again.
    assert prefixes[0] == "logs/access/"
    assert prefixes[-1] == log_rotation._listing_scope("logs/access/", expired[-1], first_kept)
    assert [len(p) for p in prefixes] == sorted(len(p) for p in prefixes)


def test_listing_scope_is_the_date_folder_shared_with_the_boundary():
    boundary = dt.date(2025, 11, 26)
    scope = log_rotation._listing_scope
    assert scope("logs/access/", "logs/access/2024/12/31/a.log", boundary) == "logs/access/"
    assert scope("logs/access/", "logs/access/2025/09/11/a.log", boundary) == "logs/access/2025/"
    assert scope("logs/access/", "logs/access/2025/11/25/a.log", boundary) == "logs/access/2025/11/"
    assert scope("logs/access/", "logs/access/README.txt", boundary) == "logs/access/"


# --- Lifecycle -------------------------------------------------------------------------------------------


def test_lifecycle_drift_is_detected_and_audited(s3_env, engine, manifest):
    storage = get_storage()
    for bucket, rules in log_rotation.policy_lifecycle_rules(s3_env).items():
        storage.put_lifecycle(bucket, rules)
    assert log_rotation.lifecycle_drift() == []
    assert rotate_through_the_function(manifest)["lifecycle_drift"] == []
    # As Terraform declares them: one rule over logs/ (365 days), exports 7 days; both with noncurrent expiration.
    storage.put_lifecycle(
        s3_env.logs_bucket,
        [
            {
                "ID": "logs-1-year",
                "Status": "Enabled",
                "Filter": {"Prefix": "logs/"},
                "Expiration": {"Days": 365},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            }
        ],
    )
    assert log_rotation.lifecycle_drift() == []

    storage.put_lifecycle(
        s3_env.logs_bucket,
        [
            {
                "ID": "logs-too-long",
                "Status": "Enabled",
                "Filter": {"Prefix": "logs/"},
                "Expiration": {"Days": 400},
            }
        ],
    )
    storage.put_lifecycle(
        s3_env.exports_bucket,
        [
            {
                "ID": "exports-disabled",
                "Status": "Disabled",
                "Filter": {"Prefix": "exports/"},
                "Expiration": {"Days": 7},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
            }
        ],
    )
    drift = rotate_through_the_function(manifest)["lifecycle_drift"]
    problems = {(d["prefix"], d["problem"]) for d in drift}
    assert problems == {
        ("logs/access/", "expires_too_late"),
        ("logs/access/", "no_noncurrent_expiration"),
        ("logs/connection/", "expires_too_late"),
        ("logs/connection/", "no_noncurrent_expiration"),
        ("exports/", "no_rule"),
    }
    last = audit_entries(engine, "retention.lifecycle")[-1]
    assert last.outcome == "drift" and len(last.details["counts"]["drift"]) == 5


def test_an_unknown_job_is_refused(engine, manifest):
    response = invoke(manifest.functions["log-rotation"], http_event("POST", "/", body=json.dumps({"job": "nope"})))
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "unknown_job"
    assert audit_entries(engine, "retention.") == []
