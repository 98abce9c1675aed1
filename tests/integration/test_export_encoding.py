"""The database's encoding of the export's rows (shared.rights.export.sql_rows) is byte for byte
the Python encoders' (the reference), on SQLite and PostgreSQL, for awkward values: CSV quoting,
formula guards, control characters, non-ASCII text, NULLs, empty strings, timestamps with and
without microseconds, decimals at the column's scale, and the rows' order."""

from __future__ import annotations

import datetime as dt
import decimal

import psycopg
import pytest
import sqlalchemy as sa

from shared.local.demo import create_account, populate_account
from shared.platform.clock import UTC
from shared.ports import tables as schema
from shared.rights.export import archive, export_tables, sql_rows

AWKWARD = [
    "a,b",
    'say "hi"',
    "line\nbreak",
    "cr\rreturn",
    "crlf\r\nend",
    "=SUM(A1)",
    "+33 6 12",
    "-minus",
    "@handle",
    "\ttabbed",
    "\rstarts with CR",
    "",
    " spaced ",
    "émoji 😀 ü ß",
    "ctrl\x01\x08\x0c\x1f",
    "back\\slash",
    "tab\tinside",
    "quote'single",
    "sep\u2028line",
    "del\x7f",
    "'already quoted",
    "null",
    '"',
    ",",
    "\n",
    "\\.",
    "\\",
    "a\\.",
]
DECIMALS = ["0", "1.5", "12345.678", "-2.25", "0.001", "999999999.999"]


def _awkward_rows(engine, account_id: str) -> None:
    base = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    with engine.begin() as conn:

        def ids(table):
            return (
                conn.execute(sa.select(table.c.id).where(table.c.account_id == account_id).order_by(table.c.id))
                .scalars()
                .all()
            )

        for i, client_id in enumerate(ids(schema.clients)):
            conn.execute(
                sa.update(schema.clients)
                .where(schema.clients.c.id == client_id)
                .values(
                    name=AWKWARD[i % len(AWKWARD)] or "x",
                    contact_name=AWKWARD[(i + 3) % len(AWKWARD)],
                    city=None if i % 4 == 0 else AWKWARD[(i + 7) % len(AWKWARD)],
                    created_at=base + dt.timedelta(seconds=i, microseconds=0 if i % 2 else 1 + i),
                )
            )
        for i, invoice_id in enumerate(ids(schema.invoices)):
            conn.execute(
                sa.update(schema.invoices)
                .where(schema.invoices.c.id == invoice_id)
                .values(
                    buyer_address=AWKWARD[(i + 1) % len(AWKWARD)],
                    seller_address=None if i % 3 else AWKWARD[i % len(AWKWARD)],
                    transmitted_at=None if i % 2 else base + dt.timedelta(days=i, microseconds=999_999),
                    issue_date=dt.date(2024 + i % 3, 1 + i % 12, 1 + i % 28),
                )
            )
            lines = conn.execute(
                sa.select(schema.invoice_lines.c.id).where(schema.invoice_lines.c.invoice_id == invoice_id)
            ).scalars()
            for j, line_id in enumerate(lines):
                conn.execute(
                    sa.update(schema.invoice_lines)
                    .where(schema.invoice_lines.c.id == line_id)
                    .values(
                        description=AWKWARD[(i + j) % len(AWKWARD)],
                        quantity=decimal.Decimal(DECIMALS[(i + j) % len(DECIMALS)]),
                        vat_rate=decimal.Decimal(("20", "5.5", "0", "2.1")[(i + j) % 4]),
                    )
                )
        for i, log_id in enumerate(ids(schema.access_logs)):
            conn.execute(
                sa.update(schema.access_logs)
                .where(schema.access_logs.c.id == log_id)
                .values(
                    path="/" + AWKWARD[i % len(AWKWARD)],
                    user_agent=None if i % 5 == 0 else AWKWARD[(i + 2) % len(AWKWARD)],
                    occurred_at=base - dt.timedelta(hours=i, microseconds=0 if i % 3 else 250_000),
                )
            )


def _seed_awkward_account(engine) -> str:
    account = create_account(engine, with_2fa=True)
    other = create_account(engine)
    populate_account(
        engine, None, account["id"], invoices=30, log_lines=40, clients=30, prospects=5, payments=6, pdfs=False
    )
    populate_account(engine, None, other["id"], invoices=5, log_lines=5, pdfs=False)
    _awkward_rows(engine, account["id"])
    return account["id"]


def _compare_every_table(conn, account_id: str) -> int:
    """Each table's database encoding against the Python reference; the number of rows compared."""
    compared = 0
    for table in export_tables():
        if not sql_rows.supported(conn, table):
            assert any(isinstance(schema.metadata.tables[table.name].c[c].type, sa.JSON) for c in table.column_names)
            continue
        expected_json = [t for batch in archive.json_texts(conn, table, account_id) for t in batch]
        got_json = sql_rows.JSON_SEPARATOR.join(text for _n, text in sql_rows.json_rows(conn, table, account_id))
        assert got_json.decode().split(",\n{") == ",\n".join(expected_json).split(",\n{"), table.name
        expected_csv = [t for batch in archive.csv_lines(conn, table, account_id) for t in batch]
        got_csv = sql_rows.CSV_SEPARATOR.join(text for _n, text in sql_rows.csv_rows(conn, table, account_id))
        assert got_csv.decode() == "\r\n".join(expected_csv), table.name
        assert sum(n for n, _text in sql_rows.csv_rows(conn, table, account_id)) == len(expected_csv)
        compared += len(expected_json)
    return compared


