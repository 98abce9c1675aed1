"""Stripe webhook: the payment-data lifecycle driven by Stripe events (policy 2.3 and 5).

`receive` is the webhook's one operation. It checks the `Stripe-Signature` of the
raw body with the Stripe SDK against every configured endpoint secret (several
during a rotation), records the event by id so that a replay or a duplicate
changes nothing, and queues a minimised copy of it: the webhook answers fast and
the worker does the work (`apply_event`).

What is kept (policy 2.3: card data is processed by Stripe, never stored by us):
ids, account link, amount, currency, status, dates, and at most the card brand and
last 4 digits so that the user can recognise a payment. Never the card number,
CVC, expiry, billing details, or the customer's email, name or phone: those are
dropped before the event is even queued.

Order: Stripe does not deliver events in order. A record remembers the `created`
time of the last event applied to it (`stripe_updated_at`); an older event is not
applied, two events of the same second are ordered by status rank, and a final
status (succeeded, refunded, paid, canceled...) never goes back.

Account link: the platform creates each Stripe customer with
`metadata.account_id`, or sets `accounts.stripe_customer_id` itself. Payments that
arrive before the link is known are linked when it is. `customer.deleted` from
Stripe removes the link (`accounts.stripe_customer_id`) and marks the records
(`customer_deleted_at`) but deletes none: the retention schedule still needs them.

Retention (rule "payment_data" in shared.policy.facts, 13 months active + 5 years
archive, computed by `shared.policy.data_map`): the clock starts at the transaction date.
A dispute keeps the record active until it closes: while it is open,
`dispute_opened_at` is set and `disputed_until` is empty, so no clock runs; when
it closes, `disputed_until` is the close and the clock starts at the later of the
transaction date and the close. A subscription's transaction date is its latest
billing period start (each renewal moves it), then its end once it has ended.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.records import audit
from shared.platform.config import get_settings
from shared.ports.db import UTC, utcnow
from shared.platform.errors import AppError, BadRequest
from shared.platform.logs import get_logger
from shared.platform.pseudonym import subject_pseudonym
from shared.platform.runtime import make_message, validated
from shared.ports.tables import accounts, payment_records, stripe_events

QUEUE_NAME = "stripe-events"
MESSAGE_TYPE = "stripe.event"
SIGNATURE_TOLERANCE_SECONDS = 300

HANDLED_TYPES = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.succeeded",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.closed",
        "invoice.paid",
        "invoice.payment_failed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)

# Status ranks per record kind: same-second events apply in this order, and a
# final status is never replaced by a lower one.
_RANKS: dict[str, dict[str, int]] = {
    "payment_intent": {
        "unknown": 0, "requires_payment_method": 1, "requires_confirmation": 1, "payment_failed": 2,
        "requires_action": 2, "processing": 3, "requires_capture": 4, "canceled": 9, "succeeded": 9,
    },
    "charge": {"unknown": 0, "pending": 1, "failed": 5, "succeeded": 5, "partially_refunded": 6, "refunded": 7},
    "invoice": {"unknown": 0, "draft": 0, "open": 1, "payment_failed": 2, "uncollectible": 7, "paid": 8, "void": 8},
    "subscription": {
        "unknown": 0, "incomplete": 1, "trialing": 2, "active": 3, "past_due": 3, "unpaid": 3, "paused": 3,
        "canceled": 9, "incomplete_expired": 9,
    },
}
_FINAL = {
    "payment_intent": {"succeeded", "canceled"},
    "charge": {"failed", "refunded"},
    "invoice": {"paid", "void"},
    "subscription": {"canceled", "incomplete_expired"},
}
_FACT_KINDS = frozenset({"customer", "dispute", *_RANKS})
OPEN_DISPUTE_STATUSES = frozenset({"warning_needs_response", "warning_under_review", "needs_response", "under_review"})

_ACCOUNT_ID = re.compile(r"^[0-9a-fA-F-]{36}$")
_EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,100}$")  # short enough for the queue's idempotency key
_EVENT_TYPE = re.compile(r"^[a-z0-9_.]{1,100}$")


class WebhookNotConfigured(AppError):
    def __init__(self) -> None:
        # 503: Stripe retries, and the deployment is fixed rather than the events lost.
        super().__init__(503, "webhook_not_configured", "no Stripe webhook secret is configured")


# --- Receiving (the webhook) ------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedEvent:
    id: str
    type: str
    api_version: str | None
    livemode: bool
    created: int  # unix seconds, Stripe's clock
    object_id: str | None
    facts: dict[str, Any] | None  # minimised data object; None for event types we ignore

    @property
    def handled(self) -> bool:
        return self.type in HANDLED_TYPES


def accepted_api_versions() -> frozenset[str]:
    import stripe  # lazily: heavy, and only the webhook needs it

    return frozenset({stripe.api_version}) | get_settings().extra_stripe_api_versions


def verify_signature(payload: bytes, signature_header: str | None, secrets: Sequence[str]) -> None:
    """The Stripe SDK's check of `Stripe-Signature` against each secret, 300 s tolerance.

    Raises 400 `missing_signature`, `stale_signature` (a valid signature outside the
    tolerance) or `invalid_signature`.
    """
    if not secrets:
        raise WebhookNotConfigured()
    if not signature_header:
        raise BadRequest("the Stripe-Signature header is missing", code="missing_signature")
    import stripe

    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text", code="invalid_signature") from None

    def matches(tolerance: int | None) -> bool:
        for secret in secrets:
            try:
                stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance)
                return True
            except stripe.SignatureVerificationError:
                continue
        return False

    if matches(SIGNATURE_TOLERANCE_SECONDS):
        return
    if matches(None):
        raise BadRequest(
            f"the Stripe-Signature timestamp is older than {SIGNATURE_TOLERANCE_SECONDS} seconds",
            code="stale_signature",
        )
    raise BadRequest("the Stripe-Signature does not match any configured endpoint secret", code="invalid_signature")


def parse_event(payload: bytes, *, accepted_versions: frozenset[str]) -> VerifiedEvent:
    """A verified body as a Stripe event; 400 `invalid_json`, `invalid_event` or `unsupported_api_version`."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not JSON", code="invalid_json") from None
    if not isinstance(document, dict) or document.get("object") != "event":
        raise BadRequest("the body is not a Stripe event (object must be 'event')", code="invalid_event")
    event_id, event_type, created = document.get("id"), document.get("type"), document.get("created")
    data = document.get("data")
    if not (isinstance(event_id, str) and _EVENT_ID.match(event_id)):
        raise BadRequest("the event has no valid 'id'", code="invalid_event")
    if not (isinstance(event_type, str) and _EVENT_TYPE.match(event_type)):
        raise BadRequest("the event has no valid 'type'", code="invalid_event")
    if _timestamp(created) is None:
        raise BadRequest("the event has no valid 'created'", code="invalid_event")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise BadRequest("the event has no 'data.object'", code="invalid_event")
    api_version = document.get("api_version")
    if not isinstance(api_version, str) or api_version not in accepted_versions:
        raise BadRequest(
            "the event's API version is not one this endpoint accepts (see STRIPE_API_VERSIONS)",
            code="unsupported_api_version",
        )
    obj = data["object"]
    object_id = obj.get("id") if isinstance(obj.get("id"), str) else None
    facts = extract_facts(event_type, obj) if event_type in HANDLED_TYPES else None
    return VerifiedEvent(
        id=event_id,
        type=event_type,
        api_version=api_version,
        livemode=bool(document.get("livemode")),
        created=created,
        object_id=object_id[:255] if object_id else None,
        facts=facts,
    )


