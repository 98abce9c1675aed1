"""log-rotation: connection and access logs live one year (policy 5; LCEN for connection data).

Database. On PostgreSQL `connection_logs` and `access_logs` are partitioned by month on
`occurred_at` (migration 0006_retention): partitions live in the schema `log_partitions`,
named `<table>_pYYYYMM`, plus a `<table>_default` partition for anything outside them.
Each run creates the partitions of the coming months, drops the partitions that are
wholly expired (no row-by-row work, whatever their size) and deletes the rest of the
expired range (the boundary month, and the default partition) with one ranged DELETE.
On SQLite (and on an unpartitioned table) expired rows go by ranged deletes in batches.

Objects. Log files are date-partitioned keys (`logs/access/YYYY/MM/DD/...`). Keys sort
by date, so the expired ones are a prefix of the listing: the run lists from the start,
narrowing to the year (then month) folder of the boundary day as it gets there, and
stops at the page that reaches the boundary or ends that folder, deleting with
DeleteObjects (at most 1000 keys per call), every version included on a versioned
bucket. Keys that are not date-partitioned are never touched.

Legal holds. Rows a hold in force keeps (`shared.records.holds`) are never deleted: before an
expired partition is dropped they are copied out of it into the default partition, and the
ranged deletes skip them; once the hold ends, the next run deletes them. Log files mix every
user and are not searchable per account: holds keep database rows, not files.

Lifecycle. The buckets' lifecycle rules are a second line of defence: the run checks
they match the policy (expiration within the period's length in days, noncurrent
versions expired within a day) and reports any drift in its result and the audit trail.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, delete, func, select, text

from shared.platform.clock import add_months, moment
from shared.platform.config import get_settings
from shared.policy import facts as policy
from shared.policy.rules import cutoff, start_of_day
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.ports.storage import ObjectStore, S3ObjectStore
from shared.records import holds
from shared.retention.lifecycle import (  # noqa: F401  (re-exported: the job reports drift)
    ExpectedLifecycle,
    expected_lifecycle,
    lifecycle_drift,
    policy_lifecycle_rules,
)
from shared.retention.toolkit import (
    BATCH_SIZE,
    Progress,
    delete_in_batches,
    no_progress,
    object_prefix,
    record_run,
    rule_json,
)

LOG_TABLES = ("connection_logs", "access_logs")
PARTITION_SCHEMA = "log_partitions"
MONTHS_AHEAD = 3
LOG_OBJECT_PREFIXES = ("connection_log_files", "access_log_files")
# Lifecycle rules the policy expects: (object prefix id of the data map).
S3_PAGE_SIZE = 1000

_DAY_PATH = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/")


# --- PostgreSQL partitions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    name: str
    start: dt.date  # first day of the month
    end: dt.date  # first day of the next month (exclusive)


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_p{month:%Y%m}"


def default_partition(table: str) -> str:
    return f"{PARTITION_SCHEMA}.{table}_default"


def _check_table(table: str) -> str:
    if table not in LOG_TABLES:
        raise ValueError(f"{table!r} is not a partitioned log table")
    return table


def _literal(day: dt.date) -> str:
    # DDL takes no bind parameters; the value is a date we computed, never input.
    return f"'{day.isoformat()} 00:00:00+00'"


def _exists(conn: Connection, qualified_name: str) -> bool:
    return conn.execute(text("SELECT to_regclass(:name)"), {"name": qualified_name}).scalar() is not None


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": _check_table(table)}
    ).scalar()
    return kind == "p"


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The monthly partitions of `table`, oldest first (the default partition is not one of them)."""
    pattern = re.compile(rf"^{re.escape(_check_table(table))}_p(\d{{4}})(\d{{2}})$")
    names = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:t)"
        ),
        {"t": table},
    ).scalars()
    found = []
    for name in names:
        match = pattern.match(name)
        if match:
            start = dt.date(int(match[1]), int(match[2]), 1)
            found.append(Partition(name, start, add_months(start, 1)))
    return sorted(found, key=lambda p: p.start)


