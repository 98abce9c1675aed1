"""stripe-webhook end to end: signed Stripe events in, payment records out (SQLite and PostgreSQL).

The events are `events/stripe/<type>.json`: real Stripe event shapes whose data
objects come from Stripe's public OpenAPI fixtures (stripe/openapi,
openapi/fixtures3.json: customer, payment_intent, charge, dispute, invoice,
subscription), signed here with the Stripe SDK's own signature scheme. They go
through the function's `handle` as Scaleway events, and the queue is drained to
the worker through serverless.yml, as `privacy-functions serve` does.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
import sqlalchemy as sa

from shared.local.server import PROJECT_ROOT, consumer_for, http_event, invoke, load_manifest
from shared.payment_data.stripe_events import QUEUE_NAME
from shared.platform import config as config_module
from shared.platform.clock import add_months
from shared.ports.db import UTC, get_engine
from shared.ports.tables import accounts, audit_log, payment_records, stripe_events

EVENTS = PROJECT_ROOT / "events" / "stripe"
PRIMARY_SECRET = "whsec_test_primary_0123456789abcdef"
PREVIOUS_SECRET = "whsec_test_previous_fedcba9876543210"
CUSTOMER_ID = "cus_NZbFQAsc0ptasX"
CHARGE_ID = "ch_1MoS30LgUG5tbmjcjfsQqpHI"
PAYMENT_INTENT_ID = "pi_1MoS6tLgUG5tbmjcQ62U6djv"
INVOICE_ID = "in_1MoqxGLgUG5tbmjcJeILGSau"
SUBSCRIPTION_ID = "sub_1MoqxHLgUG5tbmjcG8lOfx2N"

HANDLED = (
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
)


def moment(unix: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix, UTC)


def stripe_event(event_type: str, *, account_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """A fixture event, at the API version the SDK pins; `changes` replace top-level event fields."""
    import stripe

    event = json.loads((EVENTS / f"{event_type}.json").read_text())
    event["api_version"] = stripe.api_version
    obj = event["data"]["object"]
    if obj.get("object") == "customer" and account_id is not None:
        obj["metadata"] = {"account_id": account_id}
    event.update(changes)
    return event


def sign(payload: str, secret: str = PRIMARY_SECRET, timestamp: int | None = None) -> str:
    import stripe

    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


class Webhook:
    """Posts to the stripe-webhook function as Scaleway would, and drains its queue to the worker."""

    def __init__(self) -> None:
        self.manifest = load_manifest()
        self.spec = self.manifest.functions["stripe-webhook"]

    def post(
        self,
        event: dict[str, Any] | str | bytes,
        *,
        secret: str = PRIMARY_SECRET,
        timestamp: int | None = None,
        signature: str | None = "sign",
        header_name: str = "Stripe-Signature",
        as_base64: bool = False,
    ) -> dict[str, Any]:
        payload = event if isinstance(event, (str, bytes)) else json.dumps(event)
        text = payload.decode() if isinstance(payload, bytes) else payload
        headers = {}
        if signature == "sign":
            headers[header_name] = sign(text, secret, timestamp)
        elif signature is not None:
            headers[header_name] = signature
        body = base64.b64encode(text.encode()).decode() if as_base64 else text
        request = http_event("POST", "/", body=body, headers=headers)
        request["isBase64Encoded"] = as_base64
        response = invoke(self.spec, request)
        response["json"] = json.loads(response["body"]) if response["body"] else None
        return response

    def drain(self) -> int:
        """Deliver the stripe-events queue to its subscriber(s) in serverless.yml."""
        from shared.ports.backends import get_queue

        return get_queue(QUEUE_NAME).deliver_pending(consumer_for(QUEUE_NAME, self.manifest))

    def deliver(self, event: dict[str, Any], **kw: Any) -> dict[str, Any]:
        response = self.post(event, **kw)
        assert response["statusCode"] == 200, response["json"]
        self.drain()
        return response


@pytest.fixture
def webhook(env, monkeypatch) -> Webhook:
    from shared.ports.backends import reset_backends

    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", f"{PRIMARY_SECRET}, {PREVIOUS_SECRET}")
    config_module.reset_settings()
    reset_backends()
    return Webhook()


def new_account(*, linked: bool = True) -> str:
    from shared.local.demo import create_account

    account_id = create_account(get_engine(), stripe_customer_id=CUSTOMER_ID)["id"]
    if not linked:  # the platform has not told us its Stripe customer yet
        with get_engine().begin() as conn:
            conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(stripe_customer_id=None))
    return account_id


def record(object_id: str) -> Any:
    with get_engine().connect() as conn:
        return conn.execute(sa.select(payment_records).where(payment_records.c.stripe_object_id == object_id)).first()


def event_row(event_id: str) -> Any:
    with get_engine().connect() as conn:
        return conn.execute(sa.select(stripe_events).where(stripe_events.c.id == event_id)).first()


def account_customer(account_id: str) -> str | None:
    with get_engine().connect() as conn:
        return conn.execute(sa.select(accounts.c.stripe_customer_id).where(accounts.c.id == account_id)).scalar_one()


def snapshot() -> dict[str, list[tuple]]:
    with get_engine().connect() as conn:
        return {
            t.name: sorted(tuple(map(str, row)) for row in conn.execute(sa.select(t)))
            for t in (payment_records, stripe_events, accounts)
        }


def retained_until(object_id: str) -> dt.datetime | None:
    from shared.policy.data_map import table_map

    return table_map("payment_records").retained_until(record(object_id)._mapping)


# --- Each handled event type -----------------------------------------------------------------

# What must hold of the payment record once the event is applied (None: the event makes no record).
EXPECTED_RECORDS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "customer.created": None,
    "customer.updated": None,
    "customer.deleted": None,
    "payment_intent.succeeded": (
        PAYMENT_INTENT_ID,
        {"kind": "payment_intent", "status": "succeeded", "amount_cents": 1099, "currency": "EUR"},
    ),
    "payment_intent.payment_failed": (
        PAYMENT_INTENT_ID,
        {"kind": "payment_intent", "status": "payment_failed", "amount_cents": 1099, "currency": "EUR"},
    ),
    "charge.succeeded": (
        CHARGE_ID,
        {"kind": "charge", "status": "succeeded", "amount_cents": 1099, "card_brand": "visa", "card_last4": "4242"},
    ),
    "charge.refunded": (CHARGE_ID, {"kind": "charge", "status": "refunded", "amount_refunded_cents": 1099}),
    "charge.dispute.created": (CHARGE_ID, {"dispute_status": "needs_response", "disputed_until": None}),
    "charge.dispute.closed": (CHARGE_ID, {"dispute_status": "won"}),
    "invoice.paid": (INVOICE_ID, {"kind": "invoice", "status": "paid", "amount_cents": 2000, "currency": "EUR"}),
    "invoice.payment_failed": (INVOICE_ID, {"kind": "invoice", "status": "payment_failed", "amount_cents": 2000}),
    "customer.subscription.created": (
        SUBSCRIPTION_ID,
        {"kind": "subscription", "status": "active", "amount_cents": 2000, "currency": "EUR"},
    ),
    "customer.subscription.updated": (SUBSCRIPTION_ID, {"kind": "subscription", "status": "active"}),
    "customer.subscription.deleted": (SUBSCRIPTION_ID, {"kind": "subscription", "status": "canceled"}),
}


def _transaction_moment(event: dict[str, Any]) -> dt.datetime:
    """The transaction date Stripe's object states: where each record's retention clock starts."""
    obj = event["data"]["object"]
    if obj["object"] == "invoice" and obj["status_transitions"]["paid_at"]:
        return moment(obj["status_transitions"]["paid_at"])
    if obj["object"] == "subscription":
        return moment(obj["ended_at"] or obj["current_period_start"])
    return moment(obj["created"])


# Events about an object we must already know (a dispute on a charge, a deletion with records to keep).
PRECEDED_BY = {
    "charge.dispute.created": "charge.succeeded",
    "charge.dispute.closed": "charge.succeeded",
    "customer.deleted": "charge.succeeded",
}


@pytest.mark.parametrize("event_type", HANDLED)
def test_each_handled_event_type_is_applied(webhook, event_type):
    account_id = new_account(linked=event_type != "customer.created")
    if event_type in PRECEDED_BY:
        webhook.deliver(stripe_event(PRECEDED_BY[event_type]))
    event = stripe_event(event_type, account_id=account_id)

    answer = webhook.post(event)
    assert answer["statusCode"] == 200
    assert answer["json"] == {"received": True, "queued": True}
    assert event_row(event["id"]).outcome == "queued"
    assert webhook.drain() == 1

    row = event_row(event["id"])
    assert row.outcome == "applied" and row.processed_at is not None
    assert (row.type, row.object_id, row.created) == (
        event_type,
        event["data"]["object"]["id"],
        moment(event["created"]),
    )

    if event_type in ("customer.created", "customer.updated"):
        assert account_customer(account_id) == CUSTOMER_ID
    elif event_type == "customer.deleted":
        assert account_customer(account_id) is None
        assert record(CHARGE_ID).account_id == account_id  # the records stay for the schedule
    expected = EXPECTED_RECORDS[event_type]
    if expected is None:
        return
    object_id, fields = expected
    stored = record(object_id)
    assert stored is not None
    assert {name: getattr(stored, name) for name in fields} == fields
    assert stored.account_id == account_id
    assert stored.stripe_customer_id == CUSTOMER_ID
    if event_type.startswith("charge.dispute."):
        assert stored.dispute_opened_at == moment(event["data"]["object"]["created"])
    else:
        assert stored.transaction_at == _transaction_moment(event)
        assert stored.stripe_updated_at == moment(event["created"])


def test_an_event_type_we_do_not_handle_is_acknowledged_and_ignored(webhook):
    event = stripe_event("payment_intent.created")
    answer = webhook.post(event)
    assert answer["statusCode"] == 200 and answer["json"] == {"received": True, "ignored": True}
    assert webhook.drain() == 0
    assert event_row(event["id"]).outcome == "ignored"
    assert record(PAYMENT_INTENT_ID) is None


# --- Once, and in order ----------------------------------------------------------------------


def test_a_replayed_event_answers_200_and_changes_nothing(webhook):
    new_account()
    event = stripe_event("charge.succeeded")
    webhook.deliver(event)
    before = snapshot()

    again = webhook.post(event)  # Stripe's retry: same event, fresh signature
    assert again["statusCode"] == 200 and again["json"] == {"received": True, "duplicate": True}
    assert webhook.drain() == 0
    assert snapshot() == before


def test_a_duplicated_queue_message_changes_nothing(webhook):
    """The worker applies once even when the outer processed-messages guard is bypassed."""
    from shared.payment_data.stripe_events import apply_event, message_payload, parse_event

    new_account()
    event = stripe_event("charge.refunded")
    webhook.deliver(event)
    before = snapshot()
    verified = parse_event(json.dumps(event).encode(), accepted_versions=frozenset({event["api_version"]}))
    assert apply_event(get_engine(), message_payload(verified)) == {"event_id": event["id"], "outcome": "duplicate"}
    assert snapshot() == before


def test_an_event_whose_queuing_failed_is_queued_by_stripes_retry(webhook, monkeypatch):
    from shared.ports.backends import get_queue

    new_account()
    event = stripe_event("charge.succeeded")
    queue = get_queue(QUEUE_NAME)
    real_send = queue.send

    def send_fails_once(message):
        monkeypatch.setattr(queue, "send", real_send)
        raise ConnectionError("queue unreachable")

    monkeypatch.setattr(queue, "send", send_fails_once)
    failed = webhook.post(event)
    assert failed["statusCode"] == 500  # Stripe retries
    assert event_row(event["id"]).outcome == "received"

    retried = webhook.post(event)
    assert retried["statusCode"] == 200 and retried["json"] == {"received": True, "queued": True}
    assert webhook.drain() == 1
    assert record(CHARGE_ID).status == "succeeded"


def test_an_older_event_does_not_move_a_record_backwards(webhook):
    new_account()
    succeeded = stripe_event("payment_intent.succeeded")  # created T+200
    failed = stripe_event("payment_intent.payment_failed")  # created T+100: it happened first
    assert failed["created"] < succeeded["created"]
    webhook.deliver(succeeded)
    webhook.deliver(failed)
    assert record(PAYMENT_INTENT_ID).status == "succeeded"
    assert record(PAYMENT_INTENT_ID).stripe_updated_at == moment(succeeded["created"])
    assert event_row(failed["id"]).outcome == "stale"

    renewed = stripe_event("customer.subscription.updated")
    created = stripe_event("customer.subscription.created")
    webhook.deliver(renewed)
    webhook.deliver(created)
    period_start = renewed["data"]["object"]["current_period_start"]
    assert record(SUBSCRIPTION_ID).transaction_at == moment(period_start)


def test_a_final_status_never_goes_back_even_in_the_same_second(webhook):
    new_account()
    refunded = stripe_event("charge.refunded")
    succeeded = stripe_event("charge.succeeded", created=refunded["created"])
    webhook.deliver(refunded)
    webhook.deliver(succeeded)
    assert record(CHARGE_ID).status == "refunded"

    later_failure = stripe_event("invoice.payment_failed")
    paid = stripe_event("invoice.paid")
    later_failure["created"] = paid["created"] + 60  # a late, contradictory event after the final "paid"
    webhook.deliver(paid)
    webhook.deliver(later_failure)
    assert record(INVOICE_ID).status == "paid"


def test_a_dispute_closed_before_its_creation_arrives_stays_closed(webhook):
    new_account()
    webhook.deliver(stripe_event("charge.succeeded"))
    closed = stripe_event("charge.dispute.closed")
    webhook.deliver(closed)
    webhook.deliver(stripe_event("charge.dispute.created"))
    charge = record(CHARGE_ID)
    assert charge.dispute_status == "won"
    assert charge.disputed_until == moment(closed["created"])


def test_a_dispute_overtaking_its_charge_keeps_both(webhook):
    account_id = new_account()
    webhook.deliver(stripe_event("charge.dispute.created"))
    assert record(CHARGE_ID).dispute_status == "needs_response"
    charge_event = stripe_event("charge.succeeded")
    webhook.deliver(charge_event)
    charge = record(CHARGE_ID)
    assert (charge.status, charge.dispute_status, charge.account_id) == ("succeeded", "needs_response", account_id)
    assert charge.transaction_at == moment(charge_event["data"]["object"]["created"])


# --- Retention --------------------------------------------------------------------------------


def test_a_dispute_holds_the_record_until_it_closes(webhook):
    from shared.policy import facts as policy

    new_account()
    charge_event = stripe_event("charge.succeeded")
    webhook.deliver(charge_event)
    webhook.deliver(stripe_event("invoice.paid"))
    transaction_at = moment(charge_event["data"]["object"]["created"])
    assert retained_until(CHARGE_ID) == policy.expires_at("payment_data", transaction_at)

    webhook.deliver(stripe_event("charge.dispute.created"))
    assert retained_until(CHARGE_ID) is None  # held: no clock runs while the dispute is open
    assert retained_until(INVOICE_ID) is not None  # other records are not held

    closed = stripe_event("charge.dispute.closed")
    webhook.deliver(closed)
    closed_at = moment(closed["created"])
    assert closed_at > transaction_at
    # 13 months active, then 5 years of archive, counted from the close.
    assert retained_until(CHARGE_ID) == policy.expires_at("payment_data", closed_at) == add_months(closed_at, 73)


def test_a_dispute_holds_the_payment_intent_too(webhook):
    new_account()
    webhook.deliver(stripe_event("payment_intent.succeeded"))
    webhook.deliver(stripe_event("charge.dispute.created"))
    assert record(PAYMENT_INTENT_ID).dispute_status == "needs_response"
    assert retained_until(PAYMENT_INTENT_ID) is None


# --- The account link ------------------------------------------------------------------------


def test_payments_arriving_before_the_customer_link_are_linked_when_it_arrives(webhook):
    from shared.platform.pseudonym import subject_pseudonym

    account_id = new_account(linked=False)
    webhook.deliver(stripe_event("charge.succeeded"))
    assert record(CHARGE_ID).account_id is None
    webhook.deliver(stripe_event("customer.created", account_id=account_id))
    charge = record(CHARGE_ID)
    assert charge.account_id == account_id
    assert charge.subject_pseudonym == subject_pseudonym(account_id)
    assert account_customer(account_id) == CUSTOMER_ID


def test_customer_deleted_removes_the_link_and_keeps_the_records(webhook):
    account_id = new_account()
    webhook.deliver(stripe_event("charge.succeeded"))
    webhook.deliver(stripe_event("invoice.paid"))
    deleted = stripe_event("customer.deleted", account_id=account_id)
    webhook.deliver(deleted)

    assert account_customer(account_id) is None
    for object_id in (CHARGE_ID, INVOICE_ID):
        kept = record(object_id)
        assert kept is not None and kept.account_id == account_id
        assert kept.customer_deleted_at == moment(deleted["created"])
        assert retained_until(object_id) is not None  # the schedule still runs on them
    with get_engine().connect() as conn:
        actions = conn.execute(sa.select(audit_log.c.action, audit_log.c.subject_pseudonym)).all()
    assert [a for a, _ in actions] == ["stripe.customer_deleted"]
    assert account_id not in str(actions)

    # A late customer.updated (written before the deletion) does not restore the link.
    webhook.deliver(stripe_event("customer.updated", account_id=account_id))
    assert account_customer(account_id) is None


# --- Over the SQS protocol ---------------------------------------------------------------------


def test_the_event_travels_over_sqs_with_its_idempotency_key(webhook, sqs_env):
    import boto3

    from shared.ports.backends import ensure_queue

    ensure_queue(QUEUE_NAME)
    new_account()
    event = stripe_event("charge.succeeded")
    event["data"]["object"]["billing_details"]["name"] = "Zoé Canari"

    assert webhook.post(event)["json"] == {"received": True, "queued": True}
    settings = config_module.get_settings()
    sqs = boto3.client(
        "sqs",
        endpoint_url=settings.sqs_endpoint_url,
        region_name="fr-par",
        aws_access_key_id=settings.sqs_access_key,
        aws_secret_access_key=settings.sqs_secret_key,
    )
    url = settings.queue_url_prefix + QUEUE_NAME
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])
    assert len(messages) == 1
    body = json.loads(messages[0]["Body"])
    assert body["idempotency_key"] == f"stripe:{event['id']}"
    assert "Canari" not in messages[0]["Body"] and "billing_details" not in messages[0]["Body"]

    assert webhook.drain() == 1
    assert record(CHARGE_ID).status == "succeeded"
    assert event_row(event["id"]).outcome == "applied"


# --- What the export and the erasure make of the records ------------------------------------------


def test_the_export_shows_the_payment_records(webhook):
    import io
    import zipfile

    from shared.ports.db import utcnow
    from shared.records.registry import create_request
    from shared.rights.export import ArchiveStats, iter_archive

    account_id = new_account()
    for event_type in ("charge.succeeded", "invoice.paid", "customer.subscription.created"):
        webhook.deliver(stripe_event(event_type))
    other = stripe_event("charge.succeeded")  # another customer's payment never shows
    other["id"], other["data"]["object"]["id"] = "evt_other0001", "ch_other0001"
    other["data"]["object"]["customer"] = "cus_other0001"
    webhook.deliver(other)

    engine = get_engine()
    with engine.begin() as conn:
        request = create_request(conn, account_id=account_id, kind="access", channel="client_area")
    with engine.connect() as conn:
        archive = b"".join(
            iter_archive(conn, request, ArchiveStats(), now=utcnow(), settings=config_module.get_settings())
        )
    data = json.loads(zipfile.ZipFile(io.BytesIO(archive)).read("data.json"))
    exported = {row["stripe_object_id"]: row for row in data["data"]["payment_records"]}
    assert set(exported) == {CHARGE_ID, INVOICE_ID, SUBSCRIPTION_ID}
    charge = exported[CHARGE_ID]
    assert (charge["status"], charge["amount_cents"], charge["currency"]) == ("succeeded", 1099, "EUR")
    assert (charge["card_brand"], charge["card_last4"]) == ("visa", "4242")


def test_erasure_keeps_the_payment_records_under_their_retention_rule(webhook):
    from shared.platform.pseudonym import subject_pseudonym
    from shared.policy import facts as policy
    from shared.rights.erasure import erase_account_data

    account_id = new_account()
    charge_event = stripe_event("charge.succeeded")
    invoice_event = stripe_event("invoice.paid")
    for event in (charge_event, invoice_event, stripe_event("charge.dispute.created")):
        webhook.deliver(event)

    with get_engine().begin() as conn:
        erase_account_data(conn, account_id)

    for object_id in (CHARGE_ID, INVOICE_ID):
        kept = record(object_id)
        assert kept.account_id is None and kept.subject_pseudonym == subject_pseudonym(account_id)
        assert kept.archived_at is not None
    paid_at = moment(invoice_event["data"]["object"]["status_transitions"]["paid_at"])
    assert retained_until(INVOICE_ID) == policy.expires_at("payment_data", paid_at)
    assert retained_until(CHARGE_ID) is None  # still disputed: held

    # Stripe keeps talking about the erased account's objects: the records follow, unlinked.
    closed = stripe_event("charge.dispute.closed")
    webhook.deliver(closed)
    webhook.deliver(stripe_event("customer.deleted"))
    charge = record(CHARGE_ID)
    assert charge.account_id is None and charge.dispute_status == "won"
    assert charge.customer_deleted_at is not None
    assert retained_until(CHARGE_ID) == policy.expires_at("payment_data", moment(closed["created"]))


# --- The sample events of events/stripe-webhook*/ (`privacy-functions invoke`) ----------------------

DEV_SECRET = "whsec_local_development_only_0123456789abcdef"  # the .env.example value


def test_the_sample_events_answer_as_their_names_say(webhook, monkeypatch):
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", DEV_SECRET)
    config_module.reset_settings()
    samples = PROJECT_ROOT / "events" / "stripe-webhook"
    answers = {}
    for case in ("missing-signature", "wrong-secret", "payment_intent.succeeded"):
        event = json.loads((samples / f"{case}.json").read_text())
        answers[case] = json.loads(invoke(webhook.spec, event)["body"])["error"]["code"]
    # Signed once with the development secret: stale now, as a replay of it would be.
    assert answers == {
        "missing-signature": "missing_signature",
        "wrong-secret": "invalid_signature",
        "payment_intent.succeeded": "stale_signature",
    }
    event = json.loads((samples / "payment_intent.succeeded.json").read_text())
    event["headers"]["Stripe-Signature"] = sign(event["body"], DEV_SECRET)
    assert invoke(webhook.spec, event)["statusCode"] == 200


def test_the_worker_sample_applies_its_event(webhook):
    worker = webhook.manifest.functions["stripe-webhook-worker"]
    event = json.loads((PROJECT_ROOT / "events" / "stripe-webhook-worker" / "charge.succeeded.json").read_text())
    assert invoke(worker, event)["statusCode"] == 200
    assert record(CHARGE_ID).status == "succeeded"
    assert invoke(worker, event)["statusCode"] == 200  # redelivered: changes nothing
    assert event_row(json.loads(event["body"])["payload"]["event_id"]).outcome == "applied"


def test_a_malformed_worker_message_is_refused_without_retry(webhook):
    from shared.platform.runtime import make_message
    from shared.ports.queues import trigger_event

    worker = webhook.manifest.functions["stripe-webhook-worker"]
    message = make_message("stripe.event", "stripe:evt_bogus", {"event_id": "evt_bogus", "type": "charge.succeeded"})
    response = invoke(worker, trigger_event(json.dumps(message)))
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "invalid_request"
