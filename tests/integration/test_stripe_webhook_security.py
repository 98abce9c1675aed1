"""stripe-webhook: signatures, secret rotation, bad input, and no personal data in logs (SQLite and PostgreSQL).

A refused call answers 400 (413 for a body over the limit) with a clear code,
records nothing, queues nothing, and leaves one audit entry that holds no payload.
"""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from shared.platform import config as config_module
from shared.ports.db import get_engine
from shared.ports.tables import audit_log, payment_records, stripe_events
from tests.integration import test_stripe_webhook
from tests.integration.test_stripe_webhook import (
    CHARGE_ID,
    PREVIOUS_SECRET,
    PRIMARY_SECRET,
    new_account,
    record,
    sign,
    stripe_event,
)

webhook = test_stripe_webhook.webhook  # the fixture, used by name

CANARIES = ("canary.stripe@example.test", "Zoé Canari", "+33 6 12 34 56 78", "12 rue du Canari")


def recorded_events() -> int:
    with get_engine().connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(stripe_events)).scalar_one()


def audit_entries() -> list[tuple]:
    with get_engine().connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(audit_log.c.action, audit_log.c.outcome, audit_log.c.details))]


def assert_refused(webhook, response, status: int, code: str) -> None:
    assert response["statusCode"] == status, response["json"]
    assert response["json"]["error"]["code"] == code
    assert response["json"]["error"]["message"]
    assert recorded_events() == 0
    assert webhook.drain() == 0


MALFORMED_SIGNATURES = (
    (None, "missing_signature"),
    ("", "missing_signature"),
    ("t=123,v1=deadbeef", "invalid_signature"),
    ("garbage", "invalid_signature"),
    ("t=notanumber,v1=abc", "invalid_signature"),
)


def test_a_missing_or_malformed_signature_is_refused_and_audited(webhook):
    event = stripe_event("charge.succeeded")
    for signature, code in MALFORMED_SIGNATURES:
        assert_refused(webhook, webhook.post(event, signature=signature), 400, code)
    assert audit_entries() == [("stripe.webhook_rejected", code, None) for _, code in MALFORMED_SIGNATURES]


def test_a_signature_with_another_secret_or_a_tampered_body_is_refused(webhook):
    event = stripe_event("charge.succeeded")
    assert_refused(webhook, webhook.post(event, secret="whsec_someone_else_0123456789"), 400, "invalid_signature")

    payload = json.dumps(event)
    header = sign(payload)
    tampered = payload.replace('"amount": 1099', '"amount": 1')
    assert tampered != payload
    assert_refused(webhook, webhook.post(tampered, signature=header), 400, "invalid_signature")
    assert [outcome for _, outcome, _ in audit_entries()] == ["invalid_signature", "invalid_signature"]


def test_a_stale_signature_is_refused_and_a_recent_one_accepted(webhook):
    event = stripe_event("charge.succeeded")
    stale = webhook.post(event, timestamp=int(time.time()) - 301)
    assert_refused(webhook, stale, 400, "stale_signature")
    fresh = webhook.post(event, timestamp=int(time.time()) - 290)
    assert fresh["statusCode"] == 200 and fresh["json"]["queued"] is True


def test_both_secrets_verify_during_a_rotation(webhook, monkeypatch):
    new_account()
    old = stripe_event("charge.succeeded")
    new = stripe_event("invoice.paid")
    assert webhook.post(old, secret=PREVIOUS_SECRET)["statusCode"] == 200
    assert webhook.post(new, secret=PRIMARY_SECRET)["statusCode"] == 200
    # Stripe itself may sign with both secrets at once while it rolls its own: several v1 entries.
    both = stripe_event("customer.subscription.created")
    payload = json.dumps(both)
    now = int(time.time())
    header = sign(payload, "whsec_retired_0000000000", now) + "," + sign(payload, PREVIOUS_SECRET, now).split(",")[1]
    assert webhook.post(payload, signature=header)["statusCode"] == 200
    assert webhook.drain() == 3

    # The rotation ends: the old secret is removed from the configuration and stops verifying.
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", PRIMARY_SECRET)
    config_module.reset_settings()
    late = webhook.post(stripe_event("charge.refunded"), secret=PREVIOUS_SECRET)
    assert late["statusCode"] == 400 and late["json"]["error"]["code"] == "invalid_signature"


def test_the_signature_header_is_found_whatever_its_case(webhook):
    for name, event_type in (("stripe-signature", "charge.succeeded"), ("STRIPE-SIGNATURE", "invoice.paid")):
        response = webhook.post(stripe_event(event_type), header_name=name)
        assert response["statusCode"] == 200, response["json"]


def test_a_base64_encoded_body_is_decoded_before_the_check(webhook):
    response = webhook.post(stripe_event("charge.succeeded"), as_base64=True)
    assert response["statusCode"] == 200 and response["json"]["queued"] is True


