"""erase-account end to end: registration, cooling-off, the saga, its receipt, its self-check and replay.

Every test runs on SQLite and PostgreSQL (the `env` fixture). The full erasure goes
through the function handler and the queue worker, with S3 on moto (archive bucket
with Object Lock) and the Stripe and Resend fakes over HTTP.
"""

from __future__ import annotations

import datetime as dt
import json

import pyotp
import pytest
import sqlalchemy as sa

from shared.local.demo import create_account, populate_account
from shared.local.server import drain_queues, http_event, invoke, load_manifest
from shared.platform.errors import Conflict, ValidationFailed
from shared.platform.pseudonym import subject_pseudonym
from shared.policy import data_map
from shared.policy import facts as policy
from shared.ports import tables as schema
from shared.ports.backends import get_queue, get_storage
from shared.ports.db import UTC, utcnow
from shared.records import saga as jobs
from shared.records.audit import verify_chain
from shared.rights import erasure
from shared.rights.erasure import registration as erasure_registration
from shared.rights.erasure import saga as erasure_saga
from shared.rights.erasure import scrub as erasure_scrub

pytestmark = pytest.mark.usefixtures("env")

CANARY = "canaryErase7"
OTHER_CANARY = "canaryKeep9"


# --- Helpers ---------------------------------------------------------------------------------


@pytest.fixture
def manifest():
    return load_manifest()


@pytest.fixture
def immediate(monkeypatch):
    """No cooling-off: the erasure runs as soon as it is registered."""
    from shared.platform.config import reset_settings
    from shared.ports.backends import reset_backends

    monkeypatch.setenv("ERASURE_COOLING_OFF_DAYS", "0")
    reset_settings()
    reset_backends()


def call(
    manifest, method: str, path: str, *, token: str | None = None, code: str | None = None, body: str = ""
) -> tuple[int, dict]:
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if code:
        headers["X-Verification-Code"] = code
    response = invoke(manifest.functions["erase-account"], http_event(method, path, body=body, headers=headers))
    return response["statusCode"], json.loads(response["body"] or "{}")


def client_token(account_id: str) -> str:
    from shared.identity.client import issue_dev_token

    return issue_dev_token(account_id)


def totp(account: dict, *, offset: int = 0) -> str:
    return pyotp.TOTP(account["totp_secret"]).at(utcnow() + dt.timedelta(seconds=offset))


def seeded_account(engine, *, canary: str, stripe_customer_id: str | None = None, **populate) -> dict:
    account = create_account(engine, with_2fa=True, canary=canary, stripe_customer_id=stripe_customer_id)
    options = {"invoices": 3, "lines_per_invoice": 2, "log_lines": 6, "payments": 2, **populate}
    account["summary"] = populate_account(engine, get_storage(), account["id"], canary=canary, **options)
    with engine.begin() as conn:
        conn.execute(
            schema.invoices.update()
            .where(schema.invoices.c.account_id == account["id"])
            .values(transmitted_at=utcnow())
        )
    return account


def put_export(settings, account_id: str) -> str:
    key = f"exports/{account_id}/export-1.zip"
    get_storage().put(settings.exports_bucket, key, b"zip bytes " + CANARY.encode(), content_type="application/zip")
    return key


def string_columns():
    for table in schema.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, (sa.String, sa.Text)):
                yield table, column


def canary_hits(engine, canary: str) -> set[str]:
    """Every `table.column` of the whole database holding the canary."""
    hits = set()
    with engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, (sa.String, sa.Text))]
            if not columns:
                continue
            counts = conn.execute(sa.select(*(sa.func.count(sa.case((c.contains(canary), 1))) for c in columns))).one()
            hits.update(f"{table.name}.{c.name}" for c, n in zip(columns, counts, strict=True) if n)
        for table in (schema.dsr_requests, schema.audit_log, schema.processed_messages, schema.saga_steps):
            for row in conn.execute(sa.select(table)):
                assert canary not in json.dumps(row._asdict(), default=str), f"{canary} in {table.name}"
    return hits


def retained_columns() -> set[str]:
    """Where the data map says an erased subject's data may legally stay."""
    return {
        f"{t.name}.{c.name}"
        for t in data_map.TABLES
        if t.row_action == data_map.ROW_RETAIN and not t.suite
        for c in t.columns
        if c.action == "retain"
    }


def subject_snapshot(engine, account_id: str) -> dict[str, list]:
    """Every row linked to one account (to prove another account is untouched)."""
    snapshot = {}
    with engine.connect() as conn:
        for tm in data_map.TABLES:
            if tm.link.column is None or tm.link.pseudonym or tm.suite:
                continue
            rows = conn.execute(data_map.subject_rows(tm.name, account_id)).all()
            snapshot[tm.name] = sorted(repr(tuple(r)) for r in rows)
    return snapshot


def account_row(engine, account_id: str):
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.accounts).where(schema.accounts.c.id == account_id)).first()


