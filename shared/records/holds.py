"""Legal holds (policy 6.4): an authority request or a litigation suspends erasure and retention
for exactly the held data; everything else stays on schedule.

A hold names one account (or one prospect) and data-map categories (`shared.policy.data_map`),
with a reason that holds no personal data (the audit trail's guard checks it) and an optional
end date. It is in force from its placement until it is released by the DPO (with a reason),
or through its end date (inclusive): it never releases itself early.

The data a hold keeps: the rows of every table of the data map holding one of its categories
and reaching the person (by account id, by the keyed pseudonym that erased rows keep, or, for
a prospect, by its id); a child table (invoice lines) is held with its parent. The row is the
unit every rule deletes, so a row that holds a held category is kept whole.

One check for every job, so none has a special case:

    held(table_name, now)        SQL predicate: this row of `table_name` is held (set-based, correlated)
    not_held(table_name, now)    its negation, ANDed into each retention query
    held_categories(conn, account_id, now=None) -> frozenset[str]
    record_ended(conn, now): the end of holds past their end date, recorded and audited (enforce-retention)
    held_tables(categories) / held_prefixes(categories): what those categories keep
    accounts_holding_prefix(conn, prefix_id, now): accounts whose files of a prefix are kept
    holds_in_force(conn, account_ids, now) -> {account_id: [LegalHold]}: what erasure tells the person

When a hold ends the held data is back under its own rules at the next run of each job (the
retention schedule finishes an erasure that a hold had suspended: `shared.retention.enforcement`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, insert, select, update

from shared.platform.clock import iso, moment
from shared.platform.errors import Conflict, NotFound, ValidationFailed
from shared.platform.pseudonym import subject_pseudonym
from shared.policy import data_map
from shared.ports import tables as schema
from shared.records import audit

MAX_REASON_LENGTH = 500
MIN_REASON_LENGTH = 3
MAX_CATEGORIES = 32


# --- What a hold can name ---------------------------------------------------------------------------


def _reachable_tables() -> list[data_map.TableMap]:
    """Tables whose rows reach a person: by account id, through a parent, by pseudonym, or prospects by id."""
    return [t for t in data_map.TABLES if t.link.column is not None and not t.link.pseudonym and t.categories]


def account_categories() -> frozenset[str]:
    """The categories a hold on an account may name: those of its rows and of its files."""
    tables = {c for t in _reachable_tables() for c in t.categories}
    prefixes = {p.category for p in data_map.OBJECT_PREFIXES if p.linked_by == "account_id"}
    return frozenset(tables | prefixes)


def prospect_categories() -> frozenset[str]:
    return frozenset(data_map.table_map("prospects").categories)


def held_tables(categories: Iterable[str]) -> frozenset[str]:
    """The tables whose rows a hold on these categories keeps (children with their parent)."""
    wanted = set(categories)
    held: set[str] = set()
    # TABLES is ordered children first: resolve parents first.
    for tm in reversed(data_map.TABLES):
        if tm.link.column is None or tm.link.pseudonym:
            continue
        if tm.link.parent is not None:
            if tm.link.parent in held:
                held.add(tm.name)
        elif wanted & set(tm.categories):
            held.add(tm.name)
    return frozenset(held)


def held_prefixes(categories: Iterable[str]) -> frozenset[str]:
    """The object prefixes (per account) a hold keeps: its category is held, or its files go with held rows."""
    wanted = set(categories)
    tables = held_tables(wanted)
    out = set()
    for prefix in data_map.OBJECT_PREFIXES:
        if prefix.linked_by != "account_id":
            continue
        moves_with_rows = prefix.archive_bucket_setting is not None and any(
            data_map.table_map(t).retention == prefix.retention and prefix.category in data_map.table_map(t).categories
            for t in tables
        )
        if prefix.category in wanted or moves_with_rows:
            out.add(prefix.id)
    return frozenset(out)


# --- The shared check ----------------------------------------------------------------------------------


def in_force(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Holds in force at `now`: not released, and not past their end date (inclusive)."""
    h = schema.legal_holds
    return sa.and_(h.c.released_at.is_(None), sa.or_(h.c.ends_on.is_(None), h.c.ends_on >= moment(now).date()))


