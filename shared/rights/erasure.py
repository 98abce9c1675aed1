"""Right to erasure (GDPR Art. 17), reconciled with legal retention (Art. 17(3)(b)).

One erasure for every path: the client area's "Delete my account" button, the DPO
(requests received by email or post) and the inactivity schedule (channel
`retention`) all go through the same entry points:

    register_erasure(conn, account_id, *, channel, actor, now=None) -> RequestRecord
        in the caller's transaction: registers the erasure (or returns the pending one),
        deactivates the account at once (sessions and API keys revoked).
    request_erasure(engine, account_id, *, channel, actor, now=None) -> (RequestRecord, created)
        the same in its own transaction, then queues the run when no cooling-off applies.
    run_erasure(engine, request_id, *, now=None) -> str
    run_erasures(engine, request_ids, *, now=None, workers=8) -> {request_id: outcome}
        execute the saga once the cooling-off is over; the queue worker runs the ids of
        one message (up to RUN_MESSAGE_MAX) as batches of ERASURE_BATCH_SIZE.
    enqueue_runs(request_ids, *, reason) / enqueue_due_erasures(engine, *, now=None) -> int
        queue runs, many ids per message; the CRON sweep queues due and unfinished erasures.

The erasure runs ERASURE_COOLING_OFF_DAYS after registration; until then
`cancel_erasure` gives the account back. A restriction under Art. 18 blocks the
`retention` channel only, never the subject's own request.

The saga is a sequence of persisted, idempotent steps (table saga_steps): a crash
anywhere resumes at the interrupted step and no external effect happens twice
(each carries the step's idempotency key, `shared.records.saga.step_key`):

    plan          what will be erased, pseudonymised or retained, and until when
    stripe        delete the customer, which cancels its active subscriptions (404 = done)
    resend        remove the contact (404 = done)
    receipt_mail  the receipt, mailed while the address still exists
    database      driven by the data map, set-based, one transaction with its own record, self-verified
    objects       exports deleted, invoice PDFs moved to the retention archive (Object Lock)
    receipt       the receipt stored as proof (no personal data), the ledger mirrored
then the request completes, the ledger row is written and the audit entry appended.
Several erasures run as one batch share every database statement (WHERE account_id IN
...), so the work per account does not grow with the number of accounts held.

The erasure ledger (request id, account id, pseudonym, date) lets an operator
re-apply every erasure after a backup is restored (`replay_erasures`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, delete, func, select, update

from shared.platform.config import get_settings
from shared.platform.errors import Conflict, NotFound, ValidationFailed
from shared.platform.pseudonym import subject_pseudonym
from shared.policy import data_map, rules
from shared.policy import facts as policy
from shared.policy.facts import DPO_CHANNELS  # noqa: F401  (re-exported)
from shared.ports import tables as schema
from shared.ports.db import UTC, dialect_insert, utcnow
from shared.ports.tables import accounts, api_keys, erasure_ledger, processing_restrictions, saga_steps, sessions
from shared.records import audit, registry
from shared.records.registry import RequestRecord
from shared.records.saga import COMPLETED as STEP_COMPLETED
from shared.records.saga import FAILED as STEP_FAILED
from shared.records.saga import step_key

KIND = "erasure"
QUEUE_NAME = "erasure-steps"
RUN_MESSAGE = "erasure.run"
# Request ids per queue message: the worker runs them as batches and re-queues what its time budget leaves.
RUN_MESSAGE_MAX = 1000
SYSTEM_ACTOR = "system:erasure"
# Channels through which an erasure is registered (shared.records.registry.CHANNELS).
CLIENT_CHANNEL = "client_area"
RETENTION_CHANNEL = "retention"

STEPS = ("plan", "stripe", "resend", "receipt_mail", "database", "objects", "receipt")
# Identifiers shorter than this would match unrelated text in the self-check.
_MIN_IDENTIFIER_LENGTH = 3
# Ids per IN (...) list when looking rows up by id.
_ID_BATCH = 1000


class ErasureVerificationFailed(RuntimeError):
    """The database step found the subject's identifiers outside the retained set: nothing is committed.

    The message names tables and columns only, never a value.
    """


class ProcessingRestricted(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "processing of this account is restricted (GDPR Art. 18): it cannot be erased for inactivity",
            code="processing_restricted",
        )


# --- Small helpers ---------------------------------------------------------------------------


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _day(value: dt.date | dt.datetime) -> str:
    return (value.date() if isinstance(value, dt.datetime) else value).isoformat()


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or utcnow()).astimezone(UTC)


def erase_after(record: RequestRecord) -> dt.datetime:
    """When the cooling-off of a registered erasure ends."""
    return _parse_iso(record.details["erase_after"])


def _expiry(rule_id: str, start: dt.date | dt.datetime) -> dt.date | dt.datetime:
    """When retained data ends, under the rules as configured for the retention schedule (which deletes it)."""
    if rule_id == "invoices":
        return rules.invoice_expiry(start.date() if isinstance(start, dt.datetime) else start)
    if rule_id == "request_records":
        return policy.expires_at(rules.request_records_rule(), start)
    return policy.expires_at(rule_id, start)


def _table(name: str) -> sa.Table:
    return schema.metadata.tables[name]


def _bucket(setting: str) -> str:
    return getattr(get_settings(), setting)


# --- Registration, cancellation, state ---------------------------------------------------------


def _deactivate(conn: Connection, account_id: str, now: dt.datetime) -> None:
    """No more logins: the account is deactivated, its sessions and API keys revoked."""
    conn.execute(update(accounts).where(accounts.c.id == account_id, accounts.c.status == "active").values(status="deactivated"))
    conn.execute(update(sessions).where(sessions.c.account_id == account_id, sessions.c.revoked_at.is_(None)).values(revoked_at=now))
    conn.execute(update(api_keys).where(api_keys.c.account_id == account_id, api_keys.c.revoked_at.is_(None)).values(revoked_at=now))


def _reactivate(conn: Connection, account_id: str) -> None:
    # Sessions stay revoked: the user signs in again.
    conn.execute(update(accounts).where(accounts.c.id == account_id, accounts.c.status == "deactivated").values(status="active"))


def _restricted_among(conn: Connection, account_ids: Sequence[str]) -> set[str]:
    """The accounts of `account_ids` under an Art. 18 restriction, which the retention schedule may not erase."""
    from shared.records.processing import restricted_accounts

    restricted: set[str] = set()
    for start in range(0, len(account_ids), _ID_BATCH):
        query = restricted_accounts().where(processing_restrictions.c.account_id.in_(account_ids[start:start + _ID_BATCH]))
        restricted.update(conn.execute(query).scalars())
    return restricted


def _register(
    conn: Connection, account_id: str, *, channel: str, actor: str, now: dt.datetime
) -> tuple[RequestRecord, bool]:
    # The account row's lock serialises registrations of one account (PostgreSQL): the second
    # one then finds the first's request. SQLite serialises writers; its race ends in Conflict below.
    status = conn.execute(select(accounts.c.status).where(accounts.c.id == account_id).with_for_update()).scalar()
    pending = registry.find_open_request(conn, account_id=account_id, kind=KIND)
    if pending is not None:
        return pending, False
    if status is None or status == "erased":
        raise NotFound("no such account", code="account_not_found")
    if channel == RETENTION_CHANNEL and _restricted_among(conn, [account_id]):
        raise ProcessingRestricted()
    cooling_off_days = get_settings().erasure_cooling_off_days
    details = {"erase_after": _iso(now + dt.timedelta(days=cooling_off_days)), "cooling_off_days": cooling_off_days}
    try:
        record = registry.create_request(
            conn, account_id=account_id, kind=KIND, channel=channel, now=now, details=details, actor=actor
        )
    except Conflict:
        pending = registry.find_open_request(conn, account_id=account_id, kind=KIND)
        if pending is None:
            raise
        return pending, False
    if channel not in registry.SELF_VERIFIED_CHANNELS:
        # The client passed step-up; the DPO checked the identity of a mail or letter.
        registry.transition(conn, record.id, registry.VERIFIED, actor=actor, now=now)
    record = registry.transition(conn, record.id, registry.WAITING, actor=actor, now=now)
    _deactivate(conn, account_id, now)
    audit.record(
        conn, actor=actor, action="erasure.registered", outcome=registry.WAITING, request_id=record.id,
        subject=account_id, details={"channel": channel, **details}, now=now,
    )
    return record, True


def register_erasure(
    conn: Connection, account_id: str, *, channel: str, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """Register the erasure of `account_id` in the caller's transaction; the pending one if it exists.

    Deactivates the account at once. The request waits in state `waiting` until
    `details.erase_after` (now + ERASURE_COOLING_OFF_DAYS). Channel `retention`
    (inactivity) is refused with 409 `processing_restricted` while an Art. 18
    restriction is in force. Raises 404 `account_not_found` for an unknown account.
    Nothing is queued: use `request_erasure`, or `enqueue_due_erasures` after commit.
    """
    return _register(conn, account_id, channel=channel, actor=actor, now=_now(now))[0]


def request_erasure(
    engine: Engine, account_id: str, *, channel: str, actor: str, now: dt.datetime | None = None
) -> tuple[RequestRecord, bool]:
    """Register (or find the pending) erasure, then queue its run if no cooling-off applies.

    Returns (request, created). With a cooling-off the daily sweep queues it once due.
    """
    now = _now(now)
    with engine.begin() as conn:
        record, created = _register(conn, account_id, channel=channel, actor=actor, now=now)
    if created and erase_after(record) <= now:
        enqueue_run(record.id, reason="registered")
    return record, created


def enqueue_run(request_id: str, *, reason: str) -> None:
    """Queue one run of the saga; `reason` makes the message's idempotency key (a new sweep, a new key)."""
    enqueue_runs([request_id], reason=reason)


