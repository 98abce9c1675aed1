"""The writes every consent operation shares: the account lock, the ledger, the flags, the registry.

Writes for one account are serialised by locking its `accounts` row, which makes
"withdraw twice" write one event even when the two calls race. Nothing here commits:
each function runs inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from shared.platform.errors import NotFound, ValidationFailed
from shared.platform.pseudonym import pseudonymise
from shared.policy.facts import POLICY_VERSION
from shared.ports.tables import accounts, consent_events, processing_restrictions
from shared.records import audit
from shared.records import registry as requests
from shared.records.processing import (
    ALL,
    PURPOSES,
    RESTRICTION,
    Flag,
    account_status,
    flag_from_row,
    flags_in_force,
)

# Ledger channels, and the request-registry channel each one maps to.
CLIENT_AREA, EMAIL_LINK, DPO, GPC = "client_area", "email_link", "dpo", "gpc"
_REQUEST_CHANNEL = {CLIENT_AREA: "client_area", EMAIL_LINK: "email", DPO: "dpo", GPC: "client_area"}

OBJECTION_REASONS = ("data_subject_request", "gpc_signal")
LIFT_REASONS = (
    "accuracy_verified",
    "processing_lawful",
    "legal_claims_closed",
    "objection_rejected",
    "data_subject_request",
    "new_explicit_consent",
)
MAX_NOTE_LENGTH = 2000
# Marks, in its details, an objection request (security, fraud prevention) the DPO has to decide.
AWAITING_DPO_DECISION = "dpo_decision"

_ONE_TICK = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Change:
    """What one operation changed; `request_id` is None when nothing did (idempotent repeat)."""

    withdrawn: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    flags_set: tuple[str, ...] = ()
    flags_lifted: tuple[str, ...] = ()
    request_id: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.withdrawn or self.given or self.flags_set or self.flags_lifted)

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "withdrawn": list(self.withdrawn),
            "given": list(self.given),
            "objections_set": list(self.flags_set),
            "objections_lifted": list(self.flags_lifted),
            "request_id": self.request_id,
        }


def lock_account(conn: Connection, account_id: str) -> str:
    """Serialise consent writes of one account; returns its status. 404 when it does not exist."""
    if conn.dialect.name == "postgresql":
        found = conn.execute(select(accounts.c.status).where(accounts.c.id == account_id).with_for_update()).scalar()
    else:
        # SQLite: a no-op write takes the database write lock before anything is read.
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(status=accounts.c.status))
        found = account_status(conn, account_id)
    if found is None:
        raise NotFound("no such account", code="account_not_found")
    return found


def check_purposes(purpose: Any) -> tuple[str, ...]:
    if purpose == ALL:
        return PURPOSES
    if isinstance(purpose, str) and purpose in PURPOSES:
        return (purpose,)
    raise ValidationFailed(f"purpose must be one of {', '.join((*PURPOSES, ALL))}", code="unknown_purpose")


def check_channel(channel: str) -> None:
    if channel not in _REQUEST_CHANNEL:
        raise ValueError(f"unknown consent channel {channel!r}")


def append_event(
    conn: Connection,
    *,
    account_id: str,
    purpose: str,
    action: str,
    channel: str,
    now: dt.datetime,
    ip: str | None,
    user_agent: str | None,
    previous: Row[Any] | None,
) -> tuple[str, dt.datetime]:
    # Strictly increasing per account and purpose, so "the latest event" is never ambiguous.
    occurred_at = now if previous is None or now > previous.occurred_at else previous.occurred_at + _ONE_TICK
    event_id = str(uuid.uuid4())
    conn.execute(
        insert(consent_events).values(
            id=event_id,
            account_id=account_id,
            purpose=purpose,
            action=action,
            occurred_at=occurred_at,
            channel=channel,
            policy_version=POLICY_VERSION,
            proof_ip_pseudonym=pseudonymise(ip, purpose="consent-proof-ip") if ip else None,
            proof_user_agent=(user_agent or None) and user_agent[:400],
        )
    )
    return event_id, occurred_at


# --- Flags (processing_restrictions) -------------------------------------------------------------


def flag_family(kind: str) -> str:
    return "restriction" if kind == RESTRICTION else "objection"


def load_flag(conn: Connection, flag_id: str) -> Flag | None:
    row = conn.execute(select(processing_restrictions).where(processing_restrictions.c.id == flag_id)).first()
    return flag_from_row(row) if row else None


def set_flag_in(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    reason_code: str,
    note: str | None,
    channel: str,
    actor: str,
    now: dt.datetime,
) -> Flag | None:
    """Set a flag unless one of that kind is in force; the new flag, or None."""
    if kind in flags_in_force(conn, account_id):
        return None
    flag_id = str(uuid.uuid4())
    conn.execute(
        insert(processing_restrictions).values(
            id=flag_id,
            account_id=account_id,
            kind=kind,
            reason_code=reason_code,
            note=note,
            channel=channel,
            set_at=now,
            set_by=actor,
        )
    )
    audit.record(
        conn,
        actor=actor,
        action=f"{flag_family(kind)}.set",
        outcome="in_force",
        subject=account_id,
        details={"kind": kind, "reason_code": reason_code, "channel": channel, "flag_id": flag_id},
    )
    return load_flag(conn, flag_id)


def lift_in(
    conn: Connection,
    flag: Flag,
    *,
    actor: str,
    reason_code: str,
    now: dt.datetime,
    notified_at: dt.datetime | None = None,
) -> None:
    conn.execute(
        update(processing_restrictions)
        .where(processing_restrictions.c.id == flag.id)
        .values(lifted_at=now, lifted_by=actor, lift_reason_code=reason_code, lift_notified_at=notified_at)
    )
    audit.record(
        conn,
        actor=actor,
        action=f"{flag_family(flag.kind)}.lifted",
        outcome="lifted",
        subject=flag.account_id,
        details={
            "kind": flag.kind,
            "reason_code": reason_code,
            "flag_id": flag.id,
            "notified_first": notified_at is not None,
        },
    )


def attach_request(conn: Connection, request_id: str, flag_ids: list[str]) -> None:
    if flag_ids:
        conn.execute(
            update(processing_restrictions)
            .where(processing_restrictions.c.id.in_(flag_ids))
            .values(request_id=request_id)
        )


# --- The request registry ----------------------------------------------------------------------


def register(
    conn: Connection,
    *,
    account_id: str,
    kind: str,
    channel: str,
    actor: str,
    now: dt.datetime,
    details: dict[str, Any],
) -> str:
    """A request in the registry for a change already made, closed as completed; its id.

    The change is effective at once (withdrawing consent must be as easy as giving it,
    Art. 7(3)): the caller is already authenticated, by a client token, a signed link or a
    DPO credential, so the request is recorded as verified and completed in one go.
    """
    request_channel = _REQUEST_CHANNEL[channel]
    record = requests.find_open_request(conn, account_id=account_id, kind=kind)
    if record is not None and record.details.get("awaiting") == AWAITING_DPO_DECISION:
        # An objection the DPO has still to decide stays open: this change is a request of its own.
        return requests.create_closed_request(
            conn, account_id=account_id, kind=kind, channel=request_channel, now=now, details=details, actor=actor
        ).id
    if record is None:
        record = requests.create_request(
            conn, account_id=account_id, kind=kind, channel=request_channel, now=now, details=details, actor=actor
        )
    path = {
        requests.RECEIVED: (requests.VERIFIED, requests.IN_PROGRESS, requests.COMPLETED),
        requests.VERIFIED: (requests.IN_PROGRESS, requests.COMPLETED),
        requests.WAITING: (requests.IN_PROGRESS, requests.COMPLETED),
        requests.IN_PROGRESS: (requests.COMPLETED,),
    }[record.state]
    if record.channel in requests.SELF_VERIFIED_CHANNELS and path[0] == requests.VERIFIED:
        path = path[1:]
    for state in path:
        record = requests.transition(
            conn, record.id, state, actor=actor, now=now, details=details if state == requests.COMPLETED else None
        )
    return record.id
