"""Realistic French demo and test data: accounts that fill every category of the data map.

- `seed_demo` creates the demo accounts of `privacy-functions seed-demo` (one
  with 2FA, one without, one close to the inactivity limit); running it twice
  reuses what exists.
- `create_account` and `populate_account` are the factories of tests and
  benchmarks. Rows go in by batches (executemany), so tens of thousands of
  invoices and hundreds of thousands of log lines load in seconds.
- With `canary`, every personal free-text field (names, emails, addresses,
  descriptions, user agents, paths) embeds the canary, so a grep of the database,
  objects, exports or logs proves it never leaks or crosses accounts. Fields with a
  fixed format (phone, SIRET/SIREN, VAT number, IP address) cannot carry it.

Identifiers look real but are not: SIREN/SIRET pass the Luhn check, VAT numbers
carry their computed key, emails use example.com, IP addresses the documentation
ranges (RFC 5737, RFC 3849).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import random
import re
import secrets
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import bcrypt
import pyotp
import sqlalchemy as sa

from shared.identity.client import open_totp_secret, seal_totp_secret
from shared.platform.clock import add_months
from shared.platform.config import get_settings
from shared.platform.pseudonym import pseudonymise
from shared.policy.data_map import OBJECT_PREFIXES
from shared.policy.facts import POLICY_VERSION
from shared.ports import tables as schema
from shared.ports.db import utcnow

BATCH_SIZE = 5000
DEMO_PASSWORD = "demo-password"
CANARY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{4,40}$")
_INVOICE_PDFS = next(p for p in OBJECT_PREFIXES if p.id == "invoice_pdfs")

FIRST_NAMES = (
    "Camille",
    "Julien",
    "Sophie",
    "Thomas",
    "Léa",
    "Nicolas",
    "Chloé",
    "Antoine",
    "Manon",
    "Hugo",
    "Inès",
    "Mathieu",
    "Élodie",
    "Bastien",
    "Margaux",
    "Yann",
    "Aurélie",
    "Karim",
    "Nadia",
    "Rémi",
)
LAST_NAMES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Moreau",
    "Laurent",
    "Lefèvre",
    "Girard",
    "Roux",
    "Fournier",
    "Mercier",
    "Bonnet",
    "Lambert",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Gauthier",
    "Perrin",
    "Morel",
    "Benali",
    "Nguyen",
)
CITIES = (
    ("75011", "Paris"),
    ("69002", "Lyon"),
    ("13001", "Marseille"),
    ("33000", "Bordeaux"),
    ("44000", "Nantes"),
    ("31000", "Toulouse"),
    ("59000", "Lille"),
    ("67000", "Strasbourg"),
    ("35000", "Rennes"),
    ("34000", "Montpellier"),
)
STREETS = (
    "rue de la République",
    "avenue Jean Jaurès",
    "boulevard Voltaire",
    "rue Victor Hugo",
    "place de la Mairie",
    "rue du Commerce",
    "allée des Tilleuls",
    "quai de la Loire",
    "rue Nationale",
    "chemin des Vignes",
)
TRADES = (
    "Conseil",
    "Design",
    "Plomberie",
    "Menuiserie",
    "Traduction",
    "Formation",
    "Informatique",
    "Paysage",
    "Boulangerie",
    "Photographie",
)
LEGAL_FORMS = ("SARL", "SAS", "EURL", "SASU", "EI")
SERVICES = (
    ("Prestation de conseil (journée)", 65000),
    ("Développement web (jour)", 52000),
    ("Maintenance mensuelle", 18000),
    ("Formation inter-entreprises", 95000),
    ("Déplacement et frais", 12000),
    ("Création graphique", 45000),
    ("Traduction (1000 mots)", 9000),
    ("Intervention sur site (heure)", 7500),
    ("Licence logiciel annuelle", 120000),
    ("Audit de sécurité", 150000),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
)
ACCESS_PATHS = (
    "/api/invoices",
    "/api/invoices/{id}",
    "/api/clients",
    "/api/dashboard",
    "/api/settings",
    "/api/invoices/{id}/pdf",
    "/api/quotes",
)
CONNECTION_EVENTS = (
    "login_succeeded",
    "login_succeeded",
    "login_succeeded",
    "logout",
    "login_failed",
    "token_refreshed",
)
ANALYTICS_PAGES = ("/tableau-de-bord", "/factures", "/factures/nouvelle", "/clients", "/parametres")


# --- French business identifiers ------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _luhn_complete(prefix: str) -> str:
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


def make_siren(rng: random.Random) -> str:
    return _luhn_complete(str(rng.randint(1, 9)) + "".join(rng.choice("0123456789") for _ in range(7)))


def make_siret(siren: str, rng: random.Random) -> str:
    return _luhn_complete(siren + f"{rng.randint(1, 9999):04d}")


def vat_number(siren: str) -> str:
    """French intra-EU VAT number: FR + key (12 + 3 × (SIREN mod 97)) mod 97 + SIREN."""
    return f"FR{(12 + 3 * (int(siren) % 97)) % 97:02d}{siren}"


# --- A small valid PDF --------------------------------------------------------------------------


def _pdf_text(value: str) -> str:
    raw = value.encode("cp1252", errors="replace").decode("latin-1")
    return raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def invoice_pdf(lines: Sequence[str]) -> bytes:
    """A one-page PDF printing `lines` (Helvetica, WinAnsi), with a correct xref table."""
    text = "\n".join(f"({_pdf_text(line)}) Tj T*" for line in lines)
    stream = f"BT /F1 11 Tf 14 TL 50 800 Td\n{text}\nET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


# --- Helpers ----------------------------------------------------------------------------------


@functools.cache
def _demo_password_hash() -> str:

    # Low cost on purpose: demo data, created by the thousand in benchmarks.
    return bcrypt.hashpw(DEMO_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _new_id() -> str:
    return str(uuid.uuid4())


def _slug(value: str) -> str:
    table = str.maketrans("àâäéèêëîïôöùûüç", "aaaeeeeiioouuuc")
    return re.sub(r"[^a-z0-9]+", "-", value.lower().translate(table)).strip("-")


def _check_canary(canary: str | None) -> None:
    if canary is not None and not CANARY_PATTERN.match(canary):
        raise ValueError("canary must be 4 to 40 characters among letters, digits, '_' and '-'")


def _phone(rng: random.Random) -> str:
    return "+33 " + rng.choice("67") + "".join(f" {rng.randint(0, 99):02d}" for _ in range(4))


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"2001:db8::{rng.randint(1, 0xFFFF):x}"
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randint(1, 254)}"


def _spread(start: dt.datetime, end: dt.datetime, count: int, index: int) -> dt.datetime:
    """The index-th of `count` moments evenly spread from start to end."""
    if count <= 1:
        return end
    return start + (end - start) * index / (count - 1)


def _insert(conn: sa.Connection, table: sa.Table, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_SIZE:
            conn.execute(table.insert(), batch)
            count += len(batch)
            batch = []
    if batch:
        conn.execute(table.insert(), batch)
        count += len(batch)
    return count


def _connection(conn_or_engine: sa.Engine | sa.Connection) -> AbstractContextManager[sa.Connection]:
    if isinstance(conn_or_engine, sa.Engine):
        return conn_or_engine.begin()
    return nullcontext(conn_or_engine)


# --- Factories --------------------------------------------------------------------------------


def create_account(
    conn_or_engine: sa.Engine | sa.Connection,
    *,
    email: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    phone: str | None = None,
    with_2fa: bool = False,
    totp_secret: str | None = None,
    locale: str = "fr",
    status: str = "active",
    stripe_customer_id: str | None = None,
    created_at: dt.datetime | None = None,
    last_activity_at: dt.datetime | None = None,
    canary: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Insert one account and return its row (with `totp_secret` in clear when 2FA is on).

    `totp_secret`: this base32 seed rather than a random one (2FA on).
    """

    _check_canary(canary)
    now = now or utcnow()
    account_id = _new_id()
    rng = random.Random(account_id)
    first_name = first_name or rng.choice(FIRST_NAMES)
    last_name = last_name or rng.choice(LAST_NAMES)
    if canary:
        first_name, last_name = f"{first_name} {canary}", f"{last_name} {canary}"
    if email is None:
        local = f"{_slug(first_name.split()[0])}.{_slug(last_name.split()[0])}.{account_id[:8]}"
        email = f"{local}+{canary}@example.com" if canary else f"{local}@example.com"
    created_at = created_at or now - dt.timedelta(days=rng.randint(60, 900))
    row: dict[str, Any] = {
        "id": account_id,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "phone": phone or _phone(rng),
        "password_hash": _demo_password_hash(),
        "totp_secret": totp_secret or (pyotp.random_base32() if with_2fa else None),
        "locale": locale,
        "status": status,
        "stripe_customer_id": stripe_customer_id or "cus_" + secrets.token_hex(7),
        "created_at": created_at,
        "last_activity_at": last_activity_at or now - dt.timedelta(hours=rng.randint(1, 72)),
    }
    # The database holds the seed sealed for this account; the caller gets it in clear (to mint codes).
    stored = {**row, "totp_secret": seal_totp_secret(account_id, row["totp_secret"]) if row["totp_secret"] else None}
    with _connection(conn_or_engine) as conn:
        conn.execute(schema.accounts.insert(), stored)
    return row


