"""Registry of data-subject requests (GDPR Art. 12 and 15 to 22; policy 8 and 9).

A request moves through a state machine given as data (`TRANSITIONS`); terminal
states are final. Every change is an optimistic-concurrency update on `version`,
so of two concurrent writers exactly one wins, and it writes its audit entry in
the same transaction. The answer is due one calendar month after receipt
(31 January -> 28/29 February), extendable by at most two months in total, with a
reason the subject is told (policy 9.2, Art. 12(3)).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.platform.clock import add_months, iso, moment
from shared.platform.errors import Conflict, NotFound, ValidationFailed
from shared.platform.pseudonym import pseudonymise, subject_pseudonym
from shared.platform.sealing import column_context, seal, unseal
from shared.policy.facts import REFUSAL_REASONS
from shared.ports.tables import dsr_requests
from shared.records import audit

KINDS = ("access", "portability", "erasure", "rectification", "restriction", "objection", "consent_withdrawal")
# `retention`: erasure scheduled by the suite for an inactive account (policy 5).
CHANNELS = ("client_area", "email", "post", "retention", "dpo")

RECEIVED = "received"
VERIFIED = "verified"
WAITING = "waiting"  # e.g. erasure cooling-off
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
CANCELLED = "cancelled"
REJECTED = "rejected"

TRANSITIONS: Mapping[str, frozenset[str]] = {
    RECEIVED: frozenset({VERIFIED, WAITING, IN_PROGRESS, CANCELLED, REJECTED}),
    VERIFIED: frozenset({WAITING, IN_PROGRESS, CANCELLED, REJECTED}),
    WAITING: frozenset({IN_PROGRESS, CANCELLED, REJECTED}),
    # Once work has started (e.g. erasure steps ran) the request can no longer be cancelled.
    IN_PROGRESS: frozenset({COMPLETED, REJECTED}),
    COMPLETED: frozenset(),
    CANCELLED: frozenset(),
    REJECTED: frozenset(),
}
STATES = tuple(TRANSITIONS)
TERMINAL_STATES = frozenset(state for state, targets in TRANSITIONS.items() if not targets)
OPEN_STATES = frozenset(STATES) - TERMINAL_STATES
# Requests from these channels were opened by the suite or the DPO, who already know
# who the subject is; the others must be `verified` before work starts (policy 9.3).
SELF_VERIFIED_CHANNELS = frozenset({"retention", "dpo"})
# States that a request of an unverified channel may only reach through `verified`.
_AFTER_VERIFICATION = frozenset({WAITING, IN_PROGRESS})
# The controller's own reasons for closing a request are part of the answer (Art. 12(4)).
_REASON_REQUIRED = frozenset({REJECTED})

# Why a request is refused or closed unanswered (Art. 12(4)); the person is told the reason,
# the right to complain to the CNIL and to a judicial remedy.
REJECTION_REASON_CODES = tuple(REFUSAL_REASONS)
# Identity as the request shows it (policy 9.3): work starts only once it is verified.
AWAITING_IDENTITY = "awaiting_identity"
IDENTITY_VERIFIED = "verified"
IDENTITY_NOT_ESTABLISHED = "not_established"
IDENTITY_NOT_REQUIRED = "not_required"  # opened by the suite itself (retention) or the DPO ex officio
IDENTITY_NOT_VERIFIED = "not_verified"  # closed before any check

RESPONSE_MONTHS = 1
MAX_EXTENSION_MONTHS = 2
MAX_REASON_LENGTH = 1000
# Ids per statement in the batch functions.
_BATCH = 1000

_DEFAULT_ACTOR = {"client_area": "client", "email": "dpo", "post": "dpo", "retention": "system:retention", "dpo": "dpo"}


class InvalidTransition(Conflict):
    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code or "invalid_transition", headers=headers)


def due_date_for(received_at: dt.datetime) -> dt.datetime:
    """One calendar month after receipt, clamped to the end of a shorter month."""
    return add_months(received_at, RESPONSE_MONTHS)


def extended_due_date(due_at: dt.datetime, total_months: int) -> dt.datetime:
    """The deadline after extending by `total_months` in all, counted from the original due date."""
    if not 0 < total_months <= MAX_EXTENSION_MONTHS:
        raise ValueError(f"an extension is 1 to {MAX_EXTENSION_MONTHS} months in total")
    return add_months(due_at, total_months)


@dataclass(frozen=True)
class RequestRecord:
    id: str
    account_id: str | None
    subject_pseudonym: str
    kind: str
    channel: str
    state: str
    received_at: dt.datetime
    due_at: dt.datetime
    extended_due_at: dt.datetime | None
    extension_reason: str | None
    state_changed_at: dt.datetime
    closed_at: dt.datetime | None
    reason: str | None
    details: dict[str, Any]
    version: int
    subject_identifiers: str | None = None  # sealed; see `identifiers()`

    @property
    def effective_due_at(self) -> dt.datetime:
        return self.extended_due_at or self.due_at

    @property
    def identity_state(self) -> str:
        if self.details.get("verified_by"):
            return IDENTITY_VERIFIED
        if self.state == REJECTED and self.details.get("reason_code") == "identity_not_established":
            return IDENTITY_NOT_ESTABLISHED
        if self.channel in SELF_VERIFIED_CHANNELS:
            return IDENTITY_NOT_REQUIRED
        if self.state == RECEIVED:
            return AWAITING_IDENTITY
        # Requests from before identity was recorded moved on only once verified.
        return IDENTITY_VERIFIED if self.state in (VERIFIED, WAITING, IN_PROGRESS, COMPLETED) else IDENTITY_NOT_VERIFIED

    def identifiers(self) -> dict[str, str]:
        """The identifiers the person gave (personal data: never log them); {} when an account is named."""
        if not self.subject_identifiers:
            return {}
        return json.loads(unseal(self.subject_identifiers, context=_identifiers_context(self.id)))

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def extension_months(self) -> int:
        """Months added to the original deadline so far (0, 1 or 2)."""
        if self.extended_due_at is None:
            return 0
        for months in range(1, MAX_EXTENSION_MONTHS + 1):
            if extended_due_date(self.due_at, months) == self.extended_due_at:
                return months
        return MAX_EXTENSION_MONTHS

    @property
    def account(self) -> str:
        """The account of a request that acts on one (an export, an erasure); the others have none."""
        if self.account_id is None:
            raise ValueError(f"request {self.id} concerns no account")
        return self.account_id

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request_id": self.id,
            "kind": self.kind,
            "channel": self.channel,
            "state": self.state,
            "received_at": iso(self.received_at),
            "due_at": iso(self.due_at),
        }
        if self.extended_due_at is not None:
            body["extended_due_at"] = iso(self.extended_due_at)
            body["extension_reason"] = self.extension_reason
        if self.closed_at is not None:
            body["closed_at"] = iso(self.closed_at)
        if self.reason:
            body["reason"] = self.reason
        if self.details.get("reason_code"):
            body["reason_code"] = self.details["reason_code"]
        identity: dict[str, Any] = {"state": self.identity_state}
        if self.details.get("verified_by"):
            identity["method"] = self.details["verified_by"]
        body["identity"] = identity
        return body

    @classmethod
    def from_row(cls, row: Row) -> RequestRecord:
        values = row._asdict()
        values["details"] = dict(values["details"] or {})
        return cls(**values)


def _identifiers_context(request_id: str) -> str:
    return column_context("dsr_requests", "subject_identifiers", request_id)


def _clean_reason(reason: str | None, *, required: bool) -> str | None:
    if reason is not None and not isinstance(reason, str):
        raise ValidationFailed("reason must be a string", code="invalid_reason")
    reason = (reason or "").strip()
    if not reason:
        if required:
            raise ValidationFailed("a reason is required", code="reason_required")
        return None
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationFailed(f"reason is longer than {MAX_REASON_LENGTH} characters", code="invalid_reason")
    if audit.personal_data_reason(reason):
        raise ValidationFailed("reason must not contain personal data", code="invalid_reason")
    return reason


def _check_details(details: dict[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise TypeError("request details must be a dict")
    audit.ensure_no_personal_data(details)
    return details


def _load(conn: Connection, request_id: str) -> RequestRecord | None:
    row = conn.execute(select(dsr_requests).where(dsr_requests.c.id == request_id)).first()
    return RequestRecord.from_row(row) if row else None


def effective_due_column() -> sa.ColumnElement:
    """The deadline in force, as SQL: the extended date when there is one."""
    return sa.func.coalesce(dsr_requests.c.extended_due_at, dsr_requests.c.due_at)


def get_request(conn: Connection, request_id: str, *, account_id: str | None = None) -> RequestRecord:
    """The request; 404 when absent or, if `account_id` is given, another account's (same answer)."""
    record = _load(conn, request_id) if isinstance(request_id, str) else None
    if record is None or (account_id is not None and record.account_id != account_id):
        raise NotFound("no such request", code="request_not_found")
    return record