def test_database_encoding_is_the_python_encoding(engine, monkeypatch):
    # Many chunks (rows by count on SQLite, bytes on PostgreSQL): their joints are checked too.
    monkeypatch.setattr(sql_rows, "BATCH_ROWS", 7)
    monkeypatch.setattr(sql_rows, "CHUNK_BYTES", 700)
    account_id = _seed_awkward_account(engine)
    with engine.connect() as conn:
        sql_rows.prepare(conn)
        assert _compare_every_table(conn, account_id) > 200


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_encoding_by_parallel_workers_keeps_the_bytes_and_the_order(engine, monkeypatch):
    """A heavy account's tables are encoded by PostgreSQL's parallel workers, their rows merged back in order:
    forced here on small tables, the texts are still the reference's, row for row."""
    monkeypatch.setattr(sql_rows, "CHUNK_BYTES", 700)
    account_id = _seed_awkward_account(engine)
    with engine.connect() as conn:
        sql_rows.prepare(conn)
        for setting in ("parallel_setup_cost", "min_parallel_table_scan_size", "min_parallel_index_scan_size"):
            conn.exec_driver_sql(f"SET LOCAL {setting} = 0")
        conn.exec_driver_sql("SET LOCAL enable_indexscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        table = next(t for t in export_tables() if t.name == "invoices")
        for query in (sql_rows.pg_json_query(table, account_id), sql_rows.pg_csv_query(table, account_id)):
            sql = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = [line.strip() for line in conn.exec_driver_sql(f"EXPLAIN VERBOSE {sql}").scalars()]
            # The workers scan and encode: what their scan outputs is the texts, not the columns.
            scan = next(i for i, line in enumerate(plan) if "Parallel Seq Scan" in line)
            assert plan[scan + 1].startswith("Output:") and "CASE WHEN" in plan[scan + 1], plan
        assert _compare_every_table(conn, account_id) > 200


def test_awkward_values_survive_the_archive_as_csv_and_json(engine):
    """The reference itself: what the CSV and data.json hold reads back as the values written."""
    import csv
    import io
    import json

    account = create_account(engine)
    populate_account(engine, None, account["id"], invoices=3, log_lines=2, clients=len(AWKWARD), pdfs=False)
    _awkward_rows(engine, account["id"])
    table = next(t for t in export_tables() if t.name == "clients")
    with engine.connect() as conn:
        sql_rows.prepare(conn)
        text = sql_rows.CSV_SEPARATOR.join(t for _n, t in sql_rows.csv_rows(conn, table, account["id"])).decode()
        objects = json.loads(
            "["
            + sql_rows.JSON_SEPARATOR.join(t for _n, t in sql_rows.json_rows(conn, table, account["id"])).decode()
            + "]"
        )
    rows = list(csv.reader(io.StringIO(text + "\r\n", newline="")))
    names = list(table.column_names)
    cells = {row[names.index("name")] for row in rows}
    assert "'=SUM(A1)" in cells and "a,b" in cells and 'say "hi"' in cells and "line\nbreak" in cells
    assert {o["name"] for o in objects} >= {"=SUM(A1)", "a,b", "émoji 😀 ü ß", "ctrl\x01\x08\x0c\x1f"}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_copy_abandoned_or_failing_midway_leaves_the_connection_usable(engine):
    # The archive reads COPY through libpq itself: an export that fails while a table streams must still
    # roll back and give its connection back in a state the next statement can use.
    series = sa.select(sa.literal_column("g::text")).select_from(sa.text("generate_series(1, 50000) AS g"))
    with engine.connect() as conn:
        rows = sql_rows._pg_copy(conn, series, "")
        assert bytes(next(rows)) == b"1\n"
        rows.close()  # abandoned after one row of 50,000
        assert conn.execute(sa.text("SELECT 41 + 1")).scalar() == 42

        failing = sa.select(sa.literal_column("(1 / (g - 40000))::text")).select_from(
            sa.text("generate_series(1, 50000) AS g")
        )
        with pytest.raises(psycopg.errors.DivisionByZero):
            for _row in sql_rows._pg_copy(conn, failing, ""):
                pass
        conn.rollback()
        assert conn.execute(sa.text("SELECT 41 + 1")).scalar() == 42

        with pytest.raises(psycopg.errors.UndefinedColumn):  # refused before the first row
            next(sql_rows._pg_copy(conn, sa.select(sa.literal_column("no_such_column")), ""))
        conn.rollback()
        assert list(sql_rows._pg_copy(conn, series.limit(2), "")) == [b"1\n", b"2\n"]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_lone_end_of_data_marker_reads_as_pythons_csv_writes_it(engine, monkeypatch):
    """COPY quotes `\\.` when it is the whole of a one-column row (its end-of-data marker); Python's csv
    writes it plain, and so must the archive, whichever chunk the row falls in."""
    import csv
    import io

    monkeypatch.setattr(sql_rows, "CHUNK_BYTES", 8)
    values = ["\\.", "a", "\\.", "\\.x", '"\\."', "\\."]
    cells = sa.select(sa.literal_column("v")).select_from(
        sa.text("unnest(CAST(:values AS text[])) WITH ORDINALITY AS t(v, n)").bindparams(values=values)
    )
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\r\n").writerows([value] for value in values)
    with engine.connect() as conn:
        rows = sql_rows._pg_copy(conn, cells.order_by(sa.literal_column("n")), "(FORMAT csv)")
        chunks = sql_rows._chunks(rows, sql_rows.CSV_SEPARATOR, sql_rows._unquote_end_of_data)
        got = sql_rows.CSV_SEPARATOR.join(text for _n, text in chunks)
    assert got.decode() + "\r\n" == expected.getvalue()
