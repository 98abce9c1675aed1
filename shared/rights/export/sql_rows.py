"""The archive's rows encoded by the database: one JSON object and one CSV line per row, as text.

The export's Python encoders (`ExportColumn.to_json`, the CSV converters of `archive`) stay
the reference: these SELECTs produce exactly their bytes, and a test holds them to it on
both databases. Letting PostgreSQL or SQLite encode the rows spares the Python work per
value (the bulk of an export's time on a heavy account): the worker only joins the texts.

PostgreSQL builds each object by concatenation (`to_json` escapes each string as Python's json
does) and streams the objects, and the CSV lines, with `COPY ... TO STDOUT`, the cheapest way
rows leave it; SQLite builds them with `json_object` (compact, keys in column order).
Timestamps become ISO 8601 UTC with a `Z` and microseconds only when not zero (as
`shared.platform.clock.iso`), dates ISO dates, decimals their exact text, booleans `true`/`false`. CSV fields are quoted as Python's csv module does (QUOTE_MINIMAL: a comma, a
double quote, CR or LF), free text first guarded against spreadsheet formulas.

A table with a JSON document column keeps the Python encoders (only dsr_requests, a few rows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection

from shared.ports import tables as schema
from shared.ports.db import UtcDateTime
from shared.rights.export.schema import ExportTable

if TYPE_CHECKING:  # the driver is imported where PostgreSQL's COPY is read: SQLite never loads it
    from psycopg import pq

DIALECTS = ("postgresql", "sqlite")
BATCH_ROWS = 2000
CHUNK_BYTES = 256 * 1024  # PostgreSQL's COPY rows are handed on in chunks of about this size

# The kinds of values, as the reference encoders (schema._codec) see them.
_DATETIME, _DATE, _DECIMAL, _INTEGER, _BOOLEAN, _STRING, _JSON = (
    "datetime",
    "date",
    "decimal",
    "integer",
    "boolean",
    "string",
    "json",
)


def _kind(column: sa.Column) -> str:
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return _DATETIME
    if isinstance(kind, sa.Date):
        return _DATE
    if isinstance(kind, sa.Numeric) and not isinstance(kind, (sa.Integer, sa.Float)):
        return _DECIMAL
    if isinstance(kind, sa.Integer):
        return _INTEGER
    if isinstance(kind, sa.Boolean):
        return _BOOLEAN
    if isinstance(kind, sa.JSON):
        return _JSON
    if isinstance(kind, sa.String):
        return _STRING
    raise TypeError(f"{column.table.name}.{column.name}: no SQL encoding for {kind!r}")


def _columns(table: ExportTable) -> list[sa.Column]:
    sa_table = schema.metadata.tables[table.name]
    return [sa_table.c[name] for name in table.column_names]


def supported(conn: Connection, table: ExportTable) -> bool:
    """Whether this database encodes this table's rows (else the Python encoders do)."""
    return conn.dialect.name in DIALECTS and all(_kind(c) != _JSON for c in _columns(table))


def _ref(column: sa.Column) -> str:
    # Names come from our own metadata, never from input; quoted for words such as "position".
    return f'"{column.table.name}"."{column.name}"'


def _scale(column: sa.Column) -> int:
    kind = column.type
    assert isinstance(kind, sa.Numeric)  # called for _DECIMAL columns only
    return kind.decimal_return_scale or kind.scale or 10


def _sqlite_json_value(column: sa.Column) -> str:
    """SQLite: the column's value as data.json holds it (text for timestamps, dates, decimals). SQLAlchemy stores
    UTC timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff', dates as 'YYYY-MM-DD'."""
    ref, kind = _ref(column), _kind(column)
    if kind == _DATETIME:
        return f"replace(replace({ref}, ' ', 'T') || 'Z', '.000000Z', 'Z')"
    if kind == _DECIMAL:  # as SQLAlchemy reads a SQLite decimal: the float at the column's scale
        return f"CASE WHEN {ref} IS NULL THEN NULL ELSE printf('%.{_scale(column)}f', {ref}) END"
    if kind == _BOOLEAN:
        return f"CASE WHEN {ref} IS NULL THEN NULL WHEN {ref} THEN json('true') ELSE json('false') END"
    return ref


