"""Payments port: Stripe (over a local HTTP fake of its API) and the recorder."""

from __future__ import annotations

import json

import pytest

from shared.platform.errors import ExternalServiceError
from shared.ports.backends import get_payments
from shared.ports.payments import RecordingPayments, StripePayments
from tests.fakes.fixtures import STRIPE_TEST_KEY
from tests.fakes.stripe_fake import sign_webhook

# The payments port never touches the database: one database backend is enough here.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@sqlite_only
def test_delete_customer_cancels_every_live_subscription_in_two_calls(stripe_env, stripe_fake):
    payments = get_payments()
    assert isinstance(payments, StripePayments)
    customer = stripe_fake.add_customer()
    live = [stripe_fake.add_subscription(customer, status=status) for status in ("active", "trialing", "past_due")]
    already = stripe_fake.add_subscription(customer, status="canceled")
    other_customer = stripe_fake.add_customer()
    untouched = stripe_fake.add_subscription(other_customer)

    cancelled = payments.delete_customer(customer, idempotency_key="erasure:r1:customer")

    assert sorted(cancelled) == sorted(live)
    assert stripe_fake.customers[customer]["deleted"] is True
    assert all(stripe_fake.subscriptions[s]["status"] == "canceled" for s in live)
    assert stripe_fake.subscriptions[already]["status"] == "canceled"
    assert stripe_fake.subscriptions[untouched]["status"] == "active"
    assert "deleted" not in stripe_fake.customers[other_customer]
    # One listing (what the receipt reports), one delete: no cancel call per subscription.
    assert [(r.method, r.path) for r in stripe_fake.requests] == [
        ("GET", "/v1/subscriptions"),
        ("DELETE", f"/v1/customers/{customer}"),
    ]
    [delete] = stripe_fake.mutations()
    assert delete.headers["Idempotency-Key"].startswith("erasure:r1:customer")
    assert all(r.headers["Authorization"] == f"Bearer {STRIPE_TEST_KEY}" for r in stripe_fake.requests)

    # Retried with the same key (replayed), with a new key (404), or never existed: all done, nothing left.
    assert payments.delete_customer(customer, idempotency_key="erasure:r1:customer") == []
    assert payments.delete_customer(customer, idempotency_key="erasure:r2:customer") == []
    assert payments.delete_customer("cus_neverexisted", idempotency_key="erasure:r3:customer") == []


@sqlite_only
def test_subscription_listing_follows_pagination(stripe_env, stripe_fake):
    customer = stripe_fake.add_customer()
    subscriptions = [stripe_fake.add_subscription(customer) for _ in range(105)]
    cancelled = get_payments().delete_customer(customer, idempotency_key="k")
    assert sorted(cancelled) == sorted(subscriptions)
    assert all(stripe_fake.subscriptions[s]["status"] == "canceled" for s in subscriptions)
    listings = [r for r in stripe_fake.requests if r.method == "GET"]
    assert len(listings) == 2
    assert all(r.query["customer"] == customer for r in listings)
    assert listings[1].query["starting_after"] == subscriptions[99]


@sqlite_only
@pytest.mark.parametrize("status, retryable", [(500, True), (503, True), (429, True), (400, False), (401, False)])
def test_stripe_errors_raise_external_service_error(stripe_env, stripe_fake, status, retryable):
    customer = stripe_fake.add_customer()
    stripe_fake.fail_next(1, status=status)
    with pytest.raises(ExternalServiceError) as error:
        get_payments().delete_customer(customer, idempotency_key="k")
    assert error.value.retryable is retryable
    assert error.value.status == status
    assert "deleted" not in stripe_fake.customers[customer]
    assert get_payments().delete_customer(customer, idempotency_key="k") == []


@sqlite_only
def test_arguments_are_checked_before_any_call(stripe_env, stripe_fake):
    payments = get_payments()
    with pytest.raises(ValueError):
        payments.delete_customer("sub_123", idempotency_key="k")
    with pytest.raises(ValueError):
        payments.delete_customer("cus_123", idempotency_key="")
    assert stripe_fake.requests == []


@sqlite_only
def test_recorder_writes_each_call_once_per_idempotency_key(env):
    payments = get_payments()
    assert isinstance(payments, RecordingPayments)

    assert payments.delete_customer("cus_A", idempotency_key="erasure:r1:customer") == []
    assert payments.delete_customer("cus_A", idempotency_key="erasure:r1:customer") == []
    assert payments.delete_customer("cus_B", idempotency_key="erasure:r2:customer") == []
    # A new process object appends to the same file and still sees the earlier call.
    assert (
        RecordingPayments(env.data_dir / "stripe" / "calls.jsonl").delete_customer(
            "cus_A", idempotency_key="erasure:r1:customer"
        )
        == []
    )

    lines = (env.data_dir / "stripe" / "calls.jsonl").read_text().splitlines()
    calls = [json.loads(line) for line in lines]
    assert [(c["operation"], c["customer_id"], c["idempotency_key"]) for c in calls] == [
        ("delete_customer", "cus_A", "erasure:r1:customer"),
        ("delete_customer", "cus_B", "erasure:r2:customer"),
    ]


def test_sign_webhook_matches_stripe_verification():
    import stripe

    payload = json.dumps(
        {"id": "evt_1", "object": "event", "type": "customer.deleted", "data": {"object": {}}}
    ).encode()
    header = sign_webhook(payload, "whsec_test")
    event = stripe.Webhook.construct_event(payload, header, "whsec_test")
    assert event.id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign_webhook(payload, "whsec_test", timestamp=1), "whsec_test")