def find_open_request(conn: Connection, *, account_id: str, kind: str) -> RequestRecord | None:
    row = conn.execute(
        select(dsr_requests)
        .where(
            dsr_requests.c.account_id == account_id,
            dsr_requests.c.kind == kind,
            dsr_requests.c.state.in_(sorted(OPEN_STATES)),
        )
        .order_by(dsr_requests.c.received_at.desc())
        .limit(1)
    ).first()
    return RequestRecord.from_row(row) if row else None


def create_request(
    conn: Connection,
    *,
    account_id: str | None,
    kind: str,
    channel: str,
    now: dt.datetime | None = None,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
    received_at: dt.datetime | None = None,
    identifiers: Mapping[str, str] | None = None,
) -> RequestRecord:
    """Register a request in state `received`. One open request per account and kind: 409 otherwise.

    The person is named by `account_id` or, for someone the platform knows no account of, by the
    `identifiers` they gave (sealed on the row). The deadline runs from `received_at` (default: now).
    """
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", code="invalid_kind")
    if channel not in CHANNELS:
        raise ValidationFailed(f"channel must be one of {', '.join(CHANNELS)}", code="invalid_channel")
    if not account_id and not identifiers:
        raise ValidationFailed("account_id or the person's identifiers are required", code="invalid_account")
    details = _check_details(details)
    now = moment(now)
    received = moment(received_at) if received_at is not None else now
    request_id = str(uuid.uuid4())
    if account_id:
        pseudonym = subject_pseudonym(account_id)
    else:
        canonical = json.dumps(dict(identifiers or {}), sort_keys=True, ensure_ascii=False)
        pseudonym = pseudonymise(canonical, purpose="subject-identifiers")
    sealed = (
        seal(
            json.dumps(dict(identifiers), sort_keys=True, ensure_ascii=False), context=_identifiers_context(request_id)
        )
        if identifiers
        else None
    )
    try:
        conn.execute(
            insert(dsr_requests).values(
                id=request_id,
                account_id=account_id or None,
                subject_pseudonym=pseudonym,
                kind=kind,
                channel=channel,
                state=RECEIVED,
                received_at=received,
                due_at=due_date_for(received),
                state_changed_at=now,
                details=details,
                version=1,
                subject_identifiers=sealed,
            )
        )
    except IntegrityError:
        # The partial unique index on open requests: a concurrent or earlier one exists.
        raise Conflict(f"an open {kind} request already exists for this account", code="request_already_open") from None
    audit.record(
        conn,
        actor=actor or _DEFAULT_ACTOR[channel],
        action="request.created",
        outcome=RECEIVED,
        request_id=request_id,
        subject=account_id or None,
        details={"kind": kind, "channel": channel},
    )
    return get_request(conn, request_id)