def _company_row(
    account: dict[str, Any], rng: random.Random, mark: Callable[[str], str], now: dt.datetime
) -> dict[str, Any]:
    siren = make_siren(rng)
    postal_code, city = rng.choice(CITIES)
    trade = rng.choice(TRADES)
    return {
        "id": _new_id(),
        "account_id": account["id"],
        "name": mark(
            f"{trade} {(account['last_name'] or rng.choice(LAST_NAMES)).split()[0]} {rng.choice(LEGAL_FORMS)}"
        ),
        "siret": make_siret(siren, rng),
        "siren": siren,
        "vat_number": vat_number(siren),
        "address_line1": mark(f"{rng.randint(1, 120)} {rng.choice(STREETS)}"),
        "address_line2": mark(f"Bâtiment {rng.choice('ABC')}"),
        "postal_code": postal_code,
        "city": mark(city),
        "country": "FR",
        "created_at": account["created_at"],
    }


def populate_account(
    engine: sa.Engine,
    storage: Any,
    account_id: str,
    *,
    invoices: int = 3,
    lines_per_invoice: int = 2,
    log_lines: int = 10,
    payments: int = 3,
    clients: int = 3,
    prospects: int = 2,
    pdfs: bool = True,
    canary: str | None = None,
    client_name: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Fill every category of the data map for an existing account.

    Creates a company (reusing the account's first one if any), clients (the first
    named `client_name` when given), prospects, invoices with lines (and a PDF each
    in the documents bucket when `pdfs`), sessions, an API key, `log_lines` rows in
    each of connection_logs and access_logs, consent events, analytics events and
    payment records. Timestamps fall within the account's life, before its last
    activity. Returns ids and counts.
    """

    _check_canary(canary)
    if pdfs and storage is None:
        raise ValueError("pdfs=True needs a storage")
    now = now or utcnow()
    rng = random.Random(f"{account_id}:{invoices}:{log_lines}:{now.isoformat()}")

    def mark(value: str) -> str:
        return f"{value} {canary}" if canary else value

    summary: dict[str, Any] = {"account_id": account_id}
    with engine.begin() as conn:
        account: dict[str, Any] = dict(
            conn.execute(sa.select(schema.accounts).where(schema.accounts.c.id == account_id)).mappings().one()
        )
        end = account["last_activity_at"]
        start = max(account["created_at"], add_months(end, -24))

        existing = (
            conn.execute(sa.select(schema.companies).where(schema.companies.c.account_id == account_id).limit(1))
            .mappings()
            .first()
        )
        if existing is None:
            company = _company_row(account, rng, mark, now)
            conn.execute(schema.companies.insert(), company)
        else:
            company = dict(existing)
        summary["company_id"] = company["id"]

        client_rows = []
        for index in range(clients):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            postal_code, city = rng.choice(CITIES)
            siren = make_siren(rng)
            name = (
                client_name
                if (index == 0 and client_name)
                else f"{rng.choice(TRADES)} {last} {rng.choice(LEGAL_FORMS)}"
            )
            client_rows.append(
                {
                    "id": _new_id(),
                    "account_id": account_id,
                    "name": mark(name),
                    "contact_name": mark(f"{first} {last}"),
                    "email": f"{_slug(first)}.{_slug(last)}" + (f"+{canary}" if canary else "") + "@example.com",
                    "phone": _phone(rng),
                    "address_line1": mark(f"{rng.randint(1, 200)} {rng.choice(STREETS)}"),
                    "postal_code": postal_code,
                    "city": mark(city),
                    "country": "FR",
                    "siret": make_siret(siren, rng),
                    "vat_number": vat_number(siren),
                    "created_at": start,
                }
            )
        _insert(conn, schema.clients, client_rows)
        summary["client_ids"] = [c["id"] for c in client_rows]

        prospect_rows = []
        for index in range(prospects):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            contact = _spread(start, end, prospects, index)
            prospect_rows.append(
                {
                    "id": _new_id(),
                    "account_id": account_id,
                    "email": f"{_slug(first)}.{_slug(last)}.prospect"
                    + (f"+{canary}" if canary else "")
                    + "@example.com",
                    "name": mark(f"{first} {last}"),
                    "company_name": mark(f"{rng.choice(TRADES)} {last}"),
                    "phone": _phone(rng),
                    "source": rng.choice(("salon", "site_web", "recommandation")),
                    "last_contact_at": contact,
                    "created_at": contact - dt.timedelta(days=rng.randint(1, 90)),
                }
            )
        _insert(conn, schema.prospects, prospect_rows)

        seller_address = f"{company['address_line1']}, {company['postal_code']} {company['city']}"
        invoice_rows, line_rows, pdf_objects = [], [], []
        for index in range(invoices):
            client = client_rows[index % len(client_rows)] if client_rows else None
            issued = _spread(start, end, invoices, index)
            invoice_id = _new_id()
            lines: list[dict[str, Any]] = []
            for position in range(1, lines_per_invoice + 1):
                label, unit_price = rng.choice(SERVICES)
                quantity = Decimal(rng.choice(("1", "2", "3", "0.5", "1.5", "10")))
                lines.append(
                    {
                        "id": _new_id(),
                        "invoice_id": invoice_id,
                        "position": position,
                        "description": mark(label),
                        "quantity": quantity,
                        "unit_price_cents": unit_price,
                        "vat_rate": Decimal("20.00"),
                        "total_excl_tax_cents": int((quantity * unit_price).quantize(Decimal(1), ROUND_HALF_UP)),
                    }
                )
            excl = sum(line["total_excl_tax_cents"] for line in lines)
            tax = int((Decimal(excl) * Decimal("0.20")).quantize(Decimal(1), ROUND_HALF_UP))
            key = _INVOICE_PDFS.key(account_id=account_id, invoice_id=invoice_id) if pdfs else None
            invoice = {
                "id": invoice_id,
                "account_id": account_id,
                "company_id": company["id"],
                "client_id": client["id"] if client else None,
                "number": f"F{issued.year}-{index + 1:05d}",
                "issue_date": issued.date(),
                "due_date": issued.date() + dt.timedelta(days=30),
                "currency": "EUR",
                "total_excl_tax_cents": excl,
                "total_tax_cents": tax,
                "total_incl_tax_cents": excl + tax,
                "status": "paid" if issued < end - dt.timedelta(days=30) else "sent",
                "seller_name": company["name"],
                "seller_siret": company["siret"],
                "seller_vat_number": company["vat_number"],
                "seller_address": seller_address,
                "buyer_name": client["name"] if client else mark("Client comptoir"),
                "buyer_vat_number": client["vat_number"] if client else None,
                "buyer_address": f"{client['address_line1']}, {client['postal_code']} {client['city']}"
                if client
                else None,
                "pdf_object_key": key,
                "transmitted_at": issued + dt.timedelta(minutes=5),
                "archived_at": None,
                "created_at": issued,
            }
            invoice_rows.append(invoice)
            line_rows.extend(lines)
            if pdfs:
                pdf_objects.append((key, invoice, lines))
        _insert(conn, schema.invoices, invoice_rows)
        _insert(conn, schema.invoice_lines, line_rows)
        summary["invoice_ids"] = [i["id"] for i in invoice_rows]

        _insert(
            conn,
            schema.sessions,
            [
                {
                    "id": _new_id(),
                    "account_id": account_id,
                    "token_hash": _sha256(secrets.token_urlsafe(32)),
                    "ip_address": _ip(rng),
                    "user_agent": mark(rng.choice(USER_AGENTS)),
                    "created_at": end - dt.timedelta(days=days),
                    "expires_at": end - dt.timedelta(days=days) + dt.timedelta(days=30),
                    "revoked_at": end - dt.timedelta(days=days - 1) if days else None,
                }
                for days in (0, 12)
            ],
        )
        api_key = "jfb_" + secrets.token_urlsafe(24)
        _insert(
            conn,
            schema.api_keys,
            [
                {
                    "id": _new_id(),
                    "account_id": account_id,
                    "label": mark("Export comptable"),
                    "key_prefix": api_key[:12],
                    "key_hash": _sha256(api_key),
                    "created_at": start,
                    "last_used_at": end,
                    "revoked_at": None,
                }
            ],
        )

        log_start = end - dt.timedelta(days=90)
        ips = [_ip(rng) for _ in range(4)]
        _insert(
            conn,
            schema.connection_logs,
            (
                {
                    "account_id": account_id,
                    "subject_pseudonym": None,
                    "occurred_at": _spread(log_start, end, log_lines, index),
                    "event": CONNECTION_EVENTS[index % len(CONNECTION_EVENTS)],
                    "ip_address": ips[index % len(ips)],
                    "user_agent": mark(USER_AGENTS[index % len(USER_AGENTS)]),
                }
                for index in range(log_lines)
            ),
        )
        invoice_ids = summary["invoice_ids"] or [account_id]
        _insert(
            conn,
            schema.access_logs,
            (
                {
                    "account_id": account_id,
                    "subject_pseudonym": None,
                    "occurred_at": _spread(log_start, end, log_lines, index),
                    "method": "GET" if index % 4 else "POST",
                    "path": ACCESS_PATHS[index % len(ACCESS_PATHS)].format(id=invoice_ids[index % len(invoice_ids)])
                    + (f"?q={canary}" if canary else ""),
                    "status_code": 200 if index % 10 else 404,
                    "ip_address": ips[index % len(ips)],
                    "user_agent": mark(USER_AGENTS[index % len(USER_AGENTS)]),
                }
                for index in range(log_lines)
            ),
        )

        consented = account["created_at"] + dt.timedelta(days=1)
        consent_rows = [
            {
                "id": _new_id(),
                "account_id": account_id,
                "purpose": purpose,
                "action": "given",
                "occurred_at": consented,
                "channel": "client_area",
                "policy_version": POLICY_VERSION,
                "proof_ip_pseudonym": pseudonymise(ips[0], purpose="consent_proof_ip"),
                "proof_user_agent": mark(USER_AGENTS[0]),
            }
            for purpose in ("newsletter", "analytics")
        ]
        _insert(conn, schema.consent_events, consent_rows)
        analytics_count = max(1, log_lines // 5)
        _insert(
            conn,
            schema.analytics_events,
            (
                {
                    "account_id": account_id,
                    "occurred_at": _spread(log_start, end, analytics_count, index),
                    "name": "page_view",
                    "page": mark(ANALYTICS_PAGES[index % len(ANALYTICS_PAGES)]),
                    "consent_event_id": consent_rows[1]["id"],
                }
                for index in range(analytics_count)
            ),
        )

        payment_rows = []
        for index in range(payments):
            paid = max(add_months(end, -index), account["created_at"])
            disputed = index == payments - 1 and payments >= 3
            payment_rows.append(
                {
                    "id": _new_id(),
                    "account_id": account_id,
                    "subject_pseudonym": None,
                    "stripe_customer_id": account["stripe_customer_id"],
                    "stripe_object_id": "pi_" + secrets.token_hex(12),
                    "kind": "payment_intent",
                    "amount_cents": 1900,
                    "amount_refunded_cents": 0,
                    "currency": "eur",
                    "status": "succeeded",
                    "description": mark(f"Abonnement jefacturebien Pro — {paid:%m/%Y}"),
                    "card_brand": rng.choice(("visa", "mastercard", "cartes_bancaires")),
                    "card_last4": f"{rng.randint(0, 9999):04d}",
                    "transaction_at": paid,
                    "stripe_updated_at": paid,
                    "dispute_status": "won" if disputed else None,
                    "dispute_opened_at": paid + dt.timedelta(days=10) if disputed else None,
                    "disputed_until": paid + dt.timedelta(days=55) if disputed else None,
                    "customer_deleted_at": None,
                    "archived_at": None,
                    "created_at": paid,
                    "updated_at": paid,
                }
            )
        _insert(conn, schema.payment_records, payment_rows)

    # Objects after the commit: a PDF never points at an invoice that does not exist.
    if pdfs:
        bucket = get_settings().documents_bucket
        for key, invoice, lines in pdf_objects:
            storage.put(bucket, key, invoice_pdf(_invoice_text(invoice, lines)), content_type="application/pdf")
    summary["pdf_keys"] = [key for key, _invoice, _lines in pdf_objects]
    summary["counts"] = {
        "clients": len(client_rows),
        "prospects": len(prospect_rows),
        "invoices": len(invoice_rows),
        "invoice_lines": len(line_rows),
        "connection_logs": log_lines,
        "access_logs": log_lines,
        "analytics_events": analytics_count,
        "payment_records": len(payment_rows),
    }
    return summary


def _euros(cents: int) -> str:
    return f"{cents / 100:,.2f} EUR".replace(",", " ").replace(".", ",")


def _invoice_text(invoice: dict[str, Any], lines: list[dict[str, Any]]) -> list[str]:
    text = [
        f"FACTURE {invoice['number']} du {invoice['issue_date']:%d/%m/%Y}",
        "",
        f"Vendeur : {invoice['seller_name']}",
        invoice["seller_address"] or "",
        f"SIRET {invoice['seller_siret']} - TVA {invoice['seller_vat_number']}",
        "",
        f"Client : {invoice['buyer_name']}",
        invoice["buyer_address"] or "",
        "",
    ]
    text += [
        f"{line['position']}. {line['description']} x {line['quantity']} : {_euros(line['total_excl_tax_cents'])} HT"
        for line in lines
    ]
    text += [
        "",
        f"Total HT : {_euros(invoice['total_excl_tax_cents'])}",
        f"TVA 20 % : {_euros(invoice['total_tax_cents'])}",
        f"Total TTC : {_euros(invoice['total_incl_tax_cents'])}",
        f"Échéance : {invoice['due_date']:%d/%m/%Y}",
    ]
    return text


# --- The demo -----------------------------------------------------------------------------------

DEMO_ACCOUNTS: tuple[dict[str, Any], ...] = (
    # Active user with 2FA.
    {
        "email": "camille.martin@example.com",
        "first_name": "Camille",
        "last_name": "Martin",
        "phone": "+33 6 12 48 73 05",
        "with_2fa": True,
        "created_months_ago": 26,
        "inactive_days": 1,
    },
    # Active user without 2FA: step-up by a mailed code.
    {
        "email": "julien.moreau@example.com",
        "first_name": "Julien",
        "last_name": "Moreau",
        "phone": "+33 7 81 22 90 14",
        "with_2fa": False,
        "created_months_ago": 14,
        "inactive_days": 0,
    },
    # Dormant for almost 3 years: the inactivity warnings are due (policy 5).
    {
        "email": "sophie.lefevre@example.com",
        "first_name": "Sophie",
        "last_name": "Lefèvre",
        "phone": "+33 6 45 03 67 91",
        "with_2fa": False,
        "created_months_ago": 60,
        "inactive_days": 365 * 3 - 20,
    },
    # A name that is markup: every page must show it as text (the privacy center and the DPO console prove it).
    {
        "email": "alex.script@example.com",
        "first_name": "Alex <script>alert(1)</script>",
        "last_name": "Dupont",
        "phone": "+33 6 70 11 42 58",
        "with_2fa": False,
        "created_months_ago": 8,
        "inactive_days": 3,
    },
)

DEMO_PROSPECTS: tuple[dict[str, str], ...] = (
    {
        "email": "nadia.benali.prospect@example.com",
        "name": "Nadia Benali",
        "company_name": "Benali Conseil",
        "source": "salon",
    },
    {
        "email": "remi.gauthier.prospect@example.com",
        "name": "Rémi Gauthier",
        "company_name": "Atelier Gauthier",
        "source": "site_web",
    },
)


def seed_demo(engine: sa.Engine, storage: Any, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Create the demo accounts with their data; existing demo emails are reused, not duplicated."""
    now = now or utcnow()
    result = []
    for spec in DEMO_ACCOUNTS:
        with engine.connect() as conn:
            existing = conn.execute(
                sa.select(schema.accounts.c.id, schema.accounts.c.totp_secret).where(
                    schema.accounts.c.email == spec["email"]
                )
            ).first()
        if existing is not None:
            secret = open_totp_secret(existing.id, existing.totp_secret) if existing.totp_secret else None
            result.append({"id": existing.id, "email": spec["email"], "totp_secret": secret})
            continue
        last_activity = now - dt.timedelta(days=spec["inactive_days"], hours=2)
        account = create_account(
            engine,
            email=spec["email"],
            first_name=spec["first_name"],
            last_name=spec["last_name"],
            phone=spec["phone"],
            with_2fa=spec["with_2fa"],
            created_at=min(add_months(now, -spec["created_months_ago"]), last_activity),
            last_activity_at=last_activity,
            now=now,
        )
        populate_account(
            engine, storage, account["id"], invoices=6, lines_per_invoice=3, log_lines=30, payments=4, now=now
        )
        result.append({"id": account["id"], "email": account["email"], "totp_secret": account["totp_secret"]})

    with engine.begin() as conn:
        known = set(
            conn.execute(sa.select(schema.prospects.c.email).where(schema.prospects.c.account_id.is_(None))).scalars()
        )
        _insert(
            conn,
            schema.prospects,
            [
                {
                    "id": _new_id(),
                    "account_id": None,
                    "phone": None,
                    **p,
                    "last_contact_at": now - dt.timedelta(days=40 * (i + 1)),
                    "created_at": now - dt.timedelta(days=60 * (i + 1)),
                }
                for i, p in enumerate(DEMO_PROSPECTS)
                if p["email"] not in known
            ],
        )
    return result
