"""Receiving (the webhook): verify, record the event once by id, queue a minimised copy.

A replay or a duplicate changes nothing; a refused call is audited with its code only,
never the payload. The webhook answers fast and the worker does the work (`apply_event`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared.payment_data.stripe_events.minimisation import (
    HANDLED_TYPES,
    extract_facts,
    moment_of,
    unix_timestamp,
)
from shared.payment_data.stripe_events.verification import (
    accepted_api_versions,
    verify_signature,
)
from shared.platform.clock import utcnow
from shared.platform.errors import BadRequest
from shared.platform.logs import get_logger
from shared.platform.messages import StripeEventToApply
from shared.ports.backends import get_queue
from shared.ports.tables import stripe_events
from shared.records import audit

QUEUE_NAME = StripeEventToApply.QUEUE
MESSAGE_TYPE = StripeEventToApply.TYPE

EVENT_ID = re.compile(r"^evt_[A-Za-z0-9_]{1,100}$")  # short enough for the queue's idempotency key
EVENT_TYPE = re.compile(r"^[a-z0-9_.]{1,100}$")


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
    if not (isinstance(event_id, str) and EVENT_ID.match(event_id)):
        raise BadRequest("the event has no valid 'id'", code="invalid_event")
    if not (isinstance(event_type, str) and EVENT_TYPE.match(event_type)):
        raise BadRequest("the event has no valid 'type'", code="invalid_event")
    created = unix_timestamp(created)
    if created is None:
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
        audit.record(conn, actor="stripe-webhook", action="stripe.webhook_rejected", outcome=code)


def _record_and_queue(engine: Engine, event: VerifiedEvent, *, now: dt.datetime) -> dict[str, Any]:
    row = dict(
        id=event.id,
        type=event.type,
        api_version=event.api_version,
        livemode=event.livemode,
        object_id=event.object_id,
        created=moment_of(event.created),
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

    get_queue(QUEUE_NAME).send(StripeEventToApply(**message_payload(event)).envelope(message_key(event.id)))
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
