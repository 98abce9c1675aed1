"""Applying a rectification: the registry request, the corrected rows, the propagation queued.

One path for the client area (`start_client_rectification`, after the step-up) and for the
DPO desk (`apply_rectification`, once the desk verified the person's identity): the same
validation, the same writes, the same queue. What changes is written in one transaction with
the request's transitions and an audit entry naming the fields, never their values. Issued
invoices and their lines are not touched: they keep what was printed on them (Code de commerce),
the correction applies to documents issued afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from shared.platform.clock import moment
from shared.platform.errors import Conflict, NotFound, ValidationFailed
from shared.platform.http import validated
from shared.platform.messages import RectificationRun
from shared.policy import data_map
from shared.ports.backends import get_queue
from shared.ports.tables import accounts, companies, dsr_requests
from shared.records import audit
from shared.records.registry import (
    IN_PROGRESS,
    RECEIVED,
    VERIFIED,
    InvalidTransition,
    RequestRecord,
    create_request,
    find_open_request,
    get_request,
    transition,
)
from shared.rights.rectification.fields import (
    ACCOUNT_FIELDS,
    EMAIL,
    Rectification,
    vat_siren,
)

KIND = "rectification"
QUEUE = RectificationRun.QUEUE

# The data category of each field (shared.policy.facts, policy 2.1).
FIELD_CATEGORIES: Mapping[str, str] = {
    "first_name": "identification.name",
    "last_name": "identification.name",
    "email": "identification.email",
    "phone": "identification.phone",
    "company_name": "identification.company_name",
    "business_address": "identification.business_address",
    "vat_number": "identification.vat_number",
}
# The recipients told of a correction (Art. 19): the processors the data map says hold the category.
RECIPIENTS = ("stripe", "resend")
PENDING = "pending"
NOT_CONCERNED = "not_concerned"


def held_by(field_name: str) -> list[str]:
    """The processors that also hold this field (data map: PROCESSOR_RECORDS)."""
    category = FIELD_CATEGORIES[field_name]
    return sorted({r.subprocessor for r in data_map.PROCESSOR_RECORDS if category in r.categories})


def _message(request_id: str) -> dict[str, Any]:
    return RectificationRun(request_id=request_id).envelope(f"rectification:{request_id}")


def dispatch(request_ids: list[str]) -> int:
    """Queue the propagation of these requests; a repeated message is harmless (saga steps)."""
    if request_ids:
        get_queue(QUEUE).send_many([_message(request_id) for request_id in request_ids])
    return len(request_ids)


def stale_propagations(conn: Connection, *, older_than: dt.datetime, limit: int) -> list[str]:
    """Rectifications in progress whose state has not moved since `older_than` (message lost or dead-lettered)."""
    rows = conn.execute(
        select(dsr_requests.c.id)
        .where(
            dsr_requests.c.kind == KIND,
            dsr_requests.c.state == IN_PROGRESS,
            dsr_requests.c.state_changed_at <= older_than,
        )
        .order_by(dsr_requests.c.state_changed_at)
        .limit(limit)
    )
    return [row.id for row in rows]


# --- What changes -------------------------------------------------------------------------------


@dataclass
class Changes:
    """The corrected values of one rectification, by table; `fields` are the names that really change."""

    account: dict[str, Any] = field(default_factory=dict)
    company: dict[str, Any] = field(default_factory=dict)
    company_id: str | None = None
    fields: list[str] = field(default_factory=list)
    billing_company: bool = False  # the company Stripe's customer address comes from

    def recipients(self, *, stripe_customer: bool) -> dict[str, str]:
        plan = {}
        for recipient in RECIPIENTS:
            concerned = [f for f in self.fields if recipient in held_by(f)]
            if recipient == "stripe":
                concerned = [f for f in concerned if f != "business_address" or self.billing_company]
                concerned = concerned if stripe_customer else []
            plan[recipient] = PENDING if concerned else NOT_CONCERNED
        return plan


def account_companies(conn: Connection, account_id: str) -> list[Any]:
    return list(
        conn.execute(
            select(companies)
            .where(companies.c.account_id == account_id)
            .order_by(companies.c.created_at, companies.c.id)
        )
    )


def load_account(conn: Connection, account_id: str, *, lock: bool = False) -> Any:
    query = select(accounts).where(accounts.c.id == account_id)
    if lock:
        query = query.with_for_update(key_share=True)
    row = conn.execute(query).first()
    if row is None or row.status != "active":
        raise NotFound("no such account", code="account_not_found")
    return row


def changes_for(conn: Connection, account_id: str, body: Rectification, *, lock: bool = False) -> tuple[Changes, Any]:
    """What `body` changes on this account (and which of its companies), checked against what is held."""
    account = load_account(conn, account_id, lock=lock)
    changes = Changes()
    for name in ACCOUNT_FIELDS:
        value = getattr(body, name)
        if name in body.model_fields_set and value != account._mapping[name]:
            changes.account[name] = value
            changes.fields.append(name)
    company_fields = body.company_fields()
    if body.company_id is not None and not company_fields:
        raise ValidationFailed(
            "company_id names the company of a company field; none was sent", code="invalid_company_id"
        )
    if company_fields:
        held = account_companies(conn, account_id)
        if body.company_id is not None:
            # Another account's company is answered as an unknown one: a rectification never reaches it.
            company = next((c for c in held if c.id == body.company_id), None)
            if company is None:
                raise NotFound("no such company on this account", code="company_not_found")
        elif len(held) == 1:
            company = held[0]
        elif not held:
            raise NotFound("this account holds no company to correct", code="company_not_found")
        else:
            raise ValidationFailed(
                "this account has several companies: name one with company_id", code="company_id_required"
            )
        changes.company_id = company.id
        changes.billing_company = company.id == held[0].id
        if body.vat_number is not None and company.siren and vat_siren(body.vat_number) != company.siren:
            raise ValidationFailed("the VAT number is not the company's: its SIREN differs", code="vat_siren_mismatch")
        proposed: dict[str, tuple[str, dict[str, Any]]] = {}
        if body.company_name is not None:
            proposed["company_name"] = ("company_name", {"name": body.company_name})
        if body.business_address is not None:
            proposed["business_address"] = ("business_address", body.business_address.columns())
        if body.vat_number is not None:
            proposed["vat_number"] = ("vat_number", {"vat_number": body.vat_number})
        for name in company_fields:
            _, columns = proposed[name]
            if any(company._mapping[column] != value for column, value in columns.items()):
                changes.company.update(columns)
                changes.fields.append(name)
    return changes, account


def _write(conn: Connection, account_id: str, changes: Changes) -> None:
    if changes.account:
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(**changes.account))
    if changes.company:
        # The WHERE names the account too: a company id of another account matches nothing.
        result = conn.execute(
            update(companies)
            .where(companies.c.id == changes.company_id, companies.c.account_id == account_id)
            .values(**changes.company)
        )
        if result.rowcount != 1:
            raise NotFound("no such company on this account", code="company_not_found")


def apply_changes(
    conn: Connection,
    record: RequestRecord,
    changes: Changes,
    *,
    stripe_customer: bool,
    actor: str,
    now: dt.datetime,
) -> RequestRecord:
    """Write the changes of a verified request, move it to in_progress and audit which fields (never values)."""
    _write(conn, record.account, changes)
    plan = changes.recipients(stripe_customer=stripe_customer)
    details: dict[str, Any] = {"fields": list(changes.fields), "recipients": plan}
    if changes.company_id:
        details["company_id"] = changes.company_id
    record = transition(conn, record.id, IN_PROGRESS, actor=actor, details=details, now=now)
    audit.record(
        conn,
        actor=actor,
        action="rectification.applied",
        outcome="applied",
        request_id=record.id,
        subject=record.account_id,
        details={"fields": list(changes.fields), "recipients_to_tell": [r for r, s in plan.items() if s == PENDING]},
    )
    return record


def _open_conflict(conn: Connection, account_id: str) -> None:
    open_request = find_open_request(conn, account_id=account_id, kind=KIND)
    if open_request is not None:
        raise Conflict(
            f"rectification {open_request.id} is still being applied; try again once it is completed",
            code="rectification_in_progress",
        )


def register_and_apply(
    conn: Connection,
    account_id: str,
    changes: Changes,
    *,
    stripe_customer: bool,
    verified_by: str,
    now: dt.datetime,
) -> RequestRecord:
    """A client-area rectification: registered, verified (step-up or mailed code), applied, in progress."""
    _open_conflict(conn, account_id)
    try:
        created = create_request(
            conn, account_id=account_id, kind=KIND, channel="client_area", now=now, details={"article": "16"}
        )
    except Conflict as exc:
        if exc.code == "request_already_open":
            raise Conflict(
                "a rectification is still being applied; try again once it is completed",
                code="rectification_in_progress",
            ) from None
        raise
    record = transition(conn, created.id, VERIFIED, actor="client", details={"verified_by": verified_by}, now=now)
    return apply_changes(conn, record, changes, stripe_customer=stripe_customer, actor="client", now=now)


def apply_rectification(
    engine: Engine,
    *,
    account_id: str,
    fields: dict[str, Any],
    actor: str,
    request_id: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The DPO path: apply the rectification `request_id` of `account_id` once the desk verified identity.

    `fields` is the same JSON object as the client area's PATCH (validated the same way; 400 when
    bad, nothing changed). `request_id` is a registry request of kind "rectification" for this account
    (from the desk's intake) whose identity the desk verified; it goes verified -> in_progress, the rows are
    corrected and the propagation to Stripe and Resend is queued. An email change is refused
    (`email_needs_confirmation`): only the new address can confirm it, from the client area.
    Returns the request's view (`request_view`).
    """
    body = validated(Rectification, fields)
    if EMAIL in body.model_fields_set:
        raise ValidationFailed(
            "a new email address must confirm a mailed code from the client area", code="email_needs_confirmation"
        )
    now = moment(now)
    with engine.begin() as conn:
        record = get_request(conn, request_id, account_id=account_id)
        if record.kind != KIND:
            raise Conflict("this request is not a rectification", code="not_a_rectification")
        changes, account = changes_for(conn, account_id, body, lock=True)
        if record.state == RECEIVED:
            # The desk records how identity was checked (policy 9.3) before any correction applies.
            raise InvalidTransition("the requester's identity must be verified first", code="identity_not_verified")
        if record.state != VERIFIED:
            raise Conflict(f"the request is already {record.state}", code="invalid_transition")
        record = apply_changes(
            conn, record, changes, stripe_customer=bool(account.stripe_customer_id), actor=actor, now=now
        )
    dispatch([record.id])
    return request_view(record)


def request_view(record: RequestRecord) -> dict[str, Any]:
    """A rectification request as answered: its state, the fields corrected and each recipient's outcome (Art. 19)."""
    details = record.details
    recipients = details.get("recipients") or {}
    return {
        **record.to_json(),
        "fields": list(details.get("fields") or []),
        "recipients": [{"recipient": name, "state": state} for name, state in recipients.items()],
        "recipients_told": sorted(name for name, state in recipients.items() if state == "updated"),
    }


def get_view(engine: Engine, request_id: str, *, account_id: str) -> dict[str, Any]:
    """One of the caller's rectification requests (404 for another account's or another kind)."""
    with engine.connect() as conn:
        record = get_request(conn, request_id, account_id=account_id)
    if record.kind != KIND:
        raise NotFound("no such request", code="request_not_found")
    return request_view(record)
