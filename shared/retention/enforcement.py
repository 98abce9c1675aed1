"""enforce-retention (policy 5): every period that is neither inactivity nor logs, per category.

Each category is one line of the schedule: a rule of `shared.policy.facts`, the data it
covers, its final action, how to count what is due at a moment (`plan`) and how to apply
it (`enforce`). The boundaries come from `shared.policy.rules`; the bounded deletes and the
audit of a run from `shared.retention.toolkit`.

    invoices                 their lines (ON DELETE CASCADE) and PDFs, 10 years after the issue
    payment_records.archive  restricted archive 13 months after the transaction
    payment_records.delete   5 years later (an open dispute stops the clock)
    prospects                3 years after their last contact
    sessions                 sign-in sessions (connection data), one year after the sign-in
    exports                  export archives, 7 days after they were written; unfinished uploads after a day
    request_records          closed requests, their saga steps, erasure receipts and ledger
    verification_records     verification codes, attempts, used TOTP steps: 30 days
    legal_holds.ended        holds past their end date: the end recorded and audited (first)
    suspended_erasures       what a legal hold kept of an erased account, once the hold ends (then)
    disclosure_records       the register of authority requests and ended holds, after their proof period

Legal holds (`shared.records.holds`): every category ANDs `not_held(table, now)` into what it
deletes, so the rows a hold in force keeps stay and everything else goes on schedule; exports of
an account whose exports are held stay too. A released hold's rows are due at the next run.

Invoices: the clock starts at the issue date (INVOICE_RETENTION_CLOCK=issue_date, the
default: the policy names no other start and it keeps nothing beyond 10 years); with
`financial_year_end` it starts at the close of the issue's financial year, taken as
31 December. INVOICE_RETENTION_MONTHS lengthens the period (never under 120).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, delete, func, select, update

from shared.platform.clock import moment
from shared.platform.config import get_settings
from shared.policy import data_map
from shared.policy import facts as policy
from shared.policy.rules import (
    cutoff,
    disclosure_records_rule,
    invoice_issue_bound,
    invoice_rule,
    request_records_rule,
)
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.records import disclosures, holds
from shared.records.holds import not_held
from shared.retention.toolkit import (
    BATCH_SIZE,
    Progress,
    count_rows,
    delete_in_batches,
    delete_objects,
    no_progress,
    object_prefix,
    pages,
    record_run,
    rule_json,
)
from shared.rights import erasure

# --- The categories ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    """One line of the schedule: a rule of the policy, the data it covers and its final action."""

    id: str
    rule: Callable[[], policy.RetentionRule]
    action: str  # delete | archive
    scope: str  # what it covers, for the operator
    count: Callable[[Connection, dt.datetime], dict[str, int]]
    apply: Callable[[Engine, dt.datetime, Progress], dict[str, int]]


# Invoices (and their lines, by ON DELETE CASCADE, and their PDFs) -------------------------------


def _invoices_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(schema.invoices.c.issue_date < invoice_issue_bound(now.date()), not_held("invoices", now))


def _count_invoices(conn: Connection, now: dt.datetime) -> dict[str, int]:
    inv = schema.invoices
    due = _invoices_due(now)
    row = conn.execute(
        select(func.count(), func.count(inv.c.archived_at), func.count(inv.c.pdf_object_key)).where(due)
    ).one()
    lines = conn.execute(
        select(func.count())
        .select_from(schema.invoice_lines)
        .where(schema.invoice_lines.c.invoice_id.in_(select(inv.c.id).where(due)))
    ).scalar_one()
    return {"invoices": row[0], "of_erased_accounts": row[1], "pdfs": row[2], "lines": lines}


def _apply_invoices(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    inv = schema.invoices
    settings = get_settings()
    storage = get_storage()
    due = _invoices_due(now)
    counts = {"invoices": 0, "of_erased_accounts": 0, "pdfs": 0, "held": 0}
    query = select(inv.c.id, inv.c.pdf_object_key, inv.c.archived_at).where(due)
    for rows in pages(engine, query, inv.c.id):
        by_bucket: dict[str, list[str]] = {}
        for row in rows:
            if row.pdf_object_key:
                # Erasure moves the PDF of an unlinked (archived) invoice to the retention archive.
                bucket = settings.archive_bucket if row.archived_at is not None else settings.documents_bucket
                by_bucket.setdefault(bucket, []).append(row.pdf_object_key)
        held: set[str] = set()
        for bucket, keys in by_bucket.items():
            deleted, still = delete_objects(storage, bucket, keys)
            counts["pdfs"] += deleted
            held |= still
        # An invoice whose PDF Object Lock still holds stays until both can go together.
        gone = [row for row in rows if not (row.pdf_object_key and row.pdf_object_key in held)]
        with engine.begin() as conn:
            conn.execute(delete(inv).where(inv.c.id.in_([row.id for row in gone])))
        counts["invoices"] += len(gone)
        counts["of_erased_accounts"] += sum(1 for row in gone if row.archived_at is not None)
        counts["held"] += len(rows) - len(gone)
        progress("invoices", counts["invoices"])
    return counts


# Payment records: restricted archive after 13 months, deleted 5 years later ------------------------


def _payment_clock() -> sa.ColumnElement:
    p = schema.payment_records
    return sa.case((p.c.disputed_until > p.c.transaction_at, p.c.disputed_until), else_=p.c.transaction_at)


def _payment_not_held() -> sa.ColumnElement[bool]:
    # An open dispute stops the clock (policy rule `payment_data`, hold_while).
    opened, closed = data_map.table_map("payment_records").held_while_open or ("dispute_opened_at", "disputed_until")
    p = schema.payment_records
    return sa.or_(p.c[opened].is_(None), p.c[closed].is_not(None))


def _payments_to_archive(now: dt.datetime) -> sa.ColumnElement[bool]:
    p = schema.payment_records
    return sa.and_(
        p.c.archived_at.is_(None),
        _payment_not_held(),
        _payment_clock() < cutoff("payment_data", now.date(), archive=True),
        not_held("payment_records", now),
    )


def _payments_to_delete(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        _payment_not_held(), _payment_clock() < cutoff("payment_data", now.date()), not_held("payment_records", now)
    )


def _count_payment_archive(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"payment_records": count_rows(conn, schema.payment_records, _payments_to_archive(now))}


def _apply_payment_archive(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    p = schema.payment_records
    with engine.begin() as conn:
        result = conn.execute(update(p).where(_payments_to_archive(now)).values(archived_at=now))
    progress("payment_records.archive", max(result.rowcount, 0))
    return {"payment_records": max(result.rowcount, 0)}


def _count_payment_delete(conn: Connection, now: dt.datetime) -> dict[str, int]:
    p = schema.payment_records
    row = conn.execute(select(func.count(), func.count(p.c.subject_pseudonym)).where(_payments_to_delete(now))).one()
    return {"payment_records": row[0], "of_erased_accounts": row[1]}


def _apply_payment_delete(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    deleted = delete_in_batches(
        engine, schema.payment_records, _payments_to_delete(now), "payment_records.delete", progress
    )
    return {"payment_records": deleted}


# Prospects: 3 years after the last contact they initiated -------------------------------------------


def _prospects_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(schema.prospects.c.last_contact_at < cutoff("prospects", now.date()), not_held("prospects", now))


def _count_prospects(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"prospects": count_rows(conn, schema.prospects, _prospects_due(now))}


def _apply_prospects(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    return {"prospects": delete_in_batches(engine, schema.prospects, _prospects_due(now), "prospects", progress)}


# Sessions: connection data (IP address, user agent), one year after the sign-in -------------------------


def _sessions_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    # The data map's clock for sessions is created_at; a session lives weeks, never a year.
    return sa.and_(schema.sessions.c.created_at < cutoff("connection_logs", now.date()), not_held("sessions", now))


def _count_sessions(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"sessions": count_rows(conn, schema.sessions, _sessions_due(now))}


def _apply_sessions(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    return {"sessions": delete_in_batches(engine, schema.sessions, _sessions_due(now), "sessions", progress)}


# Exports: 7 days after they were written ------------------------------------------------------------

# An unfinished upload (a partial archive) is removed a day after it started, as S3's lifecycle rule does.
TEMPORARY_LIFETIME = dt.timedelta(days=1)


def _expired_exports(now: dt.datetime, kept: set[str]) -> Iterator[tuple[str, str]]:
    """(key, version id) of export objects written before the rule's cutoff, but those of the `kept` accounts."""
    bound = cutoff("exports", now.date())
    prefix = object_prefix("exports").prefix()
    for version in get_storage().list_versions(get_settings().exports_bucket, prefix):
        if version.last_modified < bound and version.key[len(prefix) :].split("/", 1)[0] not in kept:
            yield version.key, version.version_id


