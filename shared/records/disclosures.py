"""The register of authority requests and disclosures (policy 6.4).

The DPO registers each request received from an authority (tax administration, court, police,
another authority): its name, reference, legal basis and the day it was received; then each
disclosure made for it: which data-map categories, about whom (an account or a prospect id),
when and how. The register is kept as proof for DISCLOSURE_RECORDS_RETENTION_MONTHS after the
last disclosure of a request (`shared.policy.rules.disclosure_records_rule`), then purged by
enforce-retention (`purge_expired`), unless a hold in force still refers to the request.

Entries name institutions and ids, never a person: every free-text field goes through the audit
trail's personal-data guard. Registrations and disclosures are audited.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, delete, insert, select, update

from shared.platform.clock import iso, moment
from shared.platform.errors import NotFound, ValidationFailed
from shared.policy.facts import POLICY_EFFECTIVE_DATE
from shared.policy.rules import cutoff, disclosure_records_rule
from shared.ports import tables as schema
from shared.records import audit
from shared.records.holds import check_categories, check_free_text, in_force

AUTHORITY_KINDS = ("tax_administration", "court", "police", "other")
METHODS = ("secure_transfer", "registered_mail", "in_person", "authority_portal")
_BATCH = 500


@dataclass(frozen=True)
class Disclosure:
    id: str
    request_id: str
    account_id: str | None
    prospect_id: str | None
    categories: tuple[str, ...]
    disclosed_at: dt.datetime
    method: str
    recorded_at: dt.datetime
    recorded_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "request_id": self.request_id,
            "account_id": self.account_id,
            "prospect_id": self.prospect_id,
            "categories": list(self.categories),
            "disclosed_at": iso(self.disclosed_at, timespec="seconds"),
            "method": self.method,
            "recorded_at": iso(self.recorded_at, timespec="seconds"),
            "recorded_by": self.recorded_by,
        }


@dataclass(frozen=True)
class AuthorityRequest:
    id: str
    authority_kind: str
    authority_name: str
    reference: str
    legal_basis: str
    received_on: dt.date
    registered_at: dt.datetime
    registered_by: str
    disclosures: tuple[Disclosure, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "authority_kind": self.authority_kind,
            "authority_name": self.authority_name,
            "reference": self.reference,
            "legal_basis": self.legal_basis,
            "received_on": self.received_on.isoformat(),
            "registered_at": iso(self.registered_at, timespec="seconds"),
            "registered_by": self.registered_by,
            "disclosures": [d.to_json() for d in self.disclosures],
        }


def _disclosure(row: Any) -> Disclosure:
    return Disclosure(
        id=row.id,
        request_id=row.request_id,
        account_id=row.account_id,
        prospect_id=row.prospect_id,
        categories=tuple(row.categories or ()),
        disclosed_at=row.disclosed_at,
        method=row.method,
        recorded_at=row.recorded_at,
        recorded_by=row.recorded_by,
    )


def _load(conn: Connection, condition: sa.ColumnElement[bool], limit: int = 200) -> list[AuthorityRequest]:
    r, d = schema.authority_requests, schema.authority_disclosures
    rows = conn.execute(select(r).where(condition).order_by(r.c.received_on.desc(), r.c.id).limit(limit)).all()
    if not rows:
        return []
    by_request: dict[str, list[Disclosure]] = {}
    for row in conn.execute(
        select(d).where(d.c.request_id.in_([row.id for row in rows])).order_by(d.c.disclosed_at, d.c.id)
    ):
        by_request.setdefault(row.request_id, []).append(_disclosure(row))
    return [
        AuthorityRequest(
            id=row.id,
            authority_kind=row.authority_kind,
            authority_name=row.authority_name,
            reference=row.reference,
            legal_basis=row.legal_basis,
            received_on=row.received_on,
            registered_at=row.registered_at,
            registered_by=row.registered_by,
            disclosures=tuple(by_request.get(row.id, ())),
        )
        for row in rows
    ]


def get_request(conn: Connection, request_id: str) -> AuthorityRequest:
    found = _load(conn, schema.authority_requests.c.id == request_id, limit=1)
    if not found:
        raise NotFound("no such authority request", code="unknown_authority_request")
    return found[0]


def list_requests(conn: Connection, *, limit: int = 200) -> list[AuthorityRequest]:
    return _load(conn, sa.true(), limit=limit)


def register_request(
    conn: Connection,
    *,
    authority_kind: str,
    authority_name: str,
    reference: str,
    legal_basis: str,
    received_on: dt.date,
    actor: str,
    now: dt.datetime | None = None,
) -> AuthorityRequest:
    """Register a request received from an authority, in the caller's transaction; audited."""
    now = moment(now)
    if authority_kind not in AUTHORITY_KINDS:
        raise ValidationFailed(f"authority_kind is one of {', '.join(AUTHORITY_KINDS)}", code="invalid_authority_kind")
    authority_name = check_free_text(authority_name, field="authority_name", max_length=200)
    reference = check_free_text(reference, field="reference", max_length=120)
    legal_basis = check_free_text(legal_basis, field="legal_basis", max_length=300)
    if not isinstance(received_on, dt.date) or isinstance(received_on, dt.datetime) or received_on > now.date():
        raise ValidationFailed("received_on must be a day, not in the future", code="invalid_received_on")
    # The register starts with the policy: an earlier day is a typing error (the fuzzer sent year 42).
    if received_on < POLICY_EFFECTIVE_DATE:
        raise ValidationFailed(
            f"received_on cannot be before the policy's effective date ({POLICY_EFFECTIVE_DATE.isoformat()})",
            code="invalid_received_on",
        )
    request_id = str(uuid.uuid4())
    conn.execute(
        insert(schema.authority_requests).values(
            id=request_id,
            authority_kind=authority_kind,
            authority_name=authority_name,
            reference=reference,
            legal_basis=legal_basis,
            received_on=received_on,
            registered_at=now,
            registered_by=actor,
            last_activity_at=now,
        )
    )
    audit.record(
        conn,
        actor=actor,
        action="authority_request.registered",
        outcome="registered",
        details={
            "authority_request_id": request_id,
            "authority_kind": authority_kind,
            "received_on": received_on.isoformat(),
        },
    )
    return get_request(conn, request_id)


