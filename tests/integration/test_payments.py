"""Payments port: Stripe (over a local HTTP fake of its API) and the recorder."""

from __future__ import annotations

import json

import pytest

from shared.backends import ExternalServiceError, get_payments
from shared.payments import RecordingPayments, StripePayments
from tests.fakes.fixtures import STRIPE_TEST_KEY
from tests.fakes.stripe_fake import sign_webhook

# The payments port never touches the database: one database backend is enough here.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@sqlite_only
def test_cancel_active_subscriptions_cancels_every_live_one(stripe_env, stripe_fake):
    payments = get_payments()
    assert isinstance(payments, StripePayments)
    customer = stripe_fake.add_customer()
    live = [
        stripe_fake.add_subscription(customer, status=status) for status in ("active", "trialing", "past_due")
    ]
    already = stripe_fake.add_subscription(customer, status="canceled")
    other_customer = stripe_fake.add_customer()
    untouched = stripe_fake.add_subscription(other_customer)

    cancelled = payments.cancel_active_subscriptions(customer, idempotency_key="erasure:r1:stripe")

    assert sorted(cancelled) == sorted(live)
    assert all(stripe_fake.subscriptions[s]["status"] == "canceled" for s in live)
    assert stripe_fake.subscriptions[already]["status"] == "canceled"
    assert stripe_fake.subscriptions[untouched]["status"] == "active"
    mutations = stripe_fake.mutations()
    assert sorted(r.path for r in mutations) == sorted(f"/v1/subscriptions/{s}" for s in live)
    keys = [r.headers["Idempotency-Key"] for r in mutations]
    assert len(set(keys)) == len(keys) and all(k.startswith("erasure:r1:stripe") for k in keys)
    assert all(r.headers["Authorization"] == f"Bearer {STRIPE_TEST_KEY}" for r in stripe_fake.requests)

    # A retry of the step finds nothing left to cancel.
    assert payments.cancel_active_subscriptions(customer, idempotency_key="erasure:r1:stripe") == []


@sqlite_only
def test_cancel_follows_pagination(stripe_env, stripe_fake):
    customer = stripe_fake.add_customer()
    subscriptions = [stripe_fake.add_subscription(customer) for _ in range(105)]
    cancelled = get_payments().cancel_active_subscriptions(customer, idempotency_key="k")
    assert sorted(cancelled) == sorted(subscriptions)
    listings = [r for r in stripe_fake.requests if r.method == "GET"]
    assert len(listings) == 2
    assert all(r.query["customer"] == customer for r in listings)
    assert listings[1].query["starting_after"] == subscriptions[99]


@sqlite_only
def test_delete_customer_and_missing_counts_as_done(stripe_env, stripe_fake):
    payments = get_payments()
    customer = stripe_fake.add_customer()
    subscription = stripe_fake.add_subscription(customer)

    assert payments.delete_customer(customer, idempotency_key="erasure:r1:customer") is True
    assert stripe_fake.customers[customer]["deleted"] is True
    assert stripe_fake.subscriptions[subscription]["status"] == "canceled"
    [delete] = stripe_fake.mutations()
    assert (delete.method, delete.path) == ("DELETE", f"/v1/customers/{customer}")
    assert delete.headers["Idempotency-Key"].startswith("erasure:r1:customer")

    # Retried with the same key (replayed), with a new key (404), or never existed: all done.
    assert payments.delete_customer(customer, idempotency_key="erasure:r1:customer") is True
    assert payments.delete_customer(customer, idempotency_key="erasure:r2:customer") is True
    assert payments.delete_customer("cus_neverexisted", idempotency_key="erasure:r3:customer") is True
    assert payments.cancel_active_subscriptions("cus_neverexisted", idempotency_key="erasure:r3:stripe") == []


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
    assert get_payments().delete_customer(customer, idempotency_key="k") is True


@sqlite_only
def test_arguments_are_checked_before_any_call(stripe_env, stripe_fake):
    payments = get_payments()
    with pytest.raises(ValueError):
        payments.delete_customer("sub_123", idempotency_key="k")
    with pytest.raises(ValueError):
        payments.cancel_active_subscriptions("cus_123", idempotency_key="")
    assert stripe_fake.requests == []


@sqlite_only
def test_recorder_writes_each_call_once_per_idempotency_key(env):
    payments = get_payments()
    assert isinstance(payments, RecordingPayments)

    assert payments.cancel_active_subscriptions("cus_A", idempotency_key="erasure:r1:stripe") == []
    assert payments.delete_customer("cus_A", idempotency_key="erasure:r1:customer") is True
    assert payments.delete_customer("cus_A", idempotency_key="erasure:r1:customer") is True
    # A new process object appends to the same file and still sees the earlier call.
    assert RecordingPayments(env.data_dir / "stripe" / "calls.jsonl").delete_customer(
        "cus_A", idempotency_key="erasure:r1:customer"
    )

    lines = (env.data_dir / "stripe" / "calls.jsonl").read_text().splitlines()
    calls = [json.loads(line) for line in lines]
    assert [(c["operation"], c["customer_id"], c["idempotency_key"]) for c in calls] == [
        ("cancel_active_subscriptions", "cus_A", "erasure:r1:stripe"),
        ("delete_customer", "cus_A", "erasure:r1:customer"),
    ]


def test_sign_webhook_matches_stripe_verification():
    import stripe

    payload = json.dumps({"id": "evt_1", "object": "event", "type": "customer.deleted", "data": {"object": {}}}).encode()
    header = sign_webhook(payload, "whsec_test")
    event = stripe.Webhook.construct_event(payload, header, "whsec_test")
    assert event.id == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, sign_webhook(payload, "whsec_test", timestamp=1), "whsec_test")
