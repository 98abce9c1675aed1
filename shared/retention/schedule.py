"""The retention schedule (policy 5): what is due, per category, and applying it.

Every period comes from `shared.policy.facts` (the one source of truth); this module only
turns a rule into the boundary of what has expired on a given day, and applies the
rule's final action to everything past it. Three daily CRON functions call it:

    expire-inactive-accounts  shared.retention.inactivity   warnings, then erasure (3 years)
    log-rotation              shared.retention.log_rotation connection/access logs and log objects (1 year)
    enforce-retention         this module         invoices, payments, prospects, exports,
                                                  request registry and receipts, verification records

`plan(engine, at=...)` counts, per category, what is due at a moment without changing
anything; `run_all(engine)` applies the three jobs (the CLI's `retention run`).

Clocks are counted in calendar days (UTC): data whose clock started on day D expires
on `policy.expires_at(rule, D)`, so it goes on the day an erasure receipt announced.
`add_months` on dates never decreases when the day increases, hence "expired" is
always a prefix of the clock column: one indexed range `clock < cutoff`.

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

from shared.records import audit

from shared.policy import data_map

from shared.policy import facts as policy

from shared.ports import tables as schema
from shared.platform.config import get_settings
from shared.policy.rules import (  # noqa: F401  (the schedule's vocabulary, re-exported for its callers)
    ONE_DAY,
    cutoff,
    invoice_clock_start,
    invoice_expiry,
    invoice_issue_bound,
    invoice_rule,
    last_expired_day,
    request_records_rule,
    start_of_day,
)
from shared.ports.db import UTC, utcnow

ACTOR = "system:retention"
BATCH_SIZE = 1000  # rows per delete statement, and at most one S3 DeleteObjects call per batch

# Called with (category id, items done so far) while a long run progresses.
Progress = Callable[[str, int], None]


def no_progress(_category: str, _done: int) -> None:
    return None


# --- Categories of enforce-retention --------------------------------------------------------------


@dataclass(frozen=True)
class Category:
    """One line of the schedule: a rule of the policy, the data it covers and its final action."""

    id: str
    rule: Callable[[], policy.RetentionRule]
    action: str  # delete | archive
    scope: str  # what it covers, for the operator
    count: Callable[[Connection, dt.datetime], dict[str, int]]
    apply: Callable[[Engine, dt.datetime, Progress], dict[str, int]]


def _pages(engine: Engine, query: sa.Select, key: sa.Column) -> Iterator[list[sa.Row]]:
    """Rows of `query` in pages of BATCH_SIZE, by keyset on the unique indexed `key` (the query's
    first column), each page read in its own short transaction: what a page leaves in place is
    not read again, and memory holds one page."""
    last = None
    while True:
        page = query.order_by(key).limit(BATCH_SIZE)
        if last is not None:
            page = page.where(key > last)
        with engine.connect() as conn:
            rows = conn.execute(page).all()
        if not rows:
            return
        yield rows
        if len(rows) < BATCH_SIZE:
            return
        last = rows[-1][0]


def delete_in_batches(engine: Engine, table: sa.Table, condition: sa.ColumnElement[bool], category: str,
                       progress: Progress) -> int:
    """DELETE ... WHERE condition, one bounded statement (and transaction) per batch."""
    pk = list(table.primary_key.columns)
    total = 0
    while True:
        with engine.begin() as conn:
            ids = select(*pk).where(condition).limit(BATCH_SIZE)
            if len(pk) == 1:
                result = conn.execute(delete(table).where(pk[0].in_(ids.scalar_subquery())))
            else:
                result = conn.execute(delete(table).where(sa.tuple_(*pk).in_(ids)))
        total += max(result.rowcount, 0)
        progress(category, total)
        if result.rowcount < BATCH_SIZE:
            return total


def _count(conn: Connection, table: sa.Table, condition: sa.ColumnElement[bool]) -> int:
    return conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()


def _prefix(prefix_id: str) -> data_map.ObjectPrefix:
    return next(p for p in data_map.OBJECT_PREFIXES if p.id == prefix_id)


def _delete_objects(storage, bucket: str, keys: list[str]) -> tuple[int, set[str]]:
    """Delete every version of `keys`; returns (deleted, keys still present because Object Lock holds them)."""
    from shared.ports.storage import ObjectRetained

    if not keys:
        return 0, set()
    try:
        return storage.delete_many(bucket, keys, versions=True), set()
    except ObjectRetained:
        held = {key for key in keys if storage.exists(bucket, key)}
        return len(keys) - len(held), held


# Invoices (and their lines, by ON DELETE CASCADE, and their PDFs) -------------------------------


def _invoices_due(today: dt.date) -> sa.ColumnElement[bool]:
    return schema.invoices.c.issue_date < invoice_issue_bound(today)


def _count_invoices(conn: Connection, now: dt.datetime) -> dict[str, int]:
    inv = schema.invoices
    due = _invoices_due(now.date())
    row = conn.execute(
        select(func.count(), func.count(inv.c.archived_at), func.count(inv.c.pdf_object_key)).where(due)
    ).one()
    lines = conn.execute(
        select(func.count()).select_from(schema.invoice_lines)
        .where(schema.invoice_lines.c.invoice_id.in_(select(inv.c.id).where(due)))
    ).scalar_one()
    return {"invoices": row[0], "of_erased_accounts": row[1], "pdfs": row[2], "lines": lines}


def _apply_invoices(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    from shared.ports.backends import get_storage

    inv = schema.invoices
    settings = get_settings()
    storage = get_storage()
    due = _invoices_due(now.date())
    counts = {"invoices": 0, "of_erased_accounts": 0, "pdfs": 0, "held": 0}
    query = select(inv.c.id, inv.c.pdf_object_key, inv.c.archived_at).where(due)
    for rows in _pages(engine, query, inv.c.id):
        by_bucket: dict[str, list[str]] = {}
        for row in rows:
            if row.pdf_object_key:
                # Erasure moves the PDF of an unlinked (archived) invoice to the retention archive.
                bucket = settings.archive_bucket if row.archived_at is not None else settings.documents_bucket
                by_bucket.setdefault(bucket, []).append(row.pdf_object_key)
        held: set[str] = set()
        for bucket, keys in by_bucket.items():
            deleted, still = _delete_objects(storage, bucket, keys)
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
        p.c.archived_at.is_(None), _payment_not_held(), _payment_clock() < cutoff("payment_data", now.date(), archive=True)
    )


def _payments_to_delete(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(_payment_not_held(), _payment_clock() < cutoff("payment_data", now.date()))


def _count_payment_archive(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"payment_records": _count(conn, schema.payment_records, _payments_to_archive(now))}


def _apply_payment_archive(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    p = schema.payment_records
    with engine.begin() as conn:
        result = conn.execute(update(p).where(_payments_to_archive(now)).values(archived_at=now))
    progress("payment_records.archive", max(result.rowcount, 0))
    return {"payment_records": max(result.rowcount, 0)}


def _count_payment_delete(conn: Connection, now: dt.datetime) -> dict[str, int]:
    p = schema.payment_records
    row = conn.execute(
        select(func.count(), func.count(p.c.subject_pseudonym)).where(_payments_to_delete(now))
    ).one()
    return {"payment_records": row[0], "of_erased_accounts": row[1]}


def _apply_payment_delete(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    deleted = delete_in_batches(engine, schema.payment_records, _payments_to_delete(now), "payment_records.delete", progress)
    return {"payment_records": deleted}


# Prospects: 3 years after the last contact they initiated -------------------------------------------


def _prospects_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    return schema.prospects.c.last_contact_at < cutoff("prospects", now.date())


def _count_prospects(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"prospects": _count(conn, schema.prospects, _prospects_due(now))}


def _apply_prospects(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    return {"prospects": delete_in_batches(engine, schema.prospects, _prospects_due(now), "prospects", progress)}


# Sessions: connection data (IP address, user agent), one year after the sign-in -------------------------


def _sessions_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    # The data map's clock for sessions is created_at; a session lives weeks, never a year.
    return schema.sessions.c.created_at < cutoff("connection_logs", now.date())


def _count_sessions(conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"sessions": _count(conn, schema.sessions, _sessions_due(now))}


def _apply_sessions(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    return {"sessions": delete_in_batches(engine, schema.sessions, _sessions_due(now), "sessions", progress)}


# Exports: 7 days after they were written ------------------------------------------------------------


def _expired_exports(now: dt.datetime) -> Iterator[tuple[str, str]]:
    """(key, version id) of export objects written before the rule's cutoff."""
    from shared.ports.backends import get_storage

    bound = cutoff("exports", now.date())
    for version in get_storage().list_versions(get_settings().exports_bucket, _prefix("exports").prefix()):
        if version.last_modified < bound:
            yield version.key, version.version_id


