"""What an account allows, read by every function before it processes: the one shared check.

Consent lives in an append-only ledger (`consent_events`): the current state of a purpose is
its latest event, derived on every read and never stored apart. Objections (Art. 21) and
restrictions (Art. 18) are flags in `processing_restrictions`, in force until lifted.
`shared.rights.consent` writes both; everything else only reads them, through here:
`may_process(conn, account_id, purpose)` for every purpose of consent (3.4) and legitimate
interest (3.3), `may_send_marketing`, `may_collect_analytics`, `is_restricted`,
`erasure_by_inactivity_allowed`, or `restricted_accounts()` / `objecting_accounts()` in bulk.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, Select, select

from shared.platform.clock import iso_or_none
from shared.policy.facts import CONSENT_PURPOSES, LEGITIMATE_INTEREST_OBJECTIONS
from shared.ports.tables import accounts, consent_events, processing_restrictions

PURPOSES: tuple[str, ...] = CONSENT_PURPOSES  # newsletter, analytics
ALL = "all"
GIVEN, WITHDRAWN = "given", "withdrawn"

RESTRICTION = "restriction"
OBJECTION_DIRECT_MARKETING = "objection_direct_marketing"
OBJECTION_ANALYTICS = "objection_analytics"
# An objection withdraws the consent of its purpose and blocks it until a new explicit consent.
OBJECTION_FOR_PURPOSE = {"newsletter": OBJECTION_DIRECT_MARKETING, "analytics": OBJECTION_ANALYTICS}

# Legitimate interest (policy 3.3): each purpose has its objection kind (Art. 21(1)). An objection
# to improvement or statistics takes effect at once; one to security or fraud prevention is a
# request the DPO decides, and its flag is set only once the DPO accepts it.
LI_PURPOSES: tuple[str, ...] = tuple(o.purpose for o in LEGITIMATE_INTEREST_OBJECTIONS)
OBJECTION_FOR_LI_PURPOSE = {purpose: f"objection_{purpose}" for purpose in LI_PURPOSES}
DPO_DECIDED_LI_PURPOSES = tuple(o.purpose for o in LEGITIMATE_INTEREST_OBJECTIONS if o.decided_by_dpo)
IMMEDIATE_LI_PURPOSES = tuple(p for p in LI_PURPOSES if p not in DPO_DECIDED_LI_PURPOSES)
# An Art. 18 restriction stops these too (store only); security and fraud prevention go on under
# a restriction (Art. 18(2): the protection of the rights of other persons).
_RESTRICTED_LI_PURPOSES = IMMEDIATE_LI_PURPOSES
FLAG_KINDS = (RESTRICTION, OBJECTION_DIRECT_MARKETING, OBJECTION_ANALYTICS, *OBJECTION_FOR_LI_PURPOSE.values())
# Every purpose `may_process` answers for.
CHECKED_PURPOSES = (*PURPOSES, *LI_PURPOSES)

# Grounds for a restriction (Art. 18(1)) and for lifting a flag; codes, never free text.
RESTRICTION_REASONS = {
    "accuracy_contested": "Art. 18(1)(a)",
    "unlawful_processing": "Art. 18(1)(b)",
    "legal_claims": "Art. 18(1)(c)",
    "objection_pending": "Art. 18(1)(d)",
}


# --- Derived state -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentState:
    purpose: str
    granted: bool
    since: dt.datetime | None
    channel: str | None
    event_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"granted": self.granted, "since": iso_or_none(self.since), "channel": self.channel}


@dataclass(frozen=True)
class Flag:
    id: str
    account_id: str
    kind: str
    reason_code: str
    note: str | None
    channel: str
    set_at: dt.datetime
    set_by: str
    request_id: str | None
    lift_notified_at: dt.datetime | None
    lifted_at: dt.datetime | None
    lifted_by: str | None
    lift_reason_code: str | None
    lift_request_id: str | None

    @property
    def in_force(self) -> bool:
        return self.lifted_at is None

    def to_json(self, *, include_note: bool = False) -> dict[str, Any]:
        body = {
            "id": self.id,
            "kind": self.kind,
            "reason_code": self.reason_code,
            "legal_ground": RESTRICTION_REASONS.get(self.reason_code),
            "channel": self.channel,
            "set_at": iso_or_none(self.set_at),
            "in_force": self.in_force,
            "lift_notified_at": iso_or_none(self.lift_notified_at),
            "lifted_at": iso_or_none(self.lifted_at),
            "lift_reason_code": self.lift_reason_code,
        }
        if include_note:
            body["account_id"] = self.account_id
            body["note"] = self.note
        return body


def latest_event(conn: Connection, account_id: str, purpose: str) -> Row[Any] | None:
    # On equal timestamps (rows written by other tools) the withdrawal wins: the privacy-safe reading.
    return conn.execute(
        select(consent_events)
        .where(consent_events.c.account_id == account_id, consent_events.c.purpose == purpose)
        .order_by(consent_events.c.occurred_at.desc(), consent_events.c.action.desc())
        .limit(1)
    ).first()


def consent_state(conn: Connection, account_id: str) -> dict[str, ConsentState]:
    """Each consent purpose's current state, derived from the ledger."""
    states = {}
    for purpose in PURPOSES:
        row = latest_event(conn, account_id, purpose)
        states[purpose] = ConsentState(
            purpose=purpose,
            granted=row is not None and row.action == GIVEN,
            since=row.occurred_at if row is not None else None,
            channel=row.channel if row is not None else None,
            event_id=row.id if row is not None else None,
        )
    return states


