"""Rectification (GDPR Art. 16 and 19; policy 8.2): correcting the identification data of policy 2.1.

Fields (fields.py): first and last name, phone (a French number), company name, business address
(a French postal code), VAT number (its key matches the SIREN), and email, which takes effect only
once the new address confirms a code mailed to it (email_change.py). Unknown fields, wrong types
and nulls are refused with 400 and nothing changes; another account's company is a 404.

Paths into the same rules (applying.py):

- client area: `start_client_rectification(engine, account_id, body, verified_by=method)` after
  the step-up; `confirm_email_change(engine, account_id, code)` for the new address;
- DPO desk, once it verified the person's identity::

      apply_rectification(engine, *, account_id: str, fields: dict, actor: str, request_id: str,
                          now: datetime | None = None) -> dict

  `fields` is the PATCH body (validated the same way; `email` is refused with
  `email_needs_confirmation`), `actor` the desk's actor label (e.g. "dpo:<credential id>"),
  `request_id` a registry request of kind "rectification" for that account, received or verified
  (the desk's intake registered it, channel email or post). It moves verified -> in_progress,
  the rows are corrected, the propagation is queued; the answer is `request_view` of the request.

Each rectification is a registry request (kind "rectification"): received -> verified ->
in_progress (rows corrected, audit `rectification.applied` naming the fields) -> completed once
the recipients were told (propagation.py: the Stripe customer and the Resend contact, each a saga
step, through the `rectification-propagation` queue; audit `rectification.propagated` names who
was told). The audit, the registry, the queue and the saga hold field names, never a value.
Issued invoices, their lines and PDFs are never altered. One rectification at a time per account:
another one while the first is being applied is 409 `rectification_in_progress`.

Modules, lowest first: fields < applying < email_change, propagation < views.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from shared.platform.clock import moment
from shared.platform.errors import VerificationRequired
from shared.rights.rectification.applying import (
    FIELD_CATEGORIES,
    KIND,
    QUEUE,
    RECIPIENTS,
    apply_rectification,
    changes_for,
    dispatch,
    get_view,
    held_by,
    register_and_apply,
    request_view,
    stale_propagations,
)
from shared.rights.rectification.email_change import (
    confirm_email_change,
    delete_expired_changes,
    request_email_change,
    send,
)
from shared.rights.rectification.fields import FIELDS, BusinessAddress, Rectification, normalise_phone, normalise_vat
from shared.rights.rectification.propagation import COMPLETE_STEP, RESEND_STEP, STRIPE_STEP, run_rectification
from shared.rights.rectification.views import held_data

__all__ = [
    "FIELDS",
    "FIELD_CATEGORIES",
    "KIND",
    "QUEUE",
    "RECIPIENTS",
    "STRIPE_STEP",
    "RESEND_STEP",
    "COMPLETE_STEP",
    "BusinessAddress",
    "Rectification",
    "normalise_phone",
    "normalise_vat",
    "held_by",
    "start_client_rectification",
    "apply_rectification",
    "confirm_email_change",
    "run_rectification",
    "dispatch_stale",
    "sweep",
    "delete_expired_changes",
    "get_view",
    "held_data",
    "request_view",
]


def start_client_rectification(
    engine: Engine, account_id: str, body: Rectification, *, verified_by: str | None, now: dt.datetime | None = None
) -> tuple[int, dict[str, Any]]:
    """The client area's PATCH once the step-up passed: (status, answer).

    202 when something was corrected (the request, in progress until the recipients are told) or
    a code was mailed to a new address; 200 with `changed: []` when every value was already held.
    """
    if verified_by is None:
        raise VerificationRequired("a step-up code is required to correct your data", code="verification_required")
    now = moment(now)
    mail = None
    with engine.begin() as conn:
        changes, account = changes_for(conn, account_id, body, lock=True)
        email_change = None
        if body.email is not None:
            email_change, mail = request_email_change(conn, account, body.email, now=now)
        record = None
        if changes.fields:
            record = register_and_apply(
                conn,
                account_id,
                changes,
                stripe_customer=bool(account.stripe_customer_id),
                verified_by=verified_by,
                now=now,
            )
    send(mail)
    if record is not None:
        dispatch([record.id])
    answer = {
        "changed": list(changes.fields),
        "request": request_view(record) if record is not None else None,
        "email_change": email_change,
    }
    waiting = email_change is not None and email_change.get("state") == "awaiting_confirmation"
    return (202 if record is not None or waiting else 200), answer


def dispatch_stale(
    engine: Engine, *, older_than_minutes: int = 15, limit: int = 1000, now: dt.datetime | None = None
) -> int:
    """Queue again every rectification left in progress (its message lost or dead-lettered)."""
    cutoff = moment(now) - dt.timedelta(minutes=older_than_minutes)
    with engine.connect() as conn:
        return dispatch(stale_propagations(conn, older_than=cutoff, limit=limit))


def sweep(engine: Engine, *, now: dt.datetime | None = None) -> dict[str, int]:
    """The hourly CRON: re-queue stale propagations, delete unconfirmed changes of address whose code expired."""
    return {"queued": dispatch_stale(engine, now=now), "expired_email_changes": delete_expired_changes(engine, now=now)}
