"""People without an account who are the platform's own prospects (the platform is controller).

    platform_prospects(identifiers) -> Select
        the prospects rows naming the person that the platform holds for itself (account_id NULL);
        an account's own prospects are that account's to answer for (shared.desk.third_parties).
    prospect_information(language, sources=()) -> dict
        the Art. 15(1) information (shared.policy.facts.art15_information) plus what concerns a
        prospect: category, purpose and legal basis, retention, recipients, source, no automated decision.
    prospect_access_archive(engine, storage, *, request_id, identifiers, now=None) -> dict
        access and portability: a ZIP (data.json, csv/prospects.csv, README.html) in the exports
        bucket under `exports/prospects/<keyed id>.zip` (expires with the exports, 7 days); returns
        {"bucket", "object_key", "size_bytes", "sha256", "rows", "expires_at"}.
    erase_prospect(engine, *, request_id, identifiers, actor, now=None) -> dict
        erasure: the Resend contact removed (not an address an account holds: its own consents govern
        it), then the rows deleted; returns the receipt (counts and outcomes, no personal data).
    object_to_prospect_marketing(engine, *, request_id, identifiers, actor, now=None) -> dict
        objection (Art. 21(2)): a suppression (keyed pseudonym of the email and phone) that every
        prospect mailing honours, and the Resend contact unsubscribed.
    is_suppressed(conn, *, email=None, phone=None) -> bool
    unsuppressed(conn, emails) -> list[str]   the addresses a prospect mailing may write to (one query)

Each operation is idempotent and resumable: side effects outside the database run as saga steps
(shared.records.saga, job id = the request id), database effects commit with their processed
marker (shared.desk.once). A re-run after a crash at any point repeats no Resend call that
completed, writes no second archive (its key derives from the request id) and no second audit entry.
Identifiers are never logged nor audited; the saga results hold counts only.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from shared import notices
from shared.desk.identifiers import SubjectIdentifiers, normalise_phone
from shared.desk.once import once
from shared.desk.search import matching_rows
from shared.platform.clock import iso, moment
from shared.platform.config import get_settings
from shared.platform.pseudonym import pseudonymise
from shared.policy import data_map
from shared.policy import facts as policy
from shared.ports.backends import get_mailer
from shared.ports.db import dialect_insert
from shared.ports.storage import ObjectStore
from shared.ports.tables import accounts, prospect_suppressions, prospects
from shared.records import audit
from shared.records.saga import run_step

FUNCTION = "dpo-desk"
ARCHIVE_FORMAT = {"name": "jefacturebien-prospect-access", "version": 1}
PROSPECT_CATEGORY = "prospects.contact"
PROSPECT_RETENTION = "prospects"
# Who receives a prospect's data: the host and the mailer (6.2); never Stripe nor SuperPDP.
PROSPECT_RECIPIENTS = ("scaleway", "resend")
SUPPRESSION_PURPOSE = "prospect-suppression"
SUPPRESSED_KINDS = ("email", "phone")

_SOURCE = {
    "en": "Collected by {controller} as a prospect (recorded source: {sources}).",
    "fr": "Collectées par {controller} en tant que prospect (source enregistrée : {sources}).",
}
_NO_SOURCE = {"en": "none recorded", "fr": "aucune enregistrée"}


# --- What is held ---------------------------------------------------------------------------------


def platform_prospects(identifiers: SubjectIdentifiers) -> sa.Select:
    """The platform's own prospects rows naming the person (empty SELECT when nothing can match)."""
    query = matching_rows("prospects", identifiers, role=data_map.ROLE_PROSPECT)
    if query is None:
        return sa.select(prospects).where(sa.false())
    return query.where(prospects.c.account_id.is_(None)).order_by(prospects.c.id)


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _rows(conn: Connection, identifiers: SubjectIdentifiers) -> list[dict[str, Any]]:
    return [{k: _encode(v) for k, v in row._mapping.items()} for row in conn.execute(platform_prospects(identifiers))]


def prospect_information(language: str, sources: Iterable[str] = ()) -> dict[str, Any]:
    """Art. 15(1) for a prospect: the general information, and what concerns them in `concerning_you`."""
    info = policy.art15_information(language)
    category = next(c for c in info["categories"] if c["id"] == PROSPECT_CATEGORY)
    retention = next(r for r in info["retention"] if r["id"] == PROSPECT_RETENTION)
    recipients = [s for s in info["recipients"]["subprocessors"] if s["id"] in PROSPECT_RECIPIENTS]
    listed = ", ".join(sorted(set(sources))) or _NO_SOURCE[language]
    info["concerning_you"] = {
        "role": "controller",
        "category": category,
        "retention": retention,
        "recipients": recipients,
        "source": _SOURCE[language].format(controller=policy.CONTROLLER.name, sources=listed),
        "automated_decision": policy.NO_AUTOMATED_DECISION.get(language),
    }
    return info