def _count_exports(conn: Connection, now: dt.datetime) -> dict[str, int]:
    kept = holds.accounts_holding_prefix(conn, "exports", now)
    return {"objects": sum(1 for _ in _expired_exports(now, kept))}


def _apply_exports(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    storage, bucket = get_storage(), get_settings().exports_bucket
    with engine.connect() as conn:
        kept = holds.accounts_holding_prefix(conn, "exports", now)
    deleted = 0
    batch: list[tuple[str, str]] = []
    for target in _expired_exports(now, kept):
        batch.append(target)
        if len(batch) == BATCH_SIZE:
            deleted += storage.delete_many(bucket, batch)
            batch = []
            progress("exports", deleted)
    if batch:
        deleted += storage.delete_many(bucket, batch)
    # Uploads a crash left unfinished (partial archives, multipart parts), a day on.
    temporaries = storage.purge_temporaries(bucket, older_than=now - TEMPORARY_LIFETIME)
    return {"objects": deleted, "temporaries": temporaries}


# Request registry and receipts: kept as proof, then purged ------------------------------------------


def _requests_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    r = schema.dsr_requests
    return sa.and_(
        r.c.closed_at.is_not(None),
        r.c.closed_at < cutoff(request_records_rule(), now.date()),
        not_held("dsr_requests", now),
    )


def _ledger_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        schema.erasure_ledger.c.erased_at < cutoff(request_records_rule(), now.date()), not_held("erasure_ledger", now)
    )