def receive(
    engine: Engine,
    body: bytes,
    signature_header: str | None,
    *,
    secrets: Sequence[str],
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Verify, record once, queue. A refused attempt is audited (without the payload) and changes nothing else."""
    try:
        verify_signature(body, signature_header, secrets)
        event = parse_event(body, accepted_versions=accepted_api_versions())
    except BadRequest as exc:
        _audit_rejection(engine, exc.code, now=now)
        get_logger().warning("stripe event refused", extra={"code": exc.code})
        raise
    result = _record_and_queue(engine, event, now=now or utcnow())
    get_logger().info("stripe event received", extra={"event_id": event.id, "event_type": event.type, **result})
    return result


def _audit_rejection(engine: Engine, code: str, *, now: dt.datetime | None) -> None:
    with engine.begin() as conn:
        audit.record(conn, actor="stripe-webhook", action="stripe.webhook_rejected", outcome=code, now=now)


def _record_and_queue(engine: Engine, event: VerifiedEvent, *, now: dt.datetime) -> dict[str, Any]:
    row = dict(
        id=event.id,
        type=event.type,
        api_version=event.api_version,
        livemode=event.livemode,
        object_id=event.object_id,
        created=_moment(event.created),
        received_at=now,
        processed_at=None if event.handled else now,
        outcome="received" if event.handled else "ignored",
    )
    # Committed before queuing: if queuing fails, Stripe's retry finds it "received" and queues again.
    try:
        with engine.begin() as conn:
            conn.execute(insert(stripe_events).values(**row))
    except IntegrityError:
        with engine.connect() as conn:
            outcome = conn.execute(select(stripe_events.c.outcome).where(stripe_events.c.id == event.id)).scalar_one()
        if outcome != "received":
            return {"received": True, "duplicate": True}
    if not event.handled:
        return {"received": True, "ignored": True}

    from shared.ports.backends import get_queue

    get_queue(QUEUE_NAME).send(make_message(MESSAGE_TYPE, message_key(event.id), message_payload(event)))
    with engine.begin() as conn:
        conn.execute(
            update(stripe_events)
            .where(and_(stripe_events.c.id == event.id, stripe_events.c.outcome == "received"))
            .values(outcome="queued")
        )
    return {"received": True, "queued": True}


def message_key(event_id: str) -> str:
    return f"stripe:{event_id}"


def message_payload(event: VerifiedEvent) -> dict[str, Any]:
    return {
        "event_id": event.id,
        "type": event.type,
        "created": event.created,
        "api_version": event.api_version,
        "livemode": event.livemode,
        "object_id": event.object_id,
        "facts": event.facts,
    }


# --- Minimisation: what we keep of a Stripe object ------------------------------------------


def _id_of(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object's id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value[:64] if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    """An integer within what a BIGINT column holds comfortably, else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**15
    return value if ok else None


def _timestamp(value: Any) -> int | None:
    """Unix seconds within a sane range (a bogus value must not crash the worker)."""
    value = _int(value)
    return value if value is not None and 0 < value < 10**10 else None


def _text(value: Any, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _currency(value: Any) -> str | None:
    return value.upper()[:3] if isinstance(value, str) and value else None


def extract_facts(event_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The few fields of the event's object that we keep; everything else is dropped here."""
    if event_type.startswith("customer.subscription."):
        return _subscription_facts(obj)
    if event_type.startswith("customer."):
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        account_id = metadata.get("account_id")
        return {
            "kind": "customer",
            "id": _id_of(obj.get("id")),
            "account_id": account_id if isinstance(account_id, str) and _ACCOUNT_ID.match(account_id) else None,
        }
    if event_type.startswith("payment_intent."):
        status = "payment_failed" if event_type == "payment_intent.payment_failed" else _text(obj.get("status"), 32)
        return {
            "kind": "payment_intent",
            "id": _id_of(obj.get("id")),
            "customer": _id_of(obj.get("customer")),
            "amount": _int(obj.get("amount")),
            "currency": _currency(obj.get("currency")),
            "status": status or "unknown",
            "description": _text(obj.get("description")),
            "transaction_at": _timestamp(obj.get("created")),
        }
    if event_type.startswith("charge.dispute."):
        return {
            "kind": "dispute",
            "id": _id_of(obj.get("id")),
            "charge": _id_of(obj.get("charge")),
            "payment_intent": _id_of(obj.get("payment_intent")),
            "amount": _int(obj.get("amount")),
            "currency": _currency(obj.get("currency")),
            "status": _text(obj.get("status"), 32) or "unknown",
            "opened_at": _timestamp(obj.get("created")),
        }
    if event_type.startswith("charge."):
        return _charge_facts(obj)
    if event_type.startswith("invoice."):
        return _invoice_facts(event_type, obj)
    raise ValueError(f"no extraction for event type {event_type!r}")


def _charge_facts(obj: Mapping[str, Any]) -> dict[str, Any]:
    amount, refunded = _int(obj.get("amount")), _int(obj.get("amount_refunded")) or 0
    status = _text(obj.get("status"), 32) or "unknown"
    if obj.get("refunded") is True or (amount and refunded >= amount):
        status = "refunded"
    elif refunded > 0:
        status = "partially_refunded"
    details = obj.get("payment_method_details") if isinstance(obj.get("payment_method_details"), dict) else {}
    card = details.get("card") if isinstance(details.get("card"), dict) else {}
    last4 = card.get("last4")
    return {
        "kind": "charge",
        "id": _id_of(obj.get("id")),
        "customer": _id_of(obj.get("customer")),
        "payment_intent": _id_of(obj.get("payment_intent")),
        "amount": amount,
        "amount_refunded": refunded,
        "currency": _currency(obj.get("currency")),
        "status": status,
        "description": _text(obj.get("description")),
        # Policy 2.3: brand and last 4 digits at most, so the user can recognise the payment.
        "card_brand": _text(card.get("brand"), 20),
        "card_last4": last4 if isinstance(last4, str) and re.fullmatch(r"\d{4}", last4) else None,
        "transaction_at": _timestamp(obj.get("created")),
    }


def _invoice_facts(event_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    paid = event_type == "invoice.paid"
    transitions = obj.get("status_transitions") if isinstance(obj.get("status_transitions"), dict) else {}
    paid_at = _timestamp(transitions.get("paid_at")) if paid else None
    return {
        "kind": "invoice",
        "id": _id_of(obj.get("id")),
        "customer": _id_of(obj.get("customer")),
        "amount": _int(obj.get("amount_paid")) if paid else _int(obj.get("amount_due")),
        "currency": _currency(obj.get("currency")),
        "status": "paid" if paid else "payment_failed",
        "description": _text(obj.get("description")) or _text(obj.get("number")),
        "transaction_at": paid_at or _timestamp(obj.get("created")),
    }


def _subscription_facts(obj: Mapping[str, Any]) -> dict[str, Any]:
    items = obj.get("items") if isinstance(obj.get("items"), dict) else {}
    amount, currency = 0, _currency(obj.get("currency"))
    for item in items.get("data") if isinstance(items.get("data"), list) else []:
        if not isinstance(item, dict):
            continue
        price = item.get("price") if isinstance(item.get("price"), dict) else {}
        amount += (_int(price.get("unit_amount")) or 0) * (_int(item.get("quantity")) or 1)
        currency = currency or _currency(price.get("currency"))
    status = _text(obj.get("status"), 32) or "unknown"
    ended_at = _timestamp(obj.get("ended_at")) if status in _FINAL["subscription"] else None
    # API versions differ: the billing period is on the subscription or (2025 onwards) on its items.
    first_item = next(iter(items.get("data") or []), None) if isinstance(items.get("data"), list) else None
    period_start = _timestamp(obj.get("current_period_start")) or (
        _timestamp(first_item.get("current_period_start")) if isinstance(first_item, dict) else None
    )
    return {
        "kind": "subscription",
        "id": _id_of(obj.get("id")),
        "customer": _id_of(obj.get("customer")),
        "amount": amount,
        "currency": currency,
        "status": status,
        "description": _text(obj.get("description")),
        "transaction_at": ended_at or period_start or _timestamp(obj.get("start_date")) or _timestamp(obj.get("created")),
    }


# --- Applying (the worker) -----------------------------------------------------------------


class QueuedEvent(BaseModel):
    """The message payload the webhook queues; anything else is refused (400: no retry would help)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(pattern=_EVENT_ID.pattern)
    type: str = Field(pattern=_EVENT_TYPE.pattern)
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
                    created=_moment(event.created),
                    received_at=now,
                    processed_at=now,
                    outcome="received",
                )
            )
        outcome = _apply(conn, event.type, _moment(event.created), event.facts, now=now)
        conn.execute(update(stripe_events).where(stripe_events.c.id == event_id).values(outcome=outcome))
    get_logger().info("stripe event applied", extra={"event_id": event_id, "event_type": event.type, "outcome": outcome})
    return {"event_id": event_id, "outcome": outcome}


def _apply(conn: Connection, event_type: str, created: dt.datetime, facts: Mapping[str, Any], *, now: dt.datetime) -> str:
    kind = facts["kind"]
    if kind == "customer":
        if event_type == "customer.deleted":
            return _customer_deleted(conn, facts["id"], created, now=now)
        return _customer_linked(conn, facts, now=now)
    if kind == "dispute":
        return _dispute(conn, facts, created, now=now)
    return _upsert_record(conn, facts, created, now=now)


def _moment(unix_seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_seconds, UTC)


def _supersedes(kind: str, new_status: str, new_at: dt.datetime, old_status: str, old_at: dt.datetime | None) -> bool:
    """Whether an event about an object replaces what we hold: later wins; a final status never goes back."""
    ranks = _RANKS[kind]
    new_rank, old_rank = ranks.get(new_status, 1), ranks.get(old_status, 1)
    if old_status in _FINAL[kind] and new_rank < old_rank:
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
        "transaction_at": _moment(facts["transaction_at"]) if facts.get("transaction_at") else created,
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
    opened_at = _moment(facts["opened_at"]) if facts.get("opened_at") else created
    if conn.execute(select(payment_records.c.id).where(payment_records.c.stripe_object_id == charge_id)).first() is None:
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
            values = {"dispute_status": status, "dispute_opened_at": row.dispute_opened_at or opened_at, "disputed_until": created}
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
        .where(and_(payment_records.c.stripe_customer_id == customer_id, payment_records.c.customer_deleted_at.is_(None)))
        .values(customer_deleted_at=created, updated_at=now)
    )
    outcome = "link_removed" if account_id else "no_link"
    audit.record(conn, actor="stripe-webhook", action="stripe.customer_deleted", outcome=outcome, subject=account_id, now=now)
    return "applied"


def _new_id() -> str:
    return str(uuid.uuid4())
