"""enforce-retention end to end, the period arithmetic it relies on, and `privacy-functions retention`.

Database tests run on SQLite and PostgreSQL (`env`); objects in the local object store.
Each category gets rows just past its period and rows just inside it: the first go,
the second stay, whatever else the database holds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

import pytest
import sqlalchemy as sa

from shared.local.demo import create_account
from shared.local.server import cron_event, http_event, invoke, load_manifest
from shared.platform.clock import add_months
from shared.policy import facts as policy
from shared.policy import rules
from shared.policy.rules import last_expired_day
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.ports.db import UTC, utcnow
from shared.records.audit import verify_chain
from shared.retention import enforcement

CANARY = "canaryRetention5"
ONE_DAY = dt.timedelta(days=1)


def new_id() -> str:
    return str(uuid.uuid4())


# --- Period arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("months", "days", "today", "last"),
    [
        (12, 0, dt.date(2025, 2, 28), dt.date(2024, 2, 29)),  # the leap day ends on 28 February
        (12, 0, dt.date(2024, 2, 28), dt.date(2023, 2, 28)),
        (12, 0, dt.date(2024, 2, 29), dt.date(2023, 2, 28)),  # nothing starts on 29 February 2023
        (1, 0, dt.date(2025, 2, 28), dt.date(2025, 1, 31)),  # 29, 30, 31 January all end on 28 February
        (1, 0, dt.date(2025, 3, 30), dt.date(2025, 2, 28)),
        (36, 0, dt.date(2027, 2, 28), dt.date(2024, 2, 29)),
        (0, 7, dt.date(2026, 3, 1), dt.date(2026, 2, 22)),
    ],
)
def test_last_expired_day_at_month_ends_and_leap_days(months, days, today, last):
    assert last_expired_day(months, days, today) == last


@pytest.mark.parametrize(
    "rule_id", ["connection_logs", "payment_data", "prospects", "invoices", "exports", "inactive_account"]
)
def test_the_expired_set_is_exactly_what_the_policy_says(rule_id):
    rule = policy.retention_rule(rule_id)
    start = dt.date(2019, 12, 20)
    for today in (dt.date(2027, 2, 28), dt.date(2028, 2, 29), dt.date(2029, 3, 31), dt.date(2030, 1, 30)):
        last = last_expired_day(rule.total_months, rule.active_days, today)
        for day in (start + dt.timedelta(days=n) for n in range(0, 4000, 3)):
            assert (policy.expires_at(rule, day) <= today) == (day <= last), (rule_id, today, day)


def test_invoice_clock_is_configurable(env, monkeypatch):
    from shared.platform.config import reset_settings

    today = dt.date(2026, 11, 26)
    assert rules.invoice_issue_bound(today) == dt.date(2016, 11, 27)
    assert rules.invoice_expiry(dt.date(2016, 2, 29)) == dt.date(2026, 2, 28)
    monkeypatch.setenv("INVOICE_RETENTION_CLOCK", "financial_year_end")
    reset_settings()
    assert rules.invoice_issue_bound(today) == dt.date(2016, 1, 1)  # 2016 closes on 31/12/2026
    assert rules.invoice_issue_bound(dt.date(2026, 12, 31)) == dt.date(2017, 1, 1)
    assert rules.invoice_expiry(dt.date(2016, 2, 29)) == dt.date(2026, 12, 31)
    from shared.platform.config import ConfigurationError, get_settings

    monkeypatch.setenv("INVOICE_RETENTION_MONTHS", "100")
    reset_settings()
    with pytest.raises(ConfigurationError, match="INVOICE_RETENTION_MONTHS"):  # never under the 10 legal years
        get_settings()


# --- The data -------------------------------------------------------------------------------------------


def invoice(
    conn,
    *,
    issue_date: dt.date,
    account_id: str | None,
    pdf_key: str | None = None,
    archived_at: dt.datetime | None = None,
) -> str:
    invoice_id = new_id()
    conn.execute(
        schema.invoices.insert().values(
            id=invoice_id,
            account_id=account_id,
            number=f"F-{invoice_id[:8]}",
            issue_date=issue_date,
            total_excl_tax_cents=1000,
            total_tax_cents=200,
            total_incl_tax_cents=1200,
            status="paid",
            seller_name=f"Seller {CANARY}",
            buyer_name=f"Buyer {CANARY}",
            pdf_object_key=pdf_key,
            archived_at=archived_at,
            created_at=utcnow(),
        )
    )
    conn.execute(
        schema.invoice_lines.insert().values(
            id=new_id(),
            invoice_id=invoice_id,
            position=1,
            description=f"Line {CANARY}",
            quantity=1,
            unit_price_cents=1000,
            vat_rate=20,
            total_excl_tax_cents=1000,
        )
    )
    return invoice_id


def payment(
    conn,
    *,
    at: dt.datetime,
    account_id: str | None = None,
    dispute_opened_at=None,
    disputed_until=None,
    pseudonym: str | None = None,
) -> str:
    payment_id = new_id()
    conn.execute(
        schema.payment_records.insert().values(
            id=payment_id,
            account_id=account_id,
            subject_pseudonym=pseudonym,
            stripe_object_id=f"pi_{payment_id[:12]}",
            kind="payment_intent",
            amount_cents=1200,
            currency="EUR",
            status="succeeded",
            transaction_at=at,
            dispute_opened_at=dispute_opened_at,
            disputed_until=disputed_until,
            created_at=at,
            updated_at=at,
        )
    )
    return payment_id


def prospect(conn, *, last_contact_at: dt.datetime) -> str:
    prospect_id = new_id()
    conn.execute(
        schema.prospects.insert().values(
            id=prospect_id,
            email=f"p.{prospect_id[:6]}+{CANARY}@example.test",
            name=CANARY,
            last_contact_at=last_contact_at,
            created_at=last_contact_at,
        )
    )
    return prospect_id


def closed_request(conn, *, closed_at: dt.datetime | None, kind: str = "erasure") -> str:
    request_id = new_id()
    conn.execute(
        schema.dsr_requests.insert().values(
            id=request_id,
            account_id=new_id(),
            subject_pseudonym="0" * 64,
            kind=kind,
            channel="client_area",
            state="completed" if closed_at else "in_progress",
            received_at=(closed_at or utcnow()) - dt.timedelta(days=9),
            due_at=(closed_at or utcnow()) + dt.timedelta(days=20),
            state_changed_at=closed_at or utcnow(),
            closed_at=closed_at,
        )
    )
    conn.execute(
        schema.saga_steps.insert().values(job_id=request_id, step="plan", state="completed", updated_at=utcnow())
    )
    if closed_at is not None and kind == "erasure":
        conn.execute(
            schema.erasure_ledger.insert().values(
                request_id=request_id,
                account_id=new_id(),
                subject_pseudonym="0" * 64,
                erased_at=closed_at,
            )
        )
    return request_id


def put_object(bucket: str, key: str, *, modified: dt.datetime | None = None) -> None:
    storage = get_storage()
    storage.put(bucket, key, b"%PDF-1.4 test", content_type="application/pdf")
    if modified is not None:
        stamp = modified.timestamp()
        os.utime(storage._object_path(bucket, key), (stamp, stamp))


def exists(table: sa.Table, row_id: str, engine) -> bool:
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(sa.literal(1)).where(table.c[table.primary_key.columns.keys()[0]] == row_id)).first()
            is not None
        )


@pytest.fixture
def world(env, engine):
    """Rows just past and just inside each period, at the real `now`."""
    now = utcnow()
    today = now.date()
    s = env
    account = create_account(engine, canary=CANARY)
    invoice_bound = rules.invoice_issue_bound(today)
    day_before = lambda bound: bound - ONE_DAY  # noqa: E731 - the last expired instant of a timestamp bound
    w: dict = {"account": account, "now": now}
    with engine.begin() as conn:
        old_key = f"invoices/{account['id']}/old.pdf"
        w["invoice_expired"] = invoice(
            conn, issue_date=invoice_bound - ONE_DAY, account_id=account["id"], pdf_key=old_key
        )
        w["invoice_kept"] = invoice(
            conn, issue_date=invoice_bound, account_id=account["id"], pdf_key=f"invoices/{account['id']}/kept.pdf"
        )
        w["invoice_erased_account"] = invoice(
            conn,
            issue_date=invoice_bound - dt.timedelta(days=40),
            account_id=None,
            pdf_key="invoices/archived.pdf",
            archived_at=now - dt.timedelta(days=400),
        )
        archive_cut = rules.cutoff("payment_data", today, archive=True)
        delete_cut = rules.cutoff("payment_data", today)
        w["payment_recent"] = payment(conn, at=now - dt.timedelta(days=30), account_id=account["id"])
        w["payment_to_archive"] = payment(conn, at=day_before(archive_cut), account_id=account["id"])
        w["payment_active_edge"] = payment(conn, at=archive_cut, account_id=account["id"])
        w["payment_to_delete"] = payment(conn, at=day_before(delete_cut), pseudonym="a" * 64)
        w["payment_disputed_open"] = payment(
            conn, at=day_before(delete_cut), account_id=account["id"], dispute_opened_at=now - dt.timedelta(days=90)
        )
        w["payment_dispute_closed"] = payment(
            conn,
            at=day_before(delete_cut),
            account_id=account["id"],
            dispute_opened_at=now - dt.timedelta(days=90),
            disputed_until=now - dt.timedelta(days=20),
        )
        prospect_cut = rules.cutoff("prospects", today)
        w["prospect_expired"] = prospect(conn, last_contact_at=prospect_cut - dt.timedelta(seconds=1))
        w["prospect_kept"] = prospect(conn, last_contact_at=prospect_cut)
        request_cut = rules.cutoff("request_records", today)
        w["request_expired"] = closed_request(conn, closed_at=request_cut - dt.timedelta(hours=1))
        w["request_kept"] = closed_request(conn, closed_at=request_cut)
        w["request_open"] = closed_request(conn, closed_at=None)
        session_cut = rules.cutoff("connection_logs", today)
        for label, created in (
            ("session_expired", session_cut - dt.timedelta(seconds=1)),
            ("session_kept", session_cut),
        ):
            w[label] = new_id()
            conn.execute(
                schema.sessions.insert().values(
                    id=w[label],
                    account_id=account["id"],
                    token_hash=w[label].replace("-", "") * 2,
                    ip_address="203.0.113.9",
                    user_agent=f"Mozilla/5.0 {CANARY}",
                    created_at=created,
                    expires_at=created + dt.timedelta(days=30),
                )
            )
        code_cut = rules.cutoff("verification_records", today)
        for label, created in (("code_expired", code_cut - dt.timedelta(hours=1)), ("code_kept", code_cut)):
            w[label] = new_id()
            conn.execute(
                schema.verification_codes.insert().values(
                    id=w[label],
                    account_id=account["id"],
                    code_hash="f" * 64,
                    created_at=created,
                    expires_at=created + dt.timedelta(minutes=10),
                )
            )
    put_object(s.documents_bucket, old_key)
    put_object(s.documents_bucket, f"invoices/{account['id']}/kept.pdf")
    put_object(s.archive_bucket, "invoices/archived.pdf")
    export_cut = rules.cutoff("exports", today)
    w["export_expired"] = f"exports/{account['id']}/old.zip"
    w["export_kept"] = f"exports/{account['id']}/new.zip"
    put_object(s.exports_bucket, w["export_expired"], modified=export_cut - dt.timedelta(minutes=5))
    put_object(s.exports_bucket, w["export_kept"], modified=export_cut + dt.timedelta(minutes=5))
    for request_id in (w["request_expired"], w["request_kept"]):
        put_object(s.archive_bucket, f"receipts/erasure/{request_id}.json")
        put_object(s.archive_bucket, f"ledger/erasures/{request_id}.json")
    return w


def test_enforce_retention_removes_exactly_the_expired_set(env, engine, world, capfd):
    s = env
    manifest = load_manifest()
    spec = manifest.functions["enforce-retention"]
    response = invoke(spec, cron_event(spec.schedules[0]))
    assert response["statusCode"] == 200, response
    result = json.loads(response["body"])["categories"]
    w = world
    assert result["invoices"] == {"invoices": 2, "of_erased_accounts": 1, "pdfs": 2, "held": 0}
    assert result["payment_records.archive"] == {"payment_records": 2}
    assert result["payment_records.delete"] == {"payment_records": 1}
    assert result["prospects"] == {"prospects": 1}
    assert result["exports"] == {"objects": 1, "temporaries": 0}  # partial uploads: see test_leftovers.py
    assert result["sessions"] == {"sessions": 1}
    assert result["request_records"] == {"requests": 1, "proof_objects": 2, "ledger_entries": 1, "held": 0}
    assert result["verification_records"] == {"codes": 1, "attempts": 0, "used_time_steps": 0}

    storage = get_storage()
    assert not exists(schema.invoices, w["invoice_expired"], engine)
    assert not exists(schema.invoices, w["invoice_erased_account"], engine)
    assert exists(schema.invoices, w["invoice_kept"], engine)
    with engine.connect() as conn:
        lines = conn.execute(sa.select(schema.invoice_lines.c.invoice_id)).scalars().all()
    assert lines == [w["invoice_kept"]]  # the lines went with their invoices
    account_id = w["account"]["id"]
    assert not storage.exists(s.documents_bucket, f"invoices/{account_id}/old.pdf")
    assert not storage.exists(s.archive_bucket, "invoices/archived.pdf")
    assert storage.exists(s.documents_bucket, f"invoices/{account_id}/kept.pdf")

    p = schema.payment_records
    with engine.connect() as conn:
        archived = dict(conn.execute(sa.select(p.c.id, p.c.archived_at.is_not(None))).all())
    assert w["payment_to_delete"] not in archived
    assert archived[w["payment_to_archive"]]
    assert not archived[w["payment_recent"]] and not archived[w["payment_active_edge"]]
    assert not archived[w["payment_dispute_closed"]]  # its clock restarted when the dispute closed
    assert not archived[w["payment_disputed_open"]]  # an open dispute stops the clock

    assert not exists(schema.prospects, w["prospect_expired"], engine) and exists(
        schema.prospects, w["prospect_kept"], engine
    )
    assert not storage.exists(s.exports_bucket, w["export_expired"]) and storage.exists(
        s.exports_bucket, w["export_kept"]
    )
    assert not exists(schema.dsr_requests, w["request_expired"], engine)
    assert exists(schema.dsr_requests, w["request_kept"], engine) and exists(
        schema.dsr_requests, w["request_open"], engine
    )
    assert not storage.exists(s.archive_bucket, f"receipts/erasure/{w['request_expired']}.json")
    assert storage.exists(s.archive_bucket, f"receipts/erasure/{w['request_kept']}.json")
    with engine.connect() as conn:
        assert {r for r in conn.execute(sa.select(schema.saga_steps.c.job_id)).scalars()} == {
            w["request_kept"],
            w["request_open"],
        }
        assert set(conn.execute(sa.select(schema.erasure_ledger.c.request_id)).scalars()) == {w["request_kept"]}
    assert not exists(schema.verification_codes, w["code_expired"], engine)
    assert exists(schema.verification_codes, w["code_kept"], engine)
    assert not exists(schema.sessions, w["session_expired"], engine) and exists(
        schema.sessions, w["session_kept"], engine
    )

    # One audit entry per category, counts only; the chain holds.
    with engine.connect() as conn:
        entries = conn.execute(sa.select(schema.audit_log).where(schema.audit_log.c.action.like("retention.%"))).all()
        assert verify_chain(conn).ok
    assert sorted(e.action for e in entries) == sorted(f"retention.{c.id}" for c in enforcement.CATEGORIES)
    assert all(e.subject_pseudonym is None for e in entries)
    out = capfd.readouterr()
    assert CANARY not in json.dumps([e.details for e in entries]) + out.out + out.err

    # A second run finds nothing more.
    again = json.loads(invoke(spec, cron_event(spec.schedules[0]))["body"])["categories"]
    assert again["invoices"]["invoices"] == 0 and again["payment_records.delete"]["payment_records"] == 0


def test_plan_counts_and_changes_nothing(env, engine, world, capsys):
    from shared.local.cli import main

    def table_sizes() -> dict[str, int]:
        with engine.connect() as conn:
            return {
                t: conn.execute(sa.select(sa.func.count()).select_from(schema.metadata.tables[t])).scalar()
                for t in ("invoices", "payment_records", "prospects", "dsr_requests", "audit_log")
            }

    before = table_sizes()
    assert main(["retention", "plan", "--json"]) == 0
    entries = {e["category"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["invoices"]["due"] == {"invoices": 2, "of_erased_accounts": 1, "pdfs": 2, "lines": 2}
    assert entries["invoices"]["rule"]["id"] == "invoices"
    assert entries["payment_records.archive"]["due"] == {"payment_records": 2}
    assert entries["payment_records.delete"]["due"] == {"payment_records": 1, "of_erased_accounts": 1}
    assert entries["prospects"]["due"] == {"prospects": 1}
    assert entries["exports"]["due"] == {"objects": 1}
    assert entries["request_records"]["due"] == {"requests": 1, "erasure_receipts": 1, "ledger_entries": 1}
    assert {"inactive_accounts", "connection_logs", "access_logs", "lifecycle"} <= set(entries)
    # At a later date, more is due (the kept prospect's 3 years end within a year).
    at = (world["now"] + dt.timedelta(days=400)).date().isoformat()
    assert main(["retention", "plan", "--at", at]) == 0
    text = capsys.readouterr().out
    assert f"Retention plan at {at}" in text and "prospects=2" in text
    assert table_sizes() == before


def test_plan_refuses_a_bad_date(env):
    from shared.local.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["retention", "plan", "--at", "yesterday"])
    assert "--at must be a date" in str(exited.value)


def test_retention_run_applies_the_cron_code_with_progress(env, engine, world, capsys):
    from shared.local.cli import main

    assert main(["retention", "run"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert set(result) == {"expire-inactive-accounts", "log-rotation", "enforce-retention"}
    assert result["enforce-retention"]["categories"]["prospects"] == {"prospects": 1}
    assert "retention: prospects: 1" in captured.err
    assert not exists(schema.prospects, world["prospect_expired"], engine)


def test_an_unknown_job_is_refused_and_nothing_changes(env, engine, world):
    spec = load_manifest().functions["enforce-retention"]
    response = invoke(spec, http_event("POST", "/", body=json.dumps({"job": "log-rotation"})))
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "unknown_job"
    assert exists(schema.prospects, world["prospect_expired"], engine)
    response = invoke(spec, http_event("POST", "/", body="[1, 2]"))
    assert response["statusCode"] == 400
    assert exists(schema.invoices, world["invoice_expired"], engine)


def test_erased_accounts_items_go_on_the_day_their_receipt_announced(env, engine):
    """The receipt's `retained_until` and the schedule come from the same rule: deleted that day, not before."""
    issue = dt.date(2016, 6, 30)
    announced = policy.expires_at("invoices", issue)  # what erasure's receipt says
    with engine.begin() as conn:
        invoice_id = invoice(conn, issue_date=issue, account_id=None, archived_at=utcnow())
    before = dt.datetime.combine(announced - ONE_DAY, dt.time(23, 59), tzinfo=UTC)
    assert enforcement.enforce(engine, now=before)["categories"]["invoices"]["invoices"] == 0
    assert exists(schema.invoices, invoice_id, engine)
    on_the_day = dt.datetime.combine(announced, dt.time(0, 1), tzinfo=UTC)
    assert enforcement.enforce(engine, now=on_the_day)["categories"]["invoices"]["of_erased_accounts"] == 1
    assert not exists(schema.invoices, invoice_id, engine)
    assert add_months(issue, 120) == announced