def _sqlite_csv_field(column: sa.Column) -> str:
    """SQLite: the column's CSV cell, quoted as Python's csv module quotes it (QUOTE_MINIMAL)."""
    ref, kind = _ref(column), _kind(column)
    if kind == _BOOLEAN:
        return f"CASE WHEN {ref} IS NULL THEN '' WHEN {ref} THEN 'true' ELSE 'false' END"
    if kind == _INTEGER:
        return f"COALESCE(CAST({ref} AS TEXT), '')"
    if kind != _STRING:  # dates, timestamps, decimals: never a comma, quote or line break
        return f"COALESCE({_sqlite_json_value(column)}, '')"
    # Free text: spreadsheets run cells starting with = + - @ TAB CR as formulas, so third-party text gets an
    # apostrophe first (which needs no quotes); the value itself decides the quoting.
    # (OR stops at the first hit; unicode() reads the first code point without building a one-character string.)
    needs_quotes = f"(instr({ref}, ',') OR instr({ref}, '\"') OR instr({ref}, char(13)) OR instr({ref}, char(10)))"
    formula = f"unicode({ref}) IN (61, 43, 45, 64, 9, 13)"
    guard = f"CASE WHEN {formula} THEN '''' ELSE '' END"
    return (
        f"CASE WHEN {ref} IS NULL THEN '' "
        f"WHEN {needs_quotes} THEN '\"' || {guard} || replace({ref}, '\"', '\"\"') || '\"' "
        f"WHEN {formula} THEN '''' || {ref} ELSE {ref} END"
    )


def prepare(conn: Connection) -> None:
    """PostgreSQL, for this transaction: the text forms the encoders rely on (ISO dates and timestamps), memory
    enough to sort a heavy account's table in memory rather than in temporary files, and parallel workers to
    encode a heavy account's tables: the planner prices the encoding at a few operators per value, far below
    what building the texts costs, so that on paper passing rows back from workers outweighs their help.
    Tables under min_parallel_table_scan_size (8 MB by default) stay with one process."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL datestyle = 'ISO, YMD'")
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        conn.exec_driver_sql("SET LOCAL parallel_tuple_cost = 0")
        conn.exec_driver_sql("SET LOCAL parallel_setup_cost = 100")


def encoded_select(table: ExportTable, account_id: str, *expressions: str) -> sa.Select:
    """The account's rows of `table` as `expressions`, in the export's order. The expressions sit at the scan's
    own level: parallel workers then evaluate them (the costly part), and Gather Merge keeps the order."""
    return table.select(account_id).with_only_columns(
        *(sa.literal_column(e) for e in expressions), maintain_column_froms=True
    )


def _pg_timestamp(ref: str) -> str:
    # to_char() costs several times the text cast: pad the cast's trimmed microseconds instead,
    # casting once per value (the whole-second test needs no text).
    text = f"replace(({ref} AT TIME ZONE 'UTC')::text, ' ', 'T')"
    return f"CASE WHEN date_trunc('second', {ref}) = {ref} THEN {text} || 'Z' ELSE rpad({text}, 26, '0') || 'Z' END"


def _pg_json_value(column: sa.Column) -> str:
    """PostgreSQL: the column's JSON text, never NULL (so that the row's concatenation is not)."""
    ref, kind = _ref(column), _kind(column)
    if kind == _DATETIME:
        return f"COALESCE('\"' || {_pg_timestamp(ref)} || '\"', 'null')"
    if kind in (_DATE, _DECIMAL):
        return f"COALESCE('\"' || ({ref})::text || '\"', 'null')"
    if kind == _INTEGER:
        return f"COALESCE(({ref})::text, 'null')"
    if kind == _BOOLEAN:
        return f"CASE WHEN {ref} THEN 'true' WHEN NOT {ref} THEN 'false' ELSE 'null' END"
    return f"COALESCE(to_json({ref})::text, 'null')"


def _pg_csv_value(column: sa.Column) -> str:
    """PostgreSQL: the column's CSV cell for COPY (FORMAT csv), NULL for an empty cell."""
    ref, kind = _ref(column), _kind(column)
    if kind == _DATETIME:
        return _pg_timestamp(ref)
    if kind == _BOOLEAN:
        return f"CASE WHEN {ref} THEN 'true' WHEN NOT {ref} THEN 'false' END"
    if kind == _STRING:
        # Formula guard (= + - @ TAB CR); an empty string is an empty cell, as Python's csv writes it.
        quote = "''''"
        return f"NULLIF(CASE WHEN ascii({ref}) IN (61, 43, 45, 64, 9, 13) THEN {quote} || {ref} ELSE {ref} END, '')"
    return ref


