"""Export on request: the right of access (Art. 15) and to portability (Art. 20).

- The client area (bearer token + step-up) or the DPO (a request received by email
  or post) registers an export; the work runs from the queue `export-requests`.
- The worker is a saga of persisted steps (shared.records.saga): build and upload the
  archive, mark the request completed, mail the account, each resumable after a
  crash without a second archive (the object key is derived from the request id
  under our key) or a second mail (idempotency key `export-ready:<request_id>`).
- The archive is streamed: rows are read with server-side cursors, written as
  data.json and CSV into a ZIP that is produced chunk by chunk and uploaded as it
  is produced (S3 multipart), so memory stays flat whatever the account's size.
- Downloads pass through `download_location`: a signed link bound to the request
  and the account, valid at most 24 hours, re-issued on each view; the export
  itself expires after 7 days (policy rule `exports`), checked here whatever the
  storage's lifecycle does; every download is audited.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import html
import io
import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared.records import audit

from shared.policy import data_map

from shared.policy import facts as policy
from shared.policy.facts import DPO_CHANNELS  # noqa: F401  (re-exported)
from shared.platform.config import Settings, get_settings
from shared.ports.db import UTC, utcnow
from shared.platform.errors import AppError, Conflict, NotFound, Unauthorized
from shared.rights.export_schema import FORMAT_NAME, FORMAT_VERSION, ExportTable, data_json_schema, export_tables
from shared.platform.pseudonym import pseudonymise
from shared.records.registry import (
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    REJECTED,
    VERIFIED,
    RequestRecord,
    create_request,
    find_open_request,
    get_request,
    transition,
)
from shared.ports.tables import accounts, invoices

EXPORT_KINDS = ("access", "portability")
QUEUE_NAME = "export-requests"
MESSAGE_TYPE = "export.run"
# How the DPO checked who wrote (policy 9.3); recorded in the audit trail, never the evidence itself.
DPO_VERIFICATION_METHODS = policy.IDENTITY_VERIFICATION_METHODS

WORKER_ACTOR = "system:export"
# The presigned URL behind a download only has to survive the redirect.
REDIRECT_URL_SECONDS = 300
MAX_LINK_SECONDS = 24 * 3600

_FLUSH_BYTES = 1024 * 1024  # hand the archive to the uploader in pieces of about this size
_COPY_BYTES = 256 * 1024
# Server-side cursors on PostgreSQL, batches of rows: memory stays flat whatever the table size.
_STREAMED = {"stream_results": True, "yield_per": 2000}
_COMPRESS_LEVEL = 6
_CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


class ExportExpired(AppError):
    def __init__(self) -> None:
        super().__init__(410, "export_expired", "this export has expired; request a new one from your client area")


def _invalid_link(message: str = "the download link is not valid; open the export again in your client area") -> Unauthorized:
    return Unauthorized(message, code="invalid_download_token")


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or utcnow()).astimezone(UTC)


# --- Registering a request ----------------------------------------------------------------------


def _open_export(conn: Connection, account_id: str) -> RequestRecord | None:
    for kind in EXPORT_KINDS:
        record = find_open_request(conn, account_id=account_id, kind=kind)
        if record is not None:
            return record
    return None


def _enqueue(record: RequestRecord) -> None:
    from shared.ports.backends import get_queue
    from shared.platform.runtime import make_message

    get_queue(QUEUE_NAME).send(make_message(MESSAGE_TYPE, f"export:{record.id}", {"request_id": record.id}))


def start_client_export(
    engine: Engine, account_id: str, headers: Mapping[str, str] | None, *, now: dt.datetime | None = None
) -> tuple[RequestRecord, bool]:
    """Register the caller's export after step-up verification; returns (request, created).

    An export already open for the account is returned as is (no second verification,
    no duplicate work); a verified one is queued again in case its first message was lost
    (the worker ignores repeats).
    """
    from shared.identity.client import require_step_up

    now = _now(now)
    with engine.connect() as conn:
        pending = _open_export(conn, account_id)
    if pending is None:
        method = require_step_up(engine, account_id, headers, action="export", now=now)
        try:
            with engine.begin() as conn:
                created = create_request(
                    conn, account_id=account_id, kind="access", channel="client_area", now=now,
                    details={"articles": ["15", "20"]},
                )
                record = transition(
                    conn, created.id, VERIFIED, actor="client", details={"verified_by": method}, now=now
                )
        except Conflict as exc:
            if exc.code != "request_already_open":
                raise
            with engine.connect() as conn:
                pending = _open_export(conn, account_id)
            if pending is None:
                raise
        else:
            _enqueue(record)
            return record, True
    if pending.state == VERIFIED:
        _enqueue(pending)
    return pending, False


def register_dpo_export(
    engine: Engine,
    *,
    actor: str,
    account_id: str,
    channel: str,
    kind: str,
    verification_method: str,
    received_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> tuple[RequestRecord, bool]:
    """Register an export received by email or post; the DPO vouches for the requester's identity.

    The deadline runs from `received_at` (the day the letter or mail arrived, never in
    the future). Returns (request, created); an export already open is returned as is.
    """
    now = _now(now)
    received = (received_at or now).astimezone(UTC)
    if channel not in DPO_CHANNELS or kind not in EXPORT_KINDS or verification_method not in DPO_VERIFICATION_METHODS:
        raise ValueError("channel, kind or verification method out of range")  # the handler validated them
    if received > now:
        raise AppError(400, "invalid_received_at", "received_at cannot be in the future")
    with engine.begin() as conn:
        status = conn.execute(select(accounts.c.status).where(accounts.c.id == account_id)).scalar()
        if status is None:
            raise NotFound("no such account", code="account_not_found")
        if status == "erased":
            raise Conflict("this account has been erased: nothing is left to export", code="account_erased")
        pending = _open_export(conn, account_id)
        if pending is not None:
            return pending, False
        created = create_request(
            conn, account_id=account_id, kind=kind, channel=channel, now=received, actor=actor,
            details={"articles": ["15", "20"]},
        )
        # Identity verification is the DPO's responsibility for these channels (policy 9.3).
        audit.record(
            conn, actor=actor, action="export.identity_verified", outcome="verified", request_id=created.id,
            subject=account_id, details={"method": verification_method, "channel": channel}, now=now,
        )
        record = transition(conn, created.id, VERIFIED, actor=actor, details={"verified_by": verification_method}, now=now)
    _enqueue(record)
    return record, True


# --- Views and download links -------------------------------------------------------------------------


def _link_signature(request_id: str, account_id: str, expires: int) -> str:
    return pseudonymise(f"{request_id}\n{account_id}\n{expires}", purpose="export-download")


def _export_expires_at(record: RequestRecord) -> dt.datetime | None:
    value = record.details.get("expires_at")
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def download_link(record: RequestRecord, *, now: dt.datetime | None = None, settings: Settings | None = None) -> tuple[str, dt.datetime]:
    """A fresh signed link to the archive and when it stops working (never after the export itself)."""
    settings = settings or get_settings()
    now = _now(now)
    ttl = min(settings.export_link_ttl_seconds, MAX_LINK_SECONDS)
    expires = min(int(now.timestamp()) + ttl, int(_export_expires_at(record).timestamp()))
    token = f"{expires}.{_link_signature(record.id, record.account_id, expires)}"
    url = f"{settings.effective_export_function_url}/{record.id}/download?token={token}"
    return url, dt.datetime.fromtimestamp(expires, UTC)


def _view(record: RequestRecord, now: dt.datetime, *, with_link: bool) -> dict[str, Any]:
    body = record.to_json()
    expires_at = _export_expires_at(record)
    if record.state == COMPLETED and expires_at is not None:
        body["expires_at"] = _iso(expires_at)
        body["size_bytes"] = record.details.get("size_bytes")
        body["expired"] = now >= expires_at
        if with_link and not body["expired"]:
            body["download_url"], link_expires = download_link(record, now=now)
            body["download_url_expires_at"] = _iso(link_expires)
    return body


def request_view(record: RequestRecord, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The JSON answer of the request endpoints (without a download link)."""
    return _view(record, _now(now), with_link=False)