def request_record(engine, request_id: str):
    with engine.connect() as conn:
        return erasure.get_erasure(conn, request_id)


def assert_fully_erased(engine, settings, account: dict, request_id: str, *, chain_problems=(None,)) -> dict:
    """The end state of a completed erasure; returns the receipt."""
    account_id = account["id"]
    assert account_row(engine, account_id) is None
    hits = canary_hits(engine, CANARY)
    assert hits and hits <= retained_columns(), hits - retained_columns()
    email = account["email"]
    with engine.connect() as conn:
        for table, column in string_columns():
            assert not conn.execute(sa.select(sa.func.count()).where(column == email)).scalar(), (
                f"{table.name}.{column.name}"
            )
        # Retained rows are in restricted archive, no longer linked to an account.
        archived = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.invoices)
            .where(schema.invoices.c.seller_name.contains(CANARY))
        ).scalar()
        assert archived > 0
        assert not conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.invoices)
            .where(
                schema.invoices.c.seller_name.contains(CANARY),
                sa.or_(schema.invoices.c.account_id.is_not(None), schema.invoices.c.archived_at.is_(None)),
            )
        ).scalar()
        pseudonym = subject_pseudonym(account_id)
        for table in (schema.connection_logs, schema.access_logs, schema.payment_records):
            rows = conn.execute(
                sa.select(table.c.account_id, table.c.subject_pseudonym).where(table.c.subject_pseudonym == pseudonym)
            ).all()
            assert rows and all(r.account_id is None for r in rows)
        ledger = conn.execute(
            sa.select(schema.erasure_ledger).where(schema.erasure_ledger.c.request_id == request_id)
        ).one()
        assert ledger.account_id == account_id and ledger.subject_pseudonym == pseudonym
        assert verify_chain(conn).problem in chain_problems
    record = request_record(engine, request_id)
    assert record.state == "completed"
    storage = get_storage()
    assert not list(storage.list(settings.documents_bucket, f"invoices/{account_id}/"))
    assert not list(storage.list(settings.exports_bucket, f"exports/{account_id}/"))
    for key in account["summary"]["pdf_keys"]:
        invoice_id = key.rsplit("/", 1)[1].removesuffix(".pdf")
        assert storage.exists(settings.archive_bucket, f"invoices/{invoice_id}.pdf")
    stored = storage.get_bytes(settings.archive_bucket, erasure.receipt_key(request_id)).decode()
    assert CANARY not in stored and email not in stored
    receipt = json.loads(stored)
    assert erasure.erasure_view(record)["receipt"] == receipt
    assert record.details["receipt_summary"]["retained"] == sum(
        1 for e in receipt["categories"] if e["outcome"] == "retained_until"
    )
    return receipt


# --- The full erasure ----------------------------------------------------------------------------


def test_full_erasure_through_the_function(
    s3_env, stripe_env, resend_env, stripe_fake, resend_fake, engine, manifest, immediate, capfd
):
    settings = s3_env
    customer = stripe_fake.add_customer()
    subscription = stripe_fake.add_subscription(customer)
    account = seeded_account(engine, canary=CANARY, stripe_customer_id=customer)
    other = seeded_account(engine, canary=OTHER_CANARY)
    resend_fake.add_contact(account["email"])
    resend_fake.add_contact(other["email"])
    export_key = put_export(settings, account["id"])
    other_before = subject_snapshot(engine, other["id"])
    token = client_token(account["id"])

    status, body = call(manifest, "POST", "/", token=token, code=totp(account))
    assert status == 202, body
    assert body["state"] == "waiting" and body["channel"] == "client_area"
    request_id = body["request_id"]
    # Sessions and API keys are revoked at once.
    with engine.connect() as conn:
        assert not conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.sessions)
            .where(schema.sessions.c.account_id == account["id"], schema.sessions.c.revoked_at.is_(None))
        ).scalar()
    assert account_row(engine, account["id"]).status == "deactivated"

    assert drain_queues(manifest) >= 1
    receipt = assert_fully_erased(engine, settings, account, request_id)
    assert not get_storage().exists(settings.exports_bucket, export_key)
    assert subject_snapshot(engine, other["id"]) == other_before
    assert account_row(engine, other["id"]).status == "active"

    # Stripe: customer deleted, which cancelled the subscription; every write with an idempotency key.
    assert stripe_fake.subscriptions[subscription]["status"] == "canceled"
    assert stripe_fake.customers[customer].get("deleted") is True
    assert all(r.headers.get("Idempotency-Key") for r in stripe_fake.mutations())
    # Resend: the contact is gone, the other one stays; one mail (the receipt), in French and English.
    assert resend_fake.contact(account["email"]) is None and resend_fake.contact(other["email"]) is not None
    assert len(resend_fake.emails) == 1
    mail = resend_fake.emails[0]
    assert mail["to"] == [account["email"]]
    assert "conservé en archive restreinte" in mail["text"] and "kept in restricted archive" in mail["text"]
    assert "SuperPDP" in mail["text"]

    # The receipt: every category, with a policy-conform date and legal basis for what is retained.
    outcomes = {(e["category"], e["outcome"]) for e in receipt["categories"]}
    assert ("identification.email", "erased") in outcomes
    assert ("identification.phone", "erased") in outcomes
    assert ("documents.invoices", "retained_until") in outcomes
    assert ("payment.transactions", "retained_until") in outcomes
    assert ("technical.ip_address", "retained_until") in outcomes
    subprocessors = {s["subprocessor"]: s for s in receipt["subprocessors"]}
    assert subprocessors["stripe"]["outcome"] == "customer_deleted"
    assert subprocessors["stripe"]["subscriptions_cancelled"] == 1
    assert subprocessors["resend"]["outcome"] == "contact_removed"
    assert subprocessors["superpdp"]["outcome"] == "cannot_recall"
    assert subprocessors["superpdp"]["invoices_transmitted"] == 3

    # The client can read the outcome with its (still unexpired) token.
    status, body = call(manifest, "GET", f"/{request_id}", token=token)
    assert status == 403  # the account no longer exists: its tokens are worthless
    with engine.connect() as conn:
        completed = erasure.erasure_view(erasure.get_erasure(conn, request_id))
    assert completed["state"] == "completed" and completed["receipt"] == receipt

    out = capfd.readouterr()
    for secret in (CANARY, account["email"], OTHER_CANARY):
        assert secret not in out.out + out.err