def _pg_copy(conn: Connection, query: sa.Select, options: str) -> Iterator[memoryview]:
    """`COPY (query) TO STDOUT`, one row per item, read through libpq itself (psycopg's `pq` layer).

    psycopg's `Copy` iterator runs two generators and a wait per row (over a microsecond of CPU each; a
    heavy account streams half a million rows, on a tier with a fraction of a core): libpq's blocking
    PQgetCopyData in a loop costs a third to a half of that. psycopg's client-side binding quotes the parameters."""
    # deferred for cold start: the driver, loaded by the engine at its first PostgreSQL connection
    import psycopg
    from psycopg import pq

    compiled = query.compile(dialect=conn.dialect)
    driver = conn.connection.driver_connection
    assert driver is not None  # the connection is open: conn is in use
    sql = psycopg.ClientCursor(driver).mogrify(f"COPY ({compiled}) TO STDOUT {options}", compiled.params)
    pgconn = driver.pgconn
    pgconn.send_query(sql.encode())
    started = pgconn.get_result()
    if started is None or started.status != pq.ExecStatus.COPY_OUT:
        _finish(pgconn, started)
        raise psycopg.ProgrammingError("COPY TO STDOUT did not start")
    finished = False
    try:
        while True:
            size, data = pgconn.get_copy_data(0)  # blocking: a row, or -1 at the end (an error raises)
            if size < 0:
                break
            yield data
        finished = True
    finally:
        if not finished:  # abandoned (the archive failed, or the server did): leave the connection idle
            with suppress(psycopg.Error):
                while pgconn.get_copy_data(0)[0] >= 0:
                    pass
            with suppress(psycopg.Error):
                _finish(pgconn)
    _finish(pgconn)


def _raise_error_of(result: pq.abc.PGresult | None) -> None:
    # deferred for cold start, as in _pg_copy
    import psycopg
    from psycopg import pq

    if result is not None and result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.BAD_RESPONSE):
        sqlstate = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
        try:
            error: type[psycopg.Error] = psycopg.errors.lookup(sqlstate)
        except KeyError:  # a state psycopg does not know (a newer server)
            error = psycopg.DatabaseError
        raise error((result.error_message or b"").decode(errors="replace").strip())


def _finish(pgconn: pq.abc.PGconn, first: pq.abc.PGresult | None = None) -> None:
    """Reads the command's results to the end (libpq's protocol: the connection is then idle), then raises
    the server's error if one of them is one."""
    results = [first] if first is not None else []
    while (result := pgconn.get_result()) is not None:
        results.append(result)
    for result in results:
        _raise_error_of(result)


# Chunks: (number of rows, their texts joined by the output's separator: ",\n" in data.json, CRLF in a CSV).
Chunk = tuple[int, bytes]
JSON_SEPARATOR, CSV_SEPARATOR = b",\n", b"\r\n"


def _chunks(rows: Iterator[memoryview], separator: bytes, fix: Callable[[bytes], bytes]) -> Iterator[Chunk]:
    """COPY's rows, each ending with LF, in chunks of about CHUNK_BYTES: each row's LF becomes `separator`
    (not the last row's: the caller joins chunks), then `fix` mends what COPY escaped, a chunk at a time.
    Each row is copied into one buffer as it arrives (libpq frees it at once): keeping a batch of rows to
    join later costs three times the CPU (thousands of buffers alive, then read back cache-cold)."""
    buffer, count = bytearray(), 0
    for data in rows:
        buffer += data
        buffer[-1:] = separator
        count += 1
        if len(buffer) >= CHUNK_BYTES:
            del buffer[-len(separator) :]
            yield count, fix(bytes(buffer))
            buffer.clear()
            count = 0
    if count:
        del buffer[-len(separator) :]
        yield count, fix(bytes(buffer))


