"""stripe-webhook: Stripe calls `POST /stripe-webhook/` with each event (policy 2.3 and 5).

Thin: the raw body (base64-decoded by the runtime adapter when the platform says
so) and the `Stripe-Signature` header go to `shared.payment_data.stripe_events.receive`, which
verifies, records the event once and queues it for `worker.py`. Answering fast
matters: Stripe retries slow answers.
"""

from __future__ import annotations

from shared.payment_data.stripe_events import receive
from shared.platform.config import get_settings
from shared.platform.guards import signed_request
from shared.platform.runtime import HttpFunction, current_request
from shared.ports.db import get_engine

app = HttpFunction("stripe-webhook")


@app.post(
    "/",
    middlewares=[
        signed_request(
            "StripeSignature", "Stripe-Signature", "Stripe webhook: every event is checked against its Stripe-Signature"
        )
    ],
)
def receive_event() -> dict:
    request = current_request()
    return receive(
        get_engine(), request.body, request.header("Stripe-Signature"), secrets=get_settings().webhook_secrets
    )


handle = app.handle