def create_partition(conn: Connection, table: str, month: dt.date) -> bool:
    """Create and attach the partition of `month`; rows the default partition held for it move in.

    Returns False when it already exists.
    """
    month = month_start(month)
    name = f"{PARTITION_SCHEMA}.{partition_name(_check_table(table), month)}"
    if _exists(conn, name):
        return False
    end = add_months(month, 1)
    conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS)"))
    if _exists(conn, default_partition(table)):
        # The default partition may not keep rows of the new range, or attaching fails.
        conn.execute(
            text(
                f"WITH moved AS (DELETE FROM {default_partition(table)} WHERE occurred_at >= :start AND occurred_at < :end"
                f" RETURNING *) INSERT INTO {name} SELECT * FROM moved"
            ),
            {"start": start_of_day(month), "end": start_of_day(end)},
        )
    conn.execute(
        text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({_literal(month)}) TO ({_literal(end)})")
    )
    return True


def ensure_partitions(conn: Connection, table: str, first: dt.date, last: dt.date) -> list[str]:
    """Partitions for every month from `first` to `last` (inclusive); returns those created."""
    existing = {p.start for p in partitions(conn, table)}
    created, month = [], month_start(first)
    while month <= month_start(last):
        if month not in existing and create_partition(conn, table, month):
            created.append(partition_name(table, month))
        month = add_months(month, 1)
    return created


def _drop_partitions(conn: Connection, table: str, expired: list[Partition], now: dt.datetime) -> int:
    """Drop whole expired months; the rows a legal hold keeps are copied out first, into the default partition.

    One transaction: the held rows go to a temporary table, the partitions are dropped, the rows come
    back through the parent (whose range no longer covers them, so they land in the default
    partition, where the next run's ranged DELETE finds them once the hold ends). Returns the rows kept.
    """
    log_table = schema.metadata.tables[table]
    columns = [c.name for c in log_table.columns]
    in_expired = sa.or_(
        *(
            sa.and_(log_table.c.occurred_at >= start_of_day(p.start), log_table.c.occurred_at < start_of_day(p.end))
            for p in expired
        )
    )
    kept = sa.Table(f"held_{table}", sa.MetaData(), *(sa.Column(c.name, c.type) for c in log_table.columns))
    conn.execute(text(f"CREATE TEMPORARY TABLE held_{table} (LIKE {table}) ON COMMIT DROP"))
    conn.execute(sa.insert(kept).from_select(columns, select(log_table).where(in_expired, holds.held(table, now))))
    # Whole months go at once, whatever their size: only the (indexed, rare) held rows are read.
    conn.execute(text("DROP TABLE " + ", ".join(f"{PARTITION_SCHEMA}.{p.name}" for p in expired)))
    conn.execute(sa.insert(log_table).from_select(columns, select(kept)))
    return conn.execute(select(func.count()).select_from(kept)).scalar_one()