def _match(tm: data_map.TableMap, table: sa.Table) -> sa.ColumnElement[bool] | None:
    h = schema.legal_holds
    conditions = []
    if tm.link.column is not None and not tm.link.pseudonym and tm.link.parent is None:
        conditions.append(h.c.account_id == table.c[tm.link.column])
    if "subject_pseudonym" in table.c:
        conditions.append(h.c.subject_pseudonym == table.c.subject_pseudonym)
    if tm.name == "prospects":
        conditions.append(h.c.prospect_id == table.c.id)
    return sa.or_(*conditions) if conditions else None


def held(table_name: str, now: dt.datetime) -> sa.ColumnElement[bool]:
    """SQL: the current row of `table_name` is kept by a hold in force (correlated EXISTS; false when no hold can reach it)."""
    tm = data_map.table_map(table_name)
    table = schema.metadata.tables[table_name]
    if tm.link.parent is not None:
        parent = schema.metadata.tables[tm.link.parent]
        return sa.exists().where(parent.c[tm.link.parent_key] == table.c[tm.link.key], held(tm.link.parent, now))
    match = _match(tm, table) if tm.categories else None
    if match is None:
        return sa.false()
    h, hc = schema.legal_holds, schema.legal_hold_categories
    return sa.exists().where(hc.c.hold_id == h.c.id, hc.c.category.in_(tm.categories), in_force(now), match)


def not_held(table_name: str, now: dt.datetime) -> sa.ColumnElement[bool]:
    """SQL: the current row of `table_name` is not kept by any hold: AND it into what a job deletes."""
    return sa.not_(held(table_name, now))


@dataclass(frozen=True)
class LegalHold:
    id: str
    account_id: str | None
    prospect_id: str | None
    categories: tuple[str, ...]
    reason: str
    authority_request_id: str | None
    placed_at: dt.datetime
    placed_by: str
    ends_on: dt.date | None
    released_at: dt.datetime | None
    released_by: str | None
    release_reason: str | None

    def in_force(self, now: dt.datetime | None = None) -> bool:
        today = moment(now).date()
        return self.released_at is None and (self.ends_on is None or self.ends_on >= today)

    def to_json(self, *, now: dt.datetime | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "prospect_id": self.prospect_id,
            "categories": list(self.categories),
            "reason": self.reason,
            "authority_request_id": self.authority_request_id,
            "placed_at": iso(self.placed_at, timespec="seconds"),
            "placed_by": self.placed_by,
            "ends_on": self.ends_on.isoformat() if self.ends_on else None,
            "in_force": self.in_force(now),
            "released_at": iso(self.released_at, timespec="seconds") if self.released_at else None,
            "released_by": self.released_by,
            "release_reason": self.release_reason,
        }

    def receipt_json(self) -> dict[str, Any]:
        """What an erasure receipt says of the hold: what is kept and why (no personal data)."""
        return {
            "hold_id": self.id,
            "categories": list(self.categories),
            "reason": self.reason,
            "since": iso(self.placed_at, timespec="seconds"),
            "until": self.ends_on.isoformat() if self.ends_on else None,
            "authority_request_id": self.authority_request_id,
        }


def _load(conn: Connection, condition: sa.ColumnElement[bool]) -> list[LegalHold]:
    h, hc = schema.legal_holds, schema.legal_hold_categories
    rows = conn.execute(select(h).where(condition).order_by(h.c.placed_at, h.c.id)).all()
    if not rows:
        return []
    categories: dict[str, list[str]] = {}
    ids = [row.id for row in rows]
    for start in range(0, len(ids), 1000):
        for hold_id, category in conn.execute(
            select(hc.c.hold_id, hc.c.category)
            .where(hc.c.hold_id.in_(ids[start : start + 1000]))
            .order_by(hc.c.category)
        ):
            categories.setdefault(hold_id, []).append(category)
    return [
        LegalHold(
            id=row.id,
            account_id=row.account_id,
            prospect_id=row.prospect_id,
            categories=tuple(categories.get(row.id, ())),
            reason=row.reason,
            authority_request_id=row.authority_request_id,
            placed_at=row.placed_at,
            placed_by=row.placed_by,
            ends_on=row.ends_on,
            released_at=row.released_at,
            released_by=row.released_by,
            release_reason=row.release_reason,
        )
        for row in rows
    ]


