"""Legal holds and the register of authority requests (policy 6.4), on SQLite and PostgreSQL.

A hold keeps exactly the held data through erasure, inactivity expiry, every retention job and
log rotation (partitions dropped, held rows kept); its release lets them go at the next run.
The DPO routes refuse bad input with nothing changed, and never take a client token.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json

import pytest
import sqlalchemy as sa

from shared.identity.client import issue_dev_token
from shared.identity.dpo import create_dpo_credential
from shared.local.cli import main as cli_main
from shared.local.demo import create_account, populate_account
from shared.local.server import http_event, invoke, load_manifest
from shared.platform.clock import add_months
from shared.platform.errors import Conflict, NotFound, ValidationFailed
from shared.platform.pseudonym import subject_pseudonym
from shared.policy.rules import last_expired_day
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.ports.db import UTC, utcnow
from shared.records import disclosures, holds
from shared.records.audit import verify_chain
from shared.retention import enforcement, inactivity, log_rotation
from shared.rights import erasure

pytestmark = pytest.mark.usefixtures("env")

CANARY = "canaryHold3"
CANARY_IP = "203.0.113.91"
ELEVEN_YEARS = 132


@pytest.fixture
def immediate(monkeypatch):
    from shared.platform.config import reset_settings
    from shared.ports.backends import reset_backends

    monkeypatch.setenv("ERASURE_COOLING_OFF_DAYS", "0")
    reset_settings()
    reset_backends()


@pytest.fixture
def manifest():
    return load_manifest()


def dpo(engine) -> dict[str, str]:
    with engine.begin() as conn:
        return {"Authorization": f"Bearer {create_dpo_credential(conn, 'dpo')}"}


def call(
    manifest, method: str, path: str, headers: dict, body: object = None, query: dict | None = None
) -> tuple[int, dict]:
    text = body if isinstance(body, str) else ("" if body is None else json.dumps(body))
    response = invoke(
        manifest.functions["legal-holds"], http_event(method, path, body=text, headers=headers, query=query)
    )
    return response["statusCode"], json.loads(response["body"] or "{}")


def count(engine, table: sa.Table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()


def place(engine, **kw) -> holds.LegalHold:
    with engine.begin() as conn:
        return holds.place_hold(conn, actor="dpo:test", **kw)


def release(engine, hold_id: str) -> None:
    with engine.begin() as conn:
        holds.release_hold(conn, hold_id, reason="Procedure closed", actor="dpo:test")


def snapshot(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in schema.metadata.sorted_tables
        }


def old_logs(engine, account_id: str | None, moments: list[dt.datetime], pseudonym: str | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(
            schema.connection_logs.insert(),
            [
                {
                    "account_id": account_id,
                    "subject_pseudonym": pseudonym,
                    "occurred_at": m,
                    "event": "login_succeeded",
                    "ip_address": CANARY_IP,
                }
                for m in moments
            ],
        )
        conn.execute(
            schema.access_logs.insert(),
            [
                {
                    "account_id": account_id,
                    "subject_pseudonym": pseudonym,
                    "occurred_at": m,
                    "method": "GET",
                    "path": "/factures",
                    "status_code": 200,
                    "ip_address": CANARY_IP,
                }
                for m in moments
            ],
        )


# --- Erasure, then the retention schedule -----------------------------------------------------------------


def test_erasure_keeps_exactly_the_held_data_and_the_release_lets_it_go(env, engine, immediate, manifest, capfd):
    account = create_account(engine, canary=CANARY)
    populate_account(engine, get_storage(), account["id"], invoices=2, log_lines=3, payments=2, canary=CANARY)
    bystander = create_account(engine)
    populate_account(engine, get_storage(), bystander["id"], invoices=2, log_lines=3, payments=2)
    headers = dpo(engine)
    status, body = call(
        manifest,
        "POST",
        "/holds",
        headers,
        {
            "account_id": account["id"],
            "categories": ["documents.invoices", "payment.transactions"],
            "reason": "Requisition TJ Paris, case 2026-1234",
        },
    )
    assert status == 201, body
    hold_id = body["hold"]["id"]
    pdfs = [key for key in get_storage().list(env.documents_bucket, f"invoices/{account['id']}/")]
    assert len(pdfs) == 2

    with engine.connect() as conn:
        held_invoices = list(
            conn.execute(sa.select(schema.invoices.c.id).where(schema.invoices.c.account_id == account["id"])).scalars()
        )
    for who in (account, bystander):
        record, _ = erasure.request_erasure(engine, who["id"], channel="client_area", actor="client")
        assert erasure.run_erasure(engine, record.id) == "completed"
        who["request_id"] = record.id

    inv, pay = schema.invoices, schema.payment_records
    # Held: the invoices (and lines, PDFs), the payment records, and the account row as their anchor.
    assert count(engine, inv, inv.c.account_id == account["id"], inv.c.archived_at.is_(None)) == 2
    assert (
        count(
            engine,
            schema.invoice_lines,
            schema.invoice_lines.c.invoice_id.in_(sa.select(inv.c.id).where(inv.c.account_id == account["id"])),
        )
        > 0
    )
    assert count(engine, pay, pay.c.account_id == account["id"]) == 2
    assert len(list(get_storage().list(env.documents_bucket, f"invoices/{account['id']}/"))) == 2
    with engine.connect() as conn:
        shell = conn.execute(sa.select(schema.accounts).where(schema.accounts.c.id == account["id"])).one()
    assert shell.status == "erased" and CANARY not in shell.email and shell.first_name is None and shell.phone is None
    # Everything else went on schedule: erased, or unlinked under a pseudonym.
    for table in (schema.companies, schema.clients, schema.sessions, schema.consent_events, schema.analytics_events):
        assert count(engine, table, table.c.account_id == account["id"]) == 0, table.name
    for table in (schema.connection_logs, schema.access_logs):
        assert count(engine, table, table.c.account_id == account["id"]) == 0
        assert count(engine, table, table.c.subject_pseudonym == subject_pseudonym(account["id"])) == 3
    # The bystander, without a hold, is erased whole.
    assert count(engine, schema.accounts, schema.accounts.c.id == bystander["id"]) == 0
    assert count(engine, inv, inv.c.account_id == bystander["id"]) == 0

    # The receipt says what is held and why.
    receipt = erasure.load_receipt(account["request_id"])
    assert [h["hold_id"] for h in receipt["legal_holds"]] == [hold_id]
    held = {e["scope"] for e in receipt["categories"] if e["outcome"] == "held"}
    assert {"invoices", "invoice_lines", "payment_records", "invoice_pdfs"} <= held
    assert "companies" not in held and "connection_logs" not in held
    assert all(
        e["legal_holds"][0]["reason"] == "Requisition TJ Paris, case 2026-1234"
        for e in receipt["categories"]
        if e["outcome"] == "held"
    )
    [sidecar] = [
        p for p in (env.data_dir / "outbox").glob("*.json") if json.loads(p.read_text())["to"] == account["email"]
    ]
    mail = email.message_from_bytes(sidecar.with_suffix(".eml").read_bytes(), policy=email.policy.default)
    text = mail.get_body(("plain",)).get_content()
    assert "Requisition TJ Paris" in text and ("legal hold" in text or "gel légal" in text)

    # Eleven years on, the schedule still keeps what is held...
    later = dt.datetime.now(UTC).replace(microsecond=0)
    later = later.replace(year=later.year + 11)
    enforcement.enforce(engine, now=later)
    assert count(engine, inv, inv.c.account_id == account["id"]) == 2
    assert count(engine, pay, pay.c.account_id == account["id"]) == 2
    assert count(engine, schema.accounts, schema.accounts.c.id == account["id"]) == 1

    # ...and once released, the next run erases it, at once since it has expired.
    status, body = call(manifest, "POST", f"/holds/{hold_id}/release", headers, {"reason": "Case closed by the court"})
    assert status == 200 and body["hold"]["in_force"] is False, body
    result = enforcement.enforce(engine, now=later)
    assert result["categories"]["suspended_erasures"]["finished"] == 1
    assert count(engine, schema.accounts, schema.accounts.c.id == account["id"]) == 0
    assert count(engine, inv, inv.c.account_id == account["id"]) == 0
    # (The bystander's invoices wait for their PDFs' Object Lock, which follows the real clock.)
    assert count(engine, inv, inv.c.id.in_(held_invoices)) == 0 and count(engine, pay) == 0
    assert list(get_storage().list(env.documents_bucket, f"invoices/{account['id']}/")) == []
    with engine.connect() as conn:
        actions = [row.action for row in conn.execute(sa.select(schema.audit_log.c.action))]
        assert {"legal_hold.placed", "legal_hold.released", "erasure.hold_ended"} <= set(actions)
        assert verify_chain(conn).ok
        trail = json.dumps([tuple(r) for r in conn.execute(sa.select(schema.audit_log))], default=str)
    assert CANARY not in trail and "Requisition" not in trail
    out = capfd.readouterr()
    assert CANARY not in out.out + out.err


def test_a_release_before_expiry_returns_the_data_to_its_rules(env, engine, immediate):
    account = create_account(engine, canary=CANARY)
    populate_account(engine, get_storage(), account["id"], invoices=1, log_lines=1, payments=1, canary=CANARY)
    hold = place(engine, account_id=account["id"], categories=["documents.invoices"], reason="Tax audit 2026")
    record, _ = erasure.request_erasure(engine, account["id"], channel="client_area", actor="client")
    erasure.run_erasure(engine, record.id)
    inv = schema.invoices
    assert count(engine, inv, inv.c.account_id == account["id"]) == 1
    release(engine, hold.id)
    enforcement.enforce(engine)
    # Back under the invoice rule: unlinked into the restricted archive, its PDF in the retention archive.
    assert count(engine, schema.accounts, schema.accounts.c.id == account["id"]) == 0
    assert count(engine, inv, inv.c.account_id.is_(None), inv.c.archived_at.is_not(None)) == 1
    with engine.connect() as conn:
        key = conn.execute(sa.select(inv.c.pdf_object_key)).scalar_one()
    assert get_storage().exists(env.archive_bucket, key)
    assert list(get_storage().list(env.documents_bucket, f"invoices/{account['id']}/")) == []


def test_a_crash_while_finishing_a_suspended_erasure_loses_nothing(env, engine, immediate, monkeypatch):
    from shared.rights.erasure import suspended

    account = create_account(engine, canary=CANARY)
    populate_account(engine, get_storage(), account["id"], invoices=2, log_lines=1, payments=1, canary=CANARY)
    hold = place(engine, account_id=account["id"], categories=["documents.invoices"], reason="Tax audit 2026")
    record, _ = erasure.request_erasure(engine, account["id"], channel="client_area", actor="client")
    erasure.run_erasure(engine, record.id)
    release(engine, hold.id)
    real = suspended.erase_accounts_data

    def crash(*args, **kwargs):
        raise RuntimeError("crash after the files moved, before the database step")

    monkeypatch.setattr(suspended, "erase_accounts_data", crash)
    with pytest.raises(RuntimeError):
        erasure.finish_suspended(engine)
    # The files moved to the retention archive; the rows are untouched and still held by their account row.
    assert list(get_storage().list(env.documents_bucket, f"invoices/{account['id']}/")) == []
    inv = schema.invoices
    assert count(engine, inv, inv.c.account_id == account["id"]) == 2
    monkeypatch.setattr(suspended, "erase_accounts_data", real)
    assert erasure.finish_suspended(engine)["finished"] == 1
    assert erasure.finish_suspended(engine) == {"accounts": 0, "finished": 0, "failed": 0}  # nothing twice
    assert count(engine, schema.accounts, schema.accounts.c.id == account["id"]) == 0
    with engine.connect() as conn:
        keys = list(conn.execute(sa.select(inv.c.pdf_object_key).where(inv.c.archived_at.is_not(None))).scalars())
        ended = conn.execute(
            sa.select(sa.func.count()).where(schema.audit_log.c.action == "erasure.hold_ended")
        ).scalar()
    assert len(keys) == 2 and all(get_storage().exists(env.archive_bucket, key) for key in keys)
    assert ended == 1


def test_inactivity_expiry_erases_all_but_the_held_data(env, engine, immediate):
    today = utcnow().date()
    last_day = last_expired_day(36, 0, today)
    account = create_account(engine, canary=CANARY, last_activity_at=dt.datetime.combine(last_day, dt.time(12), UTC))
    populate_account(
        engine,
        get_storage(),
        account["id"],
        invoices=1,
        log_lines=2,
        payments=1,
        clients=2,
        canary=CANARY,
        now=dt.datetime.combine(last_day, dt.time(12), UTC),
    )
    place(engine, account_id=account["id"], categories=["documents.third_parties"], reason="Litigation with a client")
    for now in [dt.datetime.combine(today - dt.timedelta(days=d), dt.time(12), UTC) for d in (30, 7)] + [utcnow()]:
        inactivity.schedule(engine, now=now)
        from shared.ports.backends import get_queue

        get_queue(inactivity.QUEUE_NAME).deliver_pending(
            lambda event, now=now: (
                inactivity.process_chunk(engine, json.loads(event["body"])["payload"]["account_ids"], now=now),
                {"statusCode": 200},
            )[1]
        )
    erasure.enqueue_due_erasures(engine)
    from shared.local.server import drain_queues

    drain_queues(load_manifest())
    # The clients (third parties) and the invoices naming them are held; the rest is erased.
    assert count(engine, schema.clients, schema.clients.c.account_id == account["id"]) == 2
    assert count(engine, schema.invoices, schema.invoices.c.account_id == account["id"]) == 1
    assert count(engine, schema.companies, schema.companies.c.account_id == account["id"]) == 0
    assert count(engine, schema.sessions, schema.sessions.c.account_id == account["id"]) == 0
    with engine.connect() as conn:
        status = conn.execute(sa.select(schema.accounts.c.status).where(schema.accounts.c.id == account["id"])).scalar()
    assert status == "erased"


# --- Retention and log rotation of live data -------------------------------------------------------------


def test_retention_and_log_rotation_skip_exactly_the_held_rows(env, engine, db_url):
    now = utcnow()
    old = [now - dt.timedelta(days=430 + 20 * i) for i in range(4)]  # expired (and whole months on PostgreSQL)
    with engine.begin() as conn:
        for table in log_rotation.LOG_TABLES:
            if log_rotation.is_partitioned(conn, table):
                log_rotation.ensure_partitions(conn, table, add_months(now.date(), -18), now.date())
    held_account, other = create_account(engine, canary=CANARY), create_account(engine)
    erased_pseudonym = subject_pseudonym("erased-account-id")
    for account_id in (held_account["id"], other["id"]):
        old_logs(engine, account_id, old)
    old_logs(engine, None, old, pseudonym=erased_pseudonym)
    with engine.begin() as conn:
        for account_id in (held_account["id"], other["id"]):
            conn.execute(
                schema.sessions.insert().values(
                    id=f"{account_id[:30]}sessio",
                    account_id=account_id,
                    token_hash=account_id,
                    ip_address=CANARY_IP,
                    created_at=old[0],
                    expires_at=old[0] + dt.timedelta(days=30),
                )
            )
        for prospect_id in ("p-held", "p-other"):
            conn.execute(
                schema.prospects.insert().values(
                    id=prospect_id,
                    email=f"{prospect_id}@example.test",
                    name=CANARY,
                    last_contact_at=now.replace(year=now.year - 4),
                    created_at=now.replace(year=now.year - 4),
                )
            )
        conn.execute(
            schema.erasure_ledger.insert().values(
                request_id="r-erased",
                account_id="erased-account-id",
                subject_pseudonym=erased_pseudonym,
                erased_at=now,
            )
        )
    ip_hold = place(
        engine, account_id=held_account["id"], categories=["technical.ip_address"], reason="Police request PV-77"
    )
    erased_hold = place(
        engine, account_id="erased-account-id", categories=["technical.access_logs"], reason="Court order 12"
    )
    prospect_hold = place(engine, prospect_id="p-held", categories=["prospects.contact"], reason="Dispute over a quote")

    rotated = log_rotation.rotate(engine, now=now)
    enforced = enforcement.enforce(engine, now=now)

    cl, al = schema.connection_logs, schema.access_logs
    if db_url.startswith("postgresql"):
        assert rotated["connection_logs"]["partitions_dropped"]  # whole months dropped...
        assert rotated["connection_logs"]["held_rows_kept"] == 4  # ...their held rows copied out first
        assert rotated["access_logs"]["held_rows_kept"] == 8
    assert count(engine, cl, cl.c.account_id == held_account["id"]) == 4
    assert count(engine, al, al.c.account_id == held_account["id"]) == 4
    assert (
        count(engine, cl, cl.c.account_id == other["id"]) == 0
        and count(engine, al, al.c.account_id == other["id"]) == 0
    )
    # Only the held category: the erased account's access logs are held, its connection logs are not.
    assert count(engine, al, al.c.subject_pseudonym == erased_pseudonym) == 4
    assert count(engine, cl, cl.c.subject_pseudonym == erased_pseudonym) == 0
    assert count(engine, schema.sessions, schema.sessions.c.account_id == held_account["id"]) == 1
    assert count(engine, schema.sessions, schema.sessions.c.account_id == other["id"]) == 0
    with engine.connect() as conn:
        assert set(conn.execute(sa.select(schema.prospects.c.id)).scalars()) == {"p-held"}
    assert enforced["categories"]["prospects"] == {"prospects": 1}

    # Nothing changes on a second run while the holds are in force.
    before = snapshot(engine)
    log_rotation.rotate(engine, now=now)
    enforcement.enforce(engine, now=now)
    after = snapshot(engine)
    assert {k: v for k, v in after.items() if k != "audit_log"} == {k: v for k, v in before.items() if k != "audit_log"}

    for hold in (ip_hold, erased_hold, prospect_hold):
        release(engine, hold.id)
    log_rotation.rotate(engine, now=now)
    enforcement.enforce(engine, now=now)
    assert count(engine, cl) == 0 and count(engine, al) == 0
    assert count(engine, schema.sessions) == 0 and count(engine, schema.prospects) == 0


def test_a_hold_with_an_end_date_ends_after_that_day_never_before(env, engine):
    account = create_account(engine)
    now = utcnow()
    ends_on = now.date() + dt.timedelta(days=10)
    hold = place(
        engine,
        account_id=account["id"],
        categories=["technical.ip_address"],
        reason="Police request PV-78",
        ends_on=ends_on,
    )
    old_logs(engine, account["id"], [now - dt.timedelta(days=400)])
    cl = schema.connection_logs
    on_last_day = dt.datetime.combine(ends_on, dt.time(23, 59), UTC)
    log_rotation.rotate(engine, now=on_last_day)
    assert count(engine, cl) == 1
    with engine.connect() as conn:
        assert holds.held_categories(conn, account["id"], on_last_day) == {"technical.ip_address"}
        assert holds.held_categories(conn, account["id"], on_last_day + dt.timedelta(minutes=1)) == frozenset()
    log_rotation.rotate(engine, now=on_last_day + dt.timedelta(minutes=1))
    assert count(engine, cl) == 0
    with engine.connect() as conn:
        assert holds.get_hold(conn, hold.id).released_at is None  # it ended by its date: nobody released it
    # enforce-retention records (and audits) the end, at the day after the end date, never earlier.
    enforcement.enforce(engine, now=on_last_day)
    with engine.connect() as conn:
        assert holds.get_hold(conn, hold.id).released_at is None
    result = enforcement.enforce(engine, now=on_last_day + dt.timedelta(hours=5))
    assert result["categories"]["legal_holds.ended"] == {"legal_holds": 1}
    with engine.connect() as conn:
        ended = holds.get_hold(conn, hold.id)
        assert ended.released_at == dt.datetime.combine(ends_on + dt.timedelta(days=1), dt.time.min, UTC)
        assert ended.released_by == "system:retention"
        assert (
            conn.execute(sa.select(sa.func.count()).where(schema.audit_log.c.action == "legal_hold.ended")).scalar()
            == 1
        )


# --- The register and its retention ----------------------------------------------------------------------


def test_the_register_records_requests_and_disclosures_and_is_purged_after_its_period(env, engine, manifest):
    account = create_account(engine)
    headers = dpo(engine)
    status, body = call(
        manifest,
        "POST",
        "/authority-requests",
        headers,
        {
            "authority_kind": "tax_administration",
            "authority_name": "DGFiP DVNI",
            "reference": "DVNI-2026-0042",
            "legal_basis": "LPF art. L81",
            "received_on": (utcnow().date() - dt.timedelta(days=2)).isoformat(),
        },
    )
    assert status == 201, body
    request_id = body["authority_request"]["id"]
    status, body = call(
        manifest,
        "POST",
        f"/authority-requests/{request_id}/disclosures",
        headers,
        {
            "account_id": account["id"],
            "categories": ["documents.invoices"],
            "method": "secure_transfer",
            "disclosed_at": (utcnow() - dt.timedelta(hours=1)).isoformat(),
        },
    )
    assert status == 201, body
    status, body = call(
        manifest,
        "POST",
        "/holds",
        headers,
        {
            "account_id": account["id"],
            "categories": ["documents.invoices"],
            "reason": "Tax audit DVNI-2026-0042",
            "authority_request_id": request_id,
            "ends_on": (utcnow().date() + dt.timedelta(days=30)).isoformat(),
        },
    )
    assert status == 201, body
    status, listed = call(manifest, "GET", "/authority-requests", headers)
    assert status == 200 and listed["authority_requests"][0]["disclosures"][0]["method"] == "secure_transfer"
    status, listed = call(manifest, "GET", "/holds", headers, query={"in_force": "true", "account_id": account["id"]})
    assert status == 200 and len(listed["holds"]) == 1
    status, one = call(manifest, "GET", f"/holds/{body['hold']['id']}", headers)
    assert status == 200 and one["hold"]["authority_request_id"] == request_id

    # Within the proof period, kept; after it (the hold ended too), purged by enforce-retention.
    enforcement.enforce(engine, now=utcnow().replace(year=utcnow().year + 5))
    assert count(engine, schema.authority_requests) == 1 and count(engine, schema.legal_holds) == 1
    result = enforcement.enforce(engine, now=utcnow().replace(year=utcnow().year + 7))
    assert result["categories"]["disclosure_records"] == {"legal_holds": 1, "authority_requests": 1}
    assert count(engine, schema.authority_requests) == 0 and count(engine, schema.authority_disclosures) == 0
    assert count(engine, schema.legal_holds) == 0 and count(engine, schema.legal_hold_categories) == 0


# --- Bad input and security --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"categories": ["documents.invoices"], "reason": "Tax audit"}, 400, "invalid_subject"),
        ({"account_id": "A", "categories": ["documents.invoices"], "reason": "Tax audit"}, 400, "invalid_request"),
        ({"account_id": "@", "categories": ["everything"], "reason": "Tax audit"}, 400, "invalid_categories"),
        ({"account_id": "@", "categories": [], "reason": "Tax audit"}, 400, "invalid_request"),
        ({"account_id": "@", "categories": "documents.invoices", "reason": "Tax audit"}, 400, "invalid_request"),
        (
            {"account_id": "@", "categories": ["documents.invoices"], "reason": "Call jean.dupont@example.com"},
            400,
            "personal_data_refused",
        ),
        (
            {"account_id": "@", "categories": ["documents.invoices"], "reason": "Call +33 6 12 34 56 78"},
            400,
            "personal_data_refused",
        ),
        (
            {"account_id": "@", "categories": ["documents.invoices"], "reason": "Tax audit", "ends_on": "2001-01-01"},
            400,
            "invalid_end_date",
        ),
        (
            {"account_id": "@", "categories": ["documents.invoices"], "reason": "Tax audit", "ends_on": 20300101},
            400,
            "invalid_request",
        ),
        (
            {"account_id": "@", "categories": ["documents.invoices"], "reason": "Tax audit", "extra": True},
            400,
            "invalid_request",
        ),
        ({"account_id": "@", "categories": ["documents.invoices"], "reason": True}, 400, "invalid_request"),
        ({"account_id": "@", "categories": ["documents.invoices"], "reason": "x" * 501}, 400, "invalid_request"),
        (
            {
                "account_id": "00000000-0000-0000-0000-000000000000",
                "categories": ["documents.invoices"],
                "reason": "Tax audit",
            },
            404,
            "unknown_account",
        ),
        (
            {
                "prospect_id": "00000000-0000-0000-0000-000000000000",
                "categories": ["prospects.contact"],
                "reason": "Tax audit",
            },
            404,
            "unknown_prospect",
        ),
        (
            {
                "account_id": "@",
                "categories": ["documents.invoices"],
                "reason": "Tax audit",
                "authority_request_id": "00000000-0000-0000-0000-000000000000",
            },
            404,
            "unknown_authority_request",
        ),
        ("[1, 2", 400, None),
    ],
)
def test_bad_input_is_refused_and_nothing_changes(engine, manifest, body, status, code):
    account = create_account(engine)
    headers = dpo(engine)
    if isinstance(body, dict) and body.get("account_id") == "@":
        body = {**body, "account_id": account["id"]}
    before = snapshot(engine)
    got, answer = call(manifest, "POST", "/holds", headers, body)
    assert got == status, answer
    assert set(answer["error"]) == {"code", "message"}
    if code:
        assert answer["error"]["code"] == code
    assert snapshot(engine) == before


def test_bad_register_entries_and_releases_are_refused(engine, manifest):
    account = create_account(engine)
    headers = dpo(engine)
    hold = place(engine, account_id=account["id"], categories=["documents.invoices"], reason="Tax audit 2026")
    before = snapshot(engine)
    cases = [
        (
            "POST",
            "/authority-requests",
            {
                "authority_kind": "neighbour",
                "authority_name": "DGFiP",
                "reference": "R-1",
                "legal_basis": "LPF",
                "received_on": "2026-01-01",
            },
            400,
        ),
        (
            "POST",
            "/authority-requests",
            {
                "authority_kind": "police",
                "authority_name": "Commissariat",
                "reference": "R-1",
                "legal_basis": "CPP art. 60-1",
                "received_on": "2999-01-01",
            },
            400,
        ),
        (
            "POST",
            "/authority-requests",
            {
                "authority_kind": "police",
                "authority_name": "Ask 06 12 34 56 78",
                "reference": "R-1",
                "legal_basis": "CPP art. 60-1",
                "received_on": "2026-01-01",
            },
            400,
        ),
        (
            "POST",
            "/authority-requests/00000000-0000-0000-0000-000000000000/disclosures",
            {
                "categories": ["documents.invoices"],
                "disclosed_at": "2026-01-01T00:00:00+00:00",
                "method": "secure_transfer",
            },
            404,
        ),
        ("POST", f"/holds/{hold.id}/release", {"reason": ""}, 400),
        ("POST", f"/holds/{hold.id}/release", {"reason": "Closed", "early": True}, 400),
        ("POST", "/holds/00000000-0000-0000-0000-000000000000/release", {"reason": "Closed"}, 404),
        ("GET", "/holds/not-an-id", None, 400),
    ]
    for method, path, body, status in cases:
        got, answer = call(manifest, method, path, headers, body)
        assert got == status, (path, body, answer)
        assert "code" in answer["error"]
    assert snapshot(engine) == before
    release(engine, hold.id)
    got, answer = call(manifest, "POST", f"/holds/{hold.id}/release", headers, {"reason": "Closed again"})
    assert (got, answer["error"]["code"]) == (409, "hold_already_released")
    with pytest.raises(Conflict):
        release(engine, hold.id)
    with pytest.raises(ValidationFailed):
        with engine.begin() as conn:
            disclosures.register_request(
                conn,
                authority_kind="court",
                authority_name="T",
                reference="R-1",
                legal_basis="CPC",
                received_on=utcnow().date(),
                actor="dpo:test",
            )
    with pytest.raises(NotFound):
        with engine.connect() as conn:
            holds.get_hold(conn, "missing")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/holds"),
        ("GET", "/holds"),
        ("GET", "/holds/00000000-0000-0000-0000-000000000000"),
        ("POST", "/holds/00000000-0000-0000-0000-000000000000/release"),
        ("POST", "/authority-requests"),
        ("GET", "/authority-requests"),
        ("POST", "/authority-requests/00000000-0000-0000-0000-000000000000/disclosures"),
    ],
)
def test_a_client_token_never_reaches_the_routes(engine, manifest, method, path):
    account = create_account(engine)
    hold = place(engine, account_id=account["id"], categories=["documents.invoices"], reason="Tax audit 2026")
    before = snapshot(engine)
    body = (
        {"reason": "Closed"}
        if path.endswith("release")
        else {"account_id": account["id"], "categories": ["documents.invoices"], "reason": "Mine"}
    )
    for headers in ({"Authorization": f"Bearer {issue_dev_token(account['id'])}"}, {}):
        got, answer = call(
            manifest, method, path.replace("00000000-0000-0000-0000-000000000000", hold.id), headers, body
        )
        assert got == 401, answer
    assert snapshot(engine) == before
    with engine.connect() as conn:
        assert holds.get_hold(conn, hold.id).in_force()


def test_the_cli_places_lists_and_releases_holds_and_keeps_the_register(engine, capsys):
    account = create_account(engine)
    assert (
        cli_main(
            [
                "authority",
                "register",
                "--kind",
                "court",
                "--name",
                "Tribunal judiciaire de Lyon",
                "--reference",
                "RG 26/01234",
                "--legal-basis",
                "CPC art. 11",
                "--received-on",
                utcnow().date().isoformat(),
                "--json",
            ]
        )
        == 0
    )
    request_id = json.loads(capsys.readouterr().out)["authority_request"]["id"]
    assert (
        cli_main(
            [
                "holds",
                "place",
                "--account",
                account["id"],
                "--categories",
                "documents.invoices,payment.transactions",
                "--reason",
                "Court order RG 26/01234",
                "--authority-request",
                request_id,
                "--json",
            ]
        )
        == 0
    )
    hold = json.loads(capsys.readouterr().out)["hold"]
    assert hold["categories"] == ["documents.invoices", "payment.transactions"] and hold["in_force"]
    assert (
        cli_main(
            [
                "authority",
                "disclose",
                request_id,
                "--categories",
                "documents.invoices",
                "--account",
                account["id"],
                "--disclosed-at",
                utcnow().isoformat(),
                "--method",
                "registered_mail",
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert cli_main(["holds", "list", "--in-force", "--json"]) == 0
    assert [h["id"] for h in json.loads(capsys.readouterr().out)["holds"]] == [hold["id"]]
    assert cli_main(["authority", "list"]) == 0
    assert "1 disclosure(s)" in capsys.readouterr().out
    assert cli_main(["holds", "place", "--account", account["id"], "--categories", "nothing", "--reason", "x y z"]) == 2
    assert "invalid_categories" in capsys.readouterr().err
    assert cli_main(["holds", "release", hold["id"], "--reason", "Order lifted", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hold"]["in_force"] is False
    with engine.connect() as conn:
        assert holds.list_holds(conn, in_force_only=True) == []


def test_the_shared_check_is_set_based_and_covers_every_table_a_category_reaches():
    assert holds.held_tables(["documents.invoices"]) >= {"invoices", "invoice_lines"}
    assert "companies" not in holds.held_tables(["documents.invoices"])
    assert holds.held_tables(["technical.ip_address"]) == {"sessions", "connection_logs", "access_logs"}
    assert holds.held_prefixes(["documents.invoices"]) == {"invoice_pdfs"}
    assert holds.held_prefixes(["suite.exports"]) == {"exports"}
    assert "suite.exports" in holds.account_categories()
    assert holds.prospect_categories() == {"prospects.contact"}
    now = dt.datetime(2026, 12, 1, tzinfo=UTC)
    # One correlated EXISTS per table: usable in any job's WHERE clause.
    sql = str(sa.select(schema.sessions.c.id).where(holds.not_held("sessions", now)))
    assert "EXISTS" in sql and "legal_holds" in sql
    assert "EXISTS" in str(sa.select(schema.invoice_lines.c.id).where(holds.held("invoice_lines", now)))
    assert str(holds.held("stripe_events", now)) in ("false", "0 = 1")
