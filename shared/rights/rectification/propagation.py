"""Telling the recipients of a rectification (Art. 19): Stripe's customer, Resend's contact.

Each recipient is a saga step of the request (shared.records.saga): a completed step never runs
again, and the Stripe call inside carries `step_key(request, "stripe")` as its idempotency key,
so a crash after Stripe answered and before the step was recorded replays the same request,
which Stripe deduplicates. The Resend move (create under the new address, remove the old) checks
what is already done before each call. The values sent are read from the database when the step
runs: the queue message, the saga results and the audit hold field names and outcomes only.
After an email change the previous address is told once that it no longer receives the account's
mail. The last step completes the request with each recipient's outcome and audits who was told.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, delete, select

from shared import notices
from shared.platform.clock import moment
from shared.policy import facts as policy
from shared.ports.backends import get_mailer, get_payments
from shared.ports.tables import accounts, companies, email_changes
from shared.records import audit
from shared.records.registry import COMPLETED, IN_PROGRESS, get_request, transition
from shared.records.saga import run_step, step_key
from shared.rights.rectification.applying import NOT_CONCERNED, PENDING, held_by

STRIPE_STEP = "stripe_customer"
RESEND_STEP = "resend_contact"
NOTICE_STEP = "previous_address_notice"
COMPLETE_STEP = "complete"
UPDATED = "updated"
# Stripe's customer fields, from ours.
_STRIPE_FIELD = {
    "first_name": "name",
    "last_name": "name",
    "email": "email",
    "phone": "phone",
    "business_address": "address",
}


def _full_name(account: Any) -> str | None:
    name = " ".join(part for part in (account.first_name, account.last_name) if part)
    return name or None


def _stripe_fields(account: Any, company: Any, fields: list[str]) -> dict[str, Any]:
    wanted = {_STRIPE_FIELD[f] for f in fields if f in _STRIPE_FIELD and "stripe" in held_by(f)}
    values: dict[str, Any] = {}
    if "name" in wanted:
        values["name"] = _full_name(account) or ""
    if "email" in wanted:
        values["email"] = account.email
    if "phone" in wanted:
        values["phone"] = account.phone or ""
    if "address" in wanted and company is not None:
        values["address"] = {
            "line1": company.address_line1 or "",
            "line2": company.address_line2 or "",
            "postal_code": company.postal_code or "",
            "city": company.city or "",
            "country": company.country or "",
        }
    return values


def run_rectification(engine: Engine, request_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Tell Stripe and Resend of one rectification, each once, then complete the request (resumable)."""
    with engine.connect() as conn:
        record = get_request(conn, request_id)
        if record.state == COMPLETED:
            return {"request_id": request_id, "outcome": "already_completed"}
        if record.state != IN_PROGRESS:
            return {"request_id": request_id, "outcome": f"not_in_progress:{record.state}"}
        account = conn.execute(select(accounts).where(accounts.c.id == record.account_id)).first()
        billing = conn.execute(
            select(companies)
            .where(companies.c.account_id == record.account_id)
            .order_by(companies.c.created_at, companies.c.id)
            .limit(1)
        ).first()
        previous_email = conn.execute(
            select(email_changes.c.previous_email).where(email_changes.c.request_id == request_id)
        ).scalar()
    fields = list(record.details.get("fields") or [])
    plan = dict(record.details.get("recipients") or {})

    def tell_stripe() -> dict[str, Any]:
        if plan.get("stripe") != PENDING or account is None or not account.stripe_customer_id:
            return {"outcome": NOT_CONCERNED}
        values = _stripe_fields(account, billing, fields)
        if not values:
            return {"outcome": NOT_CONCERNED}
        found = get_payments().update_customer(
            account.stripe_customer_id, values, idempotency_key=step_key(request_id, STRIPE_STEP)
        )
        return {"outcome": UPDATED if found else "no_customer", "fields": sorted(values)}

    def tell_resend() -> dict[str, Any]:
        if plan.get("resend") != PENDING or account is None:
            return {"outcome": NOT_CONCERNED}
        mailer = get_mailer()
        if "email" in fields and previous_email:
            touched = mailer.move_contact(
                previous_email, account.email, first_name=account.first_name, last_name=account.last_name
            )
        elif {"first_name", "last_name"} & set(fields):
            touched = mailer.update_contact(account.email, first_name=account.first_name, last_name=account.last_name)
        else:
            return {"outcome": NOT_CONCERNED}
        return {"outcome": UPDATED if touched else "no_contact"}

    outcomes = {
        "stripe": (run_step(engine, request_id, STRIPE_STEP, tell_stripe, now=now) or {}).get("outcome", NOT_CONCERNED),
        "resend": (run_step(engine, request_id, RESEND_STEP, tell_resend, now=now) or {}).get("outcome", NOT_CONCERNED),
    }

    def notify_previous_address() -> dict[str, Any]:
        # The old address is told once that it no longer receives the account's mail (a takeover shows at once).
        if "email" not in fields or not previous_email:
            return {"sent": False}
        get_mailer().send(
            notices.mail(
                "email_changed",
                to=previous_email,
                idempotency_key=step_key(request_id, NOTICE_STEP),
                changed_on=record.state_changed_at.date().isoformat(),
                dpo_email=policy.CONTROLLER.dpo_email,
            )
        )
        return {"sent": True}

    run_step(engine, request_id, NOTICE_STEP, notify_previous_address, now=now)

    def complete() -> dict[str, Any]:
        told = sorted(name for name, outcome in outcomes.items() if outcome == UPDATED)
        with engine.begin() as conn:
            # The previous address was kept only for Resend's move: it goes now.
            conn.execute(delete(email_changes).where(email_changes.c.request_id == request_id))
            current = get_request(conn, request_id)
            if current.state == IN_PROGRESS:
                transition(
                    conn,
                    request_id,
                    COMPLETED,
                    actor="system:rectification",
                    details={"recipients": outcomes, "recipients_told": told},
                    now=moment(now),
                )
                audit.record(
                    conn,
                    actor="system:rectification",
                    action="rectification.propagated",
                    outcome="completed",
                    request_id=request_id,
                    subject=current.account_id,
                    details={"fields": fields, "recipients_told": told, "outcomes": outcomes},
                )
        return {"recipients": outcomes, "recipients_told": told}

    result = run_step(engine, request_id, COMPLETE_STEP, complete, now=now) or {}
    return {"request_id": request_id, **result}
