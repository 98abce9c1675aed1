"""Payments port: Stripe (official SDK) or a recorder of the calls that would be made.

Erasure asks Stripe to delete the customer, which also cancels at once every
subscription still billing (two calls per customer: the listing the receipt reports,
then the delete; Stripe's live rate limit is 100 writes per second). The delete
carries an idempotency key derived from the caller's. Something already gone (404,
resource_missing) counts as done: the step is retried safely (a retry after the delete
went through reports no subscription, since none is left to cancel).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import threading
from pathlib import Path
from typing import Any, Protocol

from shared.platform.config import Settings
from shared.platform.errors import ExternalServiceError


class Payments(Protocol):
    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> list[str]:
        """Delete the customer, which cancels at once every subscription not yet canceled.

        Returns the ids of those subscriptions; a customer already gone counts as done ([]).
        """

    def update_customer(self, customer_id: str, fields: dict[str, Any], *, idempotency_key: str) -> bool:
        """Set the customer's `fields` (name, email, phone, address: a rectification, Art. 16 and 19).

        Returns False when the customer no longer exists at Stripe (nothing held there to correct).
        """


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
        import stripe  # deferred for cold start: only functions that call Stripe load its SDK

        base = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        # No SDK retries: the caller (a saga step) retries, with the same idempotency key.
        self.client = stripe.StripeClient(
            settings.stripe_api_key or "",
            base_addresses=base,  # type: ignore[arg-type]  # stripe types it as a TypedDict of the same keys
            max_network_retries=0,
        )

    def _error(self, exc: Any) -> ExternalServiceError:
        import stripe  # deferred for cold start: only functions that call Stripe load its SDK

        status = getattr(exc, "http_status", None)
        retryable = isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)) or (status or 0) >= 500
        code = getattr(exc, "code", None) or type(exc).__name__
        return ExternalServiceError("stripe", f"request failed ({code})", retryable=retryable, status=status)

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> list[str]:
        import stripe  # deferred for cold start: only functions that call Stripe load its SDK

        _check(customer_id, idempotency_key)
        try:
            # Stripe's default listing is every subscription not yet canceled (trialing, past_due...).
            # Deleting the customer cancels them all at once (Stripe API reference, "Delete a
            # customer"): one read for the receipt, one write, instead of a cancel per subscription.
            listing = self.client.v1.subscriptions.list(params={"customer": customer_id, "limit": 100})
            live = [subscription.id for subscription in listing.auto_paging_iter()]
            self.client.v1.customers.delete(
                customer_id, options={"idempotency_key": f"{idempotency_key}:delete:{customer_id}"}
            )
        except stripe.StripeError as exc:
            if _is_missing(exc):
                return []
            raise self._error(exc) from exc
        return live

    def update_customer(self, customer_id: str, fields: dict[str, Any], *, idempotency_key: str) -> bool:
        import stripe  # deferred for cold start: only functions that call Stripe load its SDK

        _check(customer_id, idempotency_key)
        _check_customer_fields(fields)
        try:
            self.client.v1.customers.update(
                customer_id,
                params=dict(fields),  # type: ignore[arg-type]  # a TypedDict in stripe's stubs; checked by _check_customer_fields
                options={"idempotency_key": f"{idempotency_key}:update:{customer_id}"},
            )
        except stripe.StripeError as exc:
            if _is_missing(exc):
                return False
            raise self._error(exc) from exc
        return True


# Customer fields a rectification may set (Stripe's own names); `address` is a dict of _ADDRESS_KEYS.
CUSTOMER_FIELDS = frozenset({"name", "email", "phone", "address"})
_ADDRESS_KEYS = frozenset({"line1", "line2", "postal_code", "city", "country"})


def _check_customer_fields(fields: dict[str, Any]) -> None:
    if not fields or not set(fields) <= CUSTOMER_FIELDS:
        raise ValueError(f"customer fields are some of {sorted(CUSTOMER_FIELDS)}")
    address = fields.get("address")
    if address is not None and (not isinstance(address, dict) or not set(address) <= _ADDRESS_KEYS):
        raise ValueError(f"a customer address has only {sorted(_ADDRESS_KEYS)}")


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
                "at": dt.datetime.now(dt.UTC).isoformat(),
            }
            log.write(json.dumps(entry) + "\n")
            return result

    def delete_customer(self, customer_id: str, *, idempotency_key: str) -> list[str]:
        _check(customer_id, idempotency_key)
        # The recorder knows no subscriptions: nothing was billing, nothing to cancel.
        return self._record("delete_customer", customer_id, idempotency_key, [])

    def update_customer(self, customer_id: str, fields: dict[str, Any], *, idempotency_key: str) -> bool:
        _check(customer_id, idempotency_key)
        _check_customer_fields(fields)
        # The recorder keeps which fields were set, never their values.
        return self._record("update_customer:" + ",".join(sorted(fields)), customer_id, idempotency_key, True)