def _count_requests(conn: Connection, now: dt.datetime) -> dict[str, int]:
    r = schema.dsr_requests
    due = _requests_due(now)
    return {
        "requests": count_rows(conn, r, due),
        "erasure_receipts": count_rows(conn, r, sa.and_(due, r.c.kind == "erasure")),
        "ledger_entries": count_rows(conn, schema.erasure_ledger, _ledger_due(now)),
    }


def _proof_keys(request_id: str) -> list[str]:
    return [
        object_prefix("erasure_receipts").key(request_id=request_id),
        object_prefix("erasure_ledger_mirror").key(request_id=request_id),
    ]


def _apply_requests(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    r, ledger, steps = schema.dsr_requests, schema.erasure_ledger, schema.saga_steps
    storage, bucket = get_storage(), get_settings().archive_bucket
    counts = {"requests": 0, "proof_objects": 0, "ledger_entries": 0, "held": 0}
    for rows in pages(engine, select(r.c.id, r.c.kind).where(_requests_due(now)), r.c.id):
        keys = [key for row in rows if row.kind == "erasure" for key in _proof_keys(row.id)]
        deleted, held = delete_objects(storage, bucket, keys)
        counts["proof_objects"] += deleted
        ids = [row.id for row in rows if not held.intersection(_proof_keys(row.id))]
        with engine.begin() as conn:
            conn.execute(delete(steps).where(steps.c.job_id.in_(ids)))
            counts["ledger_entries"] += conn.execute(delete(ledger).where(ledger.c.request_id.in_(ids))).rowcount
            conn.execute(delete(r).where(r.c.id.in_(ids)))
        counts["requests"] += len(ids)
        counts["held"] += len(rows) - len(ids)
        progress("request_records", counts["requests"])
    # Ledger rows whose request was purged earlier (or never stored): the same period applies.
    counts["ledger_entries"] += delete_in_batches(
        engine, ledger, sa.and_(_ledger_due(now), ~ledger.c.request_id.in_(select(r.c.id))), "request_records", progress
    )
    return counts


# Identity verification records: 30 days ---------------------------------------------------------------

# (count name, table, clock column); the names avoid words the audit trail refuses (e.g. "totp").
_VERIFICATION_TABLES = (
    ("codes", schema.verification_codes, "created_at"),
    ("attempts", schema.verification_attempts, "attempted_at"),
    ("used_time_steps", schema.totp_used_steps, "used_at"),
)


def _verification_due(table: sa.Table, column: str, now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(table.c[column] < cutoff("verification_records", now.date()), not_held(table.name, now))


def _count_verification(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {
        name: count_rows(conn, table, _verification_due(table, column, now))
        for name, table, column in _VERIFICATION_TABLES
    }


def _apply_verification(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    return {
        name: delete_in_batches(engine, table, _verification_due(table, column, now), "verification_records", progress)
        for name, table, column in _VERIFICATION_TABLES
    }


# Legal holds past their end date: their end recorded and audited ---------------------------------------------


def _count_holds_ended(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"legal_holds": holds.count_ended(conn, now)}


def _apply_holds_ended(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    with engine.begin() as conn:
        ended = holds.record_ended(conn, now)
    progress("legal_holds.ended", ended)
    return {"legal_holds": ended}


# Erasures a legal hold suspended: finished once the hold ends ------------------------------------------


def _count_suspended(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return erasure.count_suspended(conn, now)


def _apply_suspended(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    return erasure.finish_suspended(engine, now=now, progress=progress)


# The register of authority requests and disclosures, and ended legal holds ---------------------------------


def _count_disclosures(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return disclosures.count_expired(conn, now)


def _apply_disclosures(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    counts = disclosures.purge_expired(engine, now)
    progress("disclosure_records", sum(counts.values()))
    return counts


CATEGORIES: tuple[Category, ...] = (
    Category(
        "legal_holds.ended",
        disclosure_records_rule,
        "record",
        "legal holds past their end date: the end recorded and audited",
        _count_holds_ended,
        _apply_holds_ended,
    ),
    # First: data a released hold gives back to its erasure goes now, and its expired records below in the same run.
    Category(
        "suspended_erasures",
        lambda: policy.retention_rule("inactive_account"),
        "delete",
        "erased accounts' data a legal hold kept, once the hold ends",
        _count_suspended,
        _apply_suspended,
    ),
    Category(
        "invoices",
        invoice_rule,
        "delete",
        "invoices, their lines and PDFs (live and archived)",
        _count_invoices,
        _apply_invoices,
    ),
    Category(
        "payment_records.archive",
        lambda: policy.retention_rule("payment_data"),
        "archive",
        "payment records past their active period move to restricted archive",
        _count_payment_archive,
        _apply_payment_archive,
    ),
    Category(
        "payment_records.delete",
        lambda: policy.retention_rule("payment_data"),
        "delete",
        "payment records at the end of their archive",
        _count_payment_delete,
        _apply_payment_delete,
    ),
    Category(
        "prospects",
        lambda: policy.retention_rule("prospects"),
        "delete",
        "prospects (non-clients)",
        _count_prospects,
        _apply_prospects,
    ),
    Category(
        "sessions",
        lambda: policy.retention_rule("connection_logs"),
        "delete",
        "sign-in sessions (connection data: IP address, user agent)",
        _count_sessions,
        _apply_sessions,
    ),
    Category(
        "exports",
        lambda: policy.retention_rule("exports"),
        "delete",
        "export archives in object storage",
        _count_exports,
        _apply_exports,
    ),
    Category(
        "request_records",
        request_records_rule,
        "delete",
        "closed requests, their saga steps, erasure receipts and ledger",
        _count_requests,
        _apply_requests,
    ),
    Category(
        "verification_records",
        lambda: policy.retention_rule("verification_records"),
        "delete",
        "verification codes, attempts and used TOTP steps",
        _count_verification,
        _apply_verification,
    ),
    Category(
        "disclosure_records",
        disclosure_records_rule,
        "delete",
        "register of authority requests and disclosures, and ended legal holds, past their proof period",
        _count_disclosures,
        _apply_disclosures,
    ),
)


def plan(engine: Engine, *, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What enforce-retention would do at `at` (default now), per category; changes nothing."""
    at = moment(at)
    with engine.connect() as conn:
        return [
            {
                "category": c.id,
                "action": c.action,
                "scope": c.scope,
                "rule": rule_json(c.rule()),
                "due": c.count(conn, at),
            }
            for c in CATEGORIES
        ]


def enforce(engine: Engine, *, now: dt.datetime | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The enforce-retention job: apply every category's final action to what is due, then audit it."""
    now = moment(now)
    progress = progress or no_progress
    results: dict[str, Any] = {}
    for category in CATEGORIES:
        counts = category.apply(engine, now, progress)
        record_run(engine, category.id, category.rule(), counts, now)
        results[category.id] = counts
    return {"ran_at": now.isoformat(), "categories": results}
