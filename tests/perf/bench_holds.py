"""Benchmark of the legal-hold check in the retention queries, on PostgreSQL (figures only; nothing is timed).

20,000 accounts with 10 expired sign-in sessions each (200,000 rows due). The sessions category
of enforce-retention counts then deletes them, once with no hold, once with 1,000 holds in force
(technical.ip_address: 10,000 rows kept). Printed: the count query's time with and without holds,
the delete's time and rows kept, and the plan of the DELETE's selection (the hold check is a
correlated lookup per row on the small holds tables, not a scan that grows with them).

    .venv/bin/python tests/perf/bench_holds.py [--scale 0.1]
    .venv/bin/pytest -q -s -p no:cacheprovider tests/perf/bench_holds.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "pf_bench_holds"


def _setup(data_dir: Path):
    import sqlalchemy as sa

    from shared.platform.config import reset_settings
    from shared.ports.backends import reset_backends
    from shared.ports.db import dispose_engines, get_engine, migrate, normalise_url

    admin = sa.create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
    admin.dispose()
    url = normalise_url(POSTGRES_URL).rsplit("/", 1)[0] + "/" + BENCH_DATABASE
    migrate(url)
    os.environ.update(
        {
            "PRIVACY_ENV": "test",
            "PRIVACY_DATA_DIR": str(data_dir),
            "DATABASE_URL": url,
            "PSEUDONYM_KEY": "bench-pseudonym-key",
        }
    )
    reset_settings()
    reset_backends()
    dispose_engines()
    return get_engine()


def _seed(engine, accounts: int, *, sessions_only: bool = False) -> None:
    import sqlalchemy as sa

    with engine.begin() as conn:
        if not sessions_only:
            conn.execute(
                sa.text(
                    "INSERT INTO accounts (id, email, created_at, last_activity_at) "
                    "SELECT md5(i::text)::uuid::text, 'bench' || i || '@example.test', now() - interval '800 days', now() "
                    "FROM generate_series(1, :n) i"
                ),
                {"n": accounts},
            )
        conn.execute(
            sa.text(
                "INSERT INTO sessions (id, account_id, token_hash, ip_address, created_at, expires_at) "
                "SELECT md5('s' || i || ':' || j)::uuid::text, md5(i::text)::uuid::text, md5('t' || i || ':' || j), "
                "'198.51.100.1', now() - interval '400 days' - j * interval '1 day', now() - interval '370 days' "
                "FROM generate_series(1, :n) i, generate_series(1, 10) j"
            ),
            {"n": accounts},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE sessions"))
        conn.execute(sa.text("ANALYZE accounts"))


def _place(engine, accounts: int, holds_count: int) -> None:
    import sqlalchemy as sa

    from shared.records import holds

    with engine.connect() as conn:
        ids = list(conn.execute(sa.text("SELECT id FROM accounts ORDER BY id LIMIT :n"), {"n": holds_count}).scalars())
    with engine.begin() as conn:
        for account_id in ids:
            holds.place_hold(
                conn, account_id=account_id, categories=["technical.ip_address"], reason="Bench hold", actor="dpo:bench"
            )
        conn.execute(sa.text("ANALYZE legal_holds; ANALYZE legal_hold_categories"))


def run(scale: float) -> dict:
    import sqlalchemy as sa

    from shared.ports import tables as schema
    from shared.ports.db import utcnow
    from shared.retention import enforcement
    from shared.retention.toolkit import no_progress

    accounts = max(100, int(20_000 * scale))
    holds_count = max(5, int(1_000 * scale))
    with tempfile.TemporaryDirectory() as tmp:
        engine = _setup(Path(tmp))
        _seed(engine, accounts)
        now = utcnow()
        with engine.connect() as conn:
            started = time.perf_counter()
            due_without = enforcement._count_sessions(conn, now)["sessions"]
            count_without = time.perf_counter() - started
        started = time.perf_counter()
        baseline = enforcement._apply_sessions(engine, now, no_progress)["sessions"]
        delete_without = time.perf_counter() - started
        _seed(engine, accounts, sessions_only=True)
        _place(engine, accounts, holds_count)
        with engine.connect() as conn:
            started = time.perf_counter()
            due_with = enforcement._count_sessions(conn, now)["sessions"]
            count_with = time.perf_counter() - started
            query = sa.select(schema.sessions.c.id).where(enforcement._sessions_due(now)).limit(1000)
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            plan = [row[0] for row in conn.execute(sa.text(f"EXPLAIN {compiled}"))]
        started = time.perf_counter()
        deleted = enforcement._apply_sessions(engine, now, no_progress)["sessions"]
        delete_seconds = time.perf_counter() - started
        with engine.connect() as conn:
            kept = conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one()
        engine.dispose()
    figures = {
        "sessions": accounts * 10,
        "holds": holds_count,
        "due_without_holds": due_without,
        "due_with_holds": due_with,
        "count_seconds_without": round(count_without, 3),
        "count_seconds_with": round(count_with, 3),
        "deleted": deleted,
        "kept": kept,
        "delete_seconds": round(delete_seconds, 2),
        "deleted_without_holds": baseline,
        "delete_seconds_without": round(delete_without, 2),
    }
    print(
        f"[holds bench] {accounts * 10:,} expired sessions, {holds_count:,} holds in force: due {due_without:,} -> "
        f"{due_with:,}; count {count_without * 1000:.0f} ms without holds, {count_with * 1000:.0f} ms with | "
        f"delete in batches {delete_without:.2f} s without holds ({baseline:,} deleted), {delete_seconds:.2f} s with "
        f"({deleted:,} deleted, {kept:,} kept: held)",
        flush=True,
    )
    print("[holds bench] plan of the selection:\n  " + "\n  ".join(plan), flush=True)
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the sizes above (1.0 = full size)")
    return run(parser.parse_args(argv).scale)


def test_bench_holds() -> None:
    """`make bench` entry point (BENCH_HOLDS_SCALE to shrink)."""
    figures = main(["--scale", os.environ.get("BENCH_HOLDS_SCALE", "1.0")])
    assert figures["kept"] == figures["holds"] * 10 and figures["deleted"] == figures["sessions"] - figures["kept"]


if __name__ == "__main__":
    main()