def test_receipt_dates_follow_the_retention_policy(engine, immediate):
    account = seeded_account(engine, canary=CANARY, invoices=4, log_lines=8, payments=3)
    with engine.begin() as conn:
        # One payment under a dispute that closes later: its clock starts at the dispute's close.
        closed = utcnow() + dt.timedelta(days=40)
        conn.execute(
            schema.payment_records.update()
            .where(
                schema.payment_records.c.id
                == sa.select(sa.func.min(schema.payment_records.c.id))
                .where(schema.payment_records.c.account_id == account["id"])
                .scalar_subquery()
            )
            .values(disputed_until=closed)
        )
        last_invoice = conn.execute(
            sa.select(sa.func.max(schema.invoices.c.issue_date)).where(schema.invoices.c.account_id == account["id"])
        ).scalar()
        last_login = conn.execute(
            sa.select(sa.func.max(schema.connection_logs.c.occurred_at)).where(
                schema.connection_logs.c.account_id == account["id"]
            )
        ).scalar()
        record, created = erasure_registration._register(
            conn, account["id"], channel="client_area", actor="client", now=utcnow()
        )
    assert created
    assert erasure.run_erasure(engine, record.id) == "completed"
    receipt = erasure.load_receipt(record.id)
    retained = {(e["scope"], e["category"]): e for e in receipt["categories"] if e["outcome"] == "retained_until"}

    invoices = retained[("invoices", "identification.siret_siren")]
    assert invoices["retained_until"] == policy.expires_at("invoices", last_invoice).isoformat()
    assert invoices["legal_basis"]["gdpr_article"] == "Art. 6.1.c"
    assert "L123-22" in invoices["legal_reference"]
    assert retained[("invoice_lines", "documents.invoices")]["retained_until"] == invoices["retained_until"]
    assert retained[("invoice_pdfs", "documents.invoices")]["retained_until"] == invoices["retained_until"]
    payments = retained[("payment_records", "payment.transactions")]
    assert payments["retained_until"] == policy.expires_at("payment_data", closed).date().isoformat()
    logs = retained[("connection_logs", "technical.ip_address")]
    assert logs["retained_until"] == policy.expires_at("connection_logs", last_login).date().isoformat()
    assert logs["linked_by_pseudonym"] is True and "LCEN" in logs["legal_reference"]
    assert {e["outcome"] for e in receipt["categories"]} <= {"erased", "pseudonymised", "retained_until"}


# --- Registration, cooling-off, cancellation ---------------------------------------------------------


def test_without_step_up_nothing_happens(engine, manifest):
    account = seeded_account(engine, canary=CANARY, invoices=1, log_lines=2, payments=1, pdfs=False)
    token = client_token(account["id"])
    before = subject_snapshot(engine, account["id"])

    assert call(manifest, "POST", "/", token=token)[0] == 401
    status, body = call(manifest, "POST", "/", token=token, code="000000")
    assert status == 401 and body["error"]["code"] == "invalid_code"
    assert call(manifest, "POST", "/")[0] == 401
    status, body = call(manifest, "POST", "/", token=token, code=totp(account), body='{"force": true}')
    assert status == 400

    assert account_row(engine, account["id"]).status == "active"
    with engine.connect() as conn:
        assert erasure.find_pending_erasure(conn, account["id"]) is None
    assert get_queue(erasure.QUEUE_NAME).pending_count() == 0
    assert subject_snapshot(engine, account["id"]) == before


