"""Payments port: Stripe (official SDK) or a recorder of the calls that would be made.

Erasure asks Stripe to stop billing and to delete the customer. Every mutating call
carries an idempotency key derived from the caller's (Stripe refuses one key reused
for a different request, so each subscription gets its own). Something already
gone (404, resource_missing) counts as done: these steps are retried safely.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import threading
from pathlib import Path
from typing import Any, Protocol

from shared.backends import ExternalServiceError
from shared.config import Settings


class Payments(Protocol):
    def cancel_active_subscriptions(self, customer_id: str, *, idempotency_key: str) -> list[str]:
        """Cancel, immediately, every subscription of the customer not yet canceled; returns their ids."""

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> bool:
        """Delete the customer; True once it is gone (also when it was already gone)."""


def build_payments(settings: Settings) -> Payments:
    if settings.stripe_api_key:
        return StripePayments(settings)
    return RecordingPayments(settings.data_dir / "stripe" / "calls.jsonl")


def _check(customer_id: str, idempotency_key: str) -> None:
    if not isinstance(customer_id, str) or not customer_id.startswith("cus_"):
        raise ValueError("a Stripe customer id starts with 'cus_'")
    if not idempotency_key or len(idempotency_key) > 200:  # room for our suffixes within Stripe's 255
        raise ValueError("an idempotency key is 1 to 200 characters")


# --- Stripe ---------------------------------------------------------------------------


def _is_missing(exc: Any) -> bool:
    return getattr(exc, "code", None) == "resource_missing" or getattr(exc, "http_status", None) == 404


class StripePayments:
    def __init__(self, settings: Settings):
        import stripe

        base = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        # No SDK retries: the caller (a saga step) retries, with the same idempotency key.
        self.client = stripe.StripeClient(settings.stripe_api_key, base_addresses=base, max_network_retries=0)

    def _error(self, exc: Any) -> ExternalServiceError:
        import stripe

        status = getattr(exc, "http_status", None)
        retryable = isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)) or (status or 0) >= 500
        code = getattr(exc, "code", None) or type(exc).__name__
        return ExternalServiceError("stripe", f"request failed ({code})", retryable=retryable, status=status)

    def cancel_active_subscriptions(self, customer_id: str, *, idempotency_key: str) -> list[str]:
        import stripe

        _check(customer_id, idempotency_key)
        try:
            # Stripe's default listing is every subscription not yet canceled (trialing, past_due...).
            listing = self.client.v1.subscriptions.list(params={"customer": customer_id, "limit": 100})
            ids = [subscription.id for subscription in listing.auto_paging_iter()]
        except stripe.StripeError as exc:
            if _is_missing(exc):
                return []
            raise self._error(exc) from exc
        cancelled = []
        for subscription_id in ids:
            try:
                self.client.v1.subscriptions.cancel(
                    subscription_id, options={"idempotency_key": f"{idempotency_key}:cancel:{subscription_id}"}
                )
            except stripe.StripeError as exc:
                if not _is_missing(exc):
                    raise self._error(exc) from exc
            cancelled.append(subscription_id)
        return cancelled

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> bool:
        import stripe

        _check(customer_id, idempotency_key)
        try:
            self.client.v1.customers.delete(
                customer_id, options={"idempotency_key": f"{idempotency_key}:delete:{customer_id}"}
            )
        except stripe.StripeError as exc:
            if not _is_missing(exc):
                raise self._error(exc) from exc
        return True


# --- Recorder -------------------------------------------------------------------------


class RecordingPayments:
    """Appends each call to a JSON-lines file; a repeated idempotency key records nothing new."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def calls(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def _record(self, operation: str, customer_id: str, idempotency_key: str, result: Any) -> Any:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a+") as log:
            fcntl.flock(log, fcntl.LOCK_EX)  # other processes append to the same file
            log.seek(0)
            for line in log:
                entry = json.loads(line)
                if entry["idempotency_key"] == idempotency_key and entry["operation"] == operation:
                    return entry["result"]
            entry = {
                "operation": operation,
                "customer_id": customer_id,
                "idempotency_key": idempotency_key,
                "result": result,
                "at": dt.datetime.now(dt.timezone.utc).isoformat(),
            }
            log.write(json.dumps(entry) + "\n")
            return result

    def cancel_active_subscriptions(self, customer_id: str, *, idempotency_key: str) -> list[str]:
        _check(customer_id, idempotency_key)
        # The recorder knows no subscriptions: nothing was billing, nothing to cancel.
        return self._record("cancel_active_subscriptions", customer_id, idempotency_key, [])

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> bool:
        _check(customer_id, idempotency_key)
        return self._record("delete_customer", customer_id, idempotency_key, True)
