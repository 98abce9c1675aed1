"""Rows for the desk tests on people (subject search, prospects, third parties): one helper per table."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa

from shared.ports import tables as t

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def _id() -> str:
    return str(uuid.uuid4())


def add(conn: sa.Connection, table: sa.Table, **values: Any) -> str:
    conn.execute(sa.insert(table).values(**values))
    return values.get("id")


def account(
    conn, *, email: str, phone: str | None = None, first: str | None = None, last: str | None = None, locale: str = "fr"
) -> str:
    return add(
        conn,
        t.accounts,
        id=_id(),
        email=email,
        phone=phone,
        first_name=first,
        last_name=last,
        locale=locale,
        created_at=NOW,
        last_activity_at=NOW,
    )


def company(conn, account_id: str, *, name: str, siret: str | None = None) -> str:
    return add(
        conn,
        t.companies,
        id=_id(),
        account_id=account_id,
        name=name,
        siret=siret,
        siren=siret[:9] if siret else None,
        created_at=NOW,
    )


def client(
    conn,
    account_id: str,
    *,
    name: str,
    email: str | None = None,
    phone: str | None = None,
    contact_name: str | None = None,
    siret: str | None = None,
    address_line1: str | None = None,
) -> str:
    return add(
        conn,
        t.clients,
        id=_id(),
        account_id=account_id,
        name=name,
        email=email,
        phone=phone,
        contact_name=contact_name,
        siret=siret,
        address_line1=address_line1,
        created_at=NOW,
    )


def invoice(
    conn,
    account_id: str | None,
    *,
    buyer_name: str,
    buyer_address: str | None = None,
    seller_name: str = "Seller SARL",
    seller_siret: str | None = None,
    number: str | None = None,
) -> str:
    invoice_id = add(
        conn,
        t.invoices,
        id=_id(),
        account_id=account_id,
        number=number or f"F-{uuid.uuid4().hex[:6]}",
        issue_date=dt.date(2026, 10, 1),
        total_excl_tax_cents=10000,
        total_tax_cents=2000,
        total_incl_tax_cents=12000,
        status="issued",
        seller_name=seller_name,
        seller_siret=seller_siret,
        buyer_name=buyer_name,
        buyer_address=buyer_address,
        created_at=NOW,
    )
    add(
        conn,
        t.invoice_lines,
        id=_id(),
        invoice_id=invoice_id,
        position=1,
        description="Conseil",
        quantity=1,
        unit_price_cents=10000,
        vat_rate=20,
        total_excl_tax_cents=10000,
    )
    return invoice_id


def prospect(
    conn,
    account_id: str | None = None,
    *,
    email: str | None = None,
    name: str | None = None,
    phone: str | None = None,
    company_name: str | None = None,
    source: str = "salon",
) -> str:
    return add(
        conn,
        t.prospects,
        id=_id(),
        account_id=account_id,
        email=email,
        name=name,
        phone=phone,
        company_name=company_name,
        source=source,
        last_contact_at=NOW - dt.timedelta(days=30),
        created_at=NOW,
    )


def account_activity(conn, account_id: str) -> None:
    """One row of each table that hangs off an account: payments, logs, consent, sessions."""
    conn.execute(
        sa.insert(t.payment_records).values(
            id=_id(),
            account_id=account_id,
            stripe_object_id=f"pi_{uuid.uuid4().hex[:12]}",
            kind="payment_intent",
            amount_cents=1200,
            currency="EUR",
            status="succeeded",
            transaction_at=NOW,
            created_at=NOW,
            updated_at=NOW,
        )
    )
    conn.execute(
        sa.insert(t.connection_logs).values(
            account_id=account_id, occurred_at=NOW, event="login_succeeded", ip_address="203.0.113.7"
        )
    )
    conn.execute(
        sa.insert(t.access_logs).values(
            account_id=account_id, occurred_at=NOW, method="GET", path="/invoices", status_code=200
        )
    )
    conn.execute(
        sa.insert(t.consent_events).values(
            id=_id(),
            account_id=account_id,
            purpose="newsletter",
            action="given",
            occurred_at=NOW,
            channel="client_area",
            policy_version="1.1",
        )
    )
    conn.execute(
        sa.insert(t.sessions).values(
            id=_id(),
            account_id=account_id,
            token_hash=uuid.uuid4().hex,
            created_at=NOW,
            expires_at=NOW + dt.timedelta(days=1),
        )
    )


def rows(conn, table: sa.Table) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
