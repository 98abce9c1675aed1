"""Benchmark of export-on-request on a heavy account, on SQLite and on PostgreSQL.

The account: 20,000 invoices with 2 lines each, 200,000 log lines (100,000 connection +
100,000 access), 5,000 payment records, 2,000 invoice PDFs of 30 KB (local object folder).

Measurements per database, each in its own fresh process:
- export: the real worker (`shared.rights.export.run_export`: saga steps, streamed ZIP to the
  object store, request completed, mail to the outbox);
- baseline (the old one): a minimal hand-written reader of the same rows (raw driver cursor) writing
  the same data.json, CSVs and PDFs into a ZIP file, every entry deflated at level 6;
- floor: what the data costs to move, `COPY (SELECT ...) TO STDOUT (FORMAT csv)` of each table into
  a ZIP (text deflated at level 1, PDFs stored), read and written as cheaply as the client can; SQLite,
  without COPY, through its raw cursor. On PostgreSQL also the issue's first form of it (one ZIP write
  per row through psycopg's COPY iterator);
- encodings: the export's own database work alone, its data.json and CSV texts read and discarded;
- on PostgreSQL, the server alone: the same texts, and the floor's raw rows, written by the server to /dev/null
  (no client at all; needs a superuser, as the test server's postgres is);
Export, floors and encodings run EXPORT_BENCH_ROUNDS times (3) alternated, and their medians are printed
(the baseline once): a single run moves by a third on a shared machine.
Then the export once more through S3 multipart upload on a moto server (peak RSS).
Printed: wall time, export/floor (target <= 2 on PostgreSQL, <= 3 on SQLite), export/baseline,
peak RSS (target < 200 MB), the sizes used and the machine's load.
Figures only; nothing is asserted about time.

    .venv/bin/python tests/perf/bench_export.py [--db sqlite|postgresql|both] [--scale 0.1] [--s3]
    .venv/bin/pytest -q -s -p no:cacheprovider tests/perf/bench_export.py
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BENCH_DATABASE = "pf_bench_export"
PDF_BYTES = 30 * 1024
RSS_TARGET_MB = 200
# The export's time against the floor (what the data costs to move), per database (issue 15).
FLOOR_TARGETS = {"postgresql": 2, "sqlite": 3}
ROUNDS = int(os.environ.get("EXPORT_BENCH_ROUNDS", "3"))


def _environment(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("S3_", "SQS_", "RESEND_", "DATABASE_"))},
        "PRIVACY_ENV": "test",
        "PRIVACY_DATA_DIR": str(data_dir),
        "DATABASE_URL": database_url,
        "PSEUDONYM_KEY": "bench-pseudonym-key",
        "PYTHONPATH": str(ROOT),
    }


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- Data -------------------------------------------------------------------------------------------


def _fresh_database(kind: str, data_dir: Path) -> str:
    import sqlalchemy as sa

    from shared.ports.db import normalise_url

    if kind == "sqlite":
        return f"sqlite:///{data_dir / 'bench.db'}"
    admin = sa.create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{BENCH_DATABASE}"'))
    admin.dispose()
    return normalise_url(POSTGRES_URL).rsplit("/", 1)[0] + "/" + BENCH_DATABASE


def _bench_pdf(number: str) -> bytes:
    from shared.local.demo import invoice_pdf

    head = invoice_pdf([f"Facture {number}"])
    # Real PDFs hold compressed streams: pad with incompressible bytes up to 30 KB.
    return head + b"%" + os.urandom(max(PDF_BYTES - len(head) - 1, 0))


def seed(scale: float) -> dict:
    """Runs in the child process configured for the bench database: the heavy account and its request."""
    import sqlalchemy as sa

    from shared.local.demo import create_account, populate_account
    from shared.platform.config import get_settings
    from shared.ports import tables as schema
    from shared.ports.backends import get_storage
    from shared.ports.db import get_engine, migrate
    from shared.records import registry as requests

    migrate()
    engine, storage, settings = get_engine(), get_storage(), get_settings()
    started = time.perf_counter()
    account = create_account(engine, with_2fa=True)
    counts = populate_account(
        engine,
        storage,
        account["id"],
        invoices=int(20_000 * scale),
        lines_per_invoice=2,
        log_lines=int(100_000 * scale),
        payments=int(5_000 * scale),
        clients=200,
        prospects=100,
        pdfs=False,
    )
    with engine.begin() as conn:
        chosen = conn.execute(
            sa.select(schema.invoices.c.id, schema.invoices.c.number)
            .where(schema.invoices.c.account_id == account["id"])
            .order_by(schema.invoices.c.id)
            .limit(int(2_000 * scale))
        ).all()
        for invoice_id, number in chosen:
            key = f"invoices/{account['id']}/{invoice_id}.pdf"
            storage.put(settings.documents_bucket, key, _bench_pdf(number), content_type="application/pdf")
            conn.execute(
                sa.update(schema.invoices).where(schema.invoices.c.id == invoice_id).values(pdf_object_key=key)
            )
        record = requests.create_request(conn, account_id=account["id"], kind="access", channel="dpo")
        requests.transition(conn, record.id, requests.VERIFIED, actor="dpo")
    # The planner's statistics, as autovacuum keeps them on a live database (else when it runs decides the plans).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")
    return {
        "account_id": account["id"],
        "request_id": record.id,
        "seconds": time.perf_counter() - started,
        "counts": counts["counts"],
    }


def new_request(account_id: str) -> dict:
    """Another verified access request of the seeded account (its previous export is complete)."""
    from shared.ports.db import get_engine
    from shared.records import registry as requests

    with get_engine().begin() as conn:
        record = requests.create_request(conn, account_id=account_id, kind="access", channel="dpo")
        requests.transition(conn, record.id, requests.VERIFIED, actor="dpo")
    return {"request_id": record.id}


def _median_run(runs: list[dict]) -> dict:
    """The run of median time, with its own CPU and memory figures."""
    return sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]


# --- The two measured runs ------------------------------------------------------------------------------


def run_export(request_id: str) -> dict:
    from shared.platform.config import get_settings
    from shared.ports.backends import get_storage
    from shared.ports.db import get_engine
    from shared.rights.export import run_export as worker

    engine = get_engine()
    started, cpu_started = time.perf_counter(), time.process_time()
    worker(engine, request_id)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    with engine.connect() as conn:
        from shared.records.registry import get_request

        details = get_request(conn, request_id).details
    size = get_storage().head(get_settings().exports_bucket, details["object_key"])["size"]
    return {"seconds": seconds, "cpu_seconds": cpu, "rss_mb": _peak_rss_mb(), "bytes": size}


def run_baseline(account_id: str) -> dict:
    """By hand: the same rows through the raw driver, the same JSON, CSV and PDFs, one ZIP file."""
    from shared.platform.config import get_settings
    from shared.ports.db import get_engine
    from shared.rights.export.schema import export_tables

    settings = get_settings()
    started = time.perf_counter()
    raw = get_engine().raw_connection()
    dbapi = raw.driver_connection
    postgres = get_engine().dialect.name == "postgresql"
    if postgres:
        dbapi.execute("SET cursor_tuple_fraction = 1.0")  # as the export does: plan for reading every row
    tables = export_tables()

    def rows(table):
        cursor = dbapi.cursor(name=f"c_{table.name}") if postgres else dbapi.cursor()
        if postgres:
            cursor.itersize = 2000
        cursor.execute(_account_rows_sql(table, account_id, ordered=True))
        yield from cursor
        cursor.close()

    def plain(value):
        return value if value is None or isinstance(value, (str, int, float, bool, dict, list)) else str(value)

    out_path = Path(settings.data_dir) / "baseline.zip"
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        documents = Path(settings.data_dir) / "objects" / settings.documents_bucket / "invoices" / account_id
        for pdf in sorted(documents.glob("*.pdf")):
            with open(pdf, "rb") as source, zf.open(f"invoices/{pdf.name}", "w") as target:
                while chunk := source.read(256 * 1024):
                    target.write(chunk)
        with io.TextIOWrapper(zf.open("data.json", "w", force_zip64=True), encoding="utf-8") as out:
            out.write('{"data":{')
            for position, table in enumerate(tables):
                out.write(("," if position else "") + json.dumps(table.name) + ":[")
                names = table.column_names
                for count, row in enumerate(rows(table)):
                    out.write(
                        ("," if count else "")
                        + "\n"
                        + json.dumps(dict(zip(names, map(plain, row), strict=True)), ensure_ascii=False)
                    )
                out.write("]")
            out.write("}}")
        for table in tables:
            with io.TextIOWrapper(
                zf.open(f"csv/{table.name}.csv", "w", force_zip64=True), encoding="utf-8", newline=""
            ) as out:
                writer = csv.writer(out)
                writer.writerow(table.column_names)
                writer.writerows(rows(table))
    raw.close()
    return {"seconds": time.perf_counter() - started, "rss_mb": _peak_rss_mb(), "bytes": out_path.stat().st_size}


def _account_rows_sql(table, account_id: str, *, ordered: bool) -> str:
    """The SELECT of the account's rows of `table`, as the export's (the data map's link to the account),
    as plain SQL; `ordered`: in the export's order (primary key), else as the database finds them."""
    from shared.ports.db import get_engine

    query = table.select(account_id)
    if not ordered:
        query = query.order_by(None)
    return str(query.compile(dialect=get_engine().dialect, compile_kwargs={"literal_binds": True}))


def run_floor(account_id: str, *, as_they_come: bool = False) -> dict:
    """What the data costs to move: each table's rows once as CSV, encoded by the database itself
    (PostgreSQL `COPY ... TO STDOUT (FORMAT csv)`; SQLite has no COPY: its raw cursor into the C csv
    writer), into a ZIP with text deflated at level 1 and the PDFs stored. Rows and PDFs timed apart.
    `as_they_come` (PostgreSQL): each row written to the ZIP as psycopg's COPY iterator hands it over, the
    floor as the issue first measured it; by default the rows are read and written as cheaply as they can be."""
    from shared.platform.config import get_settings
    from shared.ports.db import get_engine
    from shared.rights.export.schema import export_tables

    settings = get_settings()
    engine = get_engine()
    postgres = engine.dialect.name == "postgresql"
    out_path = Path(settings.data_dir) / "floor.zip"
    started, cpu_started = time.perf_counter(), time.process_time()
    raw = engine.raw_connection()
    dbapi = raw.driver_connection
    with zipfile.ZipFile(out_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        documents = Path(settings.data_dir) / "objects" / settings.documents_bucket / "invoices" / account_id
        for pdf in sorted(documents.glob("*.pdf")):
            zf.writestr(zipfile.ZipInfo(f"invoices/{pdf.name}"), pdf.read_bytes(), compress_type=zipfile.ZIP_STORED)
        pdf_seconds = time.perf_counter() - started
        for table in export_tables():
            select = _account_rows_sql(table, account_id, ordered=False)
            with zf.open(f"csv/{table.name}.csv", "w", force_zip64=True) as target:
                if postgres and as_they_come:  # as the issue first measured it: one ZIP write per row
                    with dbapi.cursor() as cursor:
                        with cursor.copy(f"COPY ({select}) TO STDOUT (FORMAT csv)") as copy:
                            for data in copy:
                                target.write(data)
                elif postgres:
                    # The least the client can do: libpq's read loop, rows gathered into pieces of 1 MiB
                    # (one deflate and CRC call per piece, not per row).
                    pgconn, piece = dbapi.pgconn, bytearray()
                    pgconn.send_query(f"COPY ({select}) TO STDOUT (FORMAT csv)".encode())
                    pgconn.get_result()
                    while (row := pgconn.get_copy_data(0))[0] >= 0:
                        piece += row[1]
                        if len(piece) >= 1 << 20:
                            target.write(piece)
                            piece.clear()
                    target.write(piece)
                    while pgconn.get_result() is not None:
                        pass
                else:
                    text = io.TextIOWrapper(target, encoding="utf-8", newline="")
                    cursor = dbapi.execute(select)
                    csv.writer(text).writerows(cursor)
                    text.flush()
                    text.detach()
    raw.close()
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "rows_seconds": seconds - pdf_seconds,
        "pdf_seconds": pdf_seconds,
        "rss_mb": _peak_rss_mb(),
        "bytes": out_path.stat().st_size,
    }


def run_encodings(account_id: str) -> dict:
    """The export's own database work alone: its data.json and CSV texts of every table (`sql_rows`), read and
    discarded; no PDF, no ZIP. What is left of the export's time beyond this is the worker's."""
    from shared.ports.db import get_engine
    from shared.rights.export import archive, sql_rows
    from shared.rights.export.schema import export_tables

    engine = get_engine()
    started, cpu_started = time.perf_counter(), time.process_time()
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        sql_rows.prepare(conn)
        for table in export_tables():
            for chunks in (archive._json_chunks, archive._csv_chunks):
                for _rows, _text in chunks(conn, table, account_id):
                    pass
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu_started}