def _check_transition(record: RequestRecord, to_state: str) -> None:
    if to_state not in TRANSITIONS:
        raise ValidationFailed(f"state must be one of {', '.join(STATES)}", code="invalid_state")
    if record.is_terminal:
        raise InvalidTransition(f"the request is already {record.state}")
    if to_state not in TRANSITIONS[record.state]:
        raise InvalidTransition(f"a request cannot go from {record.state} to {to_state}")
    if record.state == RECEIVED and to_state in _AFTER_VERIFICATION and record.channel not in SELF_VERIFIED_CHANNELS:
        raise InvalidTransition(f"the subject's identity must be verified before {to_state}")


def _update_versioned(conn: Connection, record: RequestRecord, **values: Any) -> None:
    result = conn.execute(
        update(dsr_requests)
        .where(dsr_requests.c.id == record.id, dsr_requests.c.version == record.version)
        .values(**values, version=record.version + 1)
    )
    if result.rowcount != 1:
        raise Conflict("the request was changed by someone else; reload and retry", code="concurrent_update")


def transition(
    conn: Connection,
    request_id: str,
    to_state: str,
    *,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> RequestRecord:
    """Move the request to `to_state`; `details` are merged into the request's details."""
    record = get_request(conn, request_id)
    return transition_many(
        conn, [record], to_state, actor=actor, reason=reason, details={record.id: details} if details else None, now=now
    )[0]


def transition_many(
    conn: Connection,
    records: Sequence[RequestRecord],
    to_state: str,
    *,
    actor: str,
    reason: str | None = None,
    details: Mapping[str, dict[str, Any]] | None = None,
    now: dt.datetime | None = None,
    follow_up: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[RequestRecord]:
    """`transition` for many loaded requests at once: all move, or none (Conflict / InvalidTransition).

    Every record is checked as `transition` checks it; the update is optimistic on each
    record's version, and the audit entries are appended together. `details` maps a
    request id to the details merged into that request's; `follow_up` maps a request id
    to one more audit entry (`audit.record` arguments) chained right after its transition's.
    """
    if not records:
        return []
    if len({record.id for record in records}) != len(records):
        raise ValueError("each request appears once")
    for record in records:
        _check_transition(record, to_state)
    reason = _clean_reason(reason, required=to_state in _REASON_REQUIRED)
    extra = {request_id: _check_details(value) for request_id, value in (details or {}).items()}
    now = moment(now)
    values: dict[str, Any] = {"state": to_state, "state_changed_at": now, "version": dsr_requests.c.version + 1}
    if to_state in TERMINAL_STATES:
        values["closed_at"] = now
    if reason is not None:
        values["reason"] = reason
    if any(extra.values()):
        merged = {r.id: {**r.details, **extra[r.id]} for r in records if extra.get(r.id)}
        if len(merged) == len(records) and len({json.dumps(v, sort_keys=True) for v in merged.values()}) == 1:
            values["details"] = next(iter(merged.values()))
        else:
            # Per-request details, still one UPDATE: a bound JSON value per id.
            values["details"] = sa.case(
                {
                    request_id: sa.bindparam(f"details_{n}", value, type_=dsr_requests.c.details.type)
                    for n, (request_id, value) in enumerate(merged.items())
                },
                value=dsr_requests.c.id,
                else_=dsr_requests.c.details,
            )
    for start in range(0, len(records), _BATCH):
        chunk = records[start : start + _BATCH]
        # Each record's own version check: a row changed meanwhile is not matched, and the count tells.
        result = conn.execute(
            update(dsr_requests)
            .where(sa.tuple_(dsr_requests.c.id, dsr_requests.c.version).in_([(r.id, r.version) for r in chunk]))
            .values(**values)
        )
        if result.rowcount != len(chunk):
            raise Conflict("the request was changed by someone else; reload and retry", code="concurrent_update")
    entries: list[Mapping[str, Any]] = []
    for record in records:
        entries.append(
            dict(
                actor=actor,
                action="request.transition",
                outcome=to_state,
                request_id=record.id,
                subject=record.account_id,
                details={"kind": record.kind, "from": record.state, "to": to_state},
            )
        )
        if follow_up and record.id in follow_up:
            entries.append(follow_up[record.id])
    audit.record_many(conn, entries)
    return load_many(conn, [record.id for record in records])


def load_many(conn: Connection, request_ids: Sequence[str]) -> list[RequestRecord]:
    """The requests with these ids, in that order (absent ids are left out)."""
    found: dict[str, RequestRecord] = {}
    for start in range(0, len(request_ids), _BATCH):
        chunk = list(request_ids[start : start + _BATCH])
        for row in conn.execute(select(dsr_requests).where(dsr_requests.c.id.in_(chunk))):
            found[row.id] = RequestRecord.from_row(row)
    return [found[request_id] for request_id in request_ids if request_id in found]


def extend_deadline(
    conn: Connection,
    request_id: str,
    *,
    months: int,
    reason: str,
    actor: str,
    now: dt.datetime | None = None,
) -> RequestRecord:
    """Extend by 1 or 2 months (2 at most in total, from the original due date).

    Allowed only while the original month runs, since the subject must be told
    within it (Art. 12(3)). The returned record carries what the subject is told:
    `extended_due_at` and `extension_reason` (see `to_json`).
    """
    if not isinstance(months, int) or isinstance(months, bool) or not 1 <= months <= MAX_EXTENSION_MONTHS:
        raise ValidationFailed(f"months must be between 1 and {MAX_EXTENSION_MONTHS}", code="invalid_months")
    reason = _clean_reason(reason, required=True) or ""  # required: never empty here
    record = get_request(conn, request_id)
    now = moment(now)
    if record.is_terminal:
        raise InvalidTransition(f"the request is already {record.state}")
    total = record.extension_months + months
    if total > MAX_EXTENSION_MONTHS:
        raise Conflict(
            f"the deadline can be extended by {MAX_EXTENSION_MONTHS} months at most", code="extension_limit_reached"
        )
    if now > record.due_at:
        raise Conflict("the deadline can only be extended before the original due date", code="extension_too_late")
    extended = extended_due_date(record.due_at, total)
    _update_versioned(conn, record, extended_due_at=extended, extension_reason=reason)
    audit.record(
        conn,
        actor=actor,
        action="request.deadline_extended",
        outcome="extended",
        request_id=record.id,
        subject=record.account_id,
        details={"kind": record.kind, "months": months, "total_months": total, "extended_due_at": iso(extended)},
    )
    return get_request(conn, request_id)


def create_closed_request(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    channel: str,
    now: dt.datetime | None = None,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
) -> RequestRecord:
    """Register a request answered the moment it was made (state `completed`), beside any open one.

    For a change already in effect when an open request of the same kind and account exists (an
    objection to direct marketing while an objection to security awaits the DPO's decision): the
    one-open-request rule covers open requests only, so this one never conflicts with it.
    """
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", code="invalid_kind")
    if channel not in CHANNELS:
        raise ValidationFailed(f"channel must be one of {', '.join(CHANNELS)}", code="invalid_channel")
    if not account_id:
        raise ValidationFailed("account_id is required", code="invalid_account")
    details = _check_details(details)
    now = moment(now)
    request_id = str(uuid.uuid4())
    conn.execute(
        insert(dsr_requests).values(
            id=request_id,
            account_id=account_id,
            subject_pseudonym=subject_pseudonym(account_id),
            kind=kind,
            channel=channel,
            state=COMPLETED,
            received_at=now,
            due_at=due_date_for(now),
            state_changed_at=now,
            closed_at=now,
            details=details,
            version=1,
        )
    )
    actor = actor or _DEFAULT_ACTOR[channel]
    audit.record_many(
        conn,
        [
            dict(
                actor=actor,
                action="request.created",
                outcome=RECEIVED,
                request_id=request_id,
                subject=account_id,
                details={"kind": kind, "channel": channel},
            ),
            dict(
                actor=actor,
                action="request.transition",
                outcome=COMPLETED,
                request_id=request_id,
                subject=account_id,
                details={"kind": kind, "from": RECEIVED, "to": COMPLETED},
            ),
        ],
    )
    return get_request(conn, request_id)
