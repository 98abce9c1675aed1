"""Benchmark of the subject search (shared.desk.search) on PostgreSQL (figures only; nothing is asserted about time).

At scale 1: 200,000 accounts (each with a company), 400,000 clients, 400,000 invoices, 200,000
prospects, generated in the database (generate_series). The person searched holds one account,
is a client of 3 accounts, a buyer on 3 invoices and the platform's prospect. Printed: the time
of one search (median of 20, warm), SQL statements per search, and the same search with the
0015_subject_search indexes dropped, in the same run (ratio).

    .venv/bin/python tests/perf/bench_search.py [--scale 0.1]
    .venv/bin/pytest -q -s -p no:cacheprovider tests/perf/bench_search.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.perf.bench_retention import StatementCounter, _configure  # noqa: E402 - after the sys.path insert

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "pf_bench_search"
EMAIL = "bench.person@example.test"
NAME = "Benchmark Person"


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


def _seed(engine, scale: float) -> dict[str, int]:
    n_accounts = max(1000, int(200_000 * scale))
    n_clients = n_invoices = 2 * n_accounts
    n_prospects = n_accounts
    statements = [
        f"""INSERT INTO accounts (id, email, first_name, last_name, phone, locale, status, created_at, last_activity_at)
            SELECT md5('a' || g), 'user' || g || '@example.test', 'First' || g, 'Last' || g,
                   '+336' || lpad(g::text, 8, '0'), 'fr', 'active', now(), now() FROM generate_series(1, {n_accounts}) g""",
        f"""INSERT INTO companies (id, account_id, name, siret, siren, country, created_at)
            SELECT md5('c' || g), md5('a' || g), 'Company ' || g, lpad(g::text, 14, '0'), lpad(g::text, 9, '0'), 'FR', now()
            FROM generate_series(1, {n_accounts}) g""",
        f"""INSERT INTO clients (id, account_id, name, contact_name, email, phone, country, created_at)
            SELECT md5('k' || g), md5('a' || (1 + mod(g, {n_accounts}))), 'Client ' || g, 'Contact ' || g,
                   'client' || g || '@example.test', '+337' || lpad(g::text, 8, '0'), 'FR', now()
            FROM generate_series(1, {n_clients}) g""",
        f"""INSERT INTO invoices (id, account_id, number, issue_date, currency, total_excl_tax_cents, total_tax_cents,
                                  total_incl_tax_cents, status, seller_name, seller_siret, buyer_name, buyer_address, created_at)
            SELECT md5('i' || g), md5('a' || (1 + mod(g, {n_accounts}))), 'F-' || g, current_date, 'EUR', 100, 20, 120,
                   'issued', 'Company ' || (1 + mod(g, {n_accounts})), lpad((1 + mod(g, {n_accounts}))::text, 14, '0'),
                   'Buyer ' || g, g || ' rue du Test, Paris', now()
            FROM generate_series(1, {n_invoices}) g""",
        f"""INSERT INTO prospects (id, account_id, email, name, phone, source, last_contact_at, created_at)
            SELECT md5('p' || g), CASE WHEN mod(g, 2) = 0 THEN md5('a' || (1 + mod(g, {n_accounts}))) END,
                   'prospect' || g || '@example.test', 'Prospect ' || g, '+339' || lpad(g::text, 8, '0'), 'web', now(), now()
            FROM generate_series(1, {n_prospects}) g""",
        # The person: an account of their own, a client of 3 accounts, a buyer on 3 invoices, the platform's prospect.
        f"UPDATE accounts SET email = '{EMAIL}', first_name = 'Benchmark', last_name = 'Person' WHERE id = md5('a1')",
        f"UPDATE clients SET email = '{EMAIL}' WHERE id IN (md5('k10'), md5('k20'), md5('k30'))",
        f"UPDATE invoices SET buyer_name = '{NAME}' WHERE id IN (md5('i11'), md5('i21'), md5('i31'))",
        f"UPDATE prospects SET email = '{EMAIL}' WHERE id = md5('p1')",
    ]
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")  # hint bits set and statistics fresh, as on a live database
    return {"accounts": n_accounts, "clients": n_clients, "invoices": n_invoices, "prospects": n_prospects}


def _time_search(engine, identifiers, runs: int = 20) -> tuple[float, int, dict]:
    from shared.desk.search import search_subject

    with engine.connect() as conn:
        result = search_subject(conn, identifiers)  # warm
        timings = []
        with StatementCounter(engine) as counter:
            for _ in range(runs):
                start = time.perf_counter()
                search_subject(conn, identifiers)
                timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000, counter.count // runs, result.to_json()


SEARCH_INDEXES = (
    "ix_accounts_lower_email",
    "ix_accounts_phone",
    "ix_accounts_lower_first_name_last_name",
    "ix_companies_siret",
    "ix_clients_lower_email",
    "ix_clients_phone",
    "ix_clients_siret",
    "ix_clients_lower_name",
    "ix_clients_lower_contact_name",
    "ix_prospects_lower_email",
    "ix_prospects_phone",
    "ix_prospects_lower_name",
    "ix_invoices_lower_buyer_name",
    "ix_invoices_seller_siret",
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as data_dir:
        url = _fresh_database()
        _configure(Path(data_dir), url)
        from shared.desk.identifiers import SubjectIdentifiers
        from shared.ports.db import dispose_engines, get_engine

        engine = get_engine()
        start = time.perf_counter()
        sizes = _seed(engine, args.scale)
        seeded_s = time.perf_counter() - start
        identifiers = SubjectIdentifiers.parse(email=EMAIL, name=NAME)
        indexed_ms, statements, found = _time_search(engine, identifiers)
        with engine.begin() as conn:
            for name in SEARCH_INDEXES:
                conn.exec_driver_sql(f"DROP INDEX {name}")
        unindexed_ms, _statements, again = _time_search(engine, identifiers, runs=5)
        assert again == found
        figures = {
            "sizes": sizes,
            "seed_seconds": round(seeded_s, 1),
            "search_ms_median": round(indexed_ms, 2),
            "statements_per_search": statements,
            "search_ms_without_indexes": round(unindexed_ms, 2),
            "ratio": round(unindexed_ms / indexed_ms, 1) if indexed_ms else None,
            "found": {
                "accounts_holding": len(found["accounts_holding"]),
                "third_party_accounts": len(found["third_party_accounts"]),
                "is_platform_prospect": found["is_platform_prospect"],
                "matches": len(found["matches"]),
            },
        }
        print(json.dumps({"bench_search": figures}, indent=2))
        dispose_engines()
    return figures


def test_bench_search() -> None:
    """`make bench` entry point (BENCH_SEARCH_SCALE to shrink)."""
    figures = main(["--scale", os.environ.get("BENCH_SEARCH_SCALE", "1.0")])
    assert figures["found"]["accounts_holding"] == 1 and figures["found"]["third_party_accounts"] == 6


if __name__ == "__main__":
    main()