def run_database_alone(account_id: str) -> dict:
    """PostgreSQL's own share, no client: each query's rows encoded and written by the server to /dev/null
    (`COPY ... TO '/dev/null'`, a superuser's right: None without it). The export's data.json texts and CSV cells
    (with its session settings: parallel workers), against the floor's raw rows as COPY's CSV: what the database
    spends building the texts, whatever the client does with them."""
    import sqlalchemy as sa

    from shared.ports.db import get_engine
    from shared.rights.export import sql_rows
    from shared.rights.export.schema import export_tables

    engine = get_engine()
    seconds = {"json": 0.0, "csv": 0.0, "raw": 0.0}
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        if not conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
            return {"seconds": None}
        sql_rows.prepare(conn)
        for table in export_tables():
            if not sql_rows.supported(conn, table):
                continue
            queries = {
                "json": (sql_rows.pg_json_query(table, account_id), ""),
                "csv": (sql_rows.pg_csv_query(table, account_id), "(FORMAT csv)"),
                "raw": (table.select(account_id).order_by(None), "(FORMAT csv)"),
            }
            for name, (query, options) in queries.items():
                sql = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
                started = time.perf_counter()
                conn.exec_driver_sql(f"COPY ({sql}) TO '/dev/null' {options}".replace("%", "%%"))
                seconds[name] += time.perf_counter() - started
    return {"seconds": seconds}