NOT_EVENTS = (
    ("not json at all", "invalid_json"),
    ("[1, 2, 3]", "invalid_event"),
    ('{"object": "customer", "id": "cus_123"}', "invalid_event"),
    ('{"object": "event", "id": "evt_1", "type": "charge.succeeded", "created": 1781000000}', "invalid_event"),
    (
        '{"object": "event", "id": "evt_1", "type": "charge.succeeded", "created": 1e99, "data": {"object": {}}}',
        "invalid_event",
    ),
)


def test_a_signed_body_that_is_not_a_stripe_event_is_refused(webhook):
    for body, code in NOT_EVENTS:
        assert_refused(webhook, webhook.post(body), 400, code)
    assert audit_entries() == [("stripe.webhook_rejected", code, None) for _, code in NOT_EVENTS]


def test_an_unknown_api_version_is_refused_unless_configured(webhook, monkeypatch):
    event = stripe_event("charge.succeeded", api_version="2019-02-19")
    assert_refused(webhook, webhook.post(event), 400, "unsupported_api_version")
    assert audit_entries() == [("stripe.webhook_rejected", "unsupported_api_version", None)]

    monkeypatch.setenv("STRIPE_API_VERSIONS", "2019-02-19, 2020-08-27")
    config_module.reset_settings()
    assert webhook.post(event)["statusCode"] == 200


def test_a_body_over_the_limit_is_refused_with_413(webhook):
    limit = config_module.get_settings().max_body_bytes
    event = stripe_event("charge.succeeded")
    event["data"]["object"]["metadata"] = {"padding": "x" * limit}
    response = webhook.post(event)
    assert response["statusCode"] == 413
    assert response["json"]["error"]["code"] == "payload_too_large"
    assert recorded_events() == 0 and webhook.drain() == 0


def test_without_a_configured_secret_the_webhook_answers_503_so_stripe_retries(webhook, monkeypatch):
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRETS")
    config_module.reset_settings()
    response = webhook.post(stripe_event("charge.succeeded"))
    assert response["statusCode"] == 503
    assert response["json"]["error"]["code"] == "webhook_not_configured"
    assert recorded_events() == 0


def test_a_secret_that_is_not_a_stripe_endpoint_secret_is_refused_at_start_up(monkeypatch):
    with pytest.raises(config_module.ConfigurationError, match="STRIPE_WEBHOOK_SECRETS|stripe_webhook_secrets") as info:
        config_module.load_settings({"STRIPE_WEBHOOK_SECRETS": "whsec_good_one,sk_live_oops"})
    assert "sk_live_oops" not in str(info.value)


def test_personal_data_in_events_never_reaches_logs_records_or_the_queue(webhook, capfd, caplog):
    account_id = new_account(linked=False)
    customer = stripe_event("customer.created", account_id=account_id)
    customer["data"]["object"].update(
        email=CANARIES[0],
        name=CANARIES[1],
        phone=CANARIES[2],
        address={
            "line1": CANARIES[3],
            "line2": None,
            "city": "Paris",
            "postal_code": "75001",
            "country": "FR",
            "state": None,
        },
    )
    charge = stripe_event("charge.succeeded")
    charge["data"]["object"]["billing_details"] = {
        "address": {
            "line1": CANARIES[3],
            "line2": None,
            "city": "Paris",
            "postal_code": "75001",
            "country": "FR",
            "state": None,
        },
        "email": CANARIES[0],
        "name": CANARIES[1],
        "phone": CANARIES[2],
    }
    charge["data"]["object"]["receipt_email"] = CANARIES[0]

    for event in (customer, charge):
        response = webhook.post(event)
        assert response["statusCode"] == 200
    from shared.payment_data.stripe_events import QUEUE_NAME
    from shared.ports.backends import get_queue

    queued = "".join(p.read_text() for p in get_queue(QUEUE_NAME).directory.glob("*.json"))
    assert queued and not any(c in queued for c in CANARIES)
    assert webhook.drain() == 2
    # A refused call with the same payload: the audit keeps the code, not the payload.
    webhook.post(charge, secret="whsec_wrong_0123456789")

    stored = record(CHARGE_ID)
    assert (stored.account_id, stored.card_brand, stored.card_last4) == (account_id, "visa", "4242")
    with get_engine().connect() as conn:
        database = " ".join(
            str(tuple(row))
            for table in (payment_records, stripe_events, audit_log)
            for row in conn.execute(sa.select(table))
        )
    output = capfd.readouterr()
    emitted = output.out + output.err + caplog.text
    assert "stripe event received" in emitted and "stripe event applied" in emitted
    for canary in CANARIES:
        assert canary not in database
        assert canary not in emitted
    for secret in (PRIMARY_SECRET, PREVIOUS_SECRET):
        assert secret not in emitted