def test_cooling_off_pending_cancel_and_due_sweep(engine, manifest):
    account = seeded_account(engine, canary=CANARY, invoices=1, log_lines=2, payments=1, pdfs=False)
    other = create_account(engine)
    token = client_token(account["id"])

    status, body = call(manifest, "POST", "/", token=token, code=totp(account))
    assert status == 202 and body["cancellable"] is True
    request_id = body["request_id"]
    erase_after = dt.datetime.fromisoformat(body["erase_after"].replace("Z", "+00:00"))
    assert erase_after - utcnow() > dt.timedelta(days=6, hours=23)
    assert get_queue(erasure.QUEUE_NAME).pending_count() == 0  # the sweep queues it once due

    # A second request while one is pending returns the pending one, without a new step-up.
    status, body = call(manifest, "POST", "/", token=token)
    assert (status, body["request_id"]) == (200, request_id)
    assert call(manifest, "GET", "/", token=token)[1]["request_id"] == request_id
    assert call(manifest, "GET", f"/{request_id}", token=token)[1]["state"] == "waiting"
    # Another account cannot see or cancel it.
    assert call(manifest, "GET", f"/{request_id}", token=client_token(other["id"]))[0] == 404
    assert call(manifest, "DELETE", f"/{request_id}", token=client_token(other["id"]))[0] == 404

    # Not due yet: the sweep and the worker leave it alone.
    with engine.connect() as conn:
        assert erasure.due_erasures(conn, now=erase_after - dt.timedelta(seconds=1)) == []
        assert erasure.due_erasures(conn, now=erase_after) == [request_id]
    assert erasure.run_erasure(engine, request_id) == "not_due"
    assert account_row(engine, account["id"]) is not None

    status, body = call(manifest, "DELETE", f"/{request_id}", token=token)
    assert status == 200 and body["state"] == "cancelled"
    assert account_row(engine, account["id"]).status == "active"
    assert call(manifest, "DELETE", f"/{request_id}", token=token)[0] == 409

    # A new request; once its cooling-off is over it can no longer be cancelled, and the sweep runs it.
    status, body = call(manifest, "POST", "/", token=token, code=totp(account, offset=30))
    assert status == 202
    second = body["request_id"]
    due = dt.datetime.fromisoformat(body["erase_after"].replace("Z", "+00:00"))
    with engine.begin() as conn, pytest.raises(Conflict) as refused:
        erasure.cancel_erasure(conn, second, account_id=account["id"], actor="client", now=due)
    assert refused.value.code == "cooling_off_over"
    assert erasure.enqueue_due_erasures(engine, now=due) == 1
    worker = manifest.functions["erase-account-worker"]
    message = get_queue(erasure.QUEUE_NAME)
    # The worker compares with the real clock: run the due erasure at `due` directly instead.
    assert erasure.run_erasure(engine, second, now=due) == "completed"
    assert message.deliver_pending(lambda event: invoke(worker, event)) == 1
    assert request_record(engine, second).state == "completed"
    assert account_row(engine, account["id"]) is None


def test_cron_sweep_through_the_worker(engine, manifest, immediate):
    account = seeded_account(engine, canary=CANARY, invoices=1, log_lines=2, payments=1, pdfs=False)
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account["id"], channel="client_area", actor="client")
    worker = manifest.functions["erase-account-worker"]
    from shared.local.server import cron_event

    response = invoke(worker, cron_event(worker.schedules[0]))
    assert response["statusCode"] == 200 and json.loads(response["body"])["queued"] == 1
    assert drain_queues(manifest) == 1
    assert request_record(engine, record.id).state == "completed"
    # A second sweep finds nothing to do.
    assert json.loads(invoke(worker, cron_event(worker.schedules[0]))["body"])["queued"] == 0


def test_dpo_registers_an_erasure_received_by_post(engine, manifest):
    from shared.identity.dpo import create_dpo_credential

    account = create_account(engine)
    with engine.begin() as conn:
        dpo_token = create_dpo_credential(conn, "dpo")
    spec = manifest.functions["erase-account"]

    def dpo_call(method, path, token, body=""):
        response = invoke(spec, http_event(method, path, body=body, headers={"Authorization": f"Bearer {token}"}))
        return response["statusCode"], json.loads(response["body"])

    payload = json.dumps({"account_id": account["id"], "channel": "post", "identity_verification": "identity_document"})
    status, body = dpo_call("POST", "/dpo/requests", client_token(account["id"]), payload)
    assert status == 401 and body["error"]["code"] == "wrong_token_type"
    assert (
        dpo_call("POST", "/dpo/requests", dpo_token, json.dumps({"account_id": account["id"], "channel": "fax"}))[0]
        == 400
    )
    # The DPO says how identity was checked: without it, nothing is registered.
    assert (
        dpo_call("POST", "/dpo/requests", dpo_token, json.dumps({"account_id": account["id"], "channel": "post"}))[0]
        == 400
    )
    unknown = json.dumps({"account_id": "nope", "channel": "post", "identity_verification": "identity_document"})
    assert dpo_call("POST", "/dpo/requests", dpo_token, unknown)[0] == 404
    status, body = dpo_call("POST", "/dpo/requests", dpo_token, payload)
    assert status == 202 and body["channel"] == "post" and body["state"] == "waiting"
    assert body["identity"] == {"state": "verified", "method": "identity_document"}
    assert dpo_call("POST", "/dpo/requests", dpo_token, payload)[1]["request_id"] == body["request_id"]
    assert dpo_call("GET", f"/dpo/requests/{body['request_id']}", dpo_token)[1]["state"] == "waiting"
    assert account_row(engine, account["id"]).status == "deactivated"


