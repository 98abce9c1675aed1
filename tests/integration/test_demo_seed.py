"""Demo and test data: every table of the reference schema gets realistic, valid rows."""

from __future__ import annotations

import datetime as dt
import re

import pyotp
import pytest
import sqlalchemy as sa

from shared.local import demo
from shared.policy import facts as policy
from shared.policy.data_map import TABLES
from shared.ports import tables as schema
from shared.ports.backends import get_storage

UTC = dt.UTC
REFERENCE_TABLES = [t.name for t in TABLES if not t.suite]


def _count(conn, table: str) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(schema.metadata.tables[table])).scalar()


def test_seed_demo_fills_every_reference_table(env, engine):
    storage = get_storage()
    accounts = demo.seed_demo(engine, storage)

    assert len(accounts) >= 3
    assert len({a["email"] for a in accounts}) == len(accounts)
    with engine.connect() as conn:
        for table in REFERENCE_TABLES:
            assert _count(conn, table) > 0, f"{table} has no demo rows"
        for account in accounts:
            assert (
                _count(conn, "invoices")
                and conn.execute(
                    sa.select(sa.func.count()).where(schema.invoices.c.account_id == account["id"])
                ).scalar()
                > 0
            )
        keys = conn.execute(
            sa.select(schema.invoices.c.account_id, schema.invoices.c.id, schema.invoices.c.pdf_object_key)
        ).all()
        companies = conn.execute(sa.select(schema.companies)).mappings().all()

    with_2fa = [a for a in accounts if a["totp_secret"]]
    without = [a for a in accounts if not a["totp_secret"]]
    assert with_2fa and without
    totp = pyotp.TOTP(with_2fa[0]["totp_secret"])
    assert totp.verify(totp.now())

    for account_id, invoice_id, key in keys:
        assert key == f"invoices/{account_id}/{invoice_id}.pdf"
        pdf = storage.get_bytes(env.documents_bucket, key)
        assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")

    for company in companies:
        assert demo.luhn_valid(company["siren"]) and demo.luhn_valid(company["siret"])
        assert company["siret"].startswith(company["siren"])
        assert company["vat_number"] == demo.vat_number(company["siren"])


def test_seed_demo_twice_reuses_the_accounts(env, engine):
    storage = get_storage()
    first = demo.seed_demo(engine, storage)
    with engine.connect() as conn:
        counts = {t: _count(conn, t) for t in REFERENCE_TABLES}
    assert demo.seed_demo(engine, storage) == first
    with engine.connect() as conn:
        assert {t: _count(conn, t) for t in REFERENCE_TABLES} == counts


def test_demo_includes_an_account_near_the_inactivity_limit(env, engine):
    now = dt.datetime(2026, 9, 1, 12, 0, tzinfo=UTC)
    demo.seed_demo(engine, get_storage(), now=now)
    with engine.connect() as conn:
        last_activity = conn.execute(sa.select(schema.accounts.c.last_activity_at)).scalars().all()
    ends = [policy.expires_at("inactive_account", moment) for moment in last_activity]
    assert any(now < end <= now + dt.timedelta(days=30) for end in ends)


def test_canary_is_in_every_personal_text_field_and_only_in_its_account(env, engine):
    account = demo.create_account(engine, canary="CANARY-h3-7f2c")
    other = demo.create_account(engine)
    demo.populate_account(engine, get_storage(), account["id"], canary="CANARY-h3-7f2c", invoices=2, log_lines=3)
    demo.populate_account(engine, get_storage(), other["id"], invoices=2, log_lines=3)
    # Fixed formats (phone, SIRET, VAT, IP, hashes, Stripe ids) and fixed vocabularies cannot carry a canary.
    fixed_format = {
        "phone",
        "siret",
        "siren",
        "vat_number",
        "seller_siret",
        "seller_vat_number",
        "buyer_vat_number",
        "ip_address",
        "postal_code",
        "country",
        "key_prefix",
        "card_last4",
        "card_brand",
        "stripe_customer_id",
        "stripe_object_id",
        "token_hash",
        "key_hash",
        "password_hash",
        "totp_secret",
        "proof_ip_pseudonym",
    }
    vocabulary = {
        ("consent_events", "purpose"),
        ("consent_events", "action"),
        ("consent_events", "channel"),
        ("consent_events", "policy_version"),
        ("prospects", "source"),
        ("analytics_events", "name"),
    }
    checked = set()
    with engine.connect() as conn:
        for tm in TABLES:
            if tm.suite or tm.name == "invoice_lines":
                continue
            table = schema.metadata.tables[tm.name]
            text_columns = [
                c.name
                for c in tm.columns
                if c.personal
                and isinstance(table.c[c.name].type, (sa.String, sa.Text))
                and c.name not in fixed_format
                and (tm.name, c.name) not in vocabulary
            ]
            for row in conn.execute(sa.select(table).where(table.c[tm.link.column] == account["id"])).mappings():
                for column in text_columns:
                    if row[column] is not None:
                        assert "CANARY-h3-7f2c" in row[column], f"{tm.name}.{column}"
                        checked.add((tm.name, column))
            for row in conn.execute(sa.select(table).where(table.c[tm.link.column] == other["id"])).mappings():
                assert "CANARY-h3-7f2c" not in repr(dict(row)), tm.name
        descriptions = (
            conn.execute(
                sa.select(schema.invoice_lines.c.description)
                .join(schema.invoices)
                .where(schema.invoices.c.account_id == account["id"])
            )
            .scalars()
            .all()
        )
        assert descriptions and all("CANARY-h3-7f2c" in d for d in descriptions)
    assert {
        ("accounts", "email"),
        ("accounts", "last_name"),
        ("companies", "name"),
        ("clients", "contact_name"),
        ("clients", "email"),
        ("invoices", "buyer_name"),
        ("invoices", "seller_address"),
        ("prospects", "email"),
        ("sessions", "user_agent"),
        ("access_logs", "path"),
        ("analytics_events", "page"),
        ("payment_records", "description"),
        ("consent_events", "proof_user_agent"),
    } <= checked
    with pytest.raises(ValueError):
        demo.create_account(engine, canary="no spaces allowed")


def test_factories_insert_in_batches(env, engine, monkeypatch):
    monkeypatch.setattr(demo, "BATCH_SIZE", 100)  # several full batches and a partial one
    account = demo.create_account(engine, with_2fa=True)
    summary = demo.populate_account(
        engine, None, account["id"], invoices=250, lines_per_invoice=3, log_lines=450, pdfs=False
    )
    with engine.connect() as conn:
        assert _count(conn, "invoices") == 250
        assert _count(conn, "invoice_lines") == 750
        assert _count(conn, "connection_logs") == _count(conn, "access_logs") == 450
        totals = conn.execute(
            sa.select(schema.invoices.c.total_excl_tax_cents, sa.func.sum(schema.invoice_lines.c.total_excl_tax_cents))
            .join(schema.invoice_lines)
            .group_by(schema.invoices.c.id, schema.invoices.c.total_excl_tax_cents)
        ).all()
    assert summary["counts"]["invoices"] == 250
    assert all(total == lines for total, lines in totals)
    assert re.fullmatch(r"[A-Z2-7]{32}", account["totp_secret"])


def test_identifiers_are_valid():
    assert demo.luhn_valid("940163496")  # QR Communication's SIREN
    assert demo.vat_number("303265045") == "FR40303265045"
    assert not demo.luhn_valid("940163497")
