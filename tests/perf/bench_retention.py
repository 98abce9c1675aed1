"""Benchmarks of the retention schedule on PostgreSQL (figures only; nothing is asserted about time).

(a) expire-inactive-accounts: 1,000,000 accounts, 5% past a threshold (4% at a warning,
    1% at their erasure): time of the CRON's selection and queueing, SQL statements
    issued (must not grow beyond one per chunk), then one chunk of warnings and one
    chunk of erasure registrations through the worker code (per-invocation time).
(b) log-rotation: 12 monthly partitions of 1,000,000 connection log lines each, half of
    them expired: rotation time against a plain DELETE of the same rows from an
    unpartitioned copy, in the same run (ratio; target >= 50x). The partitions of the
    coming months exist, as the previous daily run left them.
(c) 20,000 expired log objects (+ 200 kept) in a versioned bucket on the moto server:
    S3 requests issued by the rotation (target: at most 2 per 1000 objects, listing included),
    for two layouts: half access and half connection logs, then access logs only (the
    connection prefix empty: its one listing is the only request beyond 2 per 1000).

    .venv/bin/python tests/perf/bench_retention.py [--part a|b|c|all] [--scale 0.1]
    .venv/bin/pytest -q -s -p no:cacheprovider tests/perf/bench_retention.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "pf_bench_retention"
UTC = dt.UTC


def _configure(data_dir: Path, database_url: str, **extra: str) -> None:
    for name in [n for n in os.environ if n.startswith(("S3_", "SQS_", "RESEND_", "STRIPE_", "QUEUE_"))]:
        del os.environ[name]
    os.environ.update(
        {
            "PRIVACY_ENV": "test",
            "PRIVACY_DATA_DIR": str(data_dir),
            "DATABASE_URL": database_url,
            "PSEUDONYM_KEY": "bench-pseudonym-key",
            **extra,
        }
    )
    from shared.platform.config import reset_settings
    from shared.ports.backends import reset_backends
    from shared.ports.db import dispose_engines

    reset_settings()
    reset_backends()
    dispose_engines()


def _fresh_database() -> str:
    import sqlalchemy as sa

    from shared.ports.db import migrate, normalise_url

    admin = sa.create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
    admin.dispose()
    url = normalise_url(POSTGRES_URL).rsplit("/", 1)[0] + "/" + BENCH_DATABASE
    migrate(url)
    return url


class StatementCounter:
    def __init__(self, engine) -> None:
        self.engine, self.count = engine, 0

    def _count(self, *_args) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        import sqlalchemy as sa

        sa.event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc) -> None:
        import sqlalchemy as sa

        sa.event.remove(self.engine, "before_cursor_execute", self._count)


# --- (a) inactive accounts -----------------------------------------------------------------------------


def bench_inactivity(scale: float) -> dict:
    import sqlalchemy as sa

    from shared.ports.backends import get_queue
    from shared.ports.db import get_engine
    from shared.retention import inactivity

    accounts = int(1_000_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        _configure(Path(tmp), _fresh_database(), ERASURE_COOLING_OFF_DAYS="0", RETENTION_CHUNK_SIZE="200")
        engine = get_engine()
        now = dt.datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        with engine.begin() as conn:
            # 4% within 30 days of their erasure day (a warning is due), 1% past it with both warnings sent
            # (the erasure is due), the rest active within the last 2.7 years.
            conn.execute(
                sa.text("""
                INSERT INTO accounts (id, email, status, locale, created_at, last_activity_at)
                SELECT md5(i::text)::uuid::text, 'bench.' || i || '@example.test', 'active', 'fr',
                       :now - interval '6 years',
                       CASE WHEN i % 100 < 4 THEN :now - interval '36 months' + ((i % 29) + 1) * interval '1 day'
                            WHEN i % 100 = 4 THEN :now - interval '36 months' - interval '10 days'
                            ELSE :now - (i % 1000) * interval '1 day' END
                FROM generate_series(1, :n) AS i
            """),
                {"now": now, "n": accounts},
            )
            conn.execute(
                sa.text("""
                INSERT INTO inactivity_notices (account_id, last_activity_at, erase_after, warned_at, warned_offset_days,
                                                next_action_on)
                SELECT id, last_activity_at, (:now)::date - 1, :now - interval '8 days', 7, (:now)::date - 1
                FROM accounts WHERE last_activity_at < :now - interval '36 months'
            """),
                {"now": now},
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE accounts"))
            conn.execute(sa.text("VACUUM ANALYZE inactivity_notices"))
        seed_seconds = time.perf_counter() - started

        queue = get_queue(inactivity.QUEUE_NAME)
        with StatementCounter(engine) as counter:
            started = time.perf_counter()
            result = inactivity.schedule(engine, now=now)
            schedule_seconds = time.perf_counter() - started
        due = result["accounts_queued"]

        # One invocation of the worker per kind of chunk: its time is what must stay far from the timeout.
        chunk_seconds: dict[str, float] = {}
        chunk_results: dict[str, dict] = {}

        def consume(event: dict) -> dict:
            ids = json.loads(event["body"])["payload"]["account_ids"]
            with engine.connect() as conn:
                warned = conn.execute(
                    sa.text("SELECT 1 FROM inactivity_notices WHERE account_id = :a"), {"a": ids[0]}
                ).first()
            kind = "erasures" if warned else "warnings"
            if kind not in chunk_seconds:
                started = time.perf_counter()
                chunk_results[kind] = inactivity.process_chunk(engine, ids, now=now)
                chunk_seconds[kind] = time.perf_counter() - started
            return {"statusCode": 200}

        queue.deliver_pending(consume)
    figures = {
        "accounts": accounts,
        "due": due,
        "chunks": result["chunks_queued"],
        "seed_seconds": round(seed_seconds, 1),
        "schedule_seconds": round(schedule_seconds, 3),
        "statements": counter.count,
        "statements_per_chunk": round(counter.count / max(result["chunks_queued"], 1), 3),
        "first_chunk_seconds": {k: round(v, 3) for k, v in chunk_seconds.items()},
        "first_chunk": chunk_results,
    }
    print(
        f"[retention bench a] {accounts:,} accounts, {due:,} due ({100 * due / accounts:.1f}%): selected and queued in "
        f"{schedule_seconds:.2f} s as {result['chunks_queued']} chunks | {counter.count} SQL statements "
        f"({figures['statements_per_chunk']} per chunk; target <= 1 + a constant) | first chunk "
        f"{json.dumps(figures['first_chunk_seconds'])} s {json.dumps(chunk_results)}",
        flush=True,
    )
    return figures


# --- (b) log partitions ------------------------------------------------------------------------------


def bench_partitions(scale: float) -> dict:
    import sqlalchemy as sa

    from shared.policy.rules import cutoff, start_of_day
    from shared.ports.db import get_engine
    from shared.retention import log_rotation

    rows = int(12 * 1_000_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        _configure(Path(tmp), _fresh_database())
        engine = get_engine()
        first = dt.date(2029, 1, 1)
        # The daily run at 03:00 on 2 July 2030: January to June 2029 are wholly expired, 1-2 July by range.
        now = dt.datetime(2030, 7, 2, 3, 0, tzinfo=UTC)
        started = time.perf_counter()
        with engine.begin() as conn:
            log_rotation.ensure_partitions(conn, "connection_logs", first, dt.date(2029, 12, 1))
            log_rotation.ensure_partitions(conn, "connection_logs", now.date(), dt.date(2030, 10, 1))
            conn.execute(
                sa.text("""
                INSERT INTO connection_logs (occurred_at, event, ip_address, user_agent)
                SELECT :start + (i::float / :n) * (:end - :start), 'login_succeeded', '198.51.100.' || (i % 250), 'UA'
                FROM generate_series(0, :n - 1) AS i
            """),
                {"start": dt.datetime(2029, 1, 1, tzinfo=UTC), "end": dt.datetime(2030, 1, 1, tzinfo=UTC), "n": rows},
            )
            conn.execute(sa.text("CREATE TABLE baseline_logs (LIKE connection_logs INCLUDING DEFAULTS)"))
            conn.execute(sa.text("ALTER TABLE baseline_logs ADD PRIMARY KEY (id)"))
            conn.execute(sa.text("CREATE INDEX ix_baseline_logs_occurred_at ON baseline_logs (occurred_at)"))
            conn.execute(
                sa.text(
                    "CREATE INDEX ix_baseline_logs_account_id_occurred_at ON baseline_logs (account_id, occurred_at)"
                )
            )
            conn.execute(sa.text("INSERT INTO baseline_logs SELECT * FROM connection_logs"))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE connection_logs"))
            conn.execute(sa.text("VACUUM ANALYZE baseline_logs"))
            partitions = len(log_rotation.partitions(conn, "connection_logs"))
        seed_seconds = time.perf_counter() - started

        bound = cutoff("connection_logs", now.date())
        with engine.connect() as conn:
            expired_bytes = sum(
                conn.execute(
                    sa.text("SELECT pg_total_relation_size(:t)"), {"t": f"{log_rotation.PARTITION_SCHEMA}.{p.name}"}
                ).scalar()
                for p in log_rotation.partitions(conn, "connection_logs")
                if start_of_day(p.end) <= bound
            )
        started = time.perf_counter()
        with engine.begin() as conn:
            baseline_deleted = conn.execute(
                sa.text("DELETE FROM baseline_logs WHERE occurred_at < :b"), {"b": bound}
            ).rowcount
        baseline_seconds = time.perf_counter() - started
        # What the DELETE leaves to do before its rows' space can be used again (a drop frees it at once).
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM baseline_logs"))
        vacuum_seconds = time.perf_counter() - started
        # Time inside SQL statements; the rest is mostly the commit of the DROP, which frees the files.
        statement_seconds = [0.0]

        def statement_started(conn, *_args) -> None:
            conn.info["statement_started"] = time.perf_counter()

        def statement_done(conn, *_args) -> None:
            statement_seconds[0] += time.perf_counter() - conn.info.pop("statement_started")

        sa.event.listen(engine, "before_cursor_execute", statement_started)
        sa.event.listen(engine, "after_cursor_execute", statement_done)
        started = time.perf_counter()
        result = log_rotation.rotate_table(engine, "connection_logs", now=now)
        rotation_seconds = time.perf_counter() - started
        sa.event.remove(engine, "before_cursor_execute", statement_started)
        sa.event.remove(engine, "after_cursor_execute", statement_done)
        with engine.connect() as conn:
            left = conn.execute(sa.text("SELECT count(*) FROM connection_logs")).scalar()
            baseline_left = conn.execute(sa.text("SELECT count(*) FROM baseline_logs")).scalar()
    ratio = baseline_seconds / rotation_seconds
    outside = rotation_seconds - statement_seconds[0]
    figures = {
        "expired_mb": round(expired_bytes / 2**20),
        "seconds_in_statements": round(statement_seconds[0], 3),
        "seconds_outside_statements": round(outside, 3),
        "baseline_vacuum_seconds": round(vacuum_seconds, 3),
        "ratio_to_delete_and_vacuum": round((baseline_seconds + vacuum_seconds) / rotation_seconds, 1),
        "rows": rows,
        "partitions": partitions,
        "expired_rows": baseline_deleted,
        "partitions_dropped": len(result["partitions_dropped"]),
        "rows_deleted_by_range": result["rows_deleted"],
        "rotation_seconds": round(rotation_seconds, 3),
        "baseline_delete_seconds": round(baseline_seconds, 3),
        "ratio": round(ratio, 1),
        "same_rows_left": left == baseline_left,
        "seed_seconds": round(seed_seconds, 1),
    }
    print(
        f"[retention bench b] {rows:,} log rows in {partitions} monthly partitions, {baseline_deleted:,} expired: rotation "
        f"{rotation_seconds:.3f} s ({figures['partitions_dropped']} partitions dropped, {result['rows_deleted']:,} rows "
        f"by range) vs plain DELETE {baseline_seconds:.3f} s -> {ratio:.0f}x faster (target >= 50x); "
        f"same rows left: {left == baseline_left} | rotation: {statement_seconds[0]:.3f} s in SQL statements, "
        f"{outside:.3f} s outside them (mostly the DROP's commit unlinking {figures['expired_mb']} MB of files: "
        f"{1000 * outside / max(figures['expired_mb'], 1):.2f} ms/MB on this disk) | DELETE + VACUUM (space reusable, as "
        f"after a drop) {baseline_seconds + vacuum_seconds:.3f} s -> {figures['ratio_to_delete_and_vacuum']:.0f}x | "
        f"seed {seed_seconds:.0f} s",
        flush=True,
    )
    return figures


# --- (c) log objects ---------------------------------------------------------------------------------


def bench_objects(scale: float) -> dict:
    """Two layouts of the same 20,000 expired objects: both log kinds, then access logs only."""
    total = int(20_000 * scale)
    return {
        "both_kinds": _bench_objects_layout("both", {"access": total // 2, "connection": total - total // 2}),
        "access_only": _bench_objects_layout("access", {"access": total}),
    }


def _bench_objects_layout(name: str, expired_by_kind: dict[str, int]) -> dict:
    from moto.s3.models import s3_backends

    from shared.ports.backends import get_storage
    from shared.ports.db import migrate
    from shared.retention import log_rotation
    from tests.fakes.moto import MOTO_ACCESS_KEY, MOTO_ACCOUNT_ID, MOTO_SECRET_KEY, create_buckets, start_moto_server

    kept_per_kind = 200 // len(expired_by_kind)
    server, endpoint = start_moto_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            database = f"sqlite:///{tmp}/bench.db"
            migrate(database)
            _configure(
                Path(tmp),
                database,
                S3_ENDPOINT_URL=endpoint,
                S3_ACCESS_KEY=MOTO_ACCESS_KEY,
                S3_SECRET_KEY=MOTO_SECRET_KEY,
                LOGS_BUCKET=f"bench-logs-{name}",
                EXPORTS_BUCKET=f"bench-exports-{name}",
                DOCUMENTS_BUCKET=f"bench-documents-{name}",
                ARCHIVE_BUCKET=f"bench-archive-{name}",
            )
            from shared.platform.config import get_settings
            from shared.ports.db import get_engine

            settings = get_settings()
            create_buckets(endpoint, settings)  # the logs bucket is versioned, as Terraform makes it
            today = dt.datetime.now(UTC).date()
            first_kept = today - dt.timedelta(days=300)
            oldest = today - dt.timedelta(days=500)
            backend = s3_backends[MOTO_ACCOUNT_ID]["aws"]
            for kind, expired in expired_by_kind.items():
                for i in range(expired):  # arranged inside the in-process server: PUT over HTTP is slow on moto
                    day = oldest + dt.timedelta(days=i * 60 // expired)
                    backend.put_object(settings.logs_bucket, f"logs/{kind}/{day:%Y/%m/%d}/{i:06d}.log", b"log line")
                for i in range(kept_per_kind):
                    day = first_kept + dt.timedelta(days=i % 250)
                    backend.put_object(settings.logs_bucket, f"logs/{kind}/{day:%Y/%m/%d}/k{i:04d}.log", b"log line")
            calls: dict[str, int] = {}
            largest_delete = 0

            def record(params, model, **_kw):
                nonlocal largest_delete
                calls[model.name] = calls.get(model.name, 0) + 1
                if model.name == "DeleteObjects":
                    largest_delete = max(largest_delete, len(params["Delete"]["Objects"]))

            client = get_storage().client
            client.meta.events.register("before-parameter-build.s3.*", record)
            started = time.perf_counter()
            result = log_rotation.rotate(get_engine())
            seconds = time.perf_counter() - started
            client.meta.events.unregister("before-parameter-build.s3.*", record)
    finally:
        server.stop()
    object_calls = calls.get("ListObjectVersions", 0) + calls.get("DeleteObjects", 0)
    deleted = sum(result[f"log_objects.{kind}_log_files"]["objects_deleted"] for kind in ("access", "connection"))
    per_1000 = 1000 * object_calls / max(deleted, 1)
    layout = " + ".join(f"{n:,} {kind}" for kind, n in expired_by_kind.items())
    figures = {
        "expired_objects": expired_by_kind,
        "kept_objects_per_kind": kept_per_kind,
        "deleted": deleted,
        "requests": calls,
        "list_and_delete_requests": object_calls,
        "requests_per_1000": round(per_1000, 2),
        "largest_delete_objects": largest_delete,
        "seconds": round(seconds, 1),
    }
    print(
        f"[retention bench c] {deleted:,} expired log objects ({layout}; +{kept_per_kind} kept per kind), versioned "
        f"bucket on moto: deleted with {object_calls} list/delete requests = {per_1000:.2f} per 1000 objects (target <= 2; "
        f"listing included; a log prefix with no object costs its one listing) | largest DeleteObjects {largest_delete} "
        f"keys | all S3 calls {json.dumps(calls)} | {seconds:.1f} s (moto's listing is slow)",
        flush=True,
    )
    return figures


PARTS = {"a": bench_inactivity, "b": bench_partitions, "c": bench_objects}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the sizes above (1.0 = full size)")
    args = parser.parse_args(argv)
    parts = PARTS if args.part == "all" else {args.part: PARTS[args.part]}
    return {name: run(args.scale) for name, run in parts.items()}


def test_bench_retention() -> None:
    """`make bench` entry point: the three figures at full size (BENCH_RETENTION_SCALE to shrink)."""
    figures = main(["--scale", os.environ.get("BENCH_RETENTION_SCALE", "1.0")])
    assert figures["a"]["due"] > 0 and figures["b"]["same_rows_left"] and figures["c"]["both_kinds"]["deleted"] > 0


if __name__ == "__main__":
    main()
