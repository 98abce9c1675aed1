"""Minimisation: the few fields of a Stripe object that we keep (policy 2.3); everything else goes here.

Ids, account link, amount, currency, status, dates, and at most the card brand and last
4 digits so that the user can recognise a payment. Never the card number, CVC, expiry,
billing details, or the customer's email, name or phone: they are dropped before the
event is even queued.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from shared.platform.clock import UTC

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

# Statuses after which a record never changes status again (the worker never moves it back).
FINAL_STATUSES: dict[str, set[str]] = {
    "payment_intent": {"succeeded", "canceled"},
    "charge": {"failed", "refunded"},
    "invoice": {"paid", "void"},
    "subscription": {"canceled", "incomplete_expired"},
}

_ACCOUNT_ID = re.compile(r"^[0-9a-fA-F-]{36}$")


def moment_of(unix_seconds: int) -> dt.datetime:
    """A Stripe timestamp (unix seconds, Stripe's clock) as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(unix_seconds, UTC)


def _id_of(value: Any) -> str | None:
    """A Stripe reference: an id string, or an expanded object's id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value[:64] if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    """A nested Stripe object, or {} when absent or not an object."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    """An integer within what a BIGINT column holds comfortably, else None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**15
    return value if ok else None


def unix_timestamp(value: Any) -> int | None:
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
        metadata = _dict(obj.get("metadata"))
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
            "transaction_at": unix_timestamp(obj.get("created")),
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
            "opened_at": unix_timestamp(obj.get("created")),
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
    details = _dict(obj.get("payment_method_details"))
    card = _dict(details.get("card"))
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
        "transaction_at": unix_timestamp(obj.get("created")),
    }


def _invoice_facts(event_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    paid = event_type == "invoice.paid"
    transitions = _dict(obj.get("status_transitions"))
    paid_at = unix_timestamp(transitions.get("paid_at")) if paid else None
    return {
        "kind": "invoice",
        "id": _id_of(obj.get("id")),
        "customer": _id_of(obj.get("customer")),
        "amount": _int(obj.get("amount_paid")) if paid else _int(obj.get("amount_due")),
        "currency": _currency(obj.get("currency")),
        "status": "paid" if paid else "payment_failed",
        "description": _text(obj.get("description")) or _text(obj.get("number")),
        "transaction_at": paid_at or unix_timestamp(obj.get("created")),
    }


def _subscription_facts(obj: Mapping[str, Any]) -> dict[str, Any]:
    items = _dict(obj.get("items"))
    amount, currency = 0, _currency(obj.get("currency"))
    for item in _list(items.get("data")):
        if not isinstance(item, dict):
            continue
        price = _dict(item.get("price"))
        amount += (_int(price.get("unit_amount")) or 0) * (_int(item.get("quantity")) or 1)
        currency = currency or _currency(price.get("currency"))
    status = _text(obj.get("status"), 32) or "unknown"
    ended_at = unix_timestamp(obj.get("ended_at")) if status in FINAL_STATUSES["subscription"] else None
    # API versions differ: the billing period is on the subscription or (2025 onwards) on its items.
    first_item = next(iter(_list(items.get("data"))), None)
    period_start = unix_timestamp(obj.get("current_period_start")) or (
        unix_timestamp(first_item.get("current_period_start")) if isinstance(first_item, dict) else None
    )
    return {
        "kind": "subscription",
        "id": _id_of(obj.get("id")),
        "customer": _id_of(obj.get("customer")),
        "amount": amount,
        "currency": currency,
        "status": status,
        "description": _text(obj.get("description")),
        "transaction_at": ended_at
        or period_start
        or unix_timestamp(obj.get("start_date"))
        or unix_timestamp(obj.get("created")),
    }