def _rotate_partitioned(engine: Engine, table: str, bound: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    with engine.begin() as conn:
        created = ensure_partitions(conn, table, now.date(), add_months(now.date(), MONTHS_AHEAD))
    kept = 0
    with engine.begin() as conn:
        expired = [p for p in partitions(conn, table) if start_of_day(p.end) <= bound]
        if expired:
            kept = _drop_partitions(conn, table, expired, now)
    dropped = [f"{p.start:%Y-%m}" for p in expired]
    with engine.begin() as conn:
        # Partition pruning: only the boundary month and the default partition are scanned.
        log_table = schema.metadata.tables[table]
        result = conn.execute(delete(log_table).where(log_table.c.occurred_at < bound, holds.not_held(table, now)))
    return {
        "partitions_created": len(created),
        "partitions_dropped": dropped,
        "rows_deleted": max(result.rowcount, 0),
        "held_rows_kept": kept,
    }


def rotate_table(engine: Engine, table: str, *, now: dt.datetime, progress: Progress | None = None) -> dict[str, Any]:
    """Delete the expired rows of one log table at `now`: whole partitions on PostgreSQL, batches elsewhere."""
    bound = cutoff(_check_table(table), now.date())  # the rule ids are the table names
    progress = progress or no_progress
    with engine.connect() as conn:
        partitioned = is_partitioned(conn, table)
    if partitioned:
        counts = _rotate_partitioned(engine, table, bound, now)
        progress(table, counts["rows_deleted"])
        return counts
    log_table = schema.metadata.tables[table]
    due = sa.and_(log_table.c.occurred_at < bound, holds.not_held(table, now))
    return {"rows_deleted": delete_in_batches(engine, log_table, due, table, progress)}


# --- Log objects ----------------------------------------------------------------------------------


def _object_day(relative_key: str) -> dt.date | None:
    match = _DAY_PATH.match(relative_key)
    if not match:
        return None
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return None


def _listing_scope(prefix: str, key: str, first_kept_day: dt.date) -> str:
    """The narrowest date folder (`prefix`, `prefix`YYYY/, `prefix`YYYY/MM/) holding both `key` and the boundary.

    Every key between the two sorts inside it, so once a listing of this scope from `key`
    is exhausted, nothing expired is left: the run needs no page past the boundary to
    learn where the expired keys end (unless unexpired keys share the scope).
    """
    day = _object_day(key[len(prefix) :])
    scope = prefix
    if day is None:
        return scope
    for folder in ("%Y/", "%Y/%m/"):
        if day.strftime(folder) != first_kept_day.strftime(folder):
            break
        scope = prefix + day.strftime(folder)
    return scope


def _expired_pages(
    storage: ObjectStore, bucket: str, prefix: str, first_kept_day: dt.date
) -> Iterator[list[tuple[str, str]]]:
    """(key, version id) of the objects of days before `first_kept_day`, page by page.

    Listing goes in key order, which is date order, and stops at the first page that
    reaches the boundary day; after each page the listing narrows to the date folder
    shared by the last key and the boundary (`_listing_scope`), which usually ends the
    listing without reading past the boundary. The objects kept are listed at most once.
    """
    boundary = prefix + f"{first_kept_day:%Y/%m/%d}/"

    def expired(key: str) -> bool:
        day = _object_day(key[len(prefix) :])
        return key < boundary and day is not None and day < first_kept_day

    if isinstance(storage, S3ObjectStore):
        scope, markers = prefix, cast(dict[str, str], {})
        previous: list[tuple[str, str]] | None = None
        with storage._errors():
            while True:
                page = storage.client.list_object_versions(Bucket=bucket, Prefix=scope, MaxKeys=S3_PAGE_SIZE, **markers)
                entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
                # A page is handed out once the next one is fetched: the next page's marker (the
                # last entry of this one) must still exist when it is asked for.
                if previous is not None:
                    yield previous
                previous = [(e["Key"], e["VersionId"]) for e in entries if expired(e["Key"])]
                if not page.get("IsTruncated") or any(e["Key"] >= boundary for e in entries):
                    break
                markers = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
                scope = _listing_scope(prefix, page["NextKeyMarker"], first_kept_day)
        if previous:
            yield previous
        return
    batch: list[tuple[str, str]] = []
    for version in storage.list_versions(bucket, prefix):
        if version.key >= boundary:
            break
        if expired(version.key):
            batch.append((version.key, version.version_id))
    yield batch


def _rotate_objects(
    storage: ObjectStore, bucket: str, prefix: str, first_kept_day: dt.date, category: str, progress: Progress
) -> dict[str, int]:
    deleted, pending = 0, []
    for page in _expired_pages(storage, bucket, prefix, first_kept_day):
        pending.extend(page)
        while len(pending) >= BATCH_SIZE:
            deleted += storage.delete_many(bucket, pending[:BATCH_SIZE])
            pending = pending[BATCH_SIZE:]
            progress(category, deleted)
    if pending:
        deleted += storage.delete_many(bucket, pending)
        progress(category, deleted)
    return {"objects_deleted": deleted}


def _count_objects(storage: ObjectStore, bucket: str, prefix: str, first_kept_day: dt.date) -> int:
    return sum(len(page) for page in _expired_pages(storage, bucket, prefix, first_kept_day))


# --- The job ------------------------------------------------------------------------------------------


def rotate(engine: Engine, *, now: dt.datetime | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The daily log-rotation: database logs, log objects, lifecycle check; one audit entry per category."""
    now = moment(now)
    today = now.date()
    progress = progress or no_progress
    settings, storage = get_settings(), get_storage()
    result: dict[str, Any] = {"ran_at": now.isoformat()}
    for table in LOG_TABLES:
        counts = rotate_table(engine, table, now=now, progress=progress)
        record_run(engine, table, policy.retention_rule(table), counts, now)
        result[table] = counts
    for prefix_id in LOG_OBJECT_PREFIXES:
        prefix = object_prefix(prefix_id)
        category = f"log_objects.{prefix_id}"
        counts = _rotate_objects(
            storage,
            getattr(settings, prefix.bucket_setting),
            prefix.prefix(),
            cutoff(prefix.retention, today).date(),
            category,
            progress,
        )
        record_run(engine, category, policy.retention_rule(prefix.retention), counts, now)
        result[category] = counts
    drift = lifecycle_drift(storage, settings)
    record_run(
        engine,
        "lifecycle",
        policy.retention_rule("access_logs"),
        {"drift": drift},
        now,
        outcome="drift" if drift else "ok",
    )
    result["lifecycle_drift"] = drift
    return result


def plan(engine: Engine, *, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What log-rotation would do at `at`; changes nothing."""
    at = moment(at)
    today = at.date()
    settings, storage = get_settings(), get_storage()
    entries = []
    with engine.connect() as conn:
        for table in LOG_TABLES:
            bound = cutoff(table, today)
            log_table = schema.metadata.tables[table]
            due: dict[str, Any] = {
                "rows": conn.execute(
                    select(func.count())
                    .select_from(log_table)
                    .where(log_table.c.occurred_at < bound, holds.not_held(table, at))
                ).scalar_one(),
                "held_rows": conn.execute(
                    select(func.count())
                    .select_from(log_table)
                    .where(log_table.c.occurred_at < bound, holds.held(table, at))
                ).scalar_one(),
            }
            if is_partitioned(conn, table):
                due["partitions_to_drop"] = [
                    f"{p.start:%Y-%m}" for p in partitions(conn, table) if start_of_day(p.end) <= bound
                ]
            entries.append(_entry(table, "delete", "log lines in the database", table, due))
    for prefix_id in LOG_OBJECT_PREFIXES:
        prefix = object_prefix(prefix_id)
        count = _count_objects(
            storage, getattr(settings, prefix.bucket_setting), prefix.prefix(), cutoff(prefix.retention, today).date()
        )
        entries.append(
            _entry(
                f"log_objects.{prefix_id}",
                "delete",
                f"log files under {prefix.prefix()}",
                prefix.retention,
                {"objects": count},
            )
        )
    entries.append(
        _entry(
            "lifecycle",
            "check",
            "bucket lifecycle rules against the policy",
            "access_logs",
            {"drift": lifecycle_drift(storage, settings)},
        )
    )
    return entries


def _entry(category: str, action: str, scope: str, rule_id: str, due: dict[str, Any]) -> dict[str, Any]:
    return {
        "category": category,
        "action": action,
        "scope": scope,
        "rule": rule_json(policy.retention_rule(rule_id)),
        "due": due,
    }
