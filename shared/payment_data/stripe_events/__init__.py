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

Modules:

    verification   the signature and API version checks
    minimisation   what we keep of a Stripe object (HANDLED_TYPES, extract_facts)
    recording      `receive`: verify, record once, queue the minimised copy
    applying       `apply_event`: the worker's one operation
"""

from shared.payment_data.stripe_events.applying import (
    OPEN_DISPUTE_STATUSES,
    QueuedEvent,
    apply_event,
)
from shared.payment_data.stripe_events.minimisation import HANDLED_TYPES, extract_facts
from shared.payment_data.stripe_events.recording import (
    MESSAGE_TYPE,
    QUEUE_NAME,
    VerifiedEvent,
    message_key,
    message_payload,
    parse_event,
    receive,
)
from shared.payment_data.stripe_events.verification import (
    SIGNATURE_TOLERANCE_SECONDS,
    WebhookNotConfigured,
    accepted_api_versions,
    verify_signature,
)

__all__ = [
    "HANDLED_TYPES",
    "MESSAGE_TYPE",
    "OPEN_DISPUTE_STATUSES",
    "QUEUE_NAME",
    "QueuedEvent",
    "SIGNATURE_TOLERANCE_SECONDS",
    "VerifiedEvent",
    "WebhookNotConfigured",
    "accepted_api_versions",
    "apply_event",
    "extract_facts",
    "message_key",
    "message_payload",
    "parse_event",
    "receive",
    "verify_signature",
]