def _count_exports(_conn: Connection, now: dt.datetime) -> dict[str, int]:
    return {"objects": sum(1 for _ in _expired_exports(now))}


def _apply_exports(_engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    from shared.ports.backends import get_storage

    storage, bucket = get_storage(), get_settings().exports_bucket
    deleted = 0
    batch: list[tuple[str, str]] = []
    for target in _expired_exports(now):
        batch.append(target)
        if len(batch) == BATCH_SIZE:
            deleted += storage.delete_many(bucket, batch)
            batch = []
            progress("exports", deleted)
    if batch:
        deleted += storage.delete_many(bucket, batch)
    return {"objects": deleted}


# Request registry and receipts: kept as proof, then purged ------------------------------------------


def _requests_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    r = schema.dsr_requests
    return sa.and_(r.c.closed_at.is_not(None), r.c.closed_at < cutoff(request_records_rule(), now.date()))


def _ledger_due(now: dt.datetime) -> sa.ColumnElement[bool]:
    return schema.erasure_ledger.c.erased_at < cutoff(request_records_rule(), now.date())


def _count_requests(conn: Connection, now: dt.datetime) -> dict[str, int]:
    r = schema.dsr_requests
    due = _requests_due(now)
    return {
        "requests": _count(conn, r, due),
        "erasure_receipts": _count(conn, r, sa.and_(due, r.c.kind == "erasure")),
        "ledger_entries": _count(conn, schema.erasure_ledger, _ledger_due(now)),
    }


def _proof_keys(request_id: str) -> list[str]:
    return [_prefix("erasure_receipts").key(request_id=request_id), _prefix("erasure_ledger_mirror").key(request_id=request_id)]


def _apply_requests(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    from shared.ports.backends import get_storage

    r, ledger, steps = schema.dsr_requests, schema.erasure_ledger, schema.saga_steps
    storage, bucket = get_storage(), get_settings().archive_bucket
    counts = {"requests": 0, "proof_objects": 0, "ledger_entries": 0, "held": 0}
    for rows in _pages(engine, select(r.c.id, r.c.kind).where(_requests_due(now)), r.c.id):
        keys = [key for row in rows if row.kind == "erasure" for key in _proof_keys(row.id)]
        deleted, held = _delete_objects(storage, bucket, keys)
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


def _count_verification(conn: Connection, now: dt.datetime) -> dict[str, int]:
    bound = cutoff("verification_records", now.date())
    return {name: _count(conn, table, table.c[column] < bound) for name, table, column in _VERIFICATION_TABLES}


def _apply_verification(engine: Engine, now: dt.datetime, progress: Progress) -> dict[str, int]:
    bound = cutoff("verification_records", now.date())
    return {
        name: delete_in_batches(engine, table, table.c[column] < bound, "verification_records", progress)
        for name, table, column in _VERIFICATION_TABLES
    }


CATEGORIES: tuple[Category, ...] = (
    Category("invoices", invoice_rule, "delete", "invoices, their lines and PDFs (live and archived)",
             _count_invoices, _apply_invoices),
    Category("payment_records.archive", lambda: policy.retention_rule("payment_data"), "archive",
             "payment records past their active period move to restricted archive", _count_payment_archive,
             _apply_payment_archive),
    Category("payment_records.delete", lambda: policy.retention_rule("payment_data"), "delete",
             "payment records at the end of their archive", _count_payment_delete, _apply_payment_delete),
    Category("prospects", lambda: policy.retention_rule("prospects"), "delete", "prospects (non-clients)",
             _count_prospects, _apply_prospects),
    Category("sessions", lambda: policy.retention_rule("connection_logs"), "delete",
             "sign-in sessions (connection data: IP address, user agent)", _count_sessions, _apply_sessions),
    Category("exports", lambda: policy.retention_rule("exports"), "delete", "export archives in object storage",
             _count_exports, _apply_exports),
    Category("request_records", request_records_rule, "delete",
             "closed requests, their saga steps, erasure receipts and ledger", _count_requests, _apply_requests),
    Category("verification_records", lambda: policy.retention_rule("verification_records"), "delete",
             "verification codes, attempts and used TOTP steps", _count_verification, _apply_verification),
)


def rule_json(rule: policy.RetentionRule) -> dict[str, Any]:
    return {"id": rule.id, "period": rule.period.en, "clock": rule.clock, "legal_basis": rule.legal_basis}


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or utcnow()).astimezone(UTC)


def plan_enforcement(engine: Engine, *, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What enforce-retention would do at `at` (default now), per category; changes nothing."""
    at = _now(at)
    with engine.connect() as conn:
        return [
            {"category": c.id, "action": c.action, "scope": c.scope, "rule": rule_json(c.rule()), "due": c.count(conn, at)}
            for c in CATEGORIES
        ]


def record_run(engine: Engine, category: str, rule: policy.RetentionRule, counts: dict[str, Any], now: dt.datetime,
               *, outcome: str = "applied") -> None:
    """One audit entry per category and run: counts and the rule, never personal data."""
    with engine.begin() as conn:
        audit.record(
            conn, actor=ACTOR, action=f"retention.{category}", outcome=outcome,
            details={"rule": rule.id, "counts": counts}, now=now,
        )


def enforce(engine: Engine, *, now: dt.datetime | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The enforce-retention job: apply every category's final action to what is due, then audit it."""
    now = _now(now)
    progress = progress or no_progress
    results: dict[str, Any] = {}
    for category in CATEGORIES:
        counts = category.apply(engine, now, progress)
        record_run(engine, category.id, category.rule(), counts, now)
        results[category.id] = counts
    return {"ran_at": now.isoformat(), "categories": results}


# --- The whole schedule (CLI) -----------------------------------------------------------------------


def plan(engine: Engine, *, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every category of the schedule (the three CRON jobs) and what is due at `at`; changes nothing."""
    from shared.retention import inactivity
    from shared.retention import log_rotation
    at = _now(at)
    return [*inactivity.plan(engine, at=at), *log_rotation.plan(engine, at=at), *plan_enforcement(engine, at=at)]


def run_all(engine: Engine, *, now: dt.datetime | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """What the three CRON functions do, in one go: the operator's `retention run`."""
    from shared.retention import inactivity
    from shared.retention import log_rotation
    now = _now(now)
    return {
        "expire-inactive-accounts": inactivity.schedule(engine, now=now, progress=progress),
        "log-rotation": log_rotation.rotate(engine, now=now, progress=progress),
        "enforce-retention": enforce(engine, now=now, progress=progress),
    }


def parse_at(value: str) -> dt.datetime:
    """`--at` of the CLI: a date (YYYY-MM-DD, start of that day) or an ISO 8601 timestamp; naive means UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("--at must be a date (YYYY-MM-DD) or an ISO 8601 timestamp") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _counts_text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_counts_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return str(len(value)) if value and isinstance(value[0], dict) else (",".join(map(str, value)) or "0")
    return str(value)


def format_plan(entries: list[dict[str, Any]], *, at: dt.datetime | None = None) -> str:
    """The plan for an operator: one block per category, counts then the rule that applies."""
    when = _now(at).isoformat(timespec="seconds")
    lines = [f"Retention plan at {when} (nothing was changed)", ""]
    for entry in entries:
        rule = entry["rule"]
        lines.append(f"{entry['category']:<36} {entry['action']:<16} {_counts_text(entry['due'])}")
        lines.append(f"    {entry['scope']}")
        lines.append(f"    rule {rule['id']}: {rule['period']}; clock: {rule['clock']}; basis: {rule['legal_basis']}")
    return "\n".join(lines)