def test_restriction_blocks_only_the_inactivity_path(engine):
    from shared.rights import consent

    account = create_account(engine)
    consent.restrict(engine, account["id"], reason_code="legal_claims", actor="dpo")
    with engine.begin() as conn, pytest.raises(erasure.ProcessingRestricted):
        erasure.register_erasure(conn, account["id"], channel="retention", actor="system:retention")
    assert account_row(engine, account["id"]).status == "active"
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account["id"], channel="client_area", actor="client")
    assert record.state == "waiting"


def test_restriction_set_during_cooling_off_stops_the_inactivity_erasure(engine):
    from shared.rights import consent

    account = create_account(engine)
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account["id"], channel="retention", actor="system:retention")
    consent.restrict(engine, account["id"], reason_code="legal_claims", actor="dpo")
    assert erasure.run_erasure(engine, record.id, now=erasure.erase_after(record)) == "rejected"
    assert request_record(engine, record.id).state == "rejected"
    assert account_row(engine, account["id"]).status == "active"


# --- Crashes and outages ---------------------------------------------------------------------------


class Crash(BaseException):
    """A process death: not an Exception, so nothing catches it on the way up."""


def test_a_crash_after_every_step_resumes_to_the_same_end_state(
    s3_env, stripe_env, resend_env, stripe_fake, resend_fake, engine, monkeypatch, immediate
):
    customer = stripe_fake.add_customer()
    subscription = stripe_fake.add_subscription(customer)
    account = seeded_account(engine, canary=CANARY, stripe_customer_id=customer, invoices=2, log_lines=3, payments=1)
    resend_fake.add_contact(account["email"])
    put_export(s3_env, account["id"])
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account["id"], channel="client_area", actor="client")

    real_record_steps = erasure_saga._record_steps
    crashed: list[str] = []

    def crash_before_recording(conn, step, results, now):
        if step not in crashed:
            crashed.append(step)
            raise Crash()  # the step's effects happened; the process dies before they are recorded
        return real_record_steps(conn, step, results, now)

    # Each run dies right after the effects of the next step; the following run resumes there.
    monkeypatch.setattr(erasure_saga, "_record_steps", crash_before_recording)
    for step in erasure.STEPS:
        with pytest.raises(Crash):
            erasure.run_erasure(engine, record.id)
        assert crashed[-1] == step
        assert request_record(engine, record.id).state == "in_progress"
    assert erasure.run_erasure(engine, record.id) == "completed"
    assert erasure.run_erasure(engine, record.id) == "completed"  # a late duplicate changes nothing

    assert_fully_erased(engine, s3_env, account, record.id)
    # One effect per external call: one customer deletion (which cancelled the subscription), one mail.
    deletions = {r.headers["Idempotency-Key"] for r in stripe_fake.mutations() if r.path.startswith("/v1/customers/")}
    assert len(deletions) == 1
    assert [r for r in stripe_fake.mutations() if not r.path.startswith("/v1/customers/")] == []
    assert stripe_fake.subscriptions[subscription]["status"] == "canceled"
    assert len(resend_fake.emails) == 1
    assert resend_fake.contact(account["email"]) is None
    with engine.connect() as conn:
        completions = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.audit_log)
            .where(schema.audit_log.c.request_id == record.id, schema.audit_log.c.action == "erasure.completed")
        ).scalar()
    assert completions == 1


@pytest.mark.parametrize("service", ["stripe", "resend"])
def test_processor_down_the_saga_waits_and_nothing_is_lost(
    stripe_env, resend_env, stripe_fake, resend_fake, engine, manifest, immediate, service
):
    customer = stripe_fake.add_customer()
    account = seeded_account(
        engine, canary=CANARY, stripe_customer_id=customer, invoices=1, log_lines=2, payments=1, pdfs=False
    )
    resend_fake.add_contact(account["email"])
    fake = stripe_fake if service == "stripe" else resend_fake
    fake.fail_next(get_queue(erasure.QUEUE_NAME).max_attempts, status=503)  # every delivery attempt fails
    token = client_token(account["id"])
    status, body = call(manifest, "POST", "/", token=token, code=totp(account))
    assert status == 202
    request_id = body["request_id"]

    queue = get_queue(erasure.QUEUE_NAME)
    drain_queues(manifest)  # retried, then dead-lettered
    assert queue.dead_letter_count() == 1
    assert request_record(engine, request_id).state == "in_progress"
    assert account_row(engine, account["id"]) is not None  # nothing erased out of order
    steps = jobs.completed_steps(engine, request_id)
    assert service not in steps and "database" not in steps

    assert erasure.enqueue_due_erasures(engine) == 1  # the sweep picks the unfinished erasure again
    drain_queues(manifest)
    assert request_record(engine, request_id).state == "completed"
    assert stripe_fake.customers[customer].get("deleted") is True
    assert len(resend_fake.emails) == 1


