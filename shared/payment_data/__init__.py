"""payment_data: the payment-data lifecycle driven by Stripe events (policy 2.3 and 5).

`receive` is the webhook's one operation, `apply_event` the worker's (shared.payment_data.stripe_events).
"""

from shared.payment_data.stripe_events import apply_event, receive

__all__ = ["apply_event", "receive"]
