"""The archive: one ZIP streamed chunk by chunk (data.json, schema.json, csv/, invoices/, README.html).

Rows are read with server-side cursors and written as data.json and CSV into a ZIP that
is produced in pieces and uploaded as it is produced (S3 multipart), so memory stays
flat whatever the account's size.

Speed (issue 15): the database encodes the rows (`sql_rows`: one JSON text and one CSV line
per row, byte for byte what the Python encoders below write, which stay the reference and
serve tables with JSON documents) and PostgreSQL streams them by COPY, read through libpq
directly; text is deflated at level 1 (level 6 costs three times the CPU for a few percent) by
ISA-L (a quarter of zlib's CPU, the same DEFLATE format); PDFs, already compressed, are stored, and
fetched ahead on reader threads from a remote store (S3 answers each GET after a round trip).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import re
import time
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from typing import IO, Any

import sqlalchemy as sa
from isal import isal_zlib
from sqlalchemy import Connection

from shared.platform.clock import iso
from shared.platform.config import Settings
from shared.policy import data_map
from shared.policy import facts as policy
from shared.policy import sources as data_sources
from shared.ports.backends import get_storage
from shared.ports.storage import ObjectNotFound, ObjectStore
from shared.ports.tables import accounts, invoices
from shared.records.registry import RequestRecord
from shared.rights.export import sql_rows
from shared.rights.export.readme import readme_html
from shared.rights.export.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ExportTable,
    data_json_schema,
    export_tables,
)
from shared.rights.export.stats import ArchiveStats

_FLUSH_BYTES = 1024 * 1024  # hand the archive to the uploader in pieces of about this size
_COPY_BYTES = 256 * 1024
# Server-side cursors on PostgreSQL, batches of rows: memory stays flat whatever the table size.
_STREAMED = {"stream_results": True, "yield_per": 2000}
_COMPRESS_LEVEL = 1  # text: level 1 deflates data.json and the CSVs at a fraction of level 6's cost
# Documents up to this size are read whole and stored in one go (their size and CRC known up
# front); larger ones stream through. Either way they are stored, not deflated: PDFs are compressed.
_WHOLE_DOCUMENT_BYTES = 8 * 1024 * 1024
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def object_prefix(prefix_id: str) -> data_map.ObjectPrefix:
    return next(p for p in data_map.OBJECT_PREFIXES if p.id == prefix_id)


class _Sink:
    """What zipfile writes into; the archive generator hands its content on in pieces.

    No tell/seek: zipfile then writes a streamable ZIP (sizes in data descriptors).
    """

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        if data:
            self._parts.append(bytes(data))
            self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:  # zipfile does not close a file object it was given
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data


class _ChunkStream(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not len(self._pending):
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def chunk_reader(chunks: Iterator[bytes]) -> io.BufferedReader:
    """A readable, non-seekable file over byte chunks (what the object store's put() streams)."""
    return io.BufferedReader(_ChunkStream(chunks), buffer_size=_FLUSH_BYTES)


def hashed(chunks: Iterator[bytes], digest: Any, stats: ArchiveStats) -> Iterator[bytes]:
    for chunk in chunks:
        digest.update(chunk)
        stats.size_bytes += len(chunk)
        yield chunk


def _rows(conn: Connection, table: ExportTable, account_id: str) -> Iterator[list[Any]]:
    """The account's rows of a table, values encoded for JSON, fetched in batches (server-side on PostgreSQL)."""
    encoders = [(i, c.to_json) for i, c in enumerate(table.columns) if c.encode is not None]
    result = conn.execute(table.select(account_id), execution_options=_STREAMED)
    with closing(result):
        for row in result:
            values = list(row)
            for index, encode in encoders:
                values[index] = encode(values[index]) if values[index] is not None else None
            yield values


def document_file(invoice_id: str, number: str) -> str:
    """Where an invoice's PDF sits in the archive: readable, unique, safe on every file system."""
    safe = _FILE_NAME_UNSAFE.sub("-", number).strip("-.")[:80] or "invoice"
    return f"invoices/{safe}_{invoice_id[:8]}.pdf"


def _documents(conn: Connection, account_id: str) -> Iterator[tuple[str, str, str]]:
    """(invoice id, number, object key) of the account's invoice PDFs under the account's own prefix."""
    query = (
        data_map.subject_rows("invoices", account_id)
        .with_only_columns(invoices.c.id, invoices.c.number, invoices.c.pdf_object_key)
        .where(invoices.c.pdf_object_key.is_not(None))
        .order_by(invoices.c.id)
    )
    # Belt and braces: never follow a key outside this account's prefix, whatever a row says.
    prefix = object_prefix("invoice_pdfs").prefix(account_id=account_id)
    result = conn.execute(query, execution_options=_STREAMED)
    with closing(result):
        for invoice_id, number, key in result:
            if key.startswith(prefix):
                yield invoice_id, number, key


def iter_archive(
    conn: Connection, record: RequestRecord, stats: ArchiveStats, *, now: dt.datetime, settings: Settings
) -> Iterator[bytes]:
    """The ZIP of one account's export, as consecutive byte chunks of about 1 MiB."""
    sink = _Sink()
    tables = export_tables()
    sql_rows.prepare(conn)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESS_LEVEL) as zf:
        yield from _write_documents(conn, record.account, zf, sink, stats, settings)
        yield from _write_data_json(conn, record, tables, zf, sink, stats, now, settings)
        for table in tables:
            yield from _write_csv(conn, table, record.account, zf, sink)
        zf.writestr("schema.json", json.dumps(data_json_schema(), ensure_ascii=False, indent=2))
        zf.writestr("README.html", readme_html(record, tables, stats, now))
    yield sink.take()