def holds_in_force(
    conn: Connection, account_ids: Sequence[str], now: dt.datetime | None = None
) -> dict[str, list[LegalHold]]:
    """The holds in force on each of these accounts (accounts without one are absent)."""
    h = schema.legal_holds
    out: dict[str, list[LegalHold]] = {}
    ids = list(account_ids)
    for start in range(0, len(ids), 1000):
        for hold in _load(conn, sa.and_(h.c.account_id.in_(ids[start : start + 1000]), in_force(moment(now)))):
            assert hold.account_id is not None  # selected by account id
            out.setdefault(hold.account_id, []).append(hold)
    return out


def held_categories(conn: Connection, account_id: str, now: dt.datetime | None = None) -> frozenset[str]:
    """The categories of this account's data that a hold in force keeps (empty: none)."""
    return frozenset(c for hold in holds_in_force(conn, [account_id], now).get(account_id, []) for c in hold.categories)


def accounts_holding_prefix(conn: Connection, prefix_id: str, now: dt.datetime | None = None) -> set[str]:
    """Accounts whose files of this object prefix a hold in force keeps (for jobs that walk objects)."""
    h = schema.legal_holds
    return {
        hold.account_id
        for hold in _load(conn, sa.and_(h.c.account_id.is_not(None), in_force(moment(now))))
        if hold.account_id is not None and prefix_id in held_prefixes(hold.categories)
    }


def get_hold(conn: Connection, hold_id: str) -> LegalHold:
    found = _load(conn, schema.legal_holds.c.id == hold_id)
    if not found:
        raise NotFound("no such legal hold", code="hold_not_found")
    return found[0]


def list_holds(
    conn: Connection,
    *,
    account_id: str | None = None,
    in_force_only: bool = False,
    now: dt.datetime | None = None,
    limit: int = 200,
) -> list[LegalHold]:
    h = schema.legal_holds
    conditions = []
    if account_id is not None:
        conditions.append(h.c.account_id == account_id)
    if in_force_only:
        conditions.append(in_force(moment(now)))
    return _load(conn, sa.and_(sa.true(), *conditions))[:limit]


# --- Placing and releasing ------------------------------------------------------------------------------


def check_free_text(value: str, *, field: str, max_length: int = MAX_REASON_LENGTH) -> str:
    """A reason or a register entry: trimmed, bounded, refused when it looks like personal data (audit guard)."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be a string", code=f"invalid_{field}")
    value = value.strip()
    if not MIN_REASON_LENGTH <= len(value) <= max_length:
        raise ValidationFailed(
            f"{field} must be {MIN_REASON_LENGTH} to {max_length} characters", code=f"invalid_{field}"
        )
    found = audit.personal_data_reason(value)
    if found:
        raise ValidationFailed(
            f"{field} must not hold personal data (it looks like {found})", code="personal_data_refused"
        )
    return value


def check_categories(categories: Sequence[str], *, prospect: bool = False) -> tuple[str, ...]:
    allowed = prospect_categories() if prospect else account_categories()
    wanted = tuple(sorted(set(categories)))
    if not wanted or len(wanted) > MAX_CATEGORIES:
        raise ValidationFailed("name at least one data category", code="invalid_categories")
    unknown = [c for c in wanted if c not in allowed]
    if unknown:
        raise ValidationFailed(f"unknown or unholdable categories: {', '.join(unknown[:5])}", code="invalid_categories")
    return wanted


def _subject_exists(conn: Connection, account_id: str | None, prospect_id: str | None) -> None:
    if prospect_id is not None:
        p = schema.prospects
        if conn.execute(select(p.c.id).where(p.c.id == prospect_id)).first() is None:
            raise NotFound("no such prospect", code="unknown_prospect")
        return
    a, ledger = schema.accounts, schema.erasure_ledger
    # The row lock orders a hold and an erasure of the same account (the erasure's database step locks it too,
    # then reads the holds): the erasure either sees the hold, or ran before it.
    if conn.execute(select(a.c.id).where(a.c.id == account_id).with_for_update()).first() is not None:
        return
    # An erased account: its rows kept under a pseudonym can still be held.
    if conn.execute(select(ledger.c.account_id).where(ledger.c.account_id == account_id).limit(1)).first() is None:
        raise NotFound("no such account", code="unknown_account")


def place_hold(
    conn: Connection,
    *,
    categories: Sequence[str],
    reason: str,
    actor: str,
    account_id: str | None = None,
    prospect_id: str | None = None,
    ends_on: dt.date | None = None,
    authority_request_id: str | None = None,
    now: dt.datetime | None = None,
) -> LegalHold:
    """Place a hold in the caller's transaction, audited; validation first, so a refusal changes nothing."""
    now = moment(now)
    if (account_id is None) == (prospect_id is None):
        raise ValidationFailed("name exactly one of account_id and prospect_id", code="invalid_subject")
    wanted = check_categories(categories, prospect=prospect_id is not None)
    reason = check_free_text(reason, field="reason")
    if ends_on is not None and ends_on <= now.date():
        raise ValidationFailed("ends_on must be a future day", code="invalid_end_date")
    _subject_exists(conn, account_id, prospect_id)
    if authority_request_id is not None:
        r = schema.authority_requests
        if conn.execute(select(r.c.id).where(r.c.id == authority_request_id)).first() is None:
            raise NotFound("no such authority request", code="unknown_authority_request")
    hold_id = str(uuid.uuid4())
    conn.execute(
        insert(schema.legal_holds).values(
            id=hold_id,
            account_id=account_id,
            prospect_id=prospect_id,
            subject_pseudonym=subject_pseudonym(account_id) if account_id else None,
            authority_request_id=authority_request_id,
            reason=reason,
            placed_at=now,
            placed_by=actor,
            ends_on=ends_on,
        )
    )
    conn.execute(insert(schema.legal_hold_categories), [{"hold_id": hold_id, "category": c} for c in wanted])
    audit.record(
        conn,
        actor=actor,
        action="legal_hold.placed",
        outcome="placed",
        subject=account_id,
        details={
            "hold_id": hold_id,
            "categories": list(wanted),
            "ends_on": ends_on.isoformat() if ends_on else None,
            "authority_request_id": authority_request_id,
            "prospect_id": prospect_id,
        },
    )
    return get_hold(conn, hold_id)