def export_view(
    engine: Engine, request_id: str, *, account_id: str | None, with_link: bool = True, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The request's view; with the download link once completed. Another account's id: 404."""
    with engine.connect() as conn:
        record = get_request(conn, request_id, account_id=account_id)
    if record.kind not in EXPORT_KINDS:
        raise NotFound("no such request", code="request_not_found")
    return _view(record, _now(now), with_link=with_link)


def download_location(
    engine: Engine, request_id: str, token: str | None, *, now: dt.datetime | None = None
) -> str:
    """Check a download link and audit the download; returns a short-lived URL of the archive."""
    from shared.ports.backends import get_storage

    now = _now(now)
    expires_text, _, signature = (token or "").partition(".")
    if not expires_text.isdigit() or len(signature) != 64:
        raise _invalid_link()
    expires = int(expires_text)
    with engine.begin() as conn:
        try:
            record = get_request(conn, request_id)
        except NotFound:
            raise _invalid_link() from None
        if record.kind not in EXPORT_KINDS or not record.account_id:
            raise _invalid_link()
        if not hmac.compare_digest(_link_signature(record.id, record.account_id, expires), signature):
            raise _invalid_link()
        if now.timestamp() >= expires:
            raise _invalid_link("the download link has expired; open the export again in your client area")
        expires_at = _export_expires_at(record)
        if record.state != COMPLETED or expires_at is None:
            raise Conflict("the export is not ready yet", code="export_not_ready")
        if now >= expires_at:
            raise ExportExpired()
        storage = get_storage()
        bucket, key = get_settings().exports_bucket, record.details["object_key"]
        if not storage.exists(bucket, key):
            raise ExportExpired()  # removed by the bucket's lifecycle rule
        audit.record(
            conn, actor="client", action="export.downloaded", outcome="redirected",
            request_id=record.id, subject=record.account_id, now=now,
        )
    return storage.presigned_get_url(bucket, key, expires_in=REDIRECT_URL_SECONDS)


# --- The worker -------------------------------------------------------------------------------------------


def object_key(record: RequestRecord) -> str:
    """Unguessable yet the same on every run: a re-run overwrites rather than adds an archive."""
    prefix = _object_prefix("exports").prefix(account_id=record.account_id)
    return f"{prefix}{pseudonymise(record.id, purpose='export-object')}.zip"


def _object_prefix(prefix_id: str) -> data_map.ObjectPrefix:
    return next(p for p in data_map.OBJECT_PREFIXES if p.id == prefix_id)


def run_export(engine: Engine, request_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Build, store and announce the export of one request; safe to run again at any point."""
    from shared.records.saga import run_step

    with engine.connect() as conn:
        record = get_request(conn, request_id)
    if record.kind not in EXPORT_KINDS:
        return {"status": "ignored", "reason": "not_an_export"}
    if record.state in (CANCELLED, REJECTED):
        return {"status": record.state}
    if record.state == VERIFIED:
        with engine.begin() as conn:
            record = transition(conn, request_id, IN_PROGRESS, actor=WORKER_ACTOR, now=now)
    elif record.state not in (IN_PROGRESS, COMPLETED):
        return {"status": "ignored", "reason": "not_verified"}
    archive = run_step(engine, request_id, "export.archive", lambda: _build_and_store(engine, record, now=now))
    run_step(engine, request_id, "export.complete", lambda: _complete(engine, request_id, archive, now=now))
    run_step(engine, request_id, "export.mail", lambda: _notify(engine, request_id, now=now))
    return {"status": COMPLETED, "request_id": request_id}


def _build_and_store(engine: Engine, record: RequestRecord, *, now: dt.datetime | None) -> dict[str, Any]:
    from shared.ports.backends import get_storage

    settings = get_settings()
    key = object_key(record)
    stats = ArchiveStats()
    digest = hashlib.sha256()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for every table: the archive is consistent even while the account is used.
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            # Every row is read: plan cursors for the whole result, not the first 10% (the default),
            # which picks nested loops that crawl when statistics lag behind a big account.
            conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        chunks = iter_archive(conn, record, stats, now=_now(now), settings=settings)
        get_storage().put(
            settings.exports_bucket,
            key,
            chunk_reader(_hashed(chunks, digest, stats)),
            content_type="application/zip",
            metadata={"request-id": record.id},
        )
    return {
        "object_key": key,
        "size_bytes": stats.size_bytes,
        "sha256": digest.hexdigest(),
        "rows": stats.rows,
        "documents": stats.documents,
        "missing_documents": len(stats.missing_documents),
    }


def _complete(engine: Engine, request_id: str, archive: dict[str, Any], *, now: dt.datetime | None) -> dict[str, Any]:
    now = _now(now)
    with engine.begin() as conn:
        record = get_request(conn, request_id)
        if record.state == IN_PROGRESS:
            expires_at = policy.expires_at("exports", now)
            details = {
                "object_key": archive["object_key"],
                "size_bytes": archive["size_bytes"],
                "sha256": archive["sha256"],
                "rows_total": sum(archive["rows"].values()),
                "documents": archive["documents"],
                "expires_at": _iso(expires_at),
            }
            record = transition(conn, request_id, COMPLETED, actor=WORKER_ACTOR, details=details, now=now)
            audit.record(
                conn, actor=WORKER_ACTOR, action="export.completed", outcome="stored", request_id=request_id,
                subject=record.account_id,
                details={k: details[k] for k in ("size_bytes", "sha256", "rows_total", "documents", "expires_at")},
                now=now,
            )
    return {"expires_at": record.details.get("expires_at")}


def _notify(engine: Engine, request_id: str, *, now: dt.datetime | None) -> dict[str, Any]:
    from shared.ports.backends import get_mailer

    now = _now(now)
    with engine.connect() as conn:
        record = get_request(conn, request_id)
        account = conn.execute(select(accounts.c.email, accounts.c.status).where(accounts.c.id == record.account_id)).first()
    if account is None or account.status == "erased":
        return {"sent": False}
    message_id = get_mailer().send(ready_message(account.email, request_id, _export_expires_at(record)))
    with engine.begin() as conn:
        audit.record(
            conn, actor=WORKER_ACTOR, action="export.notified", outcome="mailed", request_id=request_id,
            subject=record.account_id, now=now,
        )
    return {"sent": True, "message_id": message_id}


def ready_message(to: str, request_id: str, expires_at: dt.datetime | None):
    """The mail saying the export is ready: French, English below; a link to the client area, never the data."""
    from shared.ports.mail import Message

    settings = get_settings()
    area = settings.client_area_url
    until = expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if expires_at else ""
    text = (
        "Bonjour,\n\n"
        "L'export de vos données personnelles que vous avez demandé est prêt.\n"
        f"Téléchargez-le depuis votre espace client : {area}\n"
        f"Il restera disponible jusqu'au {until}, puis sera supprimé.\n"
        "Si vous n'êtes pas à l'origine de cette demande, écrivez à dpo@jefacturebien.fr.\n\n"
        "L'équipe jefacturebien.fr\n\n"
        "---\n\n"
        "Hello,\n\n"
        "The export of your personal data that you requested is ready.\n"
        f"Download it from your client area: {area}\n"
        f"It remains available until {until}, then it is deleted.\n"
        "If you did not make this request, write to dpo@jefacturebien.fr.\n\n"
        "The jefacturebien.fr team\n"
    )
    link = html.escape(area, quote=True)
    html_body = (
        "<!doctype html><html lang=\"fr\"><body>"
        "<p>Bonjour,</p><p>L'export de vos données personnelles que vous avez demandé est prêt.</p>"
        f"<p><a href=\"{link}\">Téléchargez-le depuis votre espace client</a>. "
        f"Il restera disponible jusqu'au {html.escape(until)}, puis sera supprimé.</p>"
        "<p>Si vous n'êtes pas à l'origine de cette demande, écrivez à dpo@jefacturebien.fr.</p>"
        "<p>L'équipe jefacturebien.fr</p><hr>"
        "<div lang=\"en\"><p>Hello,</p><p>The export of your personal data that you requested is ready.</p>"
        f"<p><a href=\"{link}\">Download it from your client area</a>. "
        f"It remains available until {html.escape(until)}, then it is deleted.</p>"
        "<p>If you did not make this request, write to dpo@jefacturebien.fr.</p>"
        "<p>The jefacturebien.fr team</p></div></body></html>"
    )
    return Message(
        to=to,
        subject="Votre export de données est prêt / Your data export is ready",
        text=text,
        html=html_body,
        idempotency_key=f"export-ready:{request_id}",
    )


# --- The archive ------------------------------------------------------------------------------------------


@dataclass
class ArchiveStats:
    rows: dict[str, int] = field(default_factory=dict)
    documents: int = 0
    missing_documents: set[str] = field(default_factory=set)
    size_bytes: int = 0


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

    def readinto(self, buffer) -> int:
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


def _hashed(chunks: Iterator[bytes], digest: Any, stats: ArchiveStats) -> Iterator[bytes]:
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
    prefix = _object_prefix("invoice_pdfs").prefix(account_id=account_id)
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
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESS_LEVEL) as zf:
        yield from _write_documents(conn, record.account_id, zf, sink, stats, settings)
        yield from _write_data_json(conn, record, tables, zf, sink, stats, now)
        for table in tables:
            yield from _write_csv(conn, table, record.account_id, zf, sink)
        zf.writestr("schema.json", json.dumps(data_json_schema(), ensure_ascii=False, indent=2))
        zf.writestr("README.html", readme_html(record, tables, stats, now))
    yield sink.take()


