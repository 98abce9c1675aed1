"""stripe-webhook-worker: applies the Stripe events queued by the webhook (queue `stripe-events`).

Each message carries the idempotency key `stripe:<event id>`; applying is one
transaction that also marks the event processed, so a redelivery changes nothing.
"""

from __future__ import annotations

from shared.payment_data.stripe_events import apply_event
from shared.platform.messages import StripeEventToApply
from shared.platform.runtime import QueueFunction, QueueMessage
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES

worker = QueueFunction("stripe-webhook-worker", processed=PROCESSED_MESSAGES)


@worker.on(StripeEventToApply)
def apply(message: QueueMessage) -> dict:
    return apply_event(get_engine(), StripeEventToApply.of(message).model_dump(mode="json"))


handle = worker.handle
