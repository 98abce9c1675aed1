"""Benchmark of the policy-change notices on PostgreSQL (figures only; nothing is asserted about time).

200,000 active accounts (10% already told of version 1.2): time of the CRON's selection and
queueing, SQL statements issued (one bounded SELECT per chunk: they must not grow with anything
else), then one chunk of 200 notices through the worker code, mailed to the outbox folder
(per-invocation time, statements per account).

    .venv/bin/python tests/perf/bench_policy_notices.py [--scale 0.1]
    .venv/bin/pytest -q -s -p no:cacheprovider tests/perf/bench_policy_notices.py
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

from tests.perf.bench_retention import StatementCounter, _configure  # noqa: E402 - after the sys.path insert

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "pf_bench_policy_notices"
UTC = dt.UTC


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


def bench(scale: float) -> dict:
    from shared.policy import facts

    declared = facts.POLICY_VERSIONS
    facts.POLICY_VERSIONS = (
        *declared,
        facts.PolicyVersion(
            "1.2", dt.date(2026, 9, 1), facts.Text("A new subprocessor.", "Un nouveau sous-traitant."), substantial=True
        ),
    )
    try:
        return _bench(scale)
    finally:
        facts.POLICY_VERSIONS = declared


def _bench(scale: float) -> dict:
    import sqlalchemy as sa

    from shared.ports.backends import get_queue
    from shared.ports.db import get_engine
    from shared.rights import policy_notices

    accounts = max(1000, int(200_000 * scale))
    with tempfile.TemporaryDirectory() as tmp:
        _configure(Path(tmp), _fresh_database())
        engine = get_engine()
        now = dt.datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(
                sa.text("""
                INSERT INTO accounts (id, email, status, locale, created_at, last_activity_at)
                SELECT md5(i::text)::uuid::text, 'bench.' || i || '@example.test', 'active', 'fr', :now, :now
                FROM generate_series(1, :n) AS i
            """),
                {"now": now, "n": accounts},
            )
            conn.execute(
                sa.text("""
                INSERT INTO policy_notices (account_id, version, told_at)
                SELECT id, '1.2', :now FROM accounts WHERE substr(id, 1, 1) IN ('0', '1') AND substr(id, 2, 1) < '9'
            """),
                {"now": now},
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE accounts"))
            conn.execute(sa.text("VACUUM ANALYZE policy_notices"))
        seed_seconds = time.perf_counter() - started

        queue = get_queue(policy_notices.QUEUE_NAME)
        with StatementCounter(engine) as counter:
            started = time.perf_counter()
            result = policy_notices.announce(engine, now=now)
            announce_seconds = time.perf_counter() - started
        announce_statements = counter.count

        # One worker invocation: the first chunk the run queued (the same selection, the same order).
        with engine.connect() as conn:
            first = list(conn.execute(policy_notices._untold("1.2").order_by(sa.text("id")).limit(200)).scalars())
        with StatementCounter(engine) as chunk_counter:
            started = time.perf_counter()
            counts = policy_notices.process_chunk(engine, "1.2", first)
            chunk_seconds = time.perf_counter() - started
        assert counts.get("told") == len(first)
        figures = {
            "accounts": accounts,
            "seed_seconds": round(seed_seconds, 1),
            "announce": {
                **result,
                "seconds": round(announce_seconds, 2),
                "sql_statements": announce_statements,
                "statements_per_chunk": round(announce_statements / max(result["chunks_queued"], 1), 2),
            },
            "queued_messages": queue.pending_count(),
            "one_chunk": {
                "accounts": len(first),
                "seconds": round(chunk_seconds, 2),
                "sql_statements": chunk_counter.count,
                "statements_per_account": round(chunk_counter.count / max(len(first), 1), 2),
            },
        }
        print(json.dumps({"policy_notices": figures}, indent=2))
        return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the size above (1.0 = full size)")
    return bench(parser.parse_args(argv).scale)


def test_bench_policy_notices() -> None:
    """`make bench` entry point (BENCH_POLICY_NOTICES_SCALE to shrink)."""
    figures = main(["--scale", os.environ.get("BENCH_POLICY_NOTICES_SCALE", "1.0")])
    assert figures["announce"]["accounts_queued"] > 0


if __name__ == "__main__":
    main()