def _write_documents(
    conn: Connection, account_id: str, zf: zipfile.ZipFile, sink: _Sink, stats: ArchiveStats, settings: Settings
) -> Iterator[bytes]:
    from shared.ports.backends import get_storage
    from shared.ports.storage import ObjectNotFound

    storage = get_storage()
    bucket = getattr(settings, _object_prefix("invoice_pdfs").bucket_setting)
    for invoice_id, number, key in _documents(conn, account_id):
        try:
            source = storage.open(bucket, key)
        except ObjectNotFound:
            stats.missing_documents.add(invoice_id)
            continue
        with closing(source), zf.open(document_file(invoice_id, number), "w") as target:
            while chunk := source.read(_COPY_BYTES):
                target.write(chunk)
                if sink.size >= _FLUSH_BYTES:
                    yield sink.take()
        stats.documents += 1


def _write_data_json(
    conn: Connection,
    record: RequestRecord,
    tables: tuple[ExportTable, ...],
    zf: zipfile.ZipFile,
    sink: _Sink,
    stats: ArchiveStats,
    now: dt.datetime,
) -> Iterator[bytes]:
    account_id = record.account_id
    head = {
        "format": {"name": FORMAT_NAME, "version": FORMAT_VERSION, "schema": "schema.json"},
        "generated_at": _iso(now),
        "account_id": account_id,
        "request": record.to_json(),
        "information": {language: policy.art15_information(language) for language in policy.LANGUAGES},
    }
    with io.TextIOWrapper(zf.open("data.json", "w", force_zip64=True), encoding="utf-8", newline="\n") as out:
        out.write(_JSON(head)[:-1] + ',"data":{')
        for position, table in enumerate(tables):
            out.write(("," if position else "") + f"\n{_JSON(table.name)}:[")
            names, count = table.column_names, 0
            for values in _rows(conn, table, account_id):
                out.write(("," if count else "") + "\n" + _JSON(dict(zip(names, values))))
                count += 1
                if sink.size >= _FLUSH_BYTES:
                    yield sink.take()
            out.write("]")
            stats.rows[table.name] = count
        out.write('},\n"documents":[')
        for position, (invoice_id, number, _key) in enumerate(_documents(conn, account_id)):
            entry = {
                "invoice_id": invoice_id,
                "number": number,
                "file": document_file(invoice_id, number),
                "included": invoice_id not in stats.missing_documents,
            }
            out.write(("," if position else "") + "\n" + _JSON(entry))
            if sink.size >= _FLUSH_BYTES:
                yield sink.take()
        categories = sorted({c for t in tables if stats.rows.get(t.name) for c in t.categories})
        summary = {"rows": stats.rows, "documents": stats.documents, "categories": categories}
        out.write('],\n"summary":' + _JSON(summary) + "}\n")


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