# --- Access and portability ---------------------------------------------------------------------------


def archive_key(request_id: str) -> str:
    """Unguessable yet the same on every run: a re-run overwrites rather than adds an archive."""
    prefix = next(p for p in data_map.OBJECT_PREFIXES if p.id == "prospect_exports")
    return prefix.key(archive_id=pseudonymise(request_id, purpose="export-object"))


# A prospect's archive link lives a day, as an account's download link does at most (export/links.py).
ARCHIVE_LINK_SECONDS = 24 * 3600


def archive_link(storage: ObjectStore, request_id: str, *, now: dt.datetime | None = None) -> tuple[str, dt.datetime]:
    """A short-lived link to the request's archive, and when it stops working."""
    url = storage.presigned_get_url(
        get_settings().exports_bucket, archive_key(request_id), expires_in=ARCHIVE_LINK_SECONDS
    )
    return url, moment(now) + dt.timedelta(seconds=ARCHIVE_LINK_SECONDS)


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [c.name for c in prospects.columns]
    writer.writerow(columns)
    for row in rows:
        # A spreadsheet runs a cell starting with = + - @ as a formula: quote it as text.
        writer.writerow(
            ["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else v for v in (row[c] for c in columns)]
        )
    return out.getvalue()


def _archive_bytes(request_id: str, rows: list[dict[str, Any]], now: dt.datetime) -> bytes:
    sources = [r["source"] for r in rows if r.get("source")]
    information = {language: prospect_information(language, sources) for language in policy.LANGUAGES}
    data = {
        "format": ARCHIVE_FORMAT,
        "generated_at": iso(now),
        "request_id": request_id,
        "information": information,
        "data": {"prospects": rows},
    }
    readme = notices.page(
        "prospect_readme",
        language="fr",
        generated_at=iso(now),
        request_id=request_id,
        rows=len(rows),
        information=information,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.json", json.dumps(data, ensure_ascii=False, indent=2))
        zf.writestr("csv/prospects.csv", _csv(rows))
        zf.writestr("README.html", readme)
    return buffer.getvalue()


def prospect_access_archive(
    engine: Engine,
    storage: ObjectStore,
    *,
    request_id: str,
    identifiers: SubjectIdentifiers,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Build and store the archive once per request; a re-run returns the stored metadata."""
    now = moment(now)

    def build() -> dict[str, Any]:
        bucket = get_settings().exports_bucket
        key = archive_key(request_id)
        with engine.connect() as conn:
            rows = _rows(conn, identifiers)
        # A handful of rows per person: the archive is built in memory.
        body = _archive_bytes(request_id, rows, now)
        storage.discard_partial(bucket, key, request_id=request_id)
        storage.put(bucket, key, body, content_type="application/zip", metadata={"request-id": request_id})
        return {
            "bucket": bucket,
            "object_key": key,
            "size_bytes": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "rows": len(rows),
            "expires_at": iso(policy.expires_at("exports", now)),
        }

    stored = run_step(engine, request_id, "prospect.archive", build, now=now)
    assert stored is not None

    def audited(conn: Connection) -> None:
        audit.record(
            conn,
            actor="system:desk",
            action="desk.prospect_archive_stored",
            outcome="stored",
            request_id=request_id,
            details={k: stored[k] for k in ("size_bytes", "sha256", "rows", "expires_at")},
        )

    once(engine, f"desk:prospect-archive:{request_id}", FUNCTION, audited, now=now)
    return stored


# --- Erasure ------------------------------------------------------------------------------------------


def _held_by_accounts(conn: Connection, emails: set[str]) -> set[str]:
    if not emails:
        return set()
    held = conn.execute(
        sa.select(sa.func.lower(accounts.c.email)).where(sa.func.lower(accounts.c.email).in_(sorted(emails)))
    )
    return {row[0] for row in held}


def _contact_addresses(conn: Connection, identifiers: SubjectIdentifiers) -> tuple[list[str], int]:
    """The person's addresses the platform's mailing may hold (given, and on their prospect rows), minus
    those an account holds; and how many were left to the account's own consents."""
    emails = {r.email.strip().lower() for r in conn.execute(platform_prospects(identifiers)) if r.email}
    if identifiers.email:
        emails.add(identifiers.email)
    held = _held_by_accounts(conn, emails)
    return sorted(emails - held), len(held)


def erase_prospect(
    engine: Engine,
    *,
    request_id: str,
    identifiers: SubjectIdentifiers,
    actor: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Resend contact removed, prospect rows deleted, receipt returned (and audited) once per request."""
    now = moment(now)

    def resend() -> dict[str, Any]:
        with engine.connect() as conn:
            addresses, kept = _contact_addresses(conn, identifiers)
        mailer = get_mailer()
        removed = sum(len(mailer.remove_contact(address)) for address in addresses)
        return {"contacts_removed": removed, "kept_for_account": kept}

    contacts = run_step(engine, request_id, "prospect.erase.resend", resend, now=now) or {}

    def delete(conn: Connection) -> dict[str, Any]:
        ids = [row.id for row in conn.execute(platform_prospects(identifiers).with_only_columns(prospects.c.id))]
        deleted = conn.execute(sa.delete(prospects).where(prospects.c.id.in_(ids))).rowcount if ids else 0
        receipt = {
            "request_id": request_id,
            "erased_at": iso(now),
            "prospects_deleted": deleted,
            "categories": [{"category": PROSPECT_CATEGORY, "outcome": "erased" if deleted else "none_held"}],
            "subprocessors": [
                {
                    "subprocessor": "resend",
                    "outcome": "contact_removed"
                    if contacts.get("contacts_removed")
                    else ("kept_for_account" if contacts.get("kept_for_account") else "no_contact"),
                }
            ],
        }
        audit.record(
            conn,
            actor=actor,
            action="desk.prospect_erased",
            outcome="erased" if deleted else "none_held",
            request_id=request_id,
            details={"prospects_deleted": deleted, "contacts_removed": contacts.get("contacts_removed", 0)},
        )
        return receipt

    receipt = once(engine, f"desk:prospect-erase:{request_id}", FUNCTION, delete, now=now)
    assert receipt is not None
    return receipt


# --- Objection to marketing ---------------------------------------------------------------------------


def suppression_pseudonym(kind: str, value: str) -> str:
    """The keyed pseudonym a suppression is stored under: 'email:<lower-cased>' or 'phone:<E.164>'."""
    if kind == "email":
        value = value.strip().lower()
    elif kind == "phone":
        value = normalise_phone(value)
    else:
        raise ValueError(f"a suppression is kept for one of {SUPPRESSED_KINDS}")
    return pseudonymise(f"{kind}:{value}", purpose=SUPPRESSION_PURPOSE)


def is_suppressed(conn: Connection, *, email: str | None = None, phone: str | None = None) -> bool:
    keys = [suppression_pseudonym(k, v) for k, v in (("email", email), ("phone", phone)) if v]
    if not keys:
        return False
    found = conn.execute(
        sa.select(prospect_suppressions.c.pseudonym).where(prospect_suppressions.c.pseudonym.in_(keys))
    )
    return found.first() is not None


def unsuppressed(conn: Connection, emails: Iterable[str]) -> list[str]:
    """The addresses, in order, that no objection suppresses: what a prospect mailing may write to."""
    emails = list(emails)
    keys = {email: suppression_pseudonym("email", email) for email in emails}
    suppressed: set[str] = set()
    values = sorted(set(keys.values()))
    for start in range(0, len(values), 1000):
        rows = conn.execute(
            sa.select(prospect_suppressions.c.pseudonym).where(
                prospect_suppressions.c.pseudonym.in_(values[start : start + 1000])
            )
        )
        suppressed.update(row[0] for row in rows)
    return [email for email in emails if keys[email] not in suppressed]


def object_to_prospect_marketing(
    engine: Engine,
    *,
    request_id: str,
    identifiers: SubjectIdentifiers,
    actor: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Suppress the person's email and phone from every prospect mailing and unsubscribe the Resend contact."""
    now = moment(now)
    given = {kind: getattr(identifiers, kind) for kind in SUPPRESSED_KINDS if getattr(identifiers, kind)}

    def suppress(conn: Connection) -> dict[str, Any]:
        added = 0
        for kind, value in sorted(given.items()):
            inserted = conn.execute(
                dialect_insert(conn, prospect_suppressions)
                .values(
                    pseudonym=suppression_pseudonym(kind, value),
                    identifier_kind=kind,
                    request_id=request_id,
                    suppressed_at=now,
                    set_by=actor,
                )
                .on_conflict_do_nothing(index_elements=[prospect_suppressions.c.pseudonym])
                .returning(prospect_suppressions.c.pseudonym)
            ).first()
            added += inserted is not None
        audit.record(
            conn,
            actor=actor,
            action="desk.prospect_objection",
            outcome="suppressed" if given else "nothing_to_suppress",
            request_id=request_id,
            details={"kinds": sorted(given), "added": added},
        )
        return {"suppressed": sorted(given), "added": added}

    result = once(engine, f"desk:prospect-objection:{request_id}", FUNCTION, suppress, now=now) or {}

    def resend() -> dict[str, Any]:
        with engine.connect() as conn:
            addresses, kept = _contact_addresses(conn, identifiers)
        mailer = get_mailer()
        touched = sum(len(mailer.unsubscribe_contact(address)) for address in addresses)
        return {"contacts_unsubscribed": touched, "kept_for_account": kept}

    contacts = run_step(engine, request_id, "prospect.objection.resend", resend, now=now) or {}
    return {"request_id": request_id, **result, **contacts}