def flag_from_row(row: Row[Any]) -> Flag:
    return Flag(**row._asdict())


def flags_in_force(conn: Connection, account_id: str) -> dict[str, Flag]:
    rows = conn.execute(
        select(processing_restrictions).where(
            processing_restrictions.c.account_id == account_id, processing_restrictions.c.lifted_at.is_(None)
        )
    )
    return {row.kind: flag_from_row(row) for row in rows}


def all_flags(conn: Connection, account_id: str) -> list[Flag]:
    rows = conn.execute(
        select(processing_restrictions)
        .where(processing_restrictions.c.account_id == account_id)
        .order_by(processing_restrictions.c.set_at)
    )
    return [flag_from_row(row) for row in rows]


def consent_history(conn: Connection, account_id: str) -> list[dict[str, Any]]:
    """The ledger of one account, oldest first: the proof of consent (Art. 7(1)), exportable as is."""
    rows = conn.execute(
        select(consent_events)
        .where(consent_events.c.account_id == account_id)
        .order_by(consent_events.c.occurred_at, consent_events.c.action)
    )
    return [
        {
            "event_id": row.id,
            "purpose": row.purpose,
            "action": row.action,
            "occurred_at": iso_or_none(row.occurred_at),
            "channel": row.channel,
            "policy_version": row.policy_version,
            "proof_ip_pseudonym": row.proof_ip_pseudonym,
            "proof_user_agent": row.proof_user_agent,
        }
        for row in rows
    ]


# --- Shared checks: every function of the suite asks these ------------------------------


def account_status(conn: Connection, account_id: str) -> str | None:
    return conn.execute(select(accounts.c.status).where(accounts.c.id == account_id)).scalar()


def blocked_by(conn: Connection, account_id: str, kinds: tuple[str, ...]) -> bool:
    return (
        conn.execute(
            select(processing_restrictions.c.id)
            .where(
                processing_restrictions.c.account_id == account_id,
                processing_restrictions.c.kind.in_(kinds),
                processing_restrictions.c.lifted_at.is_(None),
            )
            .limit(1)
        ).first()
        is not None
    )


def _consent_based_processing_allowed(conn: Connection, account_id: str, purpose: str) -> bool:
    if account_status(conn, account_id) != "active":
        return False
    if blocked_by(conn, account_id, (RESTRICTION, OBJECTION_FOR_PURPOSE[purpose])):
        return False
    latest = latest_event(conn, account_id, purpose)
    return latest is not None and latest.action == GIVEN


def may_send_marketing(conn: Connection, account_id: str) -> bool:
    """Newsletter consent given, no objection to direct marketing, no restriction, account active."""
    return _consent_based_processing_allowed(conn, account_id, "newsletter")


def may_collect_analytics(conn: Connection, account_id: str) -> bool:
    """Analytics consent given, no objection (incl. GPC), no restriction, account active."""
    return may_process(conn, account_id, "analytics")


def may_process(conn: Connection, account_id: str, purpose: str) -> bool:
    """The one check a collector asks before processing an account's data for `purpose`.

    Consent purposes (newsletter, analytics): consent given, no objection, no restriction.
    Legitimate-interest purposes (policy 3.3): no objection in force for the purpose (an objection
    to security or fraud prevention is in force once the DPO accepted it), no restriction for
    improvement and statistics. Always: the account is active.
    """
    if purpose in OBJECTION_FOR_PURPOSE:
        return _consent_based_processing_allowed(conn, account_id, purpose)
    if purpose not in OBJECTION_FOR_LI_PURPOSE:
        raise ValueError(f"unknown purpose {purpose!r}; expected one of {', '.join(CHECKED_PURPOSES)}")
    if account_status(conn, account_id) != "active":
        return False
    kinds = (OBJECTION_FOR_LI_PURPOSE[purpose], *((RESTRICTION,) if purpose in _RESTRICTED_LI_PURPOSES else ()))
    return not blocked_by(conn, account_id, kinds)


def objecting_accounts(purpose: str) -> Select:
    """SELECT of the account ids whose objection to `purpose` is in force, for bulk jobs (statistics):
    `~table.c.account_id.in_(objecting_accounts("usage_statistics"))`."""
    kinds = [OBJECTION_FOR_PURPOSE.get(purpose) or OBJECTION_FOR_LI_PURPOSE[purpose]]
    if purpose in (*PURPOSES, *_RESTRICTED_LI_PURPOSES):
        kinds.append(RESTRICTION)
    return select(processing_restrictions.c.account_id).where(
        processing_restrictions.c.kind.in_(kinds), processing_restrictions.c.lifted_at.is_(None)
    )


def is_restricted(conn: Connection, account_id: str) -> bool:
    """An Art. 18 restriction is in force: store only; no marketing, analytics or scheduled erasure."""
    return blocked_by(conn, account_id, (RESTRICTION,))


def erasure_by_inactivity_allowed(conn: Connection, account_id: str) -> bool:
    """The retention schedule may not erase an account while a restriction is in force (Art. 18(2))."""
    return not is_restricted(conn, account_id)


def restricted_accounts() -> Select:
    """SELECT of the account ids under restriction, for bulk jobs: `~accounts.c.id.in_(restricted_accounts())`."""
    return select(processing_restrictions.c.account_id).where(
        processing_restrictions.c.kind == RESTRICTION, processing_restrictions.c.lifted_at.is_(None)
    )
