"""Registering an export: from the client area (token + step-up) or by the DPO (email or post).

The work runs from the queue `export-requests` (run.py); an export already open for the
account is returned instead of a second one.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, select

from shared.platform.clock import UTC, moment
from shared.platform.errors import AppError, Conflict, NotFound, VerificationRequired
from shared.platform.messages import ExportRun
from shared.policy import facts as policy
from shared.policy.facts import DPO_CHANNELS
from shared.ports.backends import get_queue
from shared.ports.db import get_engine
from shared.ports.tables import accounts
from shared.records import audit
from shared.records.registry import (
    VERIFIED,
    RequestRecord,
    create_request,
    find_open_request,
    transition,
)

EXPORT_KINDS = ("access", "portability")
QUEUE_NAME = ExportRun.QUEUE
MESSAGE_TYPE = ExportRun.TYPE
# How the DPO checked who wrote (policy 9.3); recorded in the audit trail, never the evidence itself.
DPO_VERIFICATION_METHODS = policy.IDENTITY_VERIFICATION_METHODS


def _open_export(conn: Connection, account_id: str) -> RequestRecord | None:
    for kind in EXPORT_KINDS:
        record = find_open_request(conn, account_id=account_id, kind=kind)
        if record is not None:
            return record
    return None


def _enqueue(record: RequestRecord) -> None:
    get_queue(QUEUE_NAME).send(ExportRun(request_id=record.id).envelope(f"export:{record.id}"))


def queue_export(record: RequestRecord) -> None:
    """Queue the build of a verified export (the desk verified a request received by email or post)."""
    if record.kind not in EXPORT_KINDS or record.state != VERIFIED or not record.account_id:
        raise ValueError("only a verified export of an account is queued")
    _enqueue(record)


def has_open_export(account_id: str, *, engine: Engine | None = None) -> bool:
    """An export is already open for the account: it is answered as is, without a second step-up."""
    with (engine or get_engine()).connect() as conn:
        return _open_export(conn, account_id) is not None


def start_client_export(
    engine: Engine, account_id: str, *, verified_by: str | None, now: dt.datetime | None = None
) -> tuple[RequestRecord, bool]:
    """Register the caller's export once its step-up passed (`verified_by`: the method); returns (request, created).

    An export already open for the account is returned as is (the route's step-up guard lets it
    through without a code, so no duplicate work); a verified one is queued again in case its
    first message was lost (the worker ignores repeats).
    """
    now = moment(now)
    with engine.connect() as conn:
        pending = _open_export(conn, account_id)
    if pending is None:
        if verified_by is None:  # the open export closed between the guard and here: verify again
            raise VerificationRequired("a step-up code is required to start an export", code="verification_required")
        method = verified_by
        try:
            with engine.begin() as conn:
                created = create_request(
                    conn,
                    account_id=account_id,
                    kind="access",
                    channel="client_area",
                    now=now,
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
    now = moment(now)
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
            conn,
            account_id=account_id,
            kind=kind,
            channel=channel,
            now=received,
            actor=actor,
            details={"articles": ["15", "20"]},
        )
        # Identity verification is the DPO's responsibility for these channels (policy 9.3).
        audit.record(
            conn,
            actor=actor,
            action="export.identity_verified",
            outcome="verified",
            request_id=created.id,
            subject=account_id,
            details={"method": verification_method, "channel": channel},
        )
        record = transition(
            conn, created.id, VERIFIED, actor=actor, details={"verified_by": verification_method}, now=now
        )
    _enqueue(record)
    return record, True