def _open_text_entry(zf: zipfile.ZipFile, name: str) -> IO[bytes]:
    """A deflated entry for data.json or a CSV, deflated by ISA-L (python-isal) rather than zlib: the same
    DEFLATE stream, which every unzip reads, for about a quarter of zlib's CPU at level 1 (the bulk of an
    export's CPU after the database's work; the worker gets a fraction of a core). zipfile has no public
    hook for its compressor: the entry's is replaced before its first byte (tests/integration/test_export.py
    checks both that it is ISA-L's and that the stdlib reads the archive)."""
    entry = zf.open(name, "w", force_zip64=True)
    entry._compressor = isal_zlib.compressobj(_COMPRESS_LEVEL, isal_zlib.DEFLATED, -15)  # type: ignore[attr-defined]
    return entry


class _Fetched:
    """A document read ahead: its first pieces, and the open stream when more follows (a large document)."""

    def __init__(self, head: list[bytes], rest: IO[bytes] | None) -> None:
        self.head, self.rest = head, rest

    def close(self) -> None:
        if self.rest is not None:
            self.rest.close()


def _fetch(storage: ObjectStore, bucket: str, key: str) -> _Fetched | None:
    """The document's pieces up to the whole-read limit (None: not in storage); runs on a reader thread."""
    try:
        source = storage.open(bucket, key)
    except ObjectNotFound:
        return None
    try:
        # Read in pieces: one read() of the whole limit would allocate that much for every small PDF.
        head: list[bytes] = []
        size = 0
        while size < _WHOLE_DOCUMENT_BYTES and (piece := source.read(_COPY_BYTES)):
            head.append(piece)
            size += len(piece)
    except BaseException:
        source.close()
        raise
    if size < _WHOLE_DOCUMENT_BYTES:  # the end was reached: the whole document
        source.close()
        return _Fetched(head, None)
    return _Fetched(head, source)


def _fetched_documents(
    conn: Connection, account_id: str, storage: ObjectStore, bucket: str
) -> Iterator[tuple[str, str, _Fetched | None]]:
    """The account's documents in order, fetched (None: missing). Object storage answers each GET after a round
    trip, which an export of thousands of documents would wait out one after the other: as many as the store's
    `concurrent_reads` are fetched ahead, on reader threads. A local folder (1) is read inline."""
    ahead = storage.concurrent_reads
    if ahead <= 1:
        for invoice_id, number, key in _documents(conn, account_id):
            yield invoice_id, number, _fetch(storage, bucket, key)
        return
    pending: deque[tuple[str, str, Future[_Fetched | None]]] = deque()
    with ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="export-documents") as pool:
        try:
            for invoice_id, number, key in _documents(conn, account_id):
                pending.append((invoice_id, number, pool.submit(_fetch, storage, bucket, key)))
                if len(pending) >= ahead:
                    invoice_id, number, fetched = pending.popleft()
                    yield invoice_id, number, fetched.result()
            while pending:
                invoice_id, number, fetched = pending.popleft()
                yield invoice_id, number, fetched.result()
        finally:  # abandoned (an error, or the archive closed early): no stream left open
            for _invoice_id, _number, fetched in pending:
                if not fetched.cancel() and fetched.exception() is None and (result := fetched.result()):
                    result.close()


