"""The steps outside our database: Stripe, Resend, and the receipt mailed while the address exists."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from shared import notices
from shared.policy import facts as policy
from shared.ports.backends import get_mailer, get_payments
from shared.ports.mail import Message
from shared.ports.tables import accounts
from shared.records.saga import step_key
from shared.rights.erasure.common import _Saga
from shared.rights.erasure.receipt import _build_receipt


def _contacts(conn: Connection, account_ids: Sequence[str]) -> dict[str, Any]:
    """What the external steps need while the accounts still exist (read once per batch, kept in memory only)."""
    rows = conn.execute(
        select(accounts.c.id, accounts.c.email, accounts.c.locale, accounts.c.stripe_customer_id).where(
            accounts.c.id.in_(account_ids)
        )
    )
    return {row.id: row for row in rows}


def _stripe_effect(saga: _Saga) -> dict[str, Any]:
    if saga.contact is None or not saga.contact.stripe_customer_id:
        return {"customer": "none"}
    payments = get_payments()
    key = step_key(saga.id, "stripe")
    customer = saga.contact.stripe_customer_id
    cancelled = payments.delete_customer(customer, idempotency_key=f"{key}:customer")
    return {"customer": "deleted", "subscriptions_cancelled": len(cancelled)}


def _resend_effect(saga: _Saga) -> dict[str, Any]:
    if saga.contact is None:
        return {"contacts_removed": 0}
    return {"contacts_removed": len(get_mailer().remove_contact(saga.contact.email))}


def _receipt_mail(receipt: Mapping[str, Any], *, to: str, request_id: str) -> Message:
    """The receipt as a mail (notice `erasure_receipt`): each category's outcome, then each subprocessor's."""
    return notices.mail(
        "erasure_receipt",
        to=to,
        idempotency_key=step_key(request_id, "receipt_mail"),
        request_id=request_id,
        categories=receipt["categories"],
        subprocessors=[
            {"name": policy.subprocessor(sub["subprocessor"]).name, "note": sub["note"]}
            for sub in receipt["subprocessors"]
        ],
        dpo_email=policy.CONTROLLER.dpo_email,
        cnil_website=policy.CNIL.website,
    )


def _receipt_mail_effect(saga: _Saga, now: dt.datetime) -> dict[str, Any]:
    if saga.contact is None:
        return {"sent": False}
    draft = _build_receipt(saga.record, saga.results, now)
    get_mailer().send(_receipt_mail(draft, to=saga.contact.email, request_id=saga.id))
    return {"sent": True}