def test_verification_failure_rolls_the_database_step_back(engine, monkeypatch, immediate):
    account = seeded_account(engine, canary=CANARY, invoices=1, log_lines=2, payments=1, pdfs=False)
    with engine.begin() as conn:
        conn.execute(
            schema.connection_logs.update()
            .where(schema.connection_logs.c.account_id == account["id"])
            .values(user_agent=f"Mozilla/5.0 ({account['email']})")
        )
        record = erasure.register_erasure(conn, account["id"], channel="client_area", actor="client")
    monkeypatch.setattr(erasure_scrub, "_column_assignments", lambda *args: [])  # a scrubbing bug
    with pytest.raises(erasure.ErasureVerificationFailed) as failed:
        erasure.run_erasure(engine, record.id)
    assert "connection_logs" in str(failed.value) and account["email"] not in str(failed.value)
    # Nothing of the database step is committed; the request is not done.
    assert account_row(engine, account["id"]) is not None
    assert request_record(engine, record.id).state == "in_progress"
    assert "database" not in jobs.completed_steps(engine, record.id)

    monkeypatch.undo()
    assert erasure.run_erasure(engine, record.id) == "completed"
    assert account_row(engine, account["id"]) is None


# --- Replay after a backup restore ---------------------------------------------------------------------


def backup(engine) -> dict[str, list[dict]]:
    with engine.connect() as conn:
        return {t.name: [dict(r._mapping) for r in conn.execute(sa.select(t))] for t in schema.metadata.sorted_tables}


def restore(engine, snapshot: dict[str, list[dict]]) -> None:
    tables = schema.metadata.sorted_tables
    with engine.begin() as conn:
        for table in reversed(tables):
            conn.execute(table.delete())
        for table in tables:
            if snapshot[table.name]:
                conn.execute(table.insert(), snapshot[table.name])


def test_replay_after_restoring_a_backup_re_erases(s3_env, engine, immediate, capsys):
    from shared.local.cli import main

    account = seeded_account(engine, canary=CANARY, invoices=2, log_lines=3, payments=1)
    other = seeded_account(engine, canary=OTHER_CANARY, invoices=1, log_lines=2, payments=1, pdfs=False)
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account["id"], channel="client_area", actor="client")
    snapshot = backup(engine)  # taken while the erasure was pending
    assert erasure.run_erasure(engine, record.id) == "completed"
    assert_fully_erased(engine, s3_env, account, record.id)

    restore(engine, snapshot)  # the account, its data and an open request are back; the ledger row is not
    assert account_row(engine, account["id"]) is not None
    other_before = subject_snapshot(engine, other["id"])

    assert main(["replay-erasures", "--since", (utcnow() - dt.timedelta(days=1)).date().isoformat()]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"checked": 1, "reapplied": 1, "already_erased": 0}
    # The restore rolled the audit trail back too: the checkpoint written after the first run shows it.
    assert_fully_erased(engine, s3_env, account, record.id, chain_problems=("truncated", "checkpoint_mismatch"))
    assert subject_snapshot(engine, other["id"]) == other_before

    # Idempotent: a second replay finds nothing left to erase.
    assert erasure.replay_erasures(engine, since=utcnow() - dt.timedelta(days=1)).to_json() == {
        "checked": 1,
        "reapplied": 0,
        "already_erased": 1,
    }
    # `--since` after the erasure: nothing to check.
    assert erasure.replay_erasures(engine, since=utcnow() + dt.timedelta(days=1)).checked == 0


def test_bad_since_is_refused():
    with pytest.raises(ValidationFailed):
        erasure.parse_since("last tuesday")
    assert erasure.parse_since("2026-07-01") == dt.datetime(2026, 7, 1, tzinfo=UTC)


