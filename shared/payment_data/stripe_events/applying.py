"""Applying (the worker): one queued event to `payment_records`, once, never moving a record backwards.

Stripe does not deliver events in order. A record remembers the `created` time of the
last event applied to it (`stripe_updated_at`); an older event is not applied, two events
of the same second are ordered by status rank, and a final status never goes back. A
dispute holds the record in the active base until it closes; `customer.deleted` removes
the link and deletes nothing (the retention schedule still needs the records).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, Engine, and_, insert, select, update

from shared.payment_data.stripe_events.minimisation import (
    FINAL_STATUSES,
    HANDLED_TYPES,
    moment_of,
)
from shared.payment_data.stripe_events.recording import EVENT_ID, EVENT_TYPE
from shared.platform.clock import utcnow
from shared.platform.logs import get_logger
from shared.platform.pseudonym import subject_pseudonym
from shared.platform.runtime import validated
from shared.ports.tables import accounts, payment_records, stripe_events
from shared.records import audit

# Status ranks per record kind: same-second events apply in this order, and a
# final status is never replaced by a lower one.
_RANKS: dict[str, dict[str, int]] = {
    "payment_intent": {
        "unknown": 0,
        "requires_payment_method": 1,
        "requires_confirmation": 1,
        "payment_failed": 2,
        "requires_action": 2,
        "processing": 3,
        "requires_capture": 4,
        "canceled": 9,
        "succeeded": 9,
    },
    "charge": {"unknown": 0, "pending": 1, "failed": 5, "succeeded": 5, "partially_refunded": 6, "refunded": 7},
    "invoice": {"unknown": 0, "draft": 0, "open": 1, "payment_failed": 2, "uncollectible": 7, "paid": 8, "void": 8},
    "subscription": {
        "unknown": 0,
        "incomplete": 1,
        "trialing": 2,
        "active": 3,
        "past_due": 3,
        "unpaid": 3,
        "paused": 3,
        "canceled": 9,
        "incomplete_expired": 9,
    },
}
_FACT_KINDS = frozenset({"customer", "dispute", *_RANKS})
OPEN_DISPUTE_STATUSES = frozenset({"warning_needs_response", "warning_under_review", "needs_response", "under_review"})


class QueuedEvent(BaseModel):
    """The message payload the webhook queues; anything else is refused (400: no retry would help)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(pattern=EVENT_ID.pattern)
    type: str = Field(pattern=EVENT_TYPE.pattern)
    created: int = Field(gt=0, lt=10**10)
    api_version: str | None = Field(None, max_length=40)
    livemode: bool = False
    object_id: str | None = Field(None, max_length=255)
    facts: dict[str, Any]

    @field_validator("type")
    @classmethod
    def _handled(cls, value: str) -> str:
        if value not in HANDLED_TYPES:
            raise ValueError("not an event type this worker applies")
        return value

    @field_validator("facts")
    @classmethod
    def _kind(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("kind") not in _FACT_KINDS:
            raise ValueError("unknown kind")
        return value


def apply_event(engine: Engine, payload: Mapping[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Apply one queued event, once: the event row is claimed and marked processed in the same transaction."""
    event = validated(QueuedEvent, payload)
    now = now or utcnow()
    event_id = event.event_id
    with engine.begin() as conn:
        # An UPDATE first: a row lock on PostgreSQL, the write lock on SQLite, so two deliveries serialise.
        claimed = conn.execute(
            update(stripe_events)
            .where(and_(stripe_events.c.id == event_id, stripe_events.c.processed_at.is_(None)))
            .values(processed_at=now)
        ).rowcount
        if not claimed:
            if conn.execute(select(stripe_events.c.id).where(stripe_events.c.id == event_id)).first():
                return {"event_id": event_id, "outcome": "duplicate"}
            # The webhook commits the row before queuing; only a restored database lacks it. Record it now.
            conn.execute(
                insert(stripe_events).values(
                    id=event_id,
                    type=event.type,
                    api_version=event.api_version,
                    livemode=event.livemode,
                    object_id=event.object_id,
                    created=moment_of(event.created),
                    received_at=now,
                    processed_at=now,
                    outcome="received",
                )
            )
        outcome = _apply(conn, event.type, moment_of(event.created), event.facts, now=now)
        conn.execute(update(stripe_events).where(stripe_events.c.id == event_id).values(outcome=outcome))
    get_logger().info(
        "stripe event applied", extra={"event_id": event_id, "event_type": event.type, "outcome": outcome}
    )
    return {"event_id": event_id, "outcome": outcome}


def _apply(
    conn: Connection, event_type: str, created: dt.datetime, facts: Mapping[str, Any], *, now: dt.datetime
) -> str:
    kind = facts["kind"]
    if kind == "customer":
        if event_type == "customer.deleted":
            return _customer_deleted(conn, facts["id"], created, now=now)
        return _customer_linked(conn, facts, now=now)
    if kind == "dispute":
        return _dispute(conn, facts, created, now=now)
    return _upsert_record(conn, facts, created, now=now)


def _supersedes(kind: str, new_status: str, new_at: dt.datetime, old_status: str, old_at: dt.datetime | None) -> bool:
    """Whether an event about an object replaces what we hold: later wins; a final status never goes back."""
    ranks = _RANKS[kind]
    new_rank, old_rank = ranks.get(new_status, 1), ranks.get(old_status, 1)
    if old_status in FINAL_STATUSES[kind] and new_rank < old_rank:
        return False
    if old_at is None or new_at != old_at:
        return old_at is None or new_at > old_at
    return new_rank > old_rank


def _account_for_customer(conn: Connection, customer_id: str | None) -> str | None:
    if not customer_id:
        return None
    return conn.execute(select(accounts.c.id).where(accounts.c.stripe_customer_id == customer_id)).scalar()


def _customer_deleted_at(conn: Connection, customer_id: str | None) -> dt.datetime | None:
    """When Stripe told us the customer was deleted (an applied customer.deleted event), if it did."""
    if not customer_id:
        return None
    return conn.execute(
        select(stripe_events.c.created).where(
            and_(
                stripe_events.c.object_id == customer_id,
                stripe_events.c.type == "customer.deleted",
                stripe_events.c.outcome == "applied",
            )
        )
    ).scalar()


def _link_values(account_id: str | None) -> dict[str, Any]:
    return {"account_id": account_id, "subject_pseudonym": subject_pseudonym(account_id)} if account_id else {}


def _upsert_record(conn: Connection, facts: Mapping[str, Any], created: dt.datetime, *, now: dt.datetime) -> str:
    kind, object_id, customer_id = facts["kind"], facts["id"], facts.get("customer")
    if not object_id:
        return "ignored"
    values: dict[str, Any] = {
        "kind": kind,
        "amount_cents": facts.get("amount"),
        "currency": facts.get("currency"),
        "status": facts["status"],
        "description": facts.get("description"),
        "transaction_at": moment_of(facts["transaction_at"]) if facts.get("transaction_at") else created,
        "stripe_updated_at": created,
        "updated_at": now,
    }
    if kind == "charge":
        values.update(
            amount_refunded_cents=facts.get("amount_refunded"),
            card_brand=facts.get("card_brand"),
            card_last4=facts.get("card_last4"),
        )
    existing = conn.execute(select(payment_records).where(payment_records.c.stripe_object_id == object_id)).first()
    if existing is None:
        conn.execute(
            insert(payment_records).values(
                id=_new_id(),
                stripe_object_id=object_id,
                stripe_customer_id=customer_id,
                customer_deleted_at=_customer_deleted_at(conn, customer_id),
                created_at=now,
                **_link_values(_account_for_customer(conn, customer_id)),
                **values,
            )
        )
        return "applied"
    if not _supersedes(kind, facts["status"], created, existing.status, existing.stripe_updated_at):
        return "stale"
    if customer_id and existing.stripe_customer_id is None:
        values.update(stripe_customer_id=customer_id, customer_deleted_at=_customer_deleted_at(conn, customer_id))
    if existing.account_id is None:
        values.update(_link_values(_account_for_customer(conn, customer_id or existing.stripe_customer_id)))
    conn.execute(update(payment_records).where(payment_records.c.id == existing.id).values(**values))
    return "applied"


def _dispute(conn: Connection, facts: Mapping[str, Any], created: dt.datetime, *, now: dt.datetime) -> str:
    """A dispute holds the charge (and its payment intent) in the active base until it closes."""
    charge_id, status = facts.get("charge"), facts["status"]
    if not charge_id:
        return "ignored"
    opened_at = moment_of(facts["opened_at"]) if facts.get("opened_at") else created
    if (
        conn.execute(select(payment_records.c.id).where(payment_records.c.stripe_object_id == charge_id)).first()
        is None
    ):
        # The dispute overtook its charge: keep a placeholder; charge.succeeded fills it in (its clock is unset).
        conn.execute(
            insert(payment_records).values(
                id=_new_id(),
                stripe_object_id=charge_id,
                kind="charge",
                amount_cents=facts.get("amount"),
                currency=facts.get("currency"),
                status="unknown",
                transaction_at=opened_at,
                created_at=now,
                updated_at=now,
            )
        )
    targets = [charge_id] + ([facts["payment_intent"]] if facts.get("payment_intent") else [])
    outcome = "stale"
    for row in conn.execute(select(payment_records).where(payment_records.c.stripe_object_id.in_(targets))).all():
        already_closed = row.dispute_status is not None and row.dispute_status not in OPEN_DISPUTE_STATUSES
        if already_closed:
            continue  # closing is final: a late "created" does not reopen it
        if status in OPEN_DISPUTE_STATUSES:
            # Held in the active base, no clock running, until the dispute closes.
            values = {"dispute_status": status, "dispute_opened_at": opened_at, "disputed_until": None}
        else:
            values = {
                "dispute_status": status,
                "dispute_opened_at": row.dispute_opened_at or opened_at,
                "disputed_until": created,
            }
        conn.execute(update(payment_records).where(payment_records.c.id == row.id).values(updated_at=now, **values))
        outcome = "applied"
    return outcome


def _customer_linked(conn: Connection, facts: Mapping[str, Any], *, now: dt.datetime) -> str:
    customer_id, account_id = facts["id"], facts.get("account_id")
    if not customer_id:
        return "ignored"
    if _customer_deleted_at(conn, customer_id) is not None:
        return "stale"  # deletion is final: a late created/updated does not restore the link
    if account_id:
        account = conn.execute(
            select(accounts.c.id, accounts.c.status, accounts.c.stripe_customer_id).where(accounts.c.id == account_id)
        ).first()
        if account is None or account.status == "erased":
            return "no_account"
        if account.stripe_customer_id is None:
            holder = _account_for_customer(conn, customer_id)
            if holder is not None and holder != account_id:
                return "conflict"
            conn.execute(update(accounts).where(accounts.c.id == account_id).values(stripe_customer_id=customer_id))
        elif account.stripe_customer_id != customer_id:
            return "conflict"
    else:
        account_id = _account_for_customer(conn, customer_id)
        if account_id is None:
            return "no_account"
    # Payments that arrived before the link was known.
    conn.execute(
        update(payment_records)
        .where(and_(payment_records.c.stripe_customer_id == customer_id, payment_records.c.account_id.is_(None)))
        .values(updated_at=now, **_link_values(account_id))
    )
    return "applied"


def _customer_deleted(conn: Connection, customer_id: str | None, created: dt.datetime, *, now: dt.datetime) -> str:
    """The link is gone; the records stay for the retention schedule."""
    if not customer_id:
        return "ignored"
    account_id = _account_for_customer(conn, customer_id)
    if account_id is not None:
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(stripe_customer_id=None))
    conn.execute(
        update(payment_records)
        .where(
            and_(payment_records.c.stripe_customer_id == customer_id, payment_records.c.customer_deleted_at.is_(None))
        )
        .values(customer_deleted_at=created, updated_at=now)
    )
    outcome = "link_removed" if account_id else "no_link"
    audit.record(conn, actor="stripe-webhook", action="stripe.customer_deleted", outcome=outcome, subject=account_id)
    return "applied"


def _new_id() -> str:
    return str(uuid.uuid4())
