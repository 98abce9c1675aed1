"""Propagating a newsletter withdrawal to Resend (queue `consent-propagation`).

A saga step per withdrawal event, so a retry unsubscribes once; then an audit entry.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared.platform.messages import NewsletterWithdrawn
from shared.ports.backends import get_mailer, get_queue
from shared.ports.tables import accounts, consent_events, saga_steps
from shared.records import audit
from shared.records.processing import WITHDRAWN, consent_state
from shared.records.saga import run_step

PROPAGATION_QUEUE = NewsletterWithdrawn.QUEUE
PROPAGATION_MESSAGE = NewsletterWithdrawn.TYPE
RESEND_STEP = "resend_unsubscribe"
AUDIT_STEP = "audit_propagation"


def pending_propagations(conn: Connection, *, account_id: str | None = None, limit: int = 100) -> list[tuple[str, str]]:
    """(consent event id, account id) of newsletter withdrawals not yet propagated to Resend."""
    query = (
        select(consent_events.c.id, consent_events.c.account_id)
        .outerjoin(saga_steps, (saga_steps.c.job_id == consent_events.c.id) & (saga_steps.c.step == RESEND_STEP))
        .where(
            consent_events.c.purpose == "newsletter",
            consent_events.c.action == WITHDRAWN,
            (saga_steps.c.state.is_(None)) | (saga_steps.c.state != "completed"),
        )
        .order_by(consent_events.c.occurred_at)
        .limit(limit)
    )
    if account_id is not None:
        query = query.where(consent_events.c.account_id == account_id)
    return [(row.id, row.account_id) for row in conn.execute(query)]


def propagation_message(consent_event_id: str, account_id: str) -> dict[str, Any]:
    return NewsletterWithdrawn(consent_event_id=consent_event_id, account_id=account_id).envelope(
        f"consent-propagation:{consent_event_id}"
    )


def dispatch_propagations(engine: Engine, *, account_id: str | None = None, limit: int = 100) -> int:
    """Queue every pending propagation (of one account, or all); a duplicate message is harmless.

    Called after each withdrawal commits, so a propagation whose first enqueue failed is
    queued again by the account's next call or by the hourly sweep (withdraw-consent-worker).
    """
    with engine.connect() as conn:
        pending = pending_propagations(conn, account_id=account_id, limit=limit)
    if pending:
        get_queue(PROPAGATION_QUEUE).send_many([propagation_message(e, a) for e, a in pending])
    return len(pending)


def propagate_newsletter_withdrawal(
    engine: Engine, consent_event_id: str, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Unsubscribe the contact in Resend for one withdrawal (a saga step: done once), then audit it."""
    with engine.connect() as conn:
        event = conn.execute(select(consent_events).where(consent_events.c.id == consent_event_id)).first()
        if event is None:
            return {"outcome": "gone"}  # the account was erased, and its ledger with it
        email = conn.execute(select(accounts.c.email).where(accounts.c.id == event.account_id)).scalar()
        superseded = consent_state(conn, event.account_id)["newsletter"].granted

    def unsubscribe_contact() -> dict[str, Any]:
        if superseded or email is None:
            # A newer consent was given since: unsubscribing now would override the user's choice.
            return {"outcome": "superseded"}
        return {"outcome": "unsubscribed", "audiences": len(get_mailer().unsubscribe_contact(email))}

    result = run_step(engine, consent_event_id, RESEND_STEP, unsubscribe_contact) or {}

    def record_audit() -> dict[str, Any]:
        with engine.begin() as conn:
            audit.record(
                conn,
                actor="system:consent",
                action="consent.propagated",
                outcome=result.get("outcome", "done"),
                subject=event.account_id,
                details={
                    "step": RESEND_STEP,
                    "consent_event_id": consent_event_id,
                    **{k: v for k, v in result.items() if k != "outcome"},
                },
            )
        return {}

    run_step(engine, consent_event_id, AUDIT_STEP, record_audit)
    return result
