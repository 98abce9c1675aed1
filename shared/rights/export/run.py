"""The worker: a saga of persisted steps (shared.records.saga) per request.

Build and upload the archive, mark the request completed, mail the account; each step
resumes after a crash without a second archive (the object key is derived from the
request id under our key) or a second mail (idempotency key `export-ready:<request_id>`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared import notices
from shared.platform.clock import UTC, iso, moment
from shared.platform.config import get_settings
from shared.platform.messages import ExportRun
from shared.platform.pseudonym import pseudonymise
from shared.policy import facts as policy
from shared.policy.facts import CONTROLLER, DPO_CHANNELS
from shared.ports.backends import get_mailer, get_queue, get_storage
from shared.ports.mail import Message
from shared.ports.tables import accounts, dsr_requests
from shared.records import audit
from shared.records.registry import (
    CANCELLED,
    COMPLETED,
    IN_PROGRESS,
    REJECTED,
    VERIFIED,
    RequestRecord,
    get_request,
    transition,
)
from shared.records.saga import run_step
from shared.rights.export.archive import (
    ArchiveStats,
    chunk_reader,
    hashed,
    iter_archive,
    object_prefix,
)
from shared.rights.export.links import download_link, export_expires_at
from shared.rights.export.requests import EXPORT_KINDS

WORKER_ACTOR = "system:export"
# An export still unfinished this long after its last change lost its message (dead-lettered, or a
# worker killed past its 15-minute timeout): the sweep queues it again.
STALLED_AFTER = dt.timedelta(minutes=30)


def object_key(record: RequestRecord) -> str:
    """Unguessable yet the same on every run: a re-run overwrites rather than adds an archive."""
    prefix = object_prefix("exports").prefix(account_id=record.account)
    return f"{prefix}{pseudonymise(record.id, purpose='export-object')}.zip"


def run_export(engine: Engine, request_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Build, store and announce the export of one request; safe to run again at any point."""
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
    if archive is None:  # _build_and_store always answers a dict
        raise RuntimeError("the archive step stored no result")
    run_step(engine, request_id, "export.complete", lambda: _complete(engine, request_id, archive, now=now))
    run_step(engine, request_id, "export.mail", lambda: _notify(engine, request_id, now=now))
    return {"status": COMPLETED, "request_id": request_id}


def stalled_exports(conn: Connection, *, now: dt.datetime | None = None) -> list[str]:
    """Ids of exports verified or in progress whose state has not moved for STALLED_AFTER."""
    r = dsr_requests
    rows = conn.execute(
        select(r.c.id)
        .where(
            r.c.kind.in_(EXPORT_KINDS),
            r.c.state.in_((VERIFIED, IN_PROGRESS)),
            r.c.state_changed_at <= moment(now) - STALLED_AFTER,
        )
        .order_by(r.c.received_at)
    )
    return [row.id for row in rows]


def requeue_stalled_exports(engine: Engine, *, now: dt.datetime | None = None) -> int:
    """The CRON sweep: queue again every stalled export (run_export resumes its saga); returns how many.

    A fresh idempotency key per sweep: the first message's key may be known to the worker already.
    """
    now = moment(now)
    with engine.connect() as conn:
        ids = stalled_exports(conn, now=now)
    queue = get_queue(ExportRun.QUEUE)
    for request_id in ids:
        queue.send(ExportRun(request_id=request_id).envelope(f"export:{request_id}:sweep:{now:%Y%m%dT%H%M%S}"))
    return len(ids)


def _build_and_store(engine: Engine, record: RequestRecord, *, now: dt.datetime | None) -> dict[str, Any]:
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
        chunks = iter_archive(conn, record, stats, now=moment(now), settings=settings)
        storage = get_storage()
        # A run interrupted mid-upload left a partial archive of personal data: gone before the new one.
        storage.discard_partial(settings.exports_bucket, key, request_id=record.id)
        storage.put(
            settings.exports_bucket,
            key,
            chunk_reader(hashed(chunks, digest, stats)),
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
    now = moment(now)
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
                "expires_at": iso(expires_at),
            }
            record = transition(conn, request_id, COMPLETED, actor=WORKER_ACTOR, details=details, now=now)
            audit.record(
                conn,
                actor=WORKER_ACTOR,
                action="export.completed",
                outcome="stored",
                request_id=request_id,
                subject=record.account_id,
                details={k: details[k] for k in ("size_bytes", "sha256", "rows_total", "documents", "expires_at")},
            )
    return {"expires_at": record.details.get("expires_at")}


def _notify(engine: Engine, request_id: str, *, now: dt.datetime | None) -> dict[str, Any]:
    now = moment(now)
    with engine.connect() as conn:
        record = get_request(conn, request_id)
        account = conn.execute(
            select(accounts.c.email, accounts.c.status).where(accounts.c.id == record.account_id)
        ).first()
    if account is None or account.status == "erased":
        return {"sent": False}
    link, link_until = None, None
    if record.channel in DPO_CHANNELS:
        # Received by email or post: the person may have no client area session; the link goes to
        # the account's address, which the DPO's identity check confirmed (policy 9.3).
        link, link_until = download_link(record, now=now)
    message_id = get_mailer().send(
        ready_message(account.email, request_id, export_expires_at(record), download_url=link, link_until=link_until)
    )
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=WORKER_ACTOR,
            action="export.notified",
            outcome="mailed",
            request_id=request_id,
            subject=record.account_id,
        )
    return {"sent": True, "message_id": message_id}


def _utc_text(moment_: dt.datetime | None) -> str:
    return moment_.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment_ else ""


def ready_message(
    to: str,
    request_id: str,
    expires_at: dt.datetime | None,
    *,
    download_url: str | None = None,
    link_until: dt.datetime | None = None,
) -> Message:
    """The mail saying the export is ready (template `export_ready`), never the data itself.

    A link to the client area; for a request received by email or post, a signed download
    link instead (valid a day at most, see links.py).
    """
    return notices.mail(
        "export_ready",
        to=to,
        idempotency_key=f"export-ready:{request_id}",
        client_area_url=get_settings().client_area_url,
        until=_utc_text(expires_at),
        download_url=download_url,
        link_until=_utc_text(link_until),
        dpo_email=CONTROLLER.dpo_email,
    )
