"""rectify-account end to end, through the function handlers, on SQLite and PostgreSQL.

Corrections are validated field by field and refused whole when one is bad; an email change
waits for the new address's code; the Stripe customer and the Resend contact are told once,
even after a crash and a retry; issued invoices stay byte-identical; a rectification never
reaches another account; no old or new value reaches the logs, the audit or the bookkeeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa

from shared.identity.client import issue_dev_token
from shared.local.demo import create_account, populate_account, vat_number
from shared.local.server import consumer_for, drain_queues, http_event, invoke, load_manifest
from shared.platform.config import get_settings
from shared.platform.errors import AppError, Conflict, ExternalServiceError, NotFound, ValidationFailed
from shared.ports import tables as schema
from shared.ports.backends import get_queue, get_storage
from shared.ports.db import utcnow
from shared.records import registry
from shared.records import saga as jobs
from shared.records.audit import verify_chain
from shared.rights import rectification

pytestmark = pytest.mark.usefixtures("env")

PROJECT = Path(__file__).resolve().parents[2]
EVENTS = PROJECT / "events" / "rectify-account"
OLD = "canaryOldRect3"
NEW_FIRST, NEW_LAST = "Zoélie", "Canardière"
NEW_PHONE = "07 98 76 54 32"
NEW_EMAIL = "canary.rectified@example.test"
NEW_COMPANY = "Canari Conseil"
NEW_ADDRESS = {"line1": "9 rue du Canari", "postal_code": "69002", "city": "Lyon", "country": "FR"}
NEW_VALUES = (NEW_FIRST, NEW_LAST, "98 76 54 32", NEW_EMAIL, NEW_COMPANY, "rue du Canari")


# --- Helpers ---------------------------------------------------------------------------------


@pytest.fixture
def manifest():
    return load_manifest()


def call(
    manifest,
    method: str,
    path: str,
    *,
    account: dict | None = None,
    code: str | None = None,
    body: str = "",
    function: str = "rectify-account",
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if account is not None:
        headers["Authorization"] = f"Bearer {issue_dev_token(account['id'])}"
    if code:
        headers["X-Verification-Code"] = code
    response = invoke(manifest.functions[function], http_event(method, path, body=body, headers=headers))
    return response["statusCode"], json.loads(response["body"] or "{}")


def totp(account: dict, *, offset: int = 0) -> str:
    return pyotp.TOTP(account["totp_secret"]).at(utcnow() + dt.timedelta(seconds=offset))


class Codes:
    """Successive TOTP codes of one account: each time step can be used once, three steps are valid at a time."""

    def __init__(self, account: dict) -> None:
        self.account, self.offset = account, -60

    def __call__(self) -> str:
        self.offset += 30
        return totp(self.account, offset=self.offset)


def patch(manifest, account: dict, codes: Codes, fields: dict) -> tuple[int, dict]:
    return call(manifest, "PATCH", "/", account=account, code=codes(), body=json.dumps(fields))


def seeded(engine, *, canary: str = OLD, stripe_customer_id: str | None = None, invoices: int = 2) -> dict:
    account = create_account(engine, with_2fa=True, canary=canary, stripe_customer_id=stripe_customer_id)
    populate_account(
        engine,
        get_storage(),
        account["id"],
        canary=canary,
        invoices=invoices,
        lines_per_invoice=2,
        log_lines=2,
        payments=1,
        clients=1,
        prospects=0,
    )
    return account


def row(engine, table, **where):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).filter_by(**where)).mappings().one()


def company_of(engine, account_id: str):
    with engine.connect() as conn:
        return (
            conn.execute(
                sa.select(schema.companies)
                .where(schema.companies.c.account_id == account_id)
                .order_by(schema.companies.c.created_at)
            )
            .mappings()
            .first()
        )


def drain(manifest) -> int:
    return drain_queues(manifest)


def snapshot_invoices(engine, account_id: str) -> tuple[list, list, dict[str, str]]:
    with engine.connect() as conn:
        invoices = [
            dict(r)
            for r in conn.execute(
                sa.select(schema.invoices)
                .where(schema.invoices.c.account_id == account_id)
                .order_by(schema.invoices.c.id)
            ).mappings()
        ]
        lines = [
            dict(r)
            for r in conn.execute(
                sa.select(schema.invoice_lines)
                .where(schema.invoice_lines.c.invoice_id.in_([i["id"] for i in invoices]))
                .order_by(schema.invoice_lines.c.id)
            ).mappings()
        ]
    storage, bucket = get_storage(), get_settings().documents_bucket
    pdfs = {
        invoice["id"]: hashlib.sha256(storage.get_bytes(bucket, invoice["pdf_object_key"])).hexdigest()
        for invoice in invoices
        if invoice["pdf_object_key"]
    }
    return invoices, lines, pdfs


def everything_stored(engine) -> str:
    """Every bookkeeping table of the suite as text (the audit, the registry, saga steps, processed messages)."""
    out = []
    with engine.connect() as conn:
        for table in (schema.audit_log, schema.dsr_requests, schema.saga_steps, schema.processed_messages):
            out.extend(json.dumps(dict(r), default=str) for r in conn.execute(sa.select(table)).mappings())
    return "\n".join(out)


# --- Validation: bad input is refused whole, nothing changes -----------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"siren": "940163496"}, "invalid_request"),  # unknown field (SIREN comes from KYB)
        ({"first_name": "Ann", "favourite_colour": "blue"}, "invalid_request"),
        ({"phone": 612345678}, "invalid_request"),  # a number is not a string
        ({"first_name": True}, "invalid_request"),
        ({"first_name": None}, "invalid_request"),  # null is not a value
        ({}, "invalid_request"),
        ({"phone": "+44 7911 123456"}, "invalid_request"),  # not French
        ({"phone": "06 12 34 56"}, "invalid_request"),
        ({"vat_number": "FR00940163496"}, "invalid_request"),  # key does not match the SIREN
        ({"vat_number": "DE123456789"}, "invalid_request"),
        ({"business_address": {"line1": "1 rue", "postal_code": "7500", "city": "Paris"}}, "invalid_request"),
        ({"business_address": {"line1": "1 rue", "postal_code": "00100", "city": "Paris"}}, "invalid_request"),
        (
            {"business_address": {"line1": "1 rue", "postal_code": "75001", "city": "Paris", "country": "BE"}},
            "invalid_request",
        ),
        (
            {"business_address": {"line1": "1 rue", "postal_code": "75001", "city": "Paris", "floor": 3}},
            "invalid_request",
        ),
        ({"first_name": "R2D2"}, "invalid_request"),
        ({"first_name": "x" * 101}, "invalid_request"),
        ({"company_name": "   "}, "invalid_request"),
        ({"email": "not-an-address"}, "invalid_request"),
        ({"first_name": "Ann", "company_id": "not-a-uuid"}, "invalid_request"),
    ],
)
def test_bad_input_is_refused_before_any_code_and_nothing_changes(engine, manifest, fields, code):
    account = seeded(engine)
    before = row(engine, schema.accounts, id=account["id"])
    company_before = company_of(engine, account["id"])
    with engine.connect() as conn:
        audit_before = conn.execute(sa.select(sa.func.count()).select_from(schema.audit_log)).scalar_one()
    # No step-up code is even asked for (nor mailed) when the body is bad.
    status, answer = call(manifest, "PATCH", "/", account=account, body=json.dumps(fields))
    assert status == 400, answer
    assert answer["error"]["code"] == code
    assert row(engine, schema.accounts, id=account["id"]) == before
    assert company_of(engine, account["id"]) == company_before
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.audit_log)).scalar_one() == audit_before
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.dsr_requests)).scalar_one() == 0


def test_a_vat_number_of_another_siren_is_refused(engine, manifest):
    account = seeded(engine)
    codes = Codes(account)
    other = vat_number("732829320")
    status, answer = patch(manifest, account, codes, {"vat_number": other})
    assert status == 400 and answer["error"]["code"] == "vat_siren_mismatch"
    # The company's own SIREN with its right key passes.
    siren = company_of(engine, account["id"])["siren"]
    status, answer = patch(manifest, account, codes, {"vat_number": vat_number(siren).lower()})
    assert status in (200, 202), answer


def test_the_step_up_is_required(engine, manifest):
    account = seeded(engine)
    status, answer = call(manifest, "PATCH", "/", account=account, body=json.dumps({"first_name": NEW_FIRST}))
    assert status == 401 and answer["error"]["code"] == "verification_required"
    assert row(engine, schema.accounts, id=account["id"])["first_name"] != NEW_FIRST
    status, answer = call(manifest, "GET", "/")
    assert status == 401


# --- GET: what is held and by whom -------------------------------------------------------------


def test_get_answers_the_identification_data_and_who_else_holds_it(engine, manifest, stripe_env, stripe_fake):
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    status, answer = call(manifest, "GET", "/", account=account)
    assert status == 200
    fields = answer["fields"]
    assert fields["first_name"]["value"] == account["first_name"]
    assert {h["id"] for h in fields["first_name"]["also_held_by"]} == {"stripe", "resend"}
    assert {h["id"] for h in fields["email"]["also_held_by"]} == {"stripe", "resend"}
    assert {h["id"] for h in fields["phone"]["also_held_by"]} == {"stripe"}
    (company,) = answer["companies"]
    assert company["fields"]["vat_number"]["also_held_by"] == []
    assert {h["id"] for h in company["fields"]["business_address"]["also_held_by"]} == {"stripe"}
    assert company["fields"]["siren"]["rectifiable"] is False
    assert answer["issued_invoices"]["fr"] and answer["issued_invoices"]["en"]


# --- PATCH, propagation, Art. 19 ----------------------------------------------------------------


def test_a_rectification_is_applied_propagated_once_and_recorded(
    engine, manifest, stripe_env, stripe_fake, resend_env, resend_fake
):
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    resend_fake.add_contact(account["email"])
    codes = Codes(account)
    status, answer = patch(
        manifest,
        account,
        codes,
        {
            "first_name": NEW_FIRST,
            "last_name": NEW_LAST,
            "phone": NEW_PHONE,
            "company_name": NEW_COMPANY,
            "business_address": NEW_ADDRESS,
        },
    )
    assert status == 202, answer
    request = answer["request"]
    assert request["kind"] == "rectification" and request["state"] == "in_progress"
    assert set(answer["changed"]) == {"first_name", "last_name", "phone", "company_name", "business_address"}
    assert {r["recipient"]: r["state"] for r in request["recipients"]} == {"stripe": "pending", "resend": "pending"}

    stored = row(engine, schema.accounts, id=account["id"])
    assert (stored["first_name"], stored["last_name"], stored["phone"]) == (NEW_FIRST, NEW_LAST, "+33 7 98 76 54 32")
    company = company_of(engine, account["id"])
    assert company["name"] == NEW_COMPANY and company["postal_code"] == "69002" and company["address_line2"] is None

    assert drain(manifest) >= 1
    status, view = call(manifest, "GET", f"/requests/{request['request_id']}", account=account)
    assert status == 200 and view["state"] == "completed"
    assert view["recipients_told"] == ["resend", "stripe"]

    held = stripe_fake.customers[customer]
    assert held["name"] == f"{NEW_FIRST} {NEW_LAST}" and held["phone"] == "+33 7 98 76 54 32"
    assert held["address"] == {**NEW_ADDRESS, "line2": ""}
    contact = resend_fake.contact(account["email"])
    assert (contact["first_name"], contact["last_name"]) == (NEW_FIRST, NEW_LAST)
    updates = [r for r in stripe_fake.mutations() if r.path == f"/v1/customers/{customer}"]
    assert len(updates) == 1 and updates[0].headers.get("Idempotency-Key")

    with engine.connect() as conn:
        assert verify_chain(conn).ok
        actions = [r.action for r in conn.execute(sa.select(schema.audit_log).order_by(schema.audit_log.c.seq))]
        assert "rectification.applied" in actions and "rectification.propagated" in actions
        propagated = conn.execute(
            sa.select(schema.audit_log.c.details).where(schema.audit_log.c.action == "rectification.propagated")
        ).scalar_one()
    assert propagated["recipients_told"] == ["resend", "stripe"]
    # Neither the old nor the new values are in the audit, the registry, the saga or processed messages.
    stored_text = everything_stored(engine)
    for value in (*NEW_VALUES, OLD, account["email"]):
        assert value not in stored_text

    # A redelivery of the same message tells nobody again.
    get_queue(rectification.QUEUE).send(rectification.applying._message(request["request_id"]))
    drain(manifest)
    assert len([r for r in stripe_fake.mutations() if r.path == f"/v1/customers/{customer}"]) == 1


def test_a_crash_between_steps_and_a_retry_tell_each_recipient_once(
    engine, manifest, stripe_env, stripe_fake, resend_env, resend_fake, monkeypatch
):
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    resend_fake.add_contact(account["email"])
    codes = Codes(account)
    status, answer = patch(manifest, account, codes, {"first_name": NEW_FIRST, "phone": NEW_PHONE})
    assert status == 202
    request_id = answer["request"]["request_id"]

    # Stripe answers, then the process dies before the step is recorded: the step stays unfinished.
    real = jobs._json_result
    calls = {"n": 0}

    def crash_once(value):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed")
        return real(value)

    monkeypatch.setattr(jobs, "_json_result", crash_once)
    with pytest.raises(RuntimeError):
        rectification.run_rectification(engine, request_id)
    monkeypatch.setattr(jobs, "_json_result", real)
    # Then Resend is down for the next delivery.
    resend_fake.fail_next(1, status=503)
    with pytest.raises(ExternalServiceError):
        rectification.run_rectification(engine, request_id)
    with engine.connect() as conn:
        assert registry.get_request(conn, request_id).state == "in_progress"
    # The retry finishes the work.
    result = rectification.run_rectification(engine, request_id)
    assert result["recipients_told"] == ["resend", "stripe"]
    again = rectification.run_rectification(engine, request_id)
    assert again["outcome"] == "already_completed"

    updates = [r for r in stripe_fake.mutations() if r.path == f"/v1/customers/{customer}"]
    # Stripe got the same request twice (the crash), under one idempotency key: one effect, replayed.
    assert len(updates) == 2 and len({r.headers["Idempotency-Key"] for r in updates}) == 1
    assert stripe_fake.customers[customer]["name"].startswith(NEW_FIRST)
    patches = [r for r in resend_fake.requests if r.method == "PATCH"]
    assert len(patches) == 2  # the failed one and the one that went through
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.audit_log)
                .where(schema.audit_log.c.action == "rectification.propagated")
            ).scalar_one()
            == 1
        )


def test_the_sweep_requeues_a_rectification_whose_message_was_lost(engine, manifest, stripe_env, stripe_fake):
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    codes = Codes(account)
    status, answer = patch(manifest, account, codes, {"phone": NEW_PHONE})
    assert status == 202
    queue = get_queue(rectification.QUEUE)
    queue.deliver_pending(lambda message: None)  # the message is lost
    later = utcnow() + dt.timedelta(minutes=20)
    assert rectification.dispatch_stale(engine, now=later) == 1
    drain(manifest)
    with engine.connect() as conn:
        assert registry.get_request(conn, answer["request"]["request_id"]).state == "completed"
    assert stripe_fake.customers[customer]["phone"] == "+33 7 98 76 54 32"


def test_one_rectification_at_a_time_and_unchanged_values_change_nothing(engine, manifest):
    account = seeded(engine)
    codes = Codes(account)
    status, _ = patch(manifest, account, codes, {"last_name": NEW_LAST})
    assert status == 202
    status, answer = patch(manifest, account, codes, {"first_name": NEW_FIRST})
    assert status == 409 and answer["error"]["code"] == "rectification_in_progress"
    assert row(engine, schema.accounts, id=account["id"])["first_name"] != NEW_FIRST
    drain(manifest)
    status, answer = patch(manifest, account, codes, {"last_name": NEW_LAST})
    assert status == 200 and answer == {"changed": [], "request": None, "email_change": None}


# --- Email: only once the new address confirms its code -----------------------------------------


def _mailed_code(env, to: str) -> str:
    for sidecar in sorted((env.data_dir / "outbox").glob("*.json")):
        meta = json.loads(sidecar.read_text())
        if meta["to"] == to:
            eml = sidecar.with_suffix(".eml").read_text()
            return re.search(r"\b(\d{6})\b", eml).group(1)
    raise AssertionError("no code was mailed to the new address")


def test_an_email_change_needs_the_code_mailed_to_the_new_address(env, engine, manifest):
    account = seeded(engine)
    codes = Codes(account)
    status, answer = patch(manifest, account, codes, {"email": NEW_EMAIL})
    assert status == 202 and answer["request"] is None
    assert answer["email_change"]["state"] == "awaiting_confirmation"
    # Nothing changed yet; the code went to the new address, not to the current one.
    assert row(engine, schema.accounts, id=account["id"])["email"] == account["email"]
    code = _mailed_code(env, NEW_EMAIL)

    wrong = "000000" if code != "000000" else "111111"
    status, answer = call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": wrong}))
    assert status == 401 and answer["error"]["code"] == "invalid_code"
    status, answer = call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": 123456}))
    assert status == 400
    # A step-up code of the account is no confirmation of the new address.
    step = codes()
    status, answer = call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": step}))
    assert status == 401 or step == code
    assert row(engine, schema.accounts, id=account["id"])["email"] == account["email"]

    status, answer = call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": code}))
    assert status == 202, answer
    assert answer["request"]["fields"] == ["email"]
    assert row(engine, schema.accounts, id=account["id"])["email"] == NEW_EMAIL
    status, answer = call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": code}))
    assert status == 404 and answer["error"]["code"] == "no_pending_email_change"
    drain(manifest)
    # The previous address is told once, without the new one.
    told = [json.loads(p.read_text()) for p in (env.data_dir / "outbox").glob("*.json")]
    told = [m for m in told if m["to"] == account["email"]]
    assert len(told) == 1 and "modifiée" in told[0]["subject"]
    assert NEW_EMAIL not in Path(env.data_dir / "outbox" / f"{told[0]['id']}.eml").read_text()
    with engine.connect() as conn:
        # The previous address is gone from the bookkeeping once the processors were told.
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.email_changes)).scalar_one() == 0


def test_an_exhausted_code_changes_nothing(env, engine, manifest):
    account = seeded(engine)
    codes = Codes(account)
    patch(manifest, account, codes, {"email": NEW_EMAIL})
    code = _mailed_code(env, NEW_EMAIL)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(env.verification_max_attempts):
        call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": wrong}))
    status, answer = call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": code}))
    assert status == 429 and answer["error"]["code"] == "too_many_attempts"
    with pytest.raises(AppError) as exhausted:
        rectification.confirm_email_change(engine, account["id"], code, now=utcnow() + dt.timedelta(hours=1))
    assert exhausted.value.code == "too_many_attempts"
    assert row(engine, schema.accounts, id=account["id"])["email"] == account["email"]


def test_an_expired_code_changes_nothing(env, engine, manifest):
    account = seeded(engine)
    patch(manifest, account, Codes(account), {"email": NEW_EMAIL})
    code = _mailed_code(env, NEW_EMAIL)
    later = utcnow() + dt.timedelta(seconds=env.verification_code_ttl_seconds + 1)
    with pytest.raises(AppError) as expired:
        rectification.confirm_email_change(engine, account["id"], code, now=later)
    assert expired.value.code == "code_expired"
    # The hourly sweep forgets the unconfirmed address once its code has expired.
    status, answer = call(
        manifest, "POST", "/", body=json.dumps({"job": "rectification-sweep"}), function="rectify-account-worker"
    )
    assert status == 200 and answer == {"queued": 0, "expired_email_changes": 0}
    assert rectification.sweep(engine, now=later) == {"queued": 0, "expired_email_changes": 1}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.email_changes)).scalar_one() == 0
    assert row(engine, schema.accounts, id=account["id"])["email"] == account["email"]


def test_an_email_change_moves_the_resend_contact_and_the_stripe_email(
    env, engine, manifest, stripe_env, stripe_fake, resend_env, resend_fake
):
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    resend_fake.add_contact(account["email"], unsubscribed=True, segments=("seg_newsletter", "seg_product"))
    codes = Codes(account)
    status, answer = patch(manifest, account, codes, {"email": NEW_EMAIL})
    assert status == 202
    mailed = [m for m in resend_fake.emails if m["to"] == [NEW_EMAIL]]
    assert len(mailed) == 1
    code = re.search(r"\b(\d{6})\b", mailed[0]["text"]).group(1)
    status, answer = call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": code}))
    assert status == 202, answer
    drain(manifest)
    assert resend_fake.contact(account["email"]) is None
    moved = resend_fake.contact(NEW_EMAIL)
    assert moved is not None and moved["unsubscribed"] is True  # the choice not to receive marketing is kept
    assert moved["segments"] == ["seg_newsletter", "seg_product"]
    assert stripe_fake.customers[customer]["email"] == NEW_EMAIL
    with engine.connect() as conn:
        record = registry.get_request(conn, answer["request"]["request_id"])
    assert record.state == "completed" and record.details["recipients_told"] == ["resend", "stripe"]


def test_an_address_already_in_use_is_refused(engine, manifest):
    account = seeded(engine)
    other = create_account(engine, email=NEW_EMAIL)
    status, answer = patch(manifest, account, Codes(account), {"email": NEW_EMAIL.upper()})
    assert status == 409 and answer["error"]["code"] == "email_unavailable"
    assert row(engine, schema.accounts, id=other["id"])["email"] == NEW_EMAIL


# --- Invoices and other accounts are never touched ----------------------------------------------


def test_issued_invoices_their_lines_and_pdfs_are_byte_identical_after_a_rectification(engine, manifest):
    account = seeded(engine, invoices=3)
    before = snapshot_invoices(engine, account["id"])
    assert before[0] and before[1] and len(before[2]) == 3
    storage, bucket = get_storage(), get_settings().documents_bucket
    keys = [i["pdf_object_key"] for i in before[0]]
    pdf_bytes = {key: storage.get_bytes(bucket, key) for key in keys}
    assert all(pdf_bytes.values())
    siren = company_of(engine, account["id"])["siren"]
    status, _ = patch(
        manifest,
        account,
        Codes(account),
        {
            "company_name": NEW_COMPANY,
            "business_address": NEW_ADDRESS,
            "vat_number": vat_number(siren),
            "first_name": NEW_FIRST,
        },
    )
    assert status == 202
    drain(manifest)
    assert snapshot_invoices(engine, account["id"]) == before
    assert {key: storage.get_bytes(bucket, key) for key in keys} == pdf_bytes


def test_a_rectification_never_reaches_another_account(engine, manifest):
    account = seeded(engine)
    other = seeded(engine, canary="canaryOtherRect8")
    other_before = row(engine, schema.accounts, id=other["id"])
    other_company = company_of(engine, other["id"])
    codes = Codes(account)
    # Naming another account's company is answered as an unknown company.
    status, answer = patch(manifest, account, codes, {"company_name": NEW_COMPANY, "company_id": other_company["id"]})
    assert status == 404 and answer["error"]["code"] == "company_not_found"
    status, answer = patch(manifest, account, codes, {"first_name": NEW_FIRST})
    assert status == 202
    request_id = answer["request"]["request_id"]
    drain(manifest)
    assert row(engine, schema.accounts, id=other["id"]) == other_before
    assert company_of(engine, other["id"]) == other_company
    # Another account cannot read the request.
    status, answer = call(manifest, "GET", f"/requests/{request_id}", account=other)
    assert status == 404
    # The DPO path checks the request's account too.
    with pytest.raises(NotFound):
        rectification.apply_rectification(
            engine, account_id=other["id"], fields={"first_name": "Autre"}, actor="dpo:test", request_id=request_id
        )
    assert row(engine, schema.accounts, id=other["id"]) == other_before


# --- The DPO path (the desk wires it) -----------------------------------------------------------


def test_apply_rectification_for_the_dpo_desk(engine, manifest):
    account = seeded(engine)
    with engine.begin() as conn:
        request = registry.create_request(
            conn, account_id=account["id"], kind="rectification", channel="post", actor="dpo:test"
        )
    # Nothing is corrected before the desk has verified who wrote.
    with pytest.raises(Conflict) as unverified:
        rectification.apply_rectification(
            engine, account_id=account["id"], fields={"phone": NEW_PHONE}, actor="dpo:test", request_id=request.id
        )
    assert unverified.value.code == "identity_not_verified"
    assert row(engine, schema.accounts, id=account["id"])["phone"] != "+33 7 98 76 54 32"
    with engine.begin() as conn:
        registry.transition(
            conn, request.id, registry.VERIFIED, actor="dpo:test", details={"verified_by": "identity_document"}
        )
    with pytest.raises(ValidationFailed) as refused:
        rectification.apply_rectification(
            engine, account_id=account["id"], fields={"email": NEW_EMAIL}, actor="dpo:test", request_id=request.id
        )
    assert refused.value.code == "email_needs_confirmation"
    with pytest.raises(ValidationFailed):
        rectification.apply_rectification(
            engine, account_id=account["id"], fields={"phone": "12"}, actor="dpo:test", request_id=request.id
        )
    view = rectification.apply_rectification(
        engine, account_id=account["id"], fields={"phone": NEW_PHONE}, actor="dpo:test", request_id=request.id
    )
    assert view["state"] == "in_progress" and view["channel"] == "post" and view["fields"] == ["phone"]
    assert row(engine, schema.accounts, id=account["id"])["phone"] == "+33 7 98 76 54 32"
    drain(manifest)
    with engine.connect() as conn:
        assert registry.get_request(conn, request.id).state == "completed"
    with pytest.raises(Conflict):
        rectification.apply_rectification(
            engine, account_id=account["id"], fields={"phone": "0612345678"}, actor="dpo:test", request_id=request.id
        )


# --- No value reaches a log line ----------------------------------------------------------------


def test_no_old_or_new_value_reaches_a_log_line(
    env, engine, manifest, capfd, caplog, stripe_env, stripe_fake, resend_env, resend_fake
):
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    resend_fake.add_contact(account["email"])
    codes = Codes(account)
    caplog.set_level("INFO")  # the production LOG_LEVEL (the SDKs log request bodies at DEBUG)
    call(manifest, "GET", "/", account=account)
    patch(
        manifest,
        account,
        codes,
        {
            "first_name": NEW_FIRST,
            "last_name": NEW_LAST,
            "phone": NEW_PHONE,
            "company_name": NEW_COMPANY,
            "business_address": NEW_ADDRESS,
        },
    )
    patch(manifest, account, codes, {"first_name": "Bad1"})  # a refusal names the field, not the value
    drain(manifest)
    patch(manifest, account, codes, {"email": NEW_EMAIL})
    mailed = [m for m in resend_fake.emails if m["to"] == [NEW_EMAIL]]
    code = re.search(r"\b(\d{6})\b", mailed[0]["text"]).group(1)
    call(manifest, "POST", "/email/confirm", account=account, body=json.dumps({"code": code}))
    drain(manifest)
    output = capfd.readouterr()
    emitted = output.out + output.err + caplog.text
    assert "rectify-account-worker" in emitted and "request handled" in emitted  # the functions did log
    for value in (*NEW_VALUES, OLD, account["email"], "Bad1", code):
        assert value not in emitted, value
    stored_text = everything_stored(engine)
    for value in (*NEW_VALUES, OLD, account["email"]):
        assert value not in stored_text, value


# --- The worker's contract, erasure, SQS ----------------------------------------------------------


def test_a_malformed_message_is_refused_and_not_retried(manifest):
    event = json.loads((PROJECT / "events" / "rectify-account-worker" / "malformed.json").read_text())
    response = invoke(manifest.functions["rectify-account-worker"], event)
    assert response["statusCode"] == 400
    unknown = http_event("POST", "/", body=json.dumps({"job": "export-sweep"}))
    assert invoke(manifest.functions["rectify-account-worker"], unknown)["statusCode"] == 400


def test_erasure_deletes_a_pending_change_of_address(engine, manifest):
    from shared.rights.erasure import scrub

    account = seeded(engine)
    status, _ = patch(manifest, account, Codes(account), {"email": NEW_EMAIL})
    assert status == 202
    with engine.begin() as conn:
        scrub.erase_accounts_data(conn, [account["id"]])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.email_changes)).scalar_one() == 0
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(schema.accounts).where(schema.accounts.c.id == account["id"])
            ).scalar_one()
            == 0
        )


def test_the_propagation_travels_through_sqs(engine, manifest, sqs_env, stripe_env, stripe_fake):
    from shared.ports.backends import ensure_queue

    ensure_queue(rectification.QUEUE)
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    status, answer = patch(manifest, account, Codes(account), {"last_name": NEW_LAST})
    assert status == 202
    # Only this queue exists on the moto server: deliver it alone, as its trigger would.
    assert get_queue(rectification.QUEUE).deliver_pending(consumer_for(rectification.QUEUE, manifest)) == 1
    with engine.connect() as conn:
        assert registry.get_request(conn, answer["request"]["request_id"]).state == "completed"
    assert stripe_fake.customers[customer]["name"].endswith(NEW_LAST)


def test_concurrent_rectifications_make_one_request(engine):
    import threading

    account = seeded(engine)
    bodies = [rectification.Rectification(first_name=f"Prénom{'ABCDEFGH'[n]}") for n in range(4)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(bodies))

    def run(body):
        barrier.wait()
        try:
            status, _ = rectification.start_client_rectification(engine, account["id"], body, verified_by="totp")
            outcomes.append(str(status))
        except Conflict as exc:
            outcomes.append(exc.code)
        except Exception as exc:  # noqa: BLE001 - reported below
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=run, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["202"] + ["rectification_in_progress"] * 3, outcomes
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.dsr_requests)).scalar_one() == 1
        assert verify_chain(conn).ok


def test_names_and_a_new_address_in_one_call(env, engine, manifest, stripe_env, stripe_fake):
    customer = stripe_fake.add_customer()
    account = seeded(engine, stripe_customer_id=customer)
    with stripe_fake._lock:
        stripe_fake.customers[customer]["deleted"] = True  # gone at Stripe meanwhile
    status, answer = patch(manifest, account, Codes(account), {"first_name": NEW_FIRST, "email": NEW_EMAIL})
    assert status == 202
    assert answer["changed"] == ["first_name"] and answer["email_change"]["state"] == "awaiting_confirmation"
    drain(manifest)
    view = call(manifest, "GET", f"/requests/{answer['request']['request_id']}", account=account)[1]
    # Stripe no longer holds the customer, Resend no contact: nobody needed telling, and the answer says so.
    assert {r["recipient"]: r["state"] for r in view["recipients"]} == {"stripe": "no_customer", "resend": "no_contact"}
    assert view["recipients_told"] == []
    status, held = call(manifest, "GET", "/", account=account)
    assert held["fields"]["first_name"]["value"] == NEW_FIRST
    assert held["fields"]["email"]["value"] == account["email"]
    assert held["pending_email_change"]["new_email"] == NEW_EMAIL


def test_a_contact_move_cut_short_is_finished_by_the_retry(resend_env, resend_fake):
    from shared.ports.backends import get_mailer

    resend_fake.add_contact("old.canary@example.test", unsubscribed=False, segments=("seg_a", "seg_b"))
    resend_fake.add_contact(NEW_EMAIL)  # created by the attempt that crashed before the segments and the removal
    mailer = get_mailer()
    (moved,) = mailer.move_contact("old.canary@example.test", NEW_EMAIL, first_name=NEW_FIRST, last_name=None)
    contact = resend_fake.contact(NEW_EMAIL)
    assert contact["id"] == moved and sorted(contact["segments"]) == ["seg_a", "seg_b"]
    assert contact["first_name"] == NEW_FIRST and resend_fake.contact("old.canary@example.test") is None
    # Once done, a further retry has nothing left to move and touches nothing.
    before = len(resend_fake.requests)
    assert mailer.move_contact("old.canary@example.test", NEW_EMAIL, first_name=NEW_FIRST, last_name=None) == [moved]
    assert [r.method for r in resend_fake.requests[before:]] == ["GET", "GET"]