def test_a_batch_erases_each_account_and_isolates_a_failure(engine, monkeypatch, immediate):
    accounts = [
        seeded_account(engine, canary=CANARY, invoices=1, log_lines=2, payments=1, pdfs=False),
        seeded_account(engine, canary=CANARY, invoices=2, log_lines=3, payments=1, pdfs=False),
        seeded_account(engine, canary=CANARY, invoices=1, log_lines=2, payments=1, pdfs=False),
    ]
    other = seeded_account(engine, canary=OTHER_CANARY, invoices=1, log_lines=2, payments=1, pdfs=False)
    other_before = subject_snapshot(engine, other["id"])
    faulty = accounts[1]
    with engine.begin() as conn:
        conn.execute(
            schema.connection_logs.update()
            .where(schema.connection_logs.c.account_id == faulty["id"])
            .values(user_agent=f"Mozilla/5.0 ({faulty['phone']})")
        )
        ids = [
            erasure.register_erasure(conn, a["id"], channel="retention", actor="system:retention").id for a in accounts
        ]
    real = erasure_scrub._column_assignments

    def skip_user_agent_for_faulty(conn, tm, where):
        # A scrubbing bug hitting one account of the batch only: its user-agent survives.
        assignments = real(conn, tm, where)
        if tm.name == "connection_logs":
            return [{**a, "_match": ("user_agent", None)} if "user_agent" in a else a for a in assignments] + [
                {"_match": ("account_id", a["id"]), "user_agent": None} for a in accounts if a is not faulty
            ]
        return assignments

    monkeypatch.setattr(erasure_scrub, "_column_assignments", skip_user_agent_for_faulty)
    outcomes = erasure.run_erasures(engine, ids + ["no-such-request"], workers=4)
    assert outcomes["no-such-request"] == "request_not_found"
    assert outcomes[ids[1]] == "failed:ErasureVerificationFailed"
    assert outcomes[ids[0]] == outcomes[ids[2]] == "completed"
    assert account_row(engine, faulty["id"]) is not None
    assert account_row(engine, accounts[0]["id"]) is None and account_row(engine, accounts[2]["id"]) is None
    assert subject_snapshot(engine, other["id"]) == other_before

    monkeypatch.undo()
    assert erasure.run_erasures(engine, ids) == {i: "completed" for i in ids}
    assert account_row(engine, faulty["id"]) is None


def test_sample_events_are_complete_and_answered(engine, manifest):
    from pathlib import Path

    from shared.local.server import PROJECT_ROOT

    account = create_account(engine)
    folder = Path(PROJECT_ROOT, "events")
    paths = sorted(folder.glob("erase-account*/*.json"))
    assert len(paths) >= 4, "the sample events were not found"
    for path in paths:
        event = json.loads(path.read_text())
        assert {"path", "httpMethod", "headers", "queryStringParameters", "body", "isBase64Encoded"} <= set(event)
        assert event["multiValueHeaders"] is None
    client = json.loads((folder / "erase-account/request-without-step-up.json").read_text())
    client["headers"]["Authorization"] = f"Bearer {client_token(account['id'])}"
    assert invoke(manifest.functions["erase-account"], client)["statusCode"] == 401
    worker = manifest.functions["erase-account-worker"]
    sweep = invoke(worker, json.loads((folder / "erase-account-worker/sweep-cron.json").read_text()))
    assert sweep["statusCode"] == 200 and json.loads(sweep["body"]) == {"queued": 0}
    assert (
        invoke(worker, json.loads((folder / "erase-account-worker/unknown-job.json").read_text()))["statusCode"] == 400
    )
    run = json.loads((folder / "erase-account-worker/run.json").read_text())
    answer = invoke(worker, run)  # the sample's request id does not exist: acknowledged, nothing to retry
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["result"] == {"outcomes": {"REQUEST_ID": "request_not_found"}, "requeued": 0}


# --- The worker: many erasures per message ----------------------------------------------------------


def _pending_messages(queue_name: str) -> list[dict]:
    """The messages waiting in a queue (taken, then sent again as they were)."""
    queue, seen = get_queue(queue_name), []
    queue.deliver_pending(lambda event: seen.append(json.loads(event["body"])) or {"statusCode": 200})
    queue.send_many(seen)
    return seen


def test_enqueue_runs_sends_at_most_the_message_maximum_with_stable_keys():
    ids = [f"00000000-0000-0000-0000-{n:012d}" for n in range(2 * erasure.RUN_MESSAGE_MAX + 3)]
    assert erasure.enqueue_runs(ids + ids[:5], reason="sweep:20261126T000000") == 3  # duplicates dropped
    first = _pending_messages(erasure.QUEUE_NAME)
    assert [len(m["payload"]["request_ids"]) for m in first] == [erasure.RUN_MESSAGE_MAX, erasure.RUN_MESSAGE_MAX, 3]
    assert [i for m in first for i in m["payload"]["request_ids"]] == ids
    assert {m["type"] for m in first} == {erasure.RUN_MESSAGE}
    # The same call again (a retried job) makes the same keys: the worker sees them as already processed.
    get_queue(erasure.QUEUE_NAME).deliver_pending(lambda _event: {"statusCode": 200})
    assert erasure.enqueue_runs(ids, reason="sweep:20261126T000000") == 3
    again = _pending_messages(erasure.QUEUE_NAME)
    assert [m["idempotency_key"] for m in again] == [m["idempotency_key"] for m in first]
    assert len({m["idempotency_key"] for m in first}) == 3