def _write_documents(
    conn: Connection, account_id: str, zf: zipfile.ZipFile, sink: _Sink, stats: ArchiveStats, settings: Settings
) -> Iterator[bytes]:
    bucket = getattr(settings, object_prefix("invoice_pdfs").bucket_setting)
    for invoice_id, number, fetched in _fetched_documents(conn, account_id, get_storage(), bucket):
        if fetched is None:
            stats.missing_documents.add(invoice_id)
            continue
        with closing(fetched):
            entry = zipfile.ZipInfo(document_file(invoice_id, number), date_time=time.localtime(time.time())[:6])
            entry.compress_type = zipfile.ZIP_STORED
            entry.external_attr = 0o600 << 16
            if fetched.rest is None:
                zf.writestr(entry, b"".join(fetched.head))  # an empty document included
            else:  # a large document streams through
                with zf.open(entry, "w", force_zip64=True) as target:
                    for piece in fetched.head:
                        target.write(piece)
                    fetched.head.clear()
                    while chunk := fetched.rest.read(_COPY_BYTES):
                        target.write(chunk)
                        if sink.size >= _FLUSH_BYTES:
                            yield sink.take()
        stats.documents += 1
        if sink.size >= _FLUSH_BYTES:
            yield sink.take()


def _write_data_json(
    conn: Connection,
    record: RequestRecord,
    tables: tuple[ExportTable, ...],
    zf: zipfile.ZipFile,
    sink: _Sink,
    stats: ArchiveStats,
    now: dt.datetime,
    settings: Settings,
) -> Iterator[bytes]:
    account_id = record.account
    head = {
        "format": {"name": FORMAT_NAME, "version": FORMAT_VERSION, "schema": "schema.json"},
        "generated_at": iso(now),
        "account_id": account_id,
        "request": record.to_json(),
        "information": {language: policy.art15_information(language) for language in policy.LANGUAGES},
        "sources": data_sources.sources_json(),
        "automated_decisions": data_sources.automated_decisions_json(),
    }
    with io.TextIOWrapper(_open_text_entry(zf, "data.json"), encoding="utf-8", newline="\n") as out:
        out.write(_JSON(head)[:-1] + ',"data":{')
        for position, table in enumerate(tables):
            out.write(("," if position else "") + f"\n{_JSON(table.name)}:[")
            count = 0
            for rows, text in _json_chunks(conn, table, account_id):
                out.flush()
                out.buffer.write((b",\n" if count else b"\n") + text)
                count += rows
                if sink.size >= _FLUSH_BYTES:
                    yield sink.take()
            out.write("]")
            stats.rows[table.name] = count
        out.write('},\n"documents":[')
        for position, (invoice_id, number, _key) in enumerate(_documents(conn, account_id)):
            entry: dict[str, Any] = {
                "invoice_id": invoice_id,
                "number": number,
                "file": document_file(invoice_id, number),
                "included": invoice_id not in stats.missing_documents,
            }
            out.write(("," if position else "") + "\n" + _JSON(entry))
            if sink.size >= _FLUSH_BYTES:
                yield sink.take()
        out.write('],\n"log_objects":[')
        for position, entry in enumerate(log_objects(conn, account_id, settings)):
            out.write(("," if position else "") + "\n" + _JSON(entry))
            stats.log_objects += 1
            month = stats.log_months.setdefault((entry["kind"], entry["date"][:7]), [0, 0])
            month[0] += 1
            month[1] += entry["size_bytes"]
            if sink.size >= _FLUSH_BYTES:
                yield sink.take()
        categories = sorted({c for t in tables if stats.rows.get(t.name) for c in t.categories})
        summary = {
            "rows": stats.rows,
            "documents": stats.documents,
            "log_objects": stats.log_objects,
            "categories": categories,
        }
        out.write('],\n"summary":' + _JSON(summary) + "}\n")


