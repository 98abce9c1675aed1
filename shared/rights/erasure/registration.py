"""Registering, cancelling and queueing erasures; which ones are due."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, select, update

from shared.platform.clock import iso, moment
from shared.platform.config import get_settings
from shared.platform.errors import Conflict, NotFound
from shared.platform.messages import ErasureRun
from shared.ports import tables as schema
from shared.ports.backends import get_queue
from shared.ports.tables import accounts, api_keys, processing_restrictions, sessions
from shared.records import audit, registry
from shared.records.processing import restricted_accounts
from shared.records.registry import RequestRecord
from shared.rights.erasure.common import (
    _ID_BATCH,
    KIND,
    QUEUE_NAME,
    RETENTION_CHANNEL,
    RUN_MESSAGE_MAX,
    ProcessingRestricted,
    erase_after,
)
from shared.rights.erasure.receipt import load_receipt


def _deactivate(conn: Connection, account_id: str, now: dt.datetime) -> None:
    """No more logins: the account is deactivated, its sessions and API keys revoked."""
    conn.execute(
        update(accounts).where(accounts.c.id == account_id, accounts.c.status == "active").values(status="deactivated")
    )
    conn.execute(
        update(sessions)
        .where(sessions.c.account_id == account_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    conn.execute(
        update(api_keys)
        .where(api_keys.c.account_id == account_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _reactivate(conn: Connection, account_id: str) -> None:
    # Sessions stay revoked: the user signs in again.
    conn.execute(
        update(accounts).where(accounts.c.id == account_id, accounts.c.status == "deactivated").values(status="active")
    )


def _restricted_among(conn: Connection, account_ids: Sequence[str]) -> set[str]:
    """The accounts of `account_ids` under an Art. 18 restriction, which the retention schedule may not erase."""
    restricted: set[str] = set()
    for start in range(0, len(account_ids), _ID_BATCH):
        query = restricted_accounts().where(
            processing_restrictions.c.account_id.in_(account_ids[start : start + _ID_BATCH])
        )
        restricted.update(conn.execute(query).scalars())
    return restricted


def _register(
    conn: Connection, account_id: str, *, channel: str, actor: str, now: dt.datetime, verified_by: str | None = None
) -> tuple[RequestRecord, bool]:
    # The account row's lock serialises registrations of one account (PostgreSQL): the second
    # one then finds the first's request. SQLite serialises writers; its race ends in Conflict below.
    status = conn.execute(select(accounts.c.status).where(accounts.c.id == account_id).with_for_update()).scalar()
    pending = registry.find_open_request(conn, account_id=account_id, kind=KIND)
    if pending is not None:
        return pending, False
    if status is None or status == "erased":
        raise NotFound("no such account", code="account_not_found")
    if channel == RETENTION_CHANNEL and _restricted_among(conn, [account_id]):
        raise ProcessingRestricted()
    cooling_off_days = get_settings().erasure_cooling_off_days
    erase_at = iso(now + dt.timedelta(days=cooling_off_days), timespec="seconds")
    details = {"erase_after": erase_at, "cooling_off_days": cooling_off_days}
    try:
        record = registry.create_request(
            conn, account_id=account_id, kind=KIND, channel=channel, now=now, details=details, actor=actor
        )
    except Conflict:
        pending = registry.find_open_request(conn, account_id=account_id, kind=KIND)
        if pending is None:
            raise
        return pending, False
    if channel not in registry.SELF_VERIFIED_CHANNELS:
        # The client passed step-up; the DPO checked the identity of a mail or letter (`verified_by`, the method).
        registry.transition(
            conn,
            record.id,
            registry.VERIFIED,
            actor=actor,
            now=now,
            details={"verified_by": verified_by} if verified_by else None,
        )
    record = registry.transition(conn, record.id, registry.WAITING, actor=actor, now=now)
    _deactivate(conn, account_id, now)
    audit.record(
        conn,
        actor=actor,
        action="erasure.registered",
        outcome=registry.WAITING,
        request_id=record.id,
        subject=account_id,
        details={"channel": channel, **details},
    )
    return record, True


def register_erasure(
    conn: Connection, account_id: str, *, channel: str, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """Register the erasure of `account_id` in the caller's transaction; the pending one if it exists.

    Deactivates the account at once. The request waits in state `waiting` until
    `details.erase_after` (now + ERASURE_COOLING_OFF_DAYS). Channel `retention`
    (inactivity) is refused with 409 `processing_restricted` while an Art. 18
    restriction is in force. Raises 404 `account_not_found` for an unknown account.
    Nothing is queued: use `request_erasure`, or `enqueue_due_erasures` after commit.
    """
    return _register(conn, account_id, channel=channel, actor=actor, now=moment(now))[0]


def request_erasure(
    engine: Engine,
    account_id: str,
    *,
    channel: str,
    actor: str,
    now: dt.datetime | None = None,
    verified_by: str | None = None,
) -> tuple[RequestRecord, bool]:
    """Register (or find the pending) erasure, then queue its run if no cooling-off applies.

    `verified_by`: how the requester's identity was checked (step-up method, or the DPO's
    method for a letter or mail), recorded on the request. Returns (request, created). With a
    cooling-off the daily sweep queues it once due.
    """
    now = moment(now)
    with engine.begin() as conn:
        record, created = _register(conn, account_id, channel=channel, actor=actor, now=now, verified_by=verified_by)
    if created and erase_after(record) <= now:
        enqueue_run(record.id, reason="registered")
    return record, created


def start_verified_erasure(
    engine: Engine, request_id: str, *, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """An erasure registered at the desk (email, post) whose requester the DPO identified.

    Its cooling-off starts now and the account is deactivated, as for a client-area erasure;
    the run is queued at once when no cooling-off applies. Idempotent: a request already past
    `verified` is returned as it is.
    """
    now = moment(now)
    with engine.begin() as conn:
        record = registry.get_request(conn, request_id)
        if record.kind != KIND or not record.account_id:
            raise ValueError("not an erasure of an account")
        if record.state != registry.VERIFIED:
            return record
        conn.execute(select(accounts.c.id).where(accounts.c.id == record.account_id).with_for_update())
        cooling_off_days = get_settings().erasure_cooling_off_days
        details = {
            "erase_after": iso(now + dt.timedelta(days=cooling_off_days), timespec="seconds"),
            "cooling_off_days": cooling_off_days,
        }
        record = registry.transition(conn, record.id, registry.WAITING, actor=actor, details=details, now=now)
        _deactivate(conn, record.account, now)
        audit.record(
            conn,
            actor=actor,
            action="erasure.registered",
            outcome=registry.WAITING,
            request_id=record.id,
            subject=record.account_id,
            details={"channel": record.channel, **details},
        )
    if erase_after(record) <= now:
        enqueue_run(record.id, reason="registered")
    return record


def enqueue_run(request_id: str, *, reason: str) -> None:
    """Queue one run of the saga; `reason` makes the message's idempotency key (a new sweep, a new key)."""
    enqueue_runs([request_id], reason=reason)