@pytest.mark.parametrize(
    "payload",
    [
        {"request_ids": []},
        {"request_id": "REQUEST_ID"},
        {"request_ids": ["x" * 37]},
        {"request_ids": ["id"] * (erasure.RUN_MESSAGE_MAX + 1)},
    ],
)
def test_worker_refuses_a_malformed_run_message(engine, manifest, payload):
    account = create_account(engine)
    with engine.begin() as conn:
        record = erasure.register_erasure(
            conn, account["id"], channel="client_area", actor="client", now=utcnow() - dt.timedelta(days=30)
        )
    event = http_event(
        "POST", "/", body=json.dumps({"type": erasure.RUN_MESSAGE, "idempotency_key": "k1", "payload": payload})
    )
    answer = invoke(manifest.functions["erase-account-worker"], event)
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["error"]["code"] == "invalid_request"
    assert request_record(engine, record.id).state == "waiting"


def test_worker_runs_a_message_in_batches_and_requeues_what_its_budget_leaves(engine, manifest, monkeypatch, immediate):
    import time as real_time
    from types import SimpleNamespace

    from shared.platform.config import get_settings, reset_settings
    from shared.ports.backends import reset_backends

    monkeypatch.setenv("ERASURE_BATCH_SIZE", "2")
    reset_settings()
    reset_backends()
    accounts = [
        seeded_account(engine, canary=CANARY, invoices=1, log_lines=2, payments=1, pdfs=False) for _ in range(5)
    ]
    other = seeded_account(engine, canary=OTHER_CANARY, invoices=1, log_lines=2, payments=1, pdfs=False)
    other_before = subject_snapshot(engine, other["id"])
    with engine.begin() as conn:
        ids = [erasure.register_erasure(conn, a["id"], channel="client_area", actor="client").id for a in accounts]
    erasure.enqueue_runs(ids, reason="test")

    # Past the first batch, every clock reading finds the time budget spent.
    monkeypatch.setattr(erasure_saga, "time", SimpleNamespace(monotonic=lambda: real_time.monotonic() + 10_000))
    worker = manifest.functions["erase-account-worker"]
    answers = []
    get_queue(erasure.QUEUE_NAME).deliver_pending(
        lambda event: answers.append(invoke(worker, event)) or answers[-1], max_messages=1
    )
    result = json.loads(answers[0]["body"])["result"]
    assert answers[0]["statusCode"] == 200
    assert result == {"outcomes": {ids[0]: "completed", ids[1]: "completed"}, "requeued": 3}
    assert [request_record(engine, i).state for i in ids] == ["completed"] * 2 + ["waiting"] * 3
    [rest] = _pending_messages(erasure.QUEUE_NAME)
    assert rest["payload"]["request_ids"] == ids[2:]

    monkeypatch.setattr(erasure_saga, "time", real_time)
    drain_queues(manifest)
    assert [request_record(engine, i).state for i in ids] == ["completed"] * 5
    for account, request_id in zip(accounts, ids, strict=True):
        assert_fully_erased(engine, get_settings(), account, request_id)
    assert subject_snapshot(engine, other["id"]) == other_before


def test_worker_answers_503_while_a_processor_is_down_and_finishes_on_redelivery(
    stripe_env, resend_env, stripe_fake, resend_fake, engine, manifest, immediate
):
    customers = [stripe_fake.add_customer() for _ in range(3)]
    accounts = [
        seeded_account(engine, canary=CANARY, stripe_customer_id=c, invoices=1, log_lines=2, payments=1, pdfs=False)
        for c in customers
    ]
    with engine.begin() as conn:
        ids = [erasure.register_erasure(conn, a["id"], channel="client_area", actor="client").id for a in accounts]
    erasure.enqueue_runs(ids, reason="test")
    stripe_fake.fail_next(1, status=503)  # one erasure's Stripe call fails; the others go through
    worker = manifest.functions["erase-account-worker"]
    answers, states = [], []

    def deliver(event: dict) -> dict:
        answers.append(invoke(worker, event))
        states.append(sorted(request_record(engine, i).state for i in ids))
        return answers[-1]

    get_queue(erasure.QUEUE_NAME).deliver_pending(deliver)  # the queue delivers the message again after a 503
    assert answers[0]["statusCode"] == 503
    assert json.loads(answers[0]["body"])["error"]["code"] == "external_service_unavailable"
    assert states[0] == ["completed", "completed", "in_progress"]
    assert [a["statusCode"] for a in answers[1:]] == [200] and states[1] == ["completed"] * 3
    # One deletion per customer, however often the message came.
    deletions = [r.path for r in stripe_fake.mutations() if r.method == "DELETE" and r.headers.get("Idempotency-Key")]
    assert sorted(set(deletions)) == sorted(f"/v1/customers/{c}" for c in customers)
    assert all(stripe_fake.customers[c].get("deleted") for c in customers)