_LOG_DAY = re.compile(r"^logs/(?:access|connection)/(\d{4})/(\d{2})/(\d{2})/")


def log_objects(conn: Connection, account_id: str, settings: Settings) -> Iterator[dict[str, Any]]:
    """The log files held in storage (`logs/`) that may hold lines about the account: every
    connection and access log file dated since the account was created (they mix every user's
    lines and are not searchable per account; the rows of the same logs are in `data`)."""
    created = conn.execute(sa.select(accounts.c.created_at).where(accounts.c.id == account_id)).scalar()
    if created is None:
        return
    since = created.date().isoformat()
    storage = get_storage()
    for prefix_id, kind in (("connection_log_files", "connection"), ("access_log_files", "access")):
        prefix = object_prefix(prefix_id)
        bucket = getattr(settings, prefix.bucket_setting)
        for item in storage.list(bucket, prefix.prefix()):
            day = _LOG_DAY.match(item.key)
            if day is None or "-".join(day.groups()) < since:
                continue
            yield {
                "kind": kind,
                "key": item.key,
                "date": "-".join(day.groups()),
                "size_bytes": item.size,
                "category": prefix.category,
            }


def json_texts(conn: Connection, table: ExportTable, account_id: str) -> Iterator[list[str]]:
    """The reference encoding: each row's data.json object, from the Python encoders, in batches."""
    names, batch = table.column_names, []
    for values in _rows(conn, table, account_id):
        batch.append(_JSON(dict(zip(names, values, strict=True))))
        if len(batch) >= sql_rows.BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _json_chunks(conn: Connection, table: ExportTable, account_id: str) -> Iterator[sql_rows.Chunk]:
    if sql_rows.supported(conn, table):
        return sql_rows.json_rows(conn, table, account_id)
    return sql_rows.joined(json_texts(conn, table, account_id), sql_rows.JSON_SEPARATOR)


def _csv_text(value: str) -> str:
    # Spreadsheets run cells starting with = + - @ as formulas: third-party text must not.
    return "'" + value if value.startswith(_CSV_FORMULA_START) else value


def _csv_converters(table: ExportTable) -> list[tuple[int, Any]]:
    """Per column, what turns a JSON-ready value into a CSV cell (None: as is; csv writes None as empty)."""
    converters = []
    for index, column in enumerate(table.columns):
        kind = column.json_schema.get("type")
        if kind == "boolean" or kind == ["boolean", "null"]:
            converters.append((index, lambda value: "true" if value else "false"))
        elif not column.json_schema:  # JSON documents
            converters.append((index, _JSON))
        elif (kind == "string" or kind == ["string", "null"]) and column.encode is None:  # free text
            converters.append((index, _csv_text))
    return converters


def csv_lines(conn: Connection, table: ExportTable, account_id: str) -> Iterator[list[str]]:
    """The reference encoding: each row's CSV line (without its line end), from the Python encoders, in batches."""
    converters = _csv_converters(table)
    line = io.StringIO()
    writer = csv.writer(line, lineterminator="\r\n")  # the line end also decides which cells are quoted
    batch = []
    for values in _rows(conn, table, account_id):
        for index, convert in converters:
            if values[index] is not None:
                values[index] = convert(values[index])
        writer.writerow(values)
        batch.append(line.getvalue()[:-2])
        line.seek(0)
        line.truncate()
        if len(batch) >= sql_rows.BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _csv_chunks(conn: Connection, table: ExportTable, account_id: str) -> Iterator[sql_rows.Chunk]:
    if sql_rows.supported(conn, table):
        return sql_rows.csv_rows(conn, table, account_id)
    return sql_rows.joined(csv_lines(conn, table, account_id), sql_rows.CSV_SEPARATOR)


def _write_csv(
    conn: Connection, table: ExportTable, account_id: str, zf: zipfile.ZipFile, sink: _Sink
) -> Iterator[bytes]:
    with _open_text_entry(zf, f"csv/{table.name}.csv") as out:
        # UTF-8 with a byte order mark (spreadsheets then read it as UTF-8); plain names: no cell to quote.
        out.write(codecs.BOM_UTF8 + (",".join(table.column_names) + "\r\n").encode())
        for _rows, text in _csv_chunks(conn, table, account_id):
            out.write(text + b"\r\n")
            if sink.size >= _FLUSH_BYTES:
                yield sink.take()