def enqueue_runs(request_ids: Sequence[str], *, reason: str) -> int:
    """Queue runs of many sagas, up to RUN_MESSAGE_MAX ids per message; returns the messages sent.

    The idempotency key derives from the ids and `reason`: the same call repeated (a retried
    job) sends messages the worker recognises as already processed.
    """
    ids = list(dict.fromkeys(request_ids))
    queue = get_queue(QUEUE_NAME)
    for start in range(0, len(ids), RUN_MESSAGE_MAX):
        chunk = ids[start : start + RUN_MESSAGE_MAX]
        label = chunk[0] if len(chunk) == 1 else hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:32]
        queue.send(ErasureRun(request_ids=list(chunk)).envelope(f"erasure:{label}:{reason}"))
    return -(-len(ids) // RUN_MESSAGE_MAX)


def get_erasure(conn: Connection, request_id: str, *, account_id: str | None = None) -> RequestRecord:
    """The erasure request; 404 when absent, not an erasure or (with account_id) another account's."""
    record = registry.get_request(conn, request_id, account_id=account_id)
    if record.kind != KIND:
        raise NotFound("no such request", code="request_not_found")
    return record


def find_pending_erasure(conn: Connection, account_id: str) -> RequestRecord | None:
    return registry.find_open_request(conn, account_id=account_id, kind=KIND)


def erasure_view(record: RequestRecord) -> dict[str, Any]:
    """The JSON answer about an erasure request: state, dates and, once done, the receipt."""
    body = record.to_json()
    if "erase_after" in record.details:
        body["erase_after"] = record.details["erase_after"]
        body["cancellable"] = record.state == registry.WAITING
    if record.state == registry.COMPLETED and "receipt_object" in record.details:
        body["receipt"] = load_receipt(record.id)
    return body


def cancel_erasure(
    conn: Connection, request_id: str, *, account_id: str | None, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """Cancel during the cooling-off and give the account back.

    404 for another account's request (with `account_id`), 409 `cooling_off_over`
    once the erasure is due, 409 `erasure_not_cancellable` once it has started or ended.
    """
    now = moment(now)
    record = get_erasure(conn, request_id, account_id=account_id)
    if record.state != registry.WAITING:
        raise Conflict(f"the erasure is {record.state}: it can no longer be cancelled", code="erasure_not_cancellable")
    if now >= erase_after(record):
        raise Conflict(
            "the cooling-off period is over: the erasure can no longer be cancelled", code="cooling_off_over"
        )
    record = registry.transition(
        conn, request_id, registry.CANCELLED, actor=actor, reason="cancelled during the cooling-off period", now=now
    )
    _reactivate(conn, record.account)
    audit.record(
        conn,
        actor=actor,
        action="erasure.cancelled",
        outcome=registry.CANCELLED,
        request_id=record.id,
        subject=record.account_id,
    )
    return record


def due_erasures(conn: Connection, *, now: dt.datetime | None = None) -> list[str]:
    """Ids of erasures to run: cooling-off over (`erase_after <= now`), or started and not finished."""
    now = moment(now)
    r = schema.dsr_requests
    cooled_off = r.c.details["erase_after"].as_string() <= iso(now, timespec="seconds")
    rows = conn.execute(
        select(r.c.id)
        .where(
            r.c.kind == KIND,
            sa.or_(
                sa.and_(r.c.state == registry.WAITING, cooled_off),
                r.c.state == registry.IN_PROGRESS,
            ),
        )
        .order_by(r.c.received_at)
    )
    return [row.id for row in rows]


def enqueue_due_erasures(engine: Engine, *, now: dt.datetime | None = None) -> int:
    """The CRON sweep: queue every due or unfinished erasure (also those whose messages went to the DLQ)."""
    now = moment(now)
    with engine.connect() as conn:
        ids = due_erasures(conn, now=now)
    enqueue_runs(ids, reason=f"sweep:{now:%Y%m%dT%H%M%S}")
    return len(ids)
