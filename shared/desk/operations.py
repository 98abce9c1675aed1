"""The desk's operations as both doors call them (the `dpo-desk` routes, `privacy-functions dpo`).

Each takes plain values, uses the configured engine and answers JSON: the request's view and,
where the person is told something, the notices delivered (with the letter text for the post).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from shared.desk import notify, prospects, requests, work
from shared.desk.identifiers import SubjectIdentifiers
from shared.desk.requests import INTAKE_CHANNELS, RequestFilter
from shared.desk.search import search_subject
from shared.platform.clock import iso, moment
from shared.platform.errors import Conflict, NotFound
from shared.policy import register as processing_register
from shared.ports.backends import get_storage
from shared.ports.db import get_engine
from shared.ports.tables import audit_log
from shared.records import audit, registry
from shared.rights import consent, export

__all__ = [
    "INTAKE_CHANNELS",
    "archive_link",
    "checked_request_id",
    "complete",
    "decide_objection",
    "deliver_notices",
    "extend",
    "list_requests",
    "rectify",
    "register",
    "register_of_processing",
    "reject",
    "resume",
    "search",
    "verify_identity",
    "view",
]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def checked_request_id(request_id: str) -> str:
    """A request id from a path or the command line: anything but a UUID is no request (404)."""
    if not isinstance(request_id, str) or not _UUID.match(request_id):
        raise NotFound("no such request", code="request_not_found")
    return request_id


def register(
    *,
    actor: str,
    kind: str,
    channel: str,
    received_at: dt.datetime | None = None,
    account_id: str | None = None,
    identifiers: Mapping[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    subject = SubjectIdentifiers.parse(**identifiers) if identifiers else None
    record = requests.register(
        get_engine(),
        actor=actor,
        kind=kind,
        channel=channel,
        received_at=received_at,
        account_id=account_id,
        identifiers=subject,
        now=now,
    )
    return requests.request_view(record, now=now)


def list_requests(
    *,
    state: str | None = None,
    kind: str | None = None,
    channel: str | None = None,
    due_within_days: int | None = None,
    overdue: bool = False,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    filters = RequestFilter(state=state, kind=kind, channel=channel, due_within_days=due_within_days, overdue=overdue)
    return requests.views(requests.open_requests(get_engine(), filters, now=now), now=now)


def _timeline(request_id: str) -> list[dict[str, Any]]:
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(
                audit_log.c.occurred_at, audit_log.c.actor, audit_log.c.action, audit_log.c.outcome, audit_log.c.details
            )
            .where(audit_log.c.request_id == request_id)
            .order_by(audit_log.c.seq)
        )
        return [
            {
                "at": iso(row.occurred_at),
                "actor": row.actor,
                "action": row.action,
                "outcome": row.outcome,
                "details": row.details or {},
            }
            for row in rows
        ]


def view(request_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    engine = get_engine()
    record = requests.get(engine, request_id)
    body = requests.request_view(record, now=now)
    body["notices"] = [
        {**notice, "sent_at": iso(notice["sent_at"])} for notice in notify.notices_of(engine, request_id)
    ]
    body["timeline"] = _timeline(request_id)
    return body


def verify_identity(request_id: str, *, method: str, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    engine = get_engine()
    record = requests.verify_identity(engine, request_id, method=method, actor=actor, now=now)
    started = work.start(engine, record, actor=actor, now=now)
    record = requests.get(engine, request_id)
    return {**requests.request_view(record, now=now), "work": started}


def _with_notices(record: registry.RequestRecord, *, now: dt.datetime | None) -> dict[str, Any]:
    delivered = notify.deliver_pending(get_engine(), record.id, now=now)
    return {**requests.request_view(record, now=now), "notices_delivered": delivered}


def extend(request_id: str, *, months: int, reason: str, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    record = requests.extend(get_engine(), request_id, months=months, reason=reason, actor=actor, now=now)
    return _with_notices(record, now=now)


def reject(
    request_id: str, *, reason_code: str, actor: str, note: str | None = None, now: dt.datetime | None = None
) -> dict[str, Any]:
    record = requests.reject(get_engine(), request_id, reason_code=reason_code, note=note, actor=actor, now=now)
    return _with_notices(record, now=now)


def complete(request_id: str, *, note: str, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    record = work.complete(get_engine(), request_id, note=note, actor=actor, now=now)
    return requests.request_view(record, now=now)


def rectify(request_id: str, *, fields: dict[str, Any], actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    engine = get_engine()
    record = requests.get(engine, request_id)
    return {"request_id": record.id, "rectification": work.rectify(engine, record, fields, actor=actor, now=now)}


def decide_objection(
    request_id: str, *, outcome: str, grounds: str | None, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """An objection to security or fraud prevention (Art. 21(1)): accepted, or overridden on compelling grounds."""
    return consent.decide_objection(
        get_engine(), request_id=request_id, outcome=outcome, grounds=grounds, actor=actor, now=now
    )


def deliver_notices(request_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    requests.get(get_engine(), request_id)  # 404 for an unknown id
    return {"request_id": request_id, "notices_delivered": notify.deliver_pending(get_engine(), request_id, now=now)}


def archive_link(request_id: str, *, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The download link of a completed export (an account's, or a prospect's archive), for the DPO to send (audited)."""
    now = moment(now)
    engine = get_engine()
    record = requests.get(engine, request_id)
    if record.kind not in export.EXPORT_KINDS:
        raise Conflict("this request has no archive", code="no_archive")
    if record.state != registry.COMPLETED:
        raise Conflict(f"the archive is not ready (the request is {record.state})", code="archive_not_ready")
    if record.account_id:
        url, until = export.download_link(record, now=now)
    elif record.details.get("answered", {}).get("prospect"):
        url, until = prospects.archive_link(get_storage(), record.id, now=now)
    else:
        raise Conflict("nothing is held on this person: there is no archive", code="no_archive")
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=actor,
            action="export.link_issued_to_dpo",
            outcome="issued",
            request_id=record.id,
            subject=record.account_id,
            details={"valid_until": iso(until)},
        )
    return {"request_id": record.id, "download_url": url, "valid_until": iso(until)}


def resume(request_id: str, *, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Run again the work of a verified request left unfinished (a crash): nothing done is repeated."""
    engine = get_engine()
    record = requests.get(engine, request_id)
    started = work.start(engine, record, actor=actor, now=now)
    return {**requests.request_view(requests.get(engine, request_id), now=now), "work": started}


def search(identifiers: Mapping[str, Any], *, actor: str, request_id: str | None = None) -> dict[str, Any]:
    """Where the person appears (categories, owning accounts, counts); audited without the identifiers."""
    subject = SubjectIdentifiers.parse(**identifiers)
    with get_engine().begin() as conn:
        return search_subject(conn, subject, actor=actor, request_id=request_id).to_json()


REGISTER_FORMATS = ("json", "md", "csv")
_CONTENT_TYPES = {"json": "application/json", "md": "text/markdown; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def register_of_processing(*, fmt: str = "json", language: str = "en") -> tuple[str, str]:
    """The register of processing activities (Art. 30) rendered: (content type, text)."""
    return _CONTENT_TYPES[fmt], processing_register.render(processing_register.register_of_processing(language), fmt)