def _unescape_json(text: bytes) -> bytes:
    # COPY's text format: a JSON text holds no raw line break, and the only character of it that COPY escapes
    # is the backslash, which it doubles.
    return text.replace(b"\\\\", b"\\") if b"\\" in text else text


# COPY quotes a lone `\.` (its end-of-data marker) where Python's csv writes it plain, and only as the whole of a
# one-column row: the export's tables all have several, so this keeps a future one-column table right.
_QUOTED_END_OF_DATA = re.compile(rb'(^|\r\n)"\\\."(?=\r\n|$)')


def _unquote_end_of_data(text: bytes) -> bytes:
    return _QUOTED_END_OF_DATA.sub(rb"\1\\.", text) if b'"\\."' in text else text


def joined(texts: Iterator[Sequence[str]], separator: bytes) -> Iterator[Chunk]:
    """Batches of texts (SQLite's, or the Python encoders') as chunks: joined, then encoded in one go."""
    text_separator = separator.decode()
    for batch in texts:
        yield len(batch), text_separator.join(batch).encode()


def pg_json_query(table: ExportTable, account_id: str) -> sa.Select:
    """PostgreSQL: one text per row, the row's data.json object built by concatenation."""
    parts = [f"'{'{' if i == 0 else ','}\"{c.name}\":' || {_pg_json_value(c)}" for i, c in enumerate(_columns(table))]
    return encoded_select(table, account_id, " || ".join(parts) + " || '}'")


def pg_csv_query(table: ExportTable, account_id: str) -> sa.Select:
    """PostgreSQL: the row's CSV cells, for COPY (FORMAT csv) to quote."""
    return encoded_select(table, account_id, *(_pg_csv_value(c) for c in _columns(table)))


def json_rows(conn: Connection, table: ExportTable, account_id: str) -> Iterator[Chunk]:
    """The account's rows of `table` as data.json objects (UTF-8), in chunks, in the export's order."""
    if conn.dialect.name == "postgresql":
        return _chunks(_pg_copy(conn, pg_json_query(table, account_id), ""), JSON_SEPARATOR, _unescape_json)
    return joined(sqlite_batches(conn, sqlite_json_query(table, account_id)), JSON_SEPARATOR)


def csv_rows(conn: Connection, table: ExportTable, account_id: str) -> Iterator[Chunk]:
    """The account's rows of `table` as CSV lines (UTF-8), in chunks, in the export's order."""
    if conn.dialect.name == "postgresql":
        # COPY's CSV: a cell's own line breaks are inside its quotes, untouched; each row's end becomes CRLF.
        rows = _pg_copy(conn, pg_csv_query(table, account_id), "(FORMAT csv)")
        return _chunks(rows, CSV_SEPARATOR, _unquote_end_of_data)
    return joined(sqlite_batches(conn, sqlite_csv_query(table, account_id)), CSV_SEPARATOR)


def sqlite_json_query(table: ExportTable, account_id: str) -> sa.Select:
    """SQLite: one text per row, the row's data.json object built by json_object (compact, keys in column order)."""
    pairs = ", ".join(f"'{c.name}', {_sqlite_json_value(c)}" for c in _columns(table))
    return encoded_select(table, account_id, f"json_object({pairs})")


def sqlite_csv_query(table: ExportTable, account_id: str) -> sa.Select:
    """SQLite: one text per row, the row's CSV line (without the line end)."""
    return encoded_select(table, account_id, " || ',' || ".join(_sqlite_csv_field(c) for c in _columns(table)))


def sqlite_batches(conn: Connection, query: sa.Select) -> Iterator[Sequence[str]]:
    """SQLite: the single text column of `query`, in lists of up to BATCH_ROWS, read from the driver's own cursor in
    this same transaction: SQLAlchemy's result would process each row of a text the database has already built (a
    fifth of a heavy account's SQLite export)."""
    compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    driver = conn.connection.driver_connection
    assert driver is not None  # the connection is open: conn is in use
    cursor = driver.execute(str(compiled), [params[name] for name in compiled.positiontup or ()])
    try:
        while rows := cursor.fetchmany(BATCH_ROWS):
            yield [text for (text,) in rows]
    finally:
        cursor.close()