def _write_csv(conn: Connection, table: ExportTable, account_id: str, zf: zipfile.ZipFile, sink: _Sink) -> Iterator[bytes]:
    converters = _csv_converters(table)
    with io.TextIOWrapper(zf.open(f"csv/{table.name}.csv", "w", force_zip64=True), encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(table.column_names)
        for values in _rows(conn, table, account_id):
            for index, convert in converters:
                if values[index] is not None:
                    values[index] = convert(values[index])
            writer.writerow(values)
            if sink.size >= _FLUSH_BYTES:
                yield sink.take()


# --- README.html ------------------------------------------------------------------------------------------

_README_TEXT = {
    "fr": {
        "title": "Vos données personnelles chez jefacturebien.fr",
        "intro": "Cette archive contient toutes les données personnelles que nous détenons sur votre compte, "
                 "en réponse à votre demande d'accès (RGPD art. 15) et de portabilité (art. 20).",
        "files": "Contenu de l'archive",
        "data_json": "toutes vos données, structurées (format lisible par machine, réutilisable chez un autre prestataire)",
        "schema_json": "la description (JSON Schema) de data.json",
        "csv": "un fichier CSV par table (UTF-8, avec en-tête), pour un tableur",
        "invoices": "les PDF des factures émises",
        "table": "Table", "rows": "Lignes", "categories": "Catégories",
        "documents": "Factures PDF incluses", "missing": "Factures PDF introuvables",
        "generated": "Archive générée le", "request": "Demande",
        "purposes": "Finalités et bases légales", "recipients": "Destinataires et sous-traitants",
        "retention": "Durées de conservation", "rights": "Vos droits et comment les exercer",
        "complaint": "Réclamation auprès de la CNIL", "expiry": "Cette archive est supprimée 7 jours après sa création.",
    },
    "en": {
        "title": "Your personal data at jefacturebien.fr",
        "intro": "This archive holds all the personal data we keep on your account, in answer to your request "
                 "for access (GDPR Art. 15) and portability (Art. 20).",
        "files": "What the archive contains",
        "data_json": "all your data, structured (machine-readable, reusable with another provider)",
        "schema_json": "the description (JSON Schema) of data.json",
        "csv": "one CSV file per table (UTF-8, with a header row), for spreadsheets",
        "invoices": "the PDFs of the invoices you issued",
        "table": "Table", "rows": "Rows", "categories": "Categories",
        "documents": "Invoice PDFs included", "missing": "Invoice PDFs not found",
        "generated": "Archive generated on", "request": "Request",
        "purposes": "Purposes and legal bases", "recipients": "Recipients and subprocessors",
        "retention": "Retention periods", "rights": "Your rights and how to exercise them",
        "complaint": "Complaint to the CNIL", "expiry": "This archive is deleted 7 days after it was created.",
    },
}


def _list(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _readme_section(language: str, record: RequestRecord, tables: tuple[ExportTable, ...], stats: ArchiveStats, now: dt.datetime) -> str:
    t, e = _README_TEXT[language], html.escape
    info = policy.art15_information(language)
    rows = "".join(
        f"<tr><td><code>{e(table.name)}</code></td><td>{stats.rows.get(table.name, 0)}</td>"
        f"<td>{e(', '.join(policy.category(c).label.get(language) for c in table.categories))}</td></tr>"
        for table in tables
    )
    how = info["how_to_exercise"]
    parts = [
        f"<section lang=\"{language}\"><h1>{e(t['title'])}</h1><p>{e(t['intro'])}</p>",
        f"<p>{e(t['generated'])} {e(_iso(now))} — {e(t['request'])} <code>{e(record.id)}</code>. {e(t['expiry'])}</p>",
        f"<h2>{e(t['files'])}</h2>",
        _list([
            f"<code>data.json</code> — {e(t['data_json'])}",
            f"<code>schema.json</code> — {e(t['schema_json'])}",
            f"<code>csv/</code> — {e(t['csv'])}",
            f"<code>invoices/</code> — {e(t['invoices'])}: {stats.documents}"
            + (f" ({e(t['missing'])}: {len(stats.missing_documents)})" if stats.missing_documents else ""),
        ]),
        f"<table><tr><th>{e(t['table'])}</th><th>{e(t['rows'])}</th><th>{e(t['categories'])}</th></tr>{rows}</table>",
        f"<h2>{e(t['purposes'])}</h2>",
        _list([f"{e(p['label'])} — {e(p['legal_basis']['label'])} ({e(p['legal_basis']['gdpr_article'])})" for p in info["purposes"]]),
        f"<h2>{e(t['recipients'])}</h2><p>{e(info['recipients']['internal'])}</p>",
        _list([f"{e(s['name'])} — {e(s['service'])} ({e(s['location'])})" for s in info["recipients"]["subprocessors"]]),
        f"<p>{e(info['recipients']['authorities'])}</p><p>{e(info['transfers_outside_eu'])}</p>",
        f"<h2>{e(t['retention'])}</h2>",
        _list([f"{e(r['data_type'])} — {e(r['period'])}" for r in info["retention"]]),
        f"<h2>{e(t['rights'])}</h2>",
        _list([f"{e(r['label'])} ({e(r['gdpr_article'])}) — {e(r['description'])}" for r in info["rights"]]),
        _list([e(text) for text in how["channels"].values()]),
        f"<p>{e(how['email'])} — {e(how['postal_address'])}</p><p>{e(how['response_time'])}</p>",
        f"<h2>{e(t['complaint'])}</h2>",
        f"<p>{e(info['complaint']['authority'])} — <a href=\"{e(info['complaint']['website'])}\">"
        f"{e(info['complaint']['website'])}</a> — {e(info['complaint']['address'])}</p></section>",
    ]
    return "".join(parts)


def readme_html(record: RequestRecord, tables: tuple[ExportTable, ...], stats: ArchiveStats, now: dt.datetime) -> str:
    """A human-readable summary: French first, English below."""
    sections = "<hr>".join(_readme_section(language, record, tables, stats, now) for language in ("fr", "en"))
    return (
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\">"
        "<title>jefacturebien.fr — export</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}</style></head><body>"
        f"{sections}</body></html>"
    )
