"""The desk's operations on a request: register, verify identity, extend, reject, list, view.

Both doors call these: the `dpo-desk` HTTP function (DPO credential) and `privacy-functions dpo`.

    register(engine, actor=..., kind=..., channel="post", received_at=..., account_id=... | identifiers=...)
    verify_identity(engine, request_id, method=..., actor=...)      # then the work starts (work.py)
    extend(engine, request_id, months=1, reason=..., actor=...)     # the person is told (Art. 12(3))
    reject(engine, request_id, reason_code=..., actor=...)          # the person is told (Art. 12(4))
    open_requests(engine, overdue=True | due_within_days=N | state= | kind= | channel=)

A request received by email or post waits in `awaiting_identity` until the DPO records the
method used to check who wrote (policy 9.3), or rejects it for identity not established. The
identifiers of a person without an account are sealed on the request: never in the audit trail
(which gets which kinds of identifiers were given), never in a log line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared.desk.identifiers import SubjectIdentifiers
from shared.platform.clock import UTC, iso, moment
from shared.platform.errors import Conflict, NotFound, ValidationFailed
from shared.policy.facts import DPO_CHANNELS, IDENTITY_VERIFICATION_METHODS, POLICY_EFFECTIVE_DATE
from shared.ports.tables import accounts, dsr_requests
from shared.records import registry
from shared.records.registry import RequestRecord

# Where a request may come from at the desk: the client area's buttons register their own.
INTAKE_CHANNELS = (*DPO_CHANNELS, "client_area")
MAX_DUE_WITHIN_DAYS = 366
MAX_LISTED = 1000


def _check_received_at(received_at: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    if received_at is None:
        return now
    if not isinstance(received_at, dt.datetime) or received_at.tzinfo is None:
        raise ValidationFailed("received_at must be a moment with a time zone", code="invalid_received_at")
    received = received_at.astimezone(UTC)
    if received > now:
        raise ValidationFailed("received_at cannot be in the future", code="invalid_received_at")
    if received.date() < POLICY_EFFECTIVE_DATE:
        raise ValidationFailed(
            f"received_at cannot be before the policy existed ({POLICY_EFFECTIVE_DATE.isoformat()})",
            code="invalid_received_at",
        )
    return received


def _account_holding(conn: Connection, email: str) -> str | None:
    """The account whose login email is `email`, if any: the person then holds an account."""
    return conn.execute(select(accounts.c.id).where(accounts.c.email == email, accounts.c.status != "erased")).scalar()


def register(
    engine: Engine,
    *,
    actor: str,
    kind: str,
    channel: str,
    received_at: dt.datetime | None = None,
    account_id: str | None = None,
    identifiers: SubjectIdentifiers | None = None,
    now: dt.datetime | None = None,
) -> RequestRecord:
    """Register a request received by email, post or via the client area; it awaits identity.

    The person is named by `account_id`, or by `identifiers`; identifiers whose email is an
    account's login name that account (the DPO still verifies who wrote). 404 for an unknown
    account id, 409 `request_already_open` if one of the same kind is open for the account.
    """
    now = moment(now)
    if kind not in registry.KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(registry.KINDS)}", code="invalid_kind")
    if channel not in INTAKE_CHANNELS:
        raise ValidationFailed(f"channel must be one of {', '.join(INTAKE_CHANNELS)}", code="invalid_channel")
    received = _check_received_at(received_at, now)
    if bool(account_id) == bool(identifiers):
        raise ValidationFailed("name the person by account_id or by identifiers, not both", code="invalid_subject")
    with engine.begin() as conn:
        if account_id:
            status = conn.execute(select(accounts.c.status).where(accounts.c.id == account_id)).scalar()
            if status is None:
                raise NotFound("no such account", code="account_not_found")
            if status == "erased":
                raise Conflict("this account has been erased", code="account_erased")
        elif identifiers is not None and identifiers.email:
            account_id = _account_holding(conn, identifiers.email)
        record = registry.create_request(
            conn,
            account_id=account_id,
            kind=kind,
            channel=channel,
            now=now,
            received_at=received,
            identifiers=identifiers.given() if identifiers is not None else None,
            actor=actor,
            details={"identified_by": identifiers.kinds if identifiers is not None else ["account_id"]},
        )
    return record


def get(engine: Engine, request_id: str) -> RequestRecord:
    with engine.connect() as conn:
        return registry.get_request(conn, request_id)


def verify_identity(
    engine: Engine, request_id: str, *, method: str, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """Record how the DPO checked who wrote (the method, never the evidence); the request is verified."""
    if method not in IDENTITY_VERIFICATION_METHODS:
        raise ValidationFailed(
            f"method must be one of {', '.join(IDENTITY_VERIFICATION_METHODS)}", code="invalid_method"
        )
    with engine.begin() as conn:
        record = registry.get_request(conn, request_id)
        if record.identity_state != registry.AWAITING_IDENTITY:
            raise registry.InvalidTransition(
                f"identity is {record.identity_state}, not awaiting verification", code="identity_not_awaited"
            )
        record = registry.transition_many(
            conn,
            [record],
            registry.VERIFIED,
            actor=actor,
            details={record.id: {"verified_by": method}},
            now=now,
            follow_up={
                record.id: dict(
                    actor=actor,
                    action="request.identity_verified",
                    outcome="verified",
                    request_id=record.id,
                    subject=record.account_id,
                    details={"method": method, "channel": record.channel},
                )
            },
        )[0]
    return record


def extend(
    engine: Engine, request_id: str, *, months: int, reason: str, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """Extend the deadline (Art. 12(3)); the caller then tells the person (notify.extension_notice)."""
    with engine.begin() as conn:
        return registry.extend_deadline(conn, request_id, months=months, reason=reason, actor=actor, now=now)


def reject(
    engine: Engine,
    request_id: str,
    *,
    reason_code: str,
    actor: str,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> RequestRecord:
    """Refuse or close the request with a reason code (Art. 12(4)); the caller then tells the person."""
    if reason_code not in registry.REJECTION_REASON_CODES:
        raise ValidationFailed(
            f"reason_code must be one of {', '.join(registry.REJECTION_REASON_CODES)}", code="invalid_reason_code"
        )
    with engine.begin() as conn:
        record = registry.get_request(conn, request_id)
        if reason_code == "identity_not_established" and record.identity_state != registry.AWAITING_IDENTITY:
            raise registry.InvalidTransition("identity was already established", code="identity_not_awaited")
        return registry.transition(
            conn,
            request_id,
            registry.REJECTED,
            actor=actor,
            reason=note or reason_code,
            details={"reason_code": reason_code},
            now=now,
        )


@dataclass(frozen=True)
class RequestFilter:
    state: str | None = None
    kind: str | None = None
    channel: str | None = None
    due_within_days: int | None = None
    overdue: bool = False

    def __post_init__(self) -> None:
        for name, allowed in (
            ("state", registry.OPEN_STATES),
            ("kind", registry.KINDS),
            ("channel", registry.CHANNELS),
        ):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValidationFailed(f"{name} must be one of {', '.join(sorted(allowed))}", code=f"invalid_{name}")
        days = self.due_within_days
        if days is not None and (
            not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= MAX_DUE_WITHIN_DAYS
        ):
            raise ValidationFailed(f"due_within_days must be 0 to {MAX_DUE_WITHIN_DAYS}", code="invalid_due_within")
        if not isinstance(self.overdue, bool):
            raise ValidationFailed("overdue must be a boolean", code="invalid_overdue")


def open_requests(
    engine: Engine, filters: RequestFilter | None = None, *, now: dt.datetime | None = None
) -> list[RequestRecord]:
    """Open requests, soonest due first (the extended date when there is one)."""
    filters = filters or RequestFilter()
    now = moment(now)
    effective_due = registry.effective_due_column()
    query = select(dsr_requests).where(
        dsr_requests.c.state.in_([filters.state] if filters.state else sorted(registry.OPEN_STATES))
    )
    if filters.kind:
        query = query.where(dsr_requests.c.kind == filters.kind)
    if filters.channel:
        query = query.where(dsr_requests.c.channel == filters.channel)
    if filters.overdue:
        query = query.where(effective_due < now)
    if filters.due_within_days is not None:
        query = query.where(effective_due <= now + dt.timedelta(days=filters.due_within_days))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(effective_due, dsr_requests.c.id).limit(MAX_LISTED)).all()
    return [RequestRecord.from_row(row) for row in rows]


def request_view(record: RequestRecord, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The DPO's view: the registry's, plus who it is about (kinds of identifiers only) and the clock."""
    now = moment(now)
    body = record.to_json()
    body["subject"] = {
        "account_id": record.account_id,
        "identified_by": record.details.get("identified_by", ["account_id"]),
    }
    if not record.is_terminal:
        body["overdue"] = record.effective_due_at < now
        body["days_left"] = (record.effective_due_at - now).days
    body["effective_due_at"] = iso(record.effective_due_at)
    return body


def views(records: Sequence[RequestRecord], *, now: dt.datetime | None = None) -> dict[str, Any]:
    return {"requests": [request_view(record, now=now) for record in records]}