ENDED_BY = "system:retention"


def _ended(now: dt.datetime) -> sa.ColumnElement[bool]:
    h = schema.legal_holds
    return sa.and_(h.c.released_at.is_(None), h.c.ends_on < moment(now).date())


def count_ended(conn: Connection, now: dt.datetime) -> int:
    """Holds past their end date whose end is not recorded yet."""
    return conn.execute(select(sa.func.count()).select_from(schema.legal_holds).where(_ended(now))).scalar_one()


def record_ended(conn: Connection, now: dt.datetime) -> int:
    """Record, and audit, the end of each hold whose end date has passed: at the day after it, never earlier.

    The hold stopped keeping its data at that moment already (`in_force`); this is its proof, and the
    clock of the register's retention.
    """
    h = schema.legal_holds
    ended = _load(conn, _ended(now))
    for hold in ended:
        assert hold.ends_on is not None
        at = dt.datetime.combine(hold.ends_on + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)
        conn.execute(
            update(h)
            .where(h.c.id == hold.id, h.c.released_at.is_(None))
            .values(released_at=at, released_by=ENDED_BY, release_reason="end date reached")
        )
        audit.record(
            conn,
            actor=ENDED_BY,
            action="legal_hold.ended",
            outcome="ended",
            subject=hold.account_id,
            details={
                "hold_id": hold.id,
                "categories": list(hold.categories),
                "ends_on": hold.ends_on.isoformat(),
                "prospect_id": hold.prospect_id,
            },
        )
    return len(ended)


def release_hold(
    conn: Connection, hold_id: str, *, reason: str, actor: str, now: dt.datetime | None = None
) -> LegalHold:
    """Release a hold (DPO, with a reason), audited: its data is back under its rules at the next run."""
    now = moment(now)
    reason = check_free_text(reason, field="reason")
    hold = get_hold(conn, hold_id)
    if hold.released_at is not None:
        raise Conflict("this legal hold was already released", code="hold_already_released")
    h = schema.legal_holds
    result = conn.execute(
        update(h)
        .where(h.c.id == hold_id, h.c.released_at.is_(None))
        .values(released_at=now, released_by=actor, release_reason=reason)
    )
    if result.rowcount != 1:  # a concurrent release won
        raise Conflict("this legal hold was already released", code="hold_already_released")
    audit.record(
        conn,
        actor=actor,
        action="legal_hold.released",
        outcome="released",
        subject=hold.account_id,
        details={
            "hold_id": hold_id,
            "categories": list(hold.categories),
            "prospect_id": hold.prospect_id,
            "ended_by_date": bool(hold.ends_on and hold.ends_on < now.date()),
        },
    )
    return get_hold(conn, hold_id)