def record_disclosure(
    conn: Connection,
    request_id: str,
    *,
    categories: Sequence[str],
    disclosed_at: dt.datetime,
    method: str,
    actor: str,
    account_id: str | None = None,
    prospect_id: str | None = None,
    now: dt.datetime | None = None,
) -> Disclosure:
    """Record what was disclosed for a request, when and how; audited. The request's retention clock restarts."""
    now = moment(now)
    request = get_request(conn, request_id)
    if account_id is not None and prospect_id is not None:
        raise ValidationFailed("name at most one of account_id and prospect_id", code="invalid_subject")
    wanted = check_categories(categories, prospect=prospect_id is not None)
    if method not in METHODS:
        raise ValidationFailed(f"method is one of {', '.join(METHODS)}", code="invalid_method")
    if disclosed_at.tzinfo is None:
        raise ValidationFailed("disclosed_at needs a time zone", code="invalid_disclosed_at")
    if disclosed_at > now or disclosed_at.date() < request.received_on:
        raise ValidationFailed(
            "disclosed_at must be between the request's receipt and now", code="invalid_disclosed_at"
        )
    disclosure_id = str(uuid.uuid4())
    conn.execute(
        insert(schema.authority_disclosures).values(
            id=disclosure_id,
            request_id=request_id,
            account_id=account_id,
            prospect_id=prospect_id,
            categories=list(wanted),
            disclosed_at=disclosed_at,
            method=method,
            recorded_at=now,
            recorded_by=actor,
        )
    )
    r = schema.authority_requests
    conn.execute(update(r).where(r.c.id == request_id, r.c.last_activity_at < now).values(last_activity_at=now))
    audit.record(
        conn,
        actor=actor,
        action="authority_request.disclosed",
        outcome="recorded",
        subject=account_id,
        details={
            "authority_request_id": request_id,
            "disclosure_id": disclosure_id,
            "categories": list(wanted),
            "method": method,
            "prospect_id": prospect_id,
        },
    )
    return next(d for d in get_request(conn, request_id).disclosures if d.id == disclosure_id)


# --- Retention of the register --------------------------------------------------------------------------


def _requests_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    r, h = schema.authority_requests, schema.legal_holds
    bound = cutoff(disclosure_records_rule(), now.date())
    still_held = sa.exists().where(h.c.authority_request_id == r.c.id)
    return sa.and_(r.c.last_activity_at < bound, sa.not_(still_held))


def _holds_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Holds no longer in force whose proof period is over (counted from the release, or the end date)."""
    h = schema.legal_holds
    bound = cutoff(disclosure_records_rule(), now.date())
    ended = sa.or_(h.c.released_at < bound, sa.and_(h.c.released_at.is_(None), h.c.ends_on < bound.date()))
    return sa.and_(sa.not_(in_force(now)), ended)


def count_expired(conn: Connection, now: dt.datetime) -> dict[str, int]:
    r, h = schema.authority_requests, schema.legal_holds
    return {
        "legal_holds": conn.execute(select(sa.func.count()).select_from(h).where(_holds_due(now))).scalar_one(),
        "authority_requests": conn.execute(
            select(sa.func.count()).select_from(r).where(_requests_due(now))
        ).scalar_one(),
    }


def purge_expired(engine: Engine, now: dt.datetime) -> dict[str, int]:
    """Delete ended holds and register entries past the proof period (disclosures go with their request)."""
    h, r = schema.legal_holds, schema.authority_requests
    counts = {"legal_holds": 0, "authority_requests": 0}
    for table, due, name in ((h, _holds_due, "legal_holds"), (r, _requests_due, "authority_requests")):
        while True:
            with engine.begin() as conn:
                ids = list(conn.execute(select(table.c.id).where(due(now)).limit(_BATCH)).scalars())
                if ids:
                    if table is h:
                        conn.execute(
                            delete(schema.legal_hold_categories).where(schema.legal_hold_categories.c.hold_id.in_(ids))
                        )
                    else:
                        conn.execute(
                            delete(schema.authority_disclosures).where(
                                schema.authority_disclosures.c.request_id.in_(ids)
                            )
                        )
                    conn.execute(delete(table).where(table.c.id.in_(ids)))
            counts[name] += len(ids)
            if len(ids) < _BATCH:
                break
    return counts