def enqueue_runs(request_ids: Sequence[str], *, reason: str) -> int:
    """Queue runs of many sagas, up to RUN_MESSAGE_MAX ids per message; returns the messages sent.

    The idempotency key derives from the ids and `reason`: the same call repeated (a retried
    job) sends messages the worker recognises as already processed.
    """
    from shared.platform.runtime import make_message
    from shared.ports.backends import get_queue

    ids = list(dict.fromkeys(request_ids))
    queue = get_queue(QUEUE_NAME)
    for start in range(0, len(ids), RUN_MESSAGE_MAX):
        chunk = ids[start:start + RUN_MESSAGE_MAX]
        label = chunk[0] if len(chunk) == 1 else hashlib.sha256("\n".join(chunk).encode()).hexdigest()[:32]
        queue.send(make_message(RUN_MESSAGE, f"erasure:{label}:{reason}", {"request_ids": chunk}))
    return -(-len(ids) // RUN_MESSAGE_MAX)


def get_erasure(conn: Connection, request_id: str, *, account_id: str | None = None) -> RequestRecord:
    """The erasure request; 404 when absent, not an erasure or (with account_id) another account's."""
    record = registry.get_request(conn, request_id, account_id=account_id)
    if record.kind != KIND:
        raise NotFound("no such request", code="request_not_found")
    return record


def find_pending_erasure(conn: Connection, account_id: str) -> RequestRecord | None:
    return registry.find_open_request(conn, account_id=account_id, kind=KIND)


def erasure_view(record: RequestRecord) -> dict[str, Any]:
    """The JSON answer about an erasure request: state, dates and, once done, the receipt."""
    body = record.to_json()
    if "erase_after" in record.details:
        body["erase_after"] = record.details["erase_after"]
        body["cancellable"] = record.state == registry.WAITING
    if record.state == registry.COMPLETED and "receipt_object" in record.details:
        body["receipt"] = load_receipt(record.id)
    return body


def load_receipt(request_id: str) -> dict[str, Any] | None:
    """The receipt kept as proof in the archive bucket (no personal data); None if there is none."""
    from shared.ports.backends import get_storage

    storage, bucket = get_storage(), _bucket("archive_bucket")
    if not storage.exists(bucket, receipt_key(request_id)):
        return None
    return json.loads(storage.get_bytes(bucket, receipt_key(request_id)))


def cancel_erasure(
    conn: Connection, request_id: str, *, account_id: str | None, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """Cancel during the cooling-off and give the account back.

    404 for another account's request (with `account_id`), 409 `cooling_off_over`
    once the erasure is due, 409 `erasure_not_cancellable` once it has started or ended.
    """
    now = _now(now)
    record = get_erasure(conn, request_id, account_id=account_id)
    if record.state != registry.WAITING:
        raise Conflict(f"the erasure is {record.state}: it can no longer be cancelled", code="erasure_not_cancellable")
    if now >= erase_after(record):
        raise Conflict("the cooling-off period is over: the erasure can no longer be cancelled", code="cooling_off_over")
    record = registry.transition(
        conn, request_id, registry.CANCELLED, actor=actor, reason="cancelled during the cooling-off period", now=now
    )
    _reactivate(conn, record.account_id)
    audit.record(
        conn, actor=actor, action="erasure.cancelled", outcome=registry.CANCELLED, request_id=record.id,
        subject=record.account_id, now=now,
    )
    return record


def due_erasures(conn: Connection, *, now: dt.datetime | None = None) -> list[str]:
    """Ids of erasures to run: cooling-off over (`erase_after <= now`), or started and not finished."""
    now = _now(now)
    r = schema.dsr_requests
    rows = conn.execute(
        select(r.c.id)
        .where(
            r.c.kind == KIND,
            sa.or_(
                sa.and_(r.c.state == registry.WAITING, r.c.details["erase_after"].as_string() <= _iso(now)),
                r.c.state == registry.IN_PROGRESS,
            ),
        )
        .order_by(r.c.received_at)
    )
    return [row.id for row in rows]


def enqueue_due_erasures(engine: Engine, *, now: dt.datetime | None = None) -> int:
    """The CRON sweep: queue every due or unfinished erasure (also those whose messages went to the DLQ)."""
    now = _now(now)
    with engine.connect() as conn:
        ids = due_erasures(conn, now=now)
    enqueue_runs(ids, reason=f"sweep:{now:%Y%m%dT%H%M%S}")
    return len(ids)


# --- Plan: what erasure does to this account, category by category ----------------------------


def _linked_tables() -> list[data_map.TableMap]:
    """Tables whose rows reach an account directly or through a parent (not by pseudonym)."""
    return [t for t in data_map.TABLES if t.link.column is not None and not t.link.pseudonym]


def _personal(tm: data_map.TableMap) -> list[data_map.ColumnMap]:
    return [c for c in tm.columns if c.personal]


def _outcome(tm: data_map.TableMap, col: data_map.ColumnMap) -> str:
    if tm.row_action == data_map.ROW_DELETE:
        return "erased"
    return tm.strategy(col.name).outcome


def _owner(tm: data_map.TableMap) -> tuple[sa.FromClause, sa.ColumnElement[str]]:
    """A table's rows joined up to the column that holds their account id (through parents)."""
    table = _table(tm.name)
    if tm.link.parent is None:
        return table, table.c[tm.link.column]
    parent_tm = data_map.table_map(tm.link.parent)
    parent_from, owner = _owner(parent_tm)
    joined = table.join(parent_from, table.c[tm.link.column] == _table(parent_tm.name).c[tm.link.parent_key])
    return joined, owner


def _subject_filter(tm: data_map.TableMap, account_ids: Sequence[str]) -> sa.ColumnElement[bool]:
    """WHERE clause of the given accounts' rows of a table (through parents when needed); index-friendly."""
    table = _table(tm.name)
    if tm.link.parent is None:
        return table.c[tm.link.column].in_(account_ids)
    parent_tm = data_map.table_map(tm.link.parent)
    parent_keys = select(_table(parent_tm.name).c[tm.link.parent_key]).where(_subject_filter(parent_tm, account_ids))
    return table.c[tm.link.column].in_(parent_keys)


Stats = dict[str, dict[str, tuple[int, dict[str, Any]]]]  # table -> account -> (rows, latest clock values)


def _table_stats(conn: Connection, account_ids: Sequence[str]) -> Stats:
    """Per table and account: how many rows, and the latest value of each retention clock column."""
    stats: Stats = {}
    for tm in _linked_tables():
        if not _personal(tm):
            continue
        source, owner = _owner(tm)
        table = _table(tm.name)
        clocks = list(tm.clock_columns) if tm.row_action == data_map.ROW_RETAIN else []
        rows = conn.execute(
            select(owner, func.count(), *(func.max(table.c[c]) for c in clocks))
            .select_from(source)
            .where(owner.in_(account_ids))
            .group_by(owner)
        )
        stats[tm.name] = {row[0]: (row[1], dict(zip(clocks, row[2:]))) for row in rows}
    return stats


def _basis_json(basis_id: str) -> dict[str, str]:
    basis = policy.LEGAL_BASES[basis_id]
    return {"id": basis.id, "gdpr_article": basis.gdpr_article, "en": basis.label.en, "fr": basis.label.fr}


def _category_json(category_id: str) -> dict[str, Any]:
    category = policy.category(category_id)
    return {"category": category.id, "label": {"en": category.label.en, "fr": category.label.fr}}


def _retained_entry(category_id: str, scope: str, rule_id: str, until: dt.date | dt.datetime, records: int,
                    pseudonymised: bool) -> dict[str, Any]:
    rule = policy.retention_rule(rule_id)
    return {
        **_category_json(category_id),
        "scope": scope,
        "outcome": "retained_until",
        "retained_until": _day(until),
        "retention_rule": rule.id,
        "legal_basis": _basis_json(rule.legal_basis),
        "legal_reference": rule.legal_reference,
        "records": records,
        "linked_by_pseudonym": pseudonymised,
        "archive": "restricted",
    }


def _plan_for(account_id: str, stats: Stats, transmitted: int, has_customer: bool, now: dt.datetime) -> dict[str, Any]:
    """Per category: erased, pseudonymised or retained until a date under a legal basis. No personal data."""
    entries: list[dict[str, Any]] = []
    until_by_table: dict[str, dt.date | dt.datetime] = {}

    def until_for(tm: data_map.TableMap, rule_id: str) -> dt.date | dt.datetime:
        if tm.clock_columns:
            return _expiry(rule_id, policy.clock_start(*stats[tm.name][account_id][1].values()))
        # A child kept with its parent (invoice lines): the parent's clock decides.
        parent = data_map.table_map(tm.link.parent)
        return _expiry(rule_id, policy.clock_start(*stats[parent.name][account_id][1].values()))

    for tm in _linked_tables():
        count = stats.get(tm.name, {}).get(account_id, (0, {}))[0]
        if count == 0:
            continue
        link_pseudonymised = tm.link.parent is None and tm.column(tm.link.column).action == "pseudonymise"
        seen: set[tuple[str, str]] = set()
        for col in _personal(tm):
            outcome = _outcome(tm, col)
            if (col.category, outcome) in seen:
                continue
            seen.add((col.category, outcome))
            if outcome == "retained":
                rule_id = col.retention or tm.retention
                until = until_by_table.setdefault(tm.name, until_for(tm, rule_id))
                entries.append(_retained_entry(col.category, tm.name, rule_id, until, count, link_pseudonymised))
            else:
                entries.append({**_category_json(col.category), "scope": tm.name, "outcome": outcome, "records": count})
    for prefix in data_map.OBJECT_PREFIXES:
        if prefix.linked_by is None and prefix.action == "retain" and prefix.category.startswith("technical."):
            # Rotated log files mix every user: they cannot be edited per account and expire on their own.
            entries.append(_retained_entry(prefix.category, prefix.id, prefix.retention, _expiry(prefix.retention, now), 0, False))
        elif prefix.linked_by == "account_id":
            if prefix.action == "retain" and "invoices" in until_by_table:
                entries.append(_retained_entry(prefix.category, prefix.id, prefix.retention, until_by_table["invoices"], 0, False))
            elif prefix.action == "delete":
                entries.append({**_category_json(prefix.category), "scope": prefix.id, "outcome": "erased", "records": 0})
    return {
        "categories": entries,
        "has_stripe_customer": has_customer,
        "invoices_transmitted": transmitted,
        "policy_version": policy.POLICY_VERSION,
    }


def _plans(conn: Connection, account_ids: Sequence[str], now: dt.datetime) -> dict[str, dict[str, Any]]:
    """The plan of each account, from a few grouped queries for the whole batch."""
    stats = _table_stats(conn, account_ids)
    invoices = schema.invoices
    transmitted = dict(
        conn.execute(
            select(invoices.c.account_id, func.count())
            .where(invoices.c.account_id.in_(account_ids), invoices.c.transmitted_at.is_not(None))
            .group_by(invoices.c.account_id)
        ).all()
    )
    customers = set(
        conn.execute(
            select(accounts.c.id).where(accounts.c.id.in_(account_ids), accounts.c.stripe_customer_id.is_not(None))
        ).scalars()
    )
    return {a: _plan_for(a, stats, transmitted.get(a, 0), a in customers, now) for a in account_ids}


# --- External steps ---------------------------------------------------------------------------


def _contacts(conn: Connection, account_ids: Sequence[str]) -> dict[str, Any]:
    """What the external steps need while the accounts still exist (read once per batch, kept in memory only)."""
    rows = conn.execute(
        select(accounts.c.id, accounts.c.email, accounts.c.locale, accounts.c.stripe_customer_id).where(
            accounts.c.id.in_(account_ids)
        )
    )
    return {row.id: row for row in rows}


def _stripe_effect(saga: _Saga) -> dict[str, Any]:
    from shared.ports.backends import get_payments

    if saga.contact is None or not saga.contact.stripe_customer_id:
        return {"customer": "none"}
    payments = get_payments()
    key = step_key(saga.id, "stripe")
    customer = saga.contact.stripe_customer_id
    cancelled = payments.delete_customer(customer, idempotency_key=f"{key}:customer")
    return {"customer": "deleted", "subscriptions_cancelled": len(cancelled)}


def _resend_effect(saga: _Saga) -> dict[str, Any]:
    from shared.ports.backends import get_mailer

    if saga.contact is None:
        return {"contacts_removed": 0}
    return {"contacts_removed": len(get_mailer().remove_contact(saga.contact.email))}


def _subprocessors(plan: Mapping[str, Any], stripe: Mapping[str, Any], resend: Mapping[str, Any]) -> list[dict[str, Any]]:
    transmitted = plan["invoices_transmitted"]
    return [
        {
            "subprocessor": "stripe",
            "outcome": "customer_deleted" if stripe.get("customer") == "deleted" else "no_customer",
            "subscriptions_cancelled": stripe.get("subscriptions_cancelled", 0),
            "note": {
                "en": "Stripe keeps what its own legal obligations require, as an independent controller.",
                "fr": "Stripe conserve ce que ses propres obligations légales exigent, en tant que responsable indépendant.",
            },
        },
        {
            "subprocessor": "resend",
            "outcome": "contact_removed" if resend.get("contacts_removed") else "no_contact",
            "note": {
                "en": "Your contact was removed from every mailing audience; this receipt is the last mail sent to you.",
                "fr": "Votre contact a été supprimé de toutes les listes d'envoi ; ce reçu est le dernier e-mail qui vous est adressé.",
            },
        },
        {
            "subprocessor": "superpdp",
            "outcome": "cannot_recall" if transmitted else "nothing_transmitted",
            "invoices_transmitted": transmitted,
            "note": {
                "en": "Invoices already transmitted through SuperPDP (Factur-X) cannot be recalled: they are held by the "
                      "e-invoicing network and their recipients under the same legal retention.",
                "fr": "Les factures déjà transmises via SuperPDP (Factur-X) ne peuvent pas être rappelées : elles sont "
                      "détenues par le réseau de facturation électronique et leurs destinataires, sous la même obligation de conservation.",
            },
        },
        {
            "subprocessor": "scaleway",
            "outcome": "erased_from_database_and_storage",
            "note": {
                "en": "Database backups expire on their own schedule; if one is ever restored, this erasure is applied again.",
                "fr": "Les sauvegardes de la base expirent selon leur propre calendrier ; si l'une d'elles est restaurée, cet effacement est appliqué à nouveau.",
            },
        },
    ]


_OUTCOME_TEXT = {
    "erased": ("effacé", "erased"),
    "pseudonymised": ("pseudonymisé", "pseudonymised"),
}


def _outcome_line(entry: Mapping[str, Any], language: str) -> str:
    label = entry["label"][language]
    if entry["outcome"] == "retained_until":
        basis = entry["legal_basis"][language]
        reference = f", {entry['legal_reference']}" if entry.get("legal_reference") else ""
        if language == "fr":
            return f"- {label} : conservé en archive restreinte jusqu'au {entry['retained_until']} ({basis}{reference}), puis supprimé"
        return f"- {label}: kept in restricted archive until {entry['retained_until']} ({basis}{reference}), then deleted"
    fr, en = _OUTCOME_TEXT.get(entry["outcome"], (entry["outcome"], entry["outcome"]))
    return f"- {label} : {fr}" if language == "fr" else f"- {label}: {en}"


def _receipt_lines(receipt: Mapping[str, Any], language: str) -> list[str]:
    lines, seen = [], set()
    for entry in receipt["categories"]:
        line = _outcome_line(entry, language)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    lines.append("")
    for sub in receipt["subprocessors"]:
        lines.append(f"- {policy.subprocessor(sub['subprocessor']).name}: {sub['note'][language]}")
    return lines


def _receipt_mail(receipt: Mapping[str, Any], *, to: str, request_id: str):
    import html as html_lib

    from shared.ports.mail import Message

    fr = [
        "Bonjour,",
        "",
        "Votre demande d'effacement de compte jefacturebien.fr est exécutée. Voici ce qu'il advient de chaque catégorie de données :",
        "",
        *_receipt_lines(receipt, "fr"),
        "",
        f"Référence de la demande : {request_id}",
        f"Une question ? {policy.CONTROLLER.dpo_email}. Vous pouvez aussi saisir la CNIL ({policy.CNIL.website}).",
    ]
    en = [
        "Hello,",
        "",
        "Your request to erase your jefacturebien.fr account is being carried out. This is what happens to each category of data:",
        "",
        *_receipt_lines(receipt, "en"),
        "",
        f"Request reference: {request_id}",
        f"Questions? {policy.CONTROLLER.dpo_email}. You may also complain to the CNIL ({policy.CNIL.website}).",
    ]
    text = "\n".join(fr) + "\n\n-- English --\n\n" + "\n".join(en) + "\n"
    html = "".join(
        f"<p>{html_lib.escape(line)}</p>" if line else "<br>" for line in [*fr, "— English —", *en]
    )
    return Message(
        to=to,
        subject="Effacement de votre compte / Erasure of your account — jefacturebien.fr",
        text=text,
        html=f"<html><body>{html}</body></html>",
        idempotency_key=step_key(request_id, "receipt_mail"),
    )


def _receipt_mail_effect(saga: _Saga, now: dt.datetime) -> dict[str, Any]:
    from shared.ports.backends import get_mailer

    if saga.contact is None:
        return {"sent": False}
    draft = _build_receipt(saga.record, saga.results, now)
    get_mailer().send(_receipt_mail(draft, to=saga.contact.email, request_id=saga.id))
    return {"sent": True}


# --- Database step: driven by the data map, set-based, verified -----------------------------------


@dataclass
class _Counter:
    deleted: int = 0
    updated: int = 0

    def add(self, result: sa.CursorResult, *, deleted: bool) -> None:
        if deleted:
            self.deleted += max(result.rowcount, 0)
        else:
            self.updated += max(result.rowcount, 0)


def _pdf_source() -> data_map.ObjectPrefix | None:
    """The object prefix whose files move to the retention archive on erasure (invoice PDFs)."""
    return next((p for p in data_map.OBJECT_PREFIXES if p.archive_bucket_setting), None)


def _archived_key_expression(table: sa.Table) -> sa.ColumnElement[str] | None:
    """SQL building the archive key of an invoice PDF from its id (`invoices/{invoice_id}.pdf`)."""
    source = _pdf_source()
    if source is None:
        return None
    expression: sa.ColumnElement[str] | None = None
    for literal, name, _spec, _conv in string.Formatter().parse(_archive_prefix(source).key_pattern):
        for part in ([sa.literal(literal, sa.String)] if literal else []) + ([table.c.id] if name else []):
            expression = part if expression is None else expression.op("||")(part)
    return expression


def _archive_prefix(source: data_map.ObjectPrefix) -> data_map.ObjectPrefix:
    return next(
        p for p in data_map.OBJECT_PREFIXES
        if p.bucket_setting == source.archive_bucket_setting and p.category == source.category and p.linked_by is None
    )


def _column_assignments(conn: Connection, tm: data_map.TableMap, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
    """The set-based UPDATEs that scrub a table's kept rows, link column excluded (it goes last).

    Each dict is one UPDATE over the subjects' rows; a pseudonymised column whose
    value differs per row gets one UPDATE per distinct value (never one per row).
    """
    table = _table(tm.name)
    constant: dict[str, Any] = {}
    per_value: list[dict[str, Any]] = []
    for col in tm.columns:
        if col.name == tm.link.column or col.action in ("keep", "retain", "delete"):
            continue
        if col.action == "null":
            constant[col.name] = None
        elif col.action == "pseudonymise":
            values = conn.execute(select(table.c[col.name]).where(where, table.c[col.name].is_not(None)).distinct()).scalars()
            for value in values:
                per_value.append({"_match": (col.name, value), **tm.strategy(col.name).assignments(value)})
    if tm.row_action == data_map.ROW_RETAIN and "pdf_object_key" in table.c:
        expression = _archived_key_expression(table)
        if expression is not None:
            constant["pdf_object_key"] = sa.case((table.c.pdf_object_key.is_(None), None), else_=expression)
    return ([constant] if constant else []) + per_value


def _unlink_assignments(tm: data_map.TableMap, account_ids: Sequence[str], now: dt.datetime) -> dict[str, Any]:
    """The link column's own action (NULL, or moved into each account's pseudonym) plus the archive mark."""
    table = _table(tm.name)
    if tm.link.parent is not None:
        return {}
    col = tm.column(tm.link.column)
    values: dict[str, Any] = {}
    if col.action == "null":
        values[col.name] = None
    elif col.action == "pseudonymise":
        strategy = tm.strategy(col.name)
        per_account = {a: strategy.assignments(a) for a in account_ids}
        for target in per_account[account_ids[0]]:
            mapping = {a: assigned[target] for a, assigned in per_account.items()}
            distinct = set(mapping.values())
            values[target] = distinct.pop() if len(distinct) == 1 else sa.case(mapping, value=table.c[col.name])
    if values and tm.row_action == data_map.ROW_RETAIN and not tm.suite and "archived_at" in table.c:
        values["archived_at"] = sa.func.coalesce(table.c.archived_at, now)
    return values


def _identifiers(conn: Connection, account_ids: Sequence[str]) -> dict[str, set[str]]:
    """Each subject's own identifiers (email, phone, names, SIRET/SIREN, VAT, company name), lower-cased."""
    found: dict[str, set[str]] = {a: set() for a in account_ids}
    for tm in data_map.TABLES:
        if tm.row_action != data_map.ROW_DELETE or tm.link.column is None or tm.link.pseudonym:
            continue
        columns = [c.name for c in tm.columns if c.identifier and c.category.startswith("identification.")]
        if not columns:
            continue
        source, owner = _owner(tm)
        table = _table(tm.name)
        for row in conn.execute(select(owner, *(table.c[c] for c in columns)).select_from(source).where(owner.in_(account_ids))):
            found[row[0]].update(
                str(v).strip().lower() for v in row[1:] if v is not None and len(str(v).strip()) >= _MIN_IDENTIFIER_LENGTH
            )
    return found


def _verify_scrubbed(conn: Connection, identifiers: Mapping[str, set[str]]) -> list[str]:
    """Columns of the subjects' remaining rows that still hold one of their identifiers, outside the retained set.

    Each account's remaining values are searched for its own identifiers (substring,
    case-insensitive). One statement per table reads only the values that survived the
    scrub (non-NULL), through the indexed account link: after a correct scrub, none.
    """
    failures = []
    for tm in _linked_tables():
        if tm.row_action == data_map.ROW_DELETE:
            continue
        table = _table(tm.name)
        columns = [
            c.name for c in _personal(tm)
            if c.action not in ("retain", "keep") and isinstance(table.c[c.name].type, sa.String)
        ]
        if not columns:
            continue
        source, owner = _owner(tm)
        survivors = conn.execute(
            select(owner, *(table.c[c] for c in columns))
            .select_from(source)
            .where(owner.in_(list(identifiers)), sa.or_(*(table.c[c].is_not(None) for c in columns)))
        )
        for row in survivors:
            values = [str(v).lower() for v in row[1:] if v is not None]
            if any(identifier in value for identifier in identifiers[row[0]] for value in values):
                failures.append(f"{tm.name}({', '.join(columns)})")
                break
    return failures


def _verify_unlinked(conn: Connection, account_ids: Sequence[str]) -> list[str]:
    """Tables where a row still points at an erased account (one statement for all of them)."""
    checks = []
    for tm in _linked_tables():
        if tm.link.parent is not None:
            continue  # reached through its parent, checked there
        if tm.row_action != data_map.ROW_DELETE and tm.column(tm.link.column).action == "keep":
            continue  # the suite's own records keep the id by design (request registry, ledger)
        table = _table(tm.name)
        checks.append(
            select(sa.literal(tm.name).label("t")).where(sa.exists().where(table.c[tm.link.column].in_(account_ids)))
        )
    return [row.t for row in conn.execute(sa.union_all(*checks))] if checks else []


def erase_accounts_data(conn: Connection, account_ids: Sequence[str], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Apply the data map to the given accounts in the caller's transaction, then verify; reused by replay.

    1. scrub: delete the rows of `delete` tables, null/pseudonymise the columns of kept rows;
    2. verify: no subject's identifier appears in a remaining column outside the retained set;
    3. unlink: retained rows lose the account id (NULL or its pseudonym), get archived_at; the accounts go;
    4. verify: no row points at an erased account any more.
    Raises ErasureVerificationFailed (the caller's transaction must roll back); its message
    names tables and columns, never a value. Every statement is set-based over the accounts'
    indexed rows: its cost depends on their data, not on how many other accounts exist.
    """
    now = _now(now)
    account_ids = list(account_ids)
    if not account_ids:
        return {"rows_deleted": 0, "rows_updated": 0}
    identifiers = _identifiers(conn, account_ids)
    counter = _Counter()
    linked = _linked_tables()
    for tm in linked:
        if tm.name == "accounts":
            continue
        table = _table(tm.name)
        where = _subject_filter(tm, account_ids)
        if tm.row_action == data_map.ROW_DELETE:
            counter.add(conn.execute(delete(table).where(where)), deleted=True)
            continue
        for values in _column_assignments(conn, tm, where):
            match = values.pop("_match", None)
            condition = where if match is None else sa.and_(where, table.c[match[0]] == match[1])
            counter.add(conn.execute(update(table).where(condition).values(**values)), deleted=False)
    failures = _verify_scrubbed(conn, identifiers)
    if failures:
        raise ErasureVerificationFailed("identifiers remain outside the retained set in " + "; ".join(failures))
    for tm in linked:
        if tm.name == "accounts" or tm.row_action == data_map.ROW_DELETE:
            continue
        values = _unlink_assignments(tm, account_ids, now)
        if values:
            table = _table(tm.name)
            counter.add(conn.execute(update(table).where(_subject_filter(tm, account_ids)).values(**values)), deleted=False)
    counter.add(conn.execute(delete(accounts).where(accounts.c.id.in_(account_ids))), deleted=True)
    still_linked = _verify_unlinked(conn, account_ids)
    if still_linked:
        raise ErasureVerificationFailed("rows still linked to an erased account in " + ", ".join(still_linked))
    return {"rows_deleted": counter.deleted, "rows_updated": counter.updated}


def erase_account_data(conn: Connection, account_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """`erase_accounts_data` for one account."""
    return erase_accounts_data(conn, [account_id], now=now)


# --- Objects step ---------------------------------------------------------------------------------


def _key_regex(prefix: data_map.ObjectPrefix) -> re.Pattern[str]:
    pattern = ""
    for literal, name, _spec, _conv in string.Formatter().parse(prefix.key_pattern):
        pattern += re.escape(literal)
        if name is not None:
            pattern += f"(?P<{name}>[^/]+)"
    return re.compile(f"^{pattern}$")


def _invoice_expiry(engine: Engine, invoice_ids: list[str]) -> dict[str, dt.datetime]:
    invoices = schema.invoices
    until: dict[str, dt.datetime] = {}
    with engine.connect() as conn:
        for start in range(0, len(invoice_ids), _ID_BATCH):
            batch = invoice_ids[start:start + _ID_BATCH]
            for row in conn.execute(select(invoices.c.id, invoices.c.issue_date).where(invoices.c.id.in_(batch))):
                end = _expiry("invoices", row.issue_date)
                until[row.id] = dt.datetime.combine(end, dt.time.min, tzinfo=UTC)
    return until


def _move_to_archive(engine: Engine, storage, source: data_map.ObjectPrefix, account_id: str, now: dt.datetime) -> dict[str, int]:
    from shared.ports.storage import ObjectRetained

    bucket, archive = _bucket(source.bucket_setting), _bucket(source.archive_bucket_setting)
    target = _archive_prefix(source)
    regex = _key_regex(source)
    keys = [info.key for info in storage.list(bucket, source.prefix(account_id=account_id))]
    matched = {key: m.groupdict() for key in keys if (m := regex.match(key))}
    until = _invoice_expiry(engine, sorted({m["invoice_id"] for m in matched.values() if "invoice_id" in m}))
    moved = orphans = 0
    for key in keys:
        invoice_id = matched.get(key, {}).get("invoice_id")
        if invoice_id not in until or until[invoice_id] <= now:
            orphans += 1  # no invoice to keep it for (or its 10 years are over): it goes
            continue
        target_key = target.key(invoice_id=invoice_id)
        if not storage.exists(archive, target_key):
            try:
                storage.put_retained(
                    archive, target_key, storage.get_bytes(bucket, key), retain_until=until[invoice_id],
                    content_type="application/pdf",
                )
            except ObjectRetained:
                pass  # written by an interrupted run: the archive copy is already locked in place
        moved += 1
    # Every version: a versioned bucket must not keep the originals as noncurrent versions.
    storage.delete_prefix(bucket, source.prefix(account_id=account_id), versions=True)
    return {"archived": moved, "deleted": orphans}


def _objects_step(engine: Engine, account_id: str, now: dt.datetime) -> dict[str, Any]:
    from shared.ports.backends import get_storage

    storage = get_storage()
    result: dict[str, Any] = {}
    for prefix in data_map.OBJECT_PREFIXES:
        if prefix.linked_by != "account_id":
            continue
        if prefix.action == "retain" and prefix.archive_bucket_setting:
            result[prefix.id] = _move_to_archive(engine, storage, prefix, account_id, now)
        elif prefix.action == "delete":
            bucket = _bucket(prefix.bucket_setting)
            result[prefix.id] = {"deleted": storage.delete_prefix(bucket, prefix.prefix(account_id=account_id), versions=True)}
    return result


# --- Receipt, ledger, completion ------------------------------------------------------------------


def receipt_key(request_id: str) -> str:
    prefix = next(p for p in data_map.OBJECT_PREFIXES if p.id == "erasure_receipts")
    return prefix.key(request_id=request_id)


def _ledger_prefix() -> data_map.ObjectPrefix:
    return next(p for p in data_map.OBJECT_PREFIXES if p.id == "erasure_ledger_mirror")


def _ledger_key(request_id: str) -> str:
    return _ledger_prefix().key(request_id=request_id)


def _build_receipt(record: RequestRecord, steps: Mapping[str, Mapping[str, Any] | None], now: dt.datetime) -> dict[str, Any]:
    plan = steps["plan"] or {}
    return {
        "request_id": record.id,
        "subject_pseudonym": record.subject_pseudonym,
        "channel": record.channel,
        "received_at": _iso(record.received_at),
        "executed_at": _iso(now),
        "policy_version": plan.get("policy_version", policy.POLICY_VERSION),
        "categories": plan.get("categories", []),
        "subprocessors": _subprocessors(plan, steps.get("stripe") or {}, steps.get("resend") or {}),
        "receipt_mailed": bool((steps.get("receipt_mail") or {}).get("sent")),
        "database": steps.get("database") or {},
        "objects": steps.get("objects") or {},
    }


def _put_proof(storage, bucket: str, key: str, document: Mapping[str, Any], retain_until: dt.datetime) -> None:
    from shared.ports.storage import ObjectRetained

    if storage.exists(bucket, key):
        return
    try:
        storage.put_retained(
            bucket, key, json.dumps(document, sort_keys=True).encode(), retain_until=retain_until,
            content_type="application/json",
        )
    except ObjectRetained:
        pass  # an interrupted run wrote it already


def _receipt_step(record: RequestRecord, receipt: Mapping[str, Any], erased_at: dt.datetime) -> dict[str, Any]:
    """Store the receipt and the ledger mirror, locked as proof; the result keeps the exact receipt stored."""
    from shared.ports.backends import get_storage

    storage = get_storage()
    bucket = _bucket("archive_bucket")
    keep_until = dt.datetime.combine(_expiry("request_records", erased_at.date()), dt.time.min, tzinfo=UTC)
    if storage.exists(bucket, receipt_key(record.id)):
        receipt = json.loads(storage.get_bytes(bucket, receipt_key(record.id)))  # an interrupted run stored it
    else:
        _put_proof(storage, bucket, receipt_key(record.id), receipt, keep_until)
    # The ledger's mirror outside the database: a restored backup cannot roll it back.
    _put_proof(storage, bucket, _ledger_key(record.id), _ledger_entry(record.id, record.account_id, erased_at), keep_until)
    return {"summary": _receipt_summary(receipt), "erased_at": receipt["executed_at"]}


def _receipt_summary(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """What the request record keeps of the receipt (the receipt itself is in the archive)."""
    outcomes = [entry["outcome"] for entry in receipt["categories"]]
    until = [entry["retained_until"] for entry in receipt["categories"] if entry["outcome"] == "retained_until"]
    return {
        "categories": len(outcomes),
        "erased": outcomes.count("erased"),
        "pseudonymised": outcomes.count("pseudonymised"),
        "retained": len(until),
        "retained_until_latest": max(until) if until else None,
    }


def _ledger_entry(request_id: str, account_id: str, erased_at: dt.datetime) -> dict[str, str]:
    return {
        "request_id": request_id,
        "account_id": account_id,
        "subject_pseudonym": subject_pseudonym(account_id),
        "erased_at": _iso(erased_at),
    }


def _record_ledger(conn: Connection, entries: Sequence[Mapping[str, str]]) -> None:
    if not entries:
        return
    rows = [
        {"request_id": e["request_id"], "account_id": e["account_id"], "subject_pseudonym": e["subject_pseudonym"],
         "erased_at": _parse_iso(e["erased_at"])}
        for e in entries
    ]
    conn.execute(
        dialect_insert(conn, erasure_ledger).on_conflict_do_nothing(index_elements=[erasure_ledger.c.request_id]), rows
    )


def _complete(engine: Engine, sagas: Sequence[_Saga], now: dt.datetime) -> None:
    """Close the requests with their receipts, write the ledger, then the audit entries: one transaction."""
    with engine.begin() as conn:
        loaded = {record.id: record for record in registry.load_many(conn, [s.id for s in sagas])}
        # A request no longer in progress was closed by a concurrent run already.
        closing = [s for s in sagas if s.id in loaded and loaded[s.id].state == registry.IN_PROGRESS]
        details, follow_up, ledger_rows = {}, {}, []
        for saga in closing:
            stored = saga.results["receipt"]
            details[saga.id] = {"receipt_object": receipt_key(saga.id), "receipt_summary": stored["summary"]}
            follow_up[saga.id] = dict(
                actor=SYSTEM_ACTOR, action="erasure.completed", outcome=registry.COMPLETED, request_id=saga.id,
                subject=saga.account_id, details={"receipt_object": receipt_key(saga.id), **stored["summary"]}, now=now,
            )
            ledger_rows.append(_ledger_entry(saga.id, saga.account_id, _parse_iso(stored["erased_at"])))
        registry.transition_many(
            conn, [loaded[s.id] for s in closing], registry.COMPLETED, actor=SYSTEM_ACTOR, now=now,
            details=details, follow_up=follow_up,
        )
        _record_ledger(conn, ledger_rows)


# --- The saga ---------------------------------------------------------------------------------------


@dataclass
class _Saga:
    """One erasure in progress: its request, the results of its completed steps, what external steps need."""

    record: RequestRecord
    results: dict[str, Any] = field(default_factory=dict)
    contact: Any = None  # email, locale, Stripe customer id: in memory only, while the account exists
    error: Exception | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def account_id(self) -> str:
        return self.record.account_id


def _record_steps(conn: Connection, step: str, results: Mapping[str, Any], now: dt.datetime) -> None:
    """Mark `step` completed for each request, with its result (the persisted saga state)."""
    if not results:
        return
    statement = dialect_insert(conn, saga_steps)
    rows = [
        {"job_id": request_id, "step": step, "state": STEP_COMPLETED, "attempts": 1, "result": result,
         "last_error": None, "updated_at": now}
        for request_id, result in results.items()
    ]
    # A list of parameter sets: one cached statement, sent as multi-row INSERTs by the driver.
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[saga_steps.c.job_id, saga_steps.c.step],
            set_={"state": STEP_COMPLETED, "result": statement.excluded.result, "last_error": None,
                  "attempts": saga_steps.c.attempts + 1, "updated_at": statement.excluded.updated_at},
        ),
        rows,
    )


def _record_failures(engine: Engine, step: str, failed: Sequence[_Saga], now: dt.datetime) -> None:
    """Keep the failed step visible (exception class only: messages can carry personal data)."""
    if not failed:
        return
    with engine.begin() as conn:
        statement = dialect_insert(conn, saga_steps)
        rows = [
            {"job_id": saga.id, "step": step, "state": STEP_FAILED, "attempts": 1, "result": None,
             "last_error": type(saga.error).__name__[:200], "updated_at": now}
            for saga in failed
        ]
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[saga_steps.c.job_id, saga_steps.c.step],
                set_={"state": STEP_FAILED, "last_error": statement.excluded.last_error,
                      "attempts": saga_steps.c.attempts + 1, "updated_at": statement.excluded.updated_at},
            ),
            rows,
        )


def _start(engine: Engine, request_ids: Sequence[str], now: dt.datetime) -> tuple[dict[str, str], list[_Saga]]:
    """Move due requests into `in_progress` (one transaction); the others get the reason they do not run."""
    outcomes: dict[str, str] = {}
    sagas: list[_Saga] = []
    with engine.begin() as conn:
        loaded = {record.id: record for record in registry.load_many(conn, request_ids)}
        # Art. 18(2): the retention schedule does not erase an account under restriction.
        restricted = _restricted_among(conn, [
            r.account_id for r in loaded.values() if r.state == registry.WAITING and r.channel == RETENTION_CHANNEL
        ])
        due: list[RequestRecord] = []
        for request_id in request_ids:
            record = loaded.get(request_id)
            if record is None or record.kind != KIND:
                outcomes[request_id] = "request_not_found"
                continue
            if record.state == registry.WAITING:
                if now < erase_after(record):
                    outcomes[request_id] = "not_due"
                    continue
                if record.channel == RETENTION_CHANNEL and record.account_id in restricted:
                    try:
                        registry.transition(
                            conn, request_id, registry.REJECTED, actor=SYSTEM_ACTOR, now=now,
                            reason="a restriction of processing (GDPR Art. 18) was in force when the erasure became due",
                        )
                    except Conflict as exc:  # a concurrent cancel/run won the race
                        outcomes[request_id] = exc.code
                        continue
                    _reactivate(conn, record.account_id)
                    outcomes[request_id] = registry.REJECTED
                    continue
                due.append(record)
            elif record.state != registry.IN_PROGRESS:
                outcomes[request_id] = record.state  # completed, cancelled, rejected
            else:
                sagas.append(_Saga(record))
        sagas += [_Saga(record) for record in _start_due(conn, due, now, outcomes)]
        if sagas:
            by_id = {s.id: s for s in sagas}
            for start in range(0, len(sagas), _ID_BATCH):
                rows = conn.execute(
                    select(saga_steps.c.job_id, saga_steps.c.step, saga_steps.c.result).where(
                        saga_steps.c.job_id.in_([s.id for s in sagas[start:start + _ID_BATCH]]),
                        saga_steps.c.state == STEP_COMPLETED,
                    )
                )
                for row in rows:
                    by_id[row.job_id].results[row.step] = row.result or {}
            contacts = _contacts(conn, [s.account_id for s in sagas])
            for saga in sagas:
                saga.contact = contacts.get(saga.account_id)
    return outcomes, sagas


def _start_due(
    conn: Connection, due: Sequence[RequestRecord], now: dt.datetime, outcomes: dict[str, str]
) -> list[RequestRecord]:
    """Move the due requests to `in_progress` in one statement; on a lost race, one by one to find the loser."""
    if not due:
        return []
    try:
        with conn.begin_nested():
            return registry.transition_many(conn, due, registry.IN_PROGRESS, actor=SYSTEM_ACTOR, now=now)
    except Conflict:
        pass  # rolled back to the savepoint: retry each request on its own
    started = []
    for record in due:
        try:
            started.append(registry.transition(conn, record.id, registry.IN_PROGRESS, actor=SYSTEM_ACTOR, now=now))
        except (NotFound, Conflict) as exc:
            outcomes[record.id] = exc.code
    return started


StepRunner = Callable[[Engine, Sequence["_Saga"], dt.datetime, "Executor | None"], None]


def _each(sagas: Sequence[_Saga], effect: Callable[[_Saga], dict[str, Any]], pool: Executor | None) -> None:
    """Run one external effect per saga, concurrently in `pool`; a failure stops that saga only."""

    def run(saga: _Saga) -> tuple[_Saga, dict[str, Any] | None]:
        try:
            return saga, effect(saga)
        except Exception as exc:
            saga.error = exc
            return saga, None

    if pool is not None and len(sagas) > 1:
        done = list(pool.map(run, sagas))
    else:
        done = [run(saga) for saga in sagas]
    for saga, result in done:
        if result is not None:
            saga.results["_pending"] = result


def _plan_step(engine: Engine, sagas: Sequence[_Saga], now: dt.datetime, _pool: Executor | None) -> None:
    with engine.begin() as conn:
        plans = _plans(conn, [s.account_id for s in sagas], now)
        results = {s.id: plans[s.account_id] for s in sagas}
        _record_steps(conn, "plan", results, now)
    for saga in sagas:
        saga.results["plan"] = results[saga.id]


Effect = Callable[[Engine, "_Saga", dt.datetime], dict[str, Any]]


def _external_step(name: str, effect: Effect) -> StepRunner:
    """A step whose effect is outside the database: run per saga, recorded for the batch once done."""

    def step(engine: Engine, sagas: Sequence[_Saga], now: dt.datetime, pool: Executor | None) -> None:
        _each(sagas, lambda saga: effect(engine, saga, now), pool)
        done = [s for s in sagas if s.error is None]
        results = {s.id: s.results.pop("_pending") for s in done}
        with engine.begin() as conn:
            _record_steps(conn, name, results, now)
        for saga in done:
            saga.results[name] = results[saga.id]
        _record_failures(engine, name, [s for s in sagas if s.error is not None], now)

    return step


def _database_step(engine: Engine, sagas: Sequence[_Saga], now: dt.datetime, _pool: Executor | None) -> None:
    """One transaction for the batch: data and step records commit together, or not at all."""
    try:
        with engine.begin() as conn:
            account_ids = [s.account_id for s in sagas]
            # Locks the rows (PostgreSQL): two runs of the same erasure cannot interleave here.
            present = set(conn.execute(select(accounts.c.id).where(accounts.c.id.in_(account_ids)).with_for_update()).scalars())
            erase_accounts_data(conn, [a for a in account_ids if a in present], now=now)
            # An absent account was erased by a replay or a concurrent run: its data and check are done.
            results = {s.id: {"verified": s.account_id in present} for s in sagas}
            _record_steps(conn, "database", results, now)
    except ErasureVerificationFailed as exc:
        if len(sagas) == 1:
            sagas[0].error = exc
            _record_failures(engine, "database", sagas, now)
            return
        for saga in sagas:  # isolate the account(s) at fault; the others go through
            _database_step(engine, [saga], now, None)
        return
    for saga in sagas:
        saga.results["database"] = results[saga.id]


def _receipt_effect(_engine: Engine, saga: _Saga, now: dt.datetime) -> dict[str, Any]:
    return _receipt_step(saga.record, _build_receipt(saga.record, saga.results, now), now)


_STEP_RUNNERS: dict[str, StepRunner] = {
    "plan": _plan_step,
    "stripe": _external_step("stripe", lambda _engine, saga, _now: _stripe_effect(saga)),
    "resend": _external_step("resend", lambda _engine, saga, _now: _resend_effect(saga)),
    "receipt_mail": _external_step("receipt_mail", lambda _engine, saga, now: _receipt_mail_effect(saga, now)),
    "database": _database_step,
    "objects": _external_step("objects", lambda engine, saga, now: _objects_step(engine, saga.account_id, now)),
    "receipt": _external_step("receipt", _receipt_effect),
}
assert tuple(_STEP_RUNNERS) == STEPS


def _run(
    engine: Engine, request_ids: Sequence[str], now: dt.datetime | None, workers: int
) -> tuple[dict[str, str], dict[str, Exception]]:
    now = _now(now)
    outcomes, sagas = _start(engine, list(dict.fromkeys(request_ids)), now)
    # One pool for every step: its threads keep their SDK connections open from one step to the next.
    concurrent = workers > 1 and len(sagas) > 1
    with ThreadPoolExecutor(max_workers=min(workers, len(sagas))) if concurrent else nullcontext() as pool:
        for step in STEPS:
            pending = [s for s in sagas if s.error is None and step not in s.results]
            if pending:
                _STEP_RUNNERS[step](engine, pending, now, pool)
    done = [s for s in sagas if s.error is None]
    if done:
        _complete(engine, done, now)
    errors = {s.id: s.error for s in sagas if s.error is not None}
    for saga in sagas:
        outcomes[saga.id] = f"failed:{type(errors[saga.id]).__name__}" if saga.id in errors else registry.COMPLETED
    return outcomes, errors


def run_erasures(
    engine: Engine, request_ids: Sequence[str], *, now: dt.datetime | None = None, workers: int = 8
) -> dict[str, str]:
    """Run (or resume) the sagas of many registered erasures together; returns each one's outcome.

    The database work is set-based over the whole batch (a few statements per table,
    whatever the batch size); the external calls of different accounts run concurrently
    (`workers`). Outcomes: `completed`; `not_due` during the cooling-off; `cancelled` /
    `rejected` when it will never run; `failed:<Error>` when a step failed (Stripe or
    Resend down, self-check failed): that erasure stays `in_progress`, its completed
    steps are kept, and the next run (the sweep) resumes it.
    """
    return _run(engine, request_ids, now, workers)[0]


def run_queued(
    engine: Engine, request_ids: Sequence[str], *, batch_size: int, deadline: float, workers: int = 8,
) -> tuple[dict[str, str], dict[str, Exception], list[str]]:
    """What the queue worker does with one message: the ids in batches until `deadline` (time.monotonic).

    Returns (outcomes, errors, ids not started): no batch starts past the deadline, so the
    invocation ends well within its timeout; the caller queues the rest.
    """
    ids = list(dict.fromkeys(request_ids))
    outcomes: dict[str, str] = {}
    errors: dict[str, Exception] = {}
    for start in range(0, len(ids), batch_size):
        if start and time.monotonic() >= deadline:
            return outcomes, errors, ids[start:]
        batch_outcomes, batch_errors = _run(engine, ids[start:start + batch_size], None, workers)
        outcomes.update(batch_outcomes)
        errors.update(batch_errors)
    return outcomes, errors, []


def run_erasure(engine: Engine, request_id: str, *, now: dt.datetime | None = None) -> str:
    """Run (or resume) one erasure's saga; returns `completed`, `not_due`, `cancelled` or `rejected`.

    Raises the failing step's error: ExternalServiceError when Stripe or Resend fail
    (the step stays incomplete; the next delivery resumes it), ErasureVerificationFailed
    when the self-check fails.
    """
    outcomes, errors = _run(engine, [request_id], now, 1)
    if request_id in errors:
        raise errors[request_id]
    return outcomes[request_id]


# --- Replay after a backup restore --------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayReport:
    checked: int
    reapplied: int
    already_erased: int

    def to_json(self) -> dict[str, int]:
        return {"checked": self.checked, "reapplied": self.reapplied, "already_erased": self.already_erased}


def _ledger_entries(engine: Engine, since: dt.datetime) -> dict[str, dict[str, str]]:
    """Ledger entries erased since `since`: the database table and its mirror in object storage."""
    from shared.ports.backends import get_storage

    entries: dict[str, dict[str, str]] = {}
    with engine.connect() as conn:
        for row in conn.execute(select(erasure_ledger).where(erasure_ledger.c.erased_at >= since)):
            entries[row.request_id] = _ledger_entry(row.request_id, row.account_id, row.erased_at)
    storage = get_storage()
    bucket = _bucket("archive_bucket")
    mirror = _ledger_prefix()
    pattern = _key_regex(mirror)
    for info in storage.list(bucket, mirror.prefix()):
        match = pattern.match(info.key)
        if match is None or match["request_id"] in entries:
            continue
        entry = json.loads(storage.get_bytes(bucket, info.key))
        if _parse_iso(entry["erased_at"]) >= since:
            entries[match["request_id"]] = entry
    return entries


def _close_restored_request(conn: Connection, request_id: str, now: dt.datetime) -> None:
    """A backup taken mid-erasure restores the request open: close it as the erasure did, with its receipt."""
    record = conn.execute(select(schema.dsr_requests.c.state).where(schema.dsr_requests.c.id == request_id)).scalar()
    if record in (registry.WAITING, registry.RECEIVED, registry.VERIFIED):
        if record != registry.WAITING:
            registry.transition(conn, request_id, registry.WAITING, actor=SYSTEM_ACTOR, now=now)
        registry.transition(conn, request_id, registry.IN_PROGRESS, actor=SYSTEM_ACTOR, now=now)
        record = registry.IN_PROGRESS
    if record == registry.IN_PROGRESS:
        details: dict[str, Any] = {"receipt_object": receipt_key(request_id), "replayed": True}
        receipt = load_receipt(request_id)
        if receipt is not None:
            details["receipt_summary"] = _receipt_summary(receipt)
        registry.transition(conn, request_id, registry.COMPLETED, actor=SYSTEM_ACTOR, now=now, details=details)


def replay_erasures(engine: Engine, *, since: dt.datetime | dt.date, now: dt.datetime | None = None) -> ReplayReport:
    """Re-apply every erasure of the ledger since `since` to accounts that a restore brought back.

    Idempotent: an account still absent is skipped; a restored one gets the database
    and object steps again (no Stripe or Resend call: they live outside the backup,
    and their erasure was done once). Restores missing ledger rows from the mirror.
    """
    now = _now(now)
    if not isinstance(since, dt.datetime):
        since = dt.datetime.combine(since, dt.time.min, tzinfo=UTC)
    entries = _ledger_entries(engine, since.astimezone(UTC))
    reapplied = already = 0
    for entry in sorted(entries.values(), key=lambda e: e["erased_at"]):
        account_id = entry["account_id"]
        with engine.begin() as conn:
            _record_ledger(conn, [entry])
            present = conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update()).first()
            if present is None:
                already += 1
                continue
            result = erase_account_data(conn, account_id, now=now)
            _close_restored_request(conn, entry["request_id"], now)
            audit.record(
                conn, actor=SYSTEM_ACTOR, action="erasure.replayed", outcome="reapplied", request_id=entry["request_id"],
                subject=account_id, details={"rows_deleted": result["rows_deleted"], "rows_updated": result["rows_updated"]},
                now=now,
            )
        _objects_step(engine, account_id, now)
        reapplied += 1
    return ReplayReport(checked=len(entries), reapplied=reapplied, already_erased=already)


def parse_since(value: str) -> dt.datetime:
    """`--since` of the CLI: a date (YYYY-MM-DD) or an ISO 8601 timestamp; naive means UTC."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed("since must be a date (YYYY-MM-DD) or an ISO 8601 timestamp", code="invalid_since") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