# --- Orchestration -------------------------------------------------------------------------------------


def _child(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _s3_environment(env: dict[str, str], endpoint: str) -> dict[str, str]:
    """Object storage on a moto S3 server: the export then streams through S3 multipart upload."""
    from shared.platform.config import load_settings
    from tests.fakes.moto import (
        MOTO_ACCESS_KEY,
        MOTO_SECRET_KEY,
        create_buckets,
        unique_bucket_names,
    )

    env = {
        **env,
        "S3_ENDPOINT_URL": endpoint,
        "S3_ACCESS_KEY": MOTO_ACCESS_KEY,
        "S3_SECRET_KEY": MOTO_SECRET_KEY,
        **unique_bucket_names(),
    }
    create_buckets(endpoint, load_settings(env))
    return env


def bench(kind: str, scale: float, *, s3_endpoint: str | None = None) -> dict:
    """Seed, export, baseline. With `s3_endpoint` the export goes to S3 and no baseline runs (memory figure)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-export-{kind}-") as tmp:
        data_dir = Path(tmp)
        sys.path.insert(0, str(ROOT))
        database_url = _fresh_database(kind, data_dir)
        env = _environment(database_url, data_dir)
        if s3_endpoint:
            env = _s3_environment(env, s3_endpoint)
        seeded = _child(env, "seed", str(scale))
        ours = _child(env, "export", seeded["request_id"])
        if s3_endpoint:
            print(
                f"[export bench] {kind:10s} S3 (moto) export {ours['seconds']:7.2f} s | peak RSS {ours['rss_mb']:.0f} MB"
                f" (target < {RSS_TARGET_MB}) | archive {ours['bytes'] / 1e6:.1f} MB",
                flush=True,
            )
            return {
                "database": kind,
                "storage": "s3",
                "export_seconds": ours["seconds"],
                "export_peak_rss_mb": ours["rss_mb"],
            }
        baseline = _child(env, "baseline", seeded["account_id"])
        # One run of each moves by a third on a shared machine: ROUNDS alternated runs, the median kept.
        runs: dict[str, list[dict]] = {"export": [ours], "floor": [], "first_floor": [], "encodings": []}
        for round_number in range(ROUNDS):
            if round_number:
                request_id = _child(env, "request", seeded["account_id"])["request_id"]
                runs["export"].append(_child(env, "export", request_id))
            runs["floor"].append(_child(env, "floor", seeded["account_id"]))
            if kind == "postgresql":
                runs["first_floor"].append(_child(env, "floor-as-they-come", seeded["account_id"]))
            runs["encodings"].append(_child(env, "encodings", seeded["account_id"]))
        ours, floor, encodings = (_median_run(runs[name]) for name in ("export", "floor", "encodings"))
        database_alone = (
            _child(env, "database-alone", seeded["account_id"])["seconds"] if kind == "postgresql" else None
        )
        first_floor = _median_run(runs["first_floor"]) if runs["first_floor"] else None
    figures = {
        "database": kind,
        "seed_seconds": round(seeded["seconds"], 1),
        "rows": seeded["counts"],
        "export_seconds": round(ours["seconds"], 2),
        "export_range": [
            round(min(r["seconds"] for r in runs["export"]), 2),
            round(max(r["seconds"] for r in runs["export"]), 2),
        ],
        "floor_range": [
            round(min(r["seconds"] for r in runs["floor"]), 2),
            round(max(r["seconds"] for r in runs["floor"]), 2),
        ],
        "baseline_seconds": round(baseline["seconds"], 2),
        "floor_seconds": round(floor["seconds"], 2),
        "floor_rows_seconds": round(floor["rows_seconds"], 2),
        "floor_pdf_seconds": round(floor["pdf_seconds"], 2),
        "floor_archive_mb": round(floor["bytes"] / 1e6, 1),
        "ratio": round(ours["seconds"] / baseline["seconds"], 2),
        "floor_ratio": round(ours["seconds"] / floor["seconds"], 2),
        "encodings_seconds": round(encodings["seconds"], 2),
        "first_floor_seconds": round(first_floor["seconds"], 2) if first_floor else None,
        "first_floor_ratio": round(ours["seconds"] / first_floor["seconds"], 2) if first_floor else None,
        # The worker process's own CPU (the database's is its server's): what a fraction-of-a-core tier bills.
        "export_cpu_seconds": round(ours["cpu_seconds"], 2),
        "floor_cpu_seconds": round(floor["cpu_seconds"], 2),
        "database_alone_seconds": {k: round(v, 2) for k, v in database_alone.items()} if database_alone else None,
        "export_peak_rss_mb": round(ours["rss_mb"], 1),
        "baseline_peak_rss_mb": round(baseline["rss_mb"], 1),
        "archive_mb": round(ours["bytes"] / 1e6, 1),
        "baseline_archive_mb": round(baseline["bytes"] / 1e6, 1),
    }
    target = FLOOR_TARGETS[kind]
    print(
        f"[export bench] {kind:10s} medians of {ROUNDS} alternated runs:"
        f" export {figures['export_seconds']:.2f} s ({figures['export_range'][0]:.2f}-{figures['export_range'][1]:.2f})"
        f" | floor {figures['floor_seconds']:.2f} s ({figures['floor_range'][0]:.2f}-{figures['floor_range'][1]:.2f})"
        f" (rows {figures['floor_rows_seconds']:.2f} + PDFs {figures['floor_pdf_seconds']:.2f})"
        f" | export/floor {figures['floor_ratio']:.2f} (target <= {target})"
        + (
            f" | rows written as they come, the issue's first floor: {figures['first_floor_seconds']:.2f} s,"
            f" export/that floor {figures['first_floor_ratio']:.2f}"
            if first_floor
            else ""
        )
        + f" | the export's database encodings alone (JSON + CSV, read, discarded) {figures['encodings_seconds']:.2f} s"
        + (
            f" | the server alone (COPY to /dev/null): the export's JSON texts {database_alone['json']:.2f} s"
            f" + CSV cells {database_alone['csv']:.2f} s, the floor's raw rows {database_alone['raw']:.2f} s"
            if database_alone
            else ""
        )
        + f" | worker CPU {figures['export_cpu_seconds']:.2f} s, floor's {figures['floor_cpu_seconds']:.2f} s"
        f" | old baseline {figures['baseline_seconds']:6.2f} s, export/baseline {figures['ratio']:.2f}"
        f" | peak RSS export {figures['export_peak_rss_mb']:.0f} MB (target < {RSS_TARGET_MB}),"
        f" baseline {figures['baseline_peak_rss_mb']:.0f} MB"
        f" | archive {figures['archive_mb']} MB (floor {figures['floor_archive_mb']} MB, baseline {figures['baseline_archive_mb']} MB)"
        f" | seed {figures['seed_seconds']} s",
        flush=True,
    )
    print(f"[export bench] {kind:10s} rows {json.dumps(figures['rows'])}", flush=True)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the heavy account (1.0 = full size)")
    parser.add_argument(
        "--s3", action="store_true", help="also export to S3 on a local moto server (peak RSS of the multipart path)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        action, value = args.child
        result = {
            "seed": lambda: seed(float(value)),
            "export": lambda: run_export(value),
            "baseline": lambda: run_baseline(value),
            "floor": lambda: run_floor(value),
            "floor-as-they-come": lambda: run_floor(value, as_they_come=True),
            "encodings": lambda: run_encodings(value),
            "database-alone": lambda: run_database_alone(value),
            "request": lambda: new_request(value),
        }[action]()
        print(json.dumps(result))
        return
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    run_all(kinds, args.scale, s3=args.s3)


def run_all(kinds: tuple[str, ...], scale: float, *, s3: bool) -> dict[str, dict]:
    """Each database in turn, then (s3) the export through S3 multipart on a moto server, on PostgreSQL if measured."""
    print(
        f"[export bench] sizes (scale {scale}): {int(20_000 * scale)} invoices x 2 lines, {int(200_000 * scale)} log lines,"
        f" {int(5_000 * scale)} payment records, {int(2_000 * scale)} PDFs of {PDF_BYTES // 1024} KB;"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    results = {kind: bench(kind, scale) for kind in kinds}
    if "sqlite" in results and "postgresql" in results:
        ratio = results["sqlite"]["export_seconds"] / results["postgresql"]["floor_seconds"]
        print(
            f"[export bench] sqlite     export against the PostgreSQL floor: {ratio:.2f} (target <= {FLOOR_TARGETS['sqlite']})",
            flush=True,
        )
    if s3:
        sys.path.insert(0, str(ROOT))
        from tests.fakes.moto import start_moto_server

        server, endpoint = start_moto_server()
        try:
            results["s3"] = bench("postgresql" if "postgresql" in kinds else kinds[0], scale, s3_endpoint=endpoint)
        finally:
            server.stop()
    return results


def test_bench_export() -> None:
    """`make bench` entry point: both databases and the S3 path, at the issue's size (BENCH_EXPORT_SCALE to shrink)."""
    results = run_all(("sqlite", "postgresql"), float(os.environ.get("BENCH_EXPORT_SCALE", "1.0")), s3=True)
    assert results["postgresql"]["rows"]["invoices"] > 0


if __name__ == "__main__":
    main()
