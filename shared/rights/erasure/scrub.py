"""The database step: driven by the data map, set-based, one transaction, self-verified."""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, delete, select, update

from shared.platform.clock import moment
from shared.policy import data_map
from shared.ports.tables import accounts
from shared.records import holds
from shared.rights.erasure.common import (
    _MIN_IDENTIFIER_LENGTH,
    ErasureVerificationFailed,
    _linked_tables,
    _owner,
    _personal,
    _subject_filter,
    _table,
)
from shared.rights.erasure.objects import _archive_prefix, _pdf_source
from shared.rights.erasure.strategies import column_strategies, column_strategy


@dataclass
class _Counter:
    deleted: int = 0
    updated: int = 0

    def add(self, result: sa.CursorResult, *, deleted: bool) -> None:
        if deleted:
            self.deleted += max(result.rowcount, 0)
        else:
            self.updated += max(result.rowcount, 0)


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


def _column_assignments(conn: Connection, tm: data_map.TableMap, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
    """The set-based UPDATEs that scrub a table's kept rows, link column excluded (it goes last).

    Each dict is one UPDATE over the subjects' rows; a pseudonymised column whose
    value differs per row gets one UPDATE per distinct value (never one per row).
    """
    table = _table(tm.name)
    constant: dict[str, Any] = {}
    per_value: list[dict[str, Any]] = []
    for strategy in column_strategies(tm):
        if strategy.column.name == tm.link.column:
            continue
        constant.update(strategy.constant())
        per_value += strategy.per_value(conn, where)
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
    values = column_strategy(tm, tm.link.key).unlink(account_ids)
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
        for row in conn.execute(
            select(owner, *(table.c[c] for c in columns)).select_from(source).where(owner.in_(account_ids))
        ):
            found[row[0]].update(
                str(v).strip().lower()
                for v in row[1:]
                if v is not None and len(str(v).strip()) >= _MIN_IDENTIFIER_LENGTH
            )
    return found


IdsFor = Callable[[data_map.TableMap], list[str]]


def _verify_scrubbed(conn: Connection, identifiers: Mapping[str, set[str]], ids_for: IdsFor) -> list[str]:
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
            c.name
            for c in _personal(tm)
            if column_strategy(tm, c.name).verified and isinstance(table.c[c.name].type, sa.String)
        ]
        scrubbed = ids_for(tm)
        if not columns or not scrubbed:
            continue
        source, owner = _owner(tm)
        survivors = conn.execute(
            select(owner, *(table.c[c] for c in columns))
            .select_from(source)
            .where(owner.in_(scrubbed), sa.or_(*(table.c[c].is_not(None) for c in columns)))
        )
        for row in survivors:
            values = [str(v).lower() for v in row[1:] if v is not None]
            if any(identifier in value for identifier in identifiers[row[0]] for value in values):
                failures.append(f"{tm.name}({', '.join(columns)})")
                break
    return failures


def _verify_unlinked(conn: Connection, ids_for: IdsFor) -> list[str]:
    """Tables where a row still points at an erased account (one statement for all of them); held rows stay linked."""
    checks = []
    for tm in _linked_tables():
        if tm.link.parent is not None:
            continue  # reached through its parent, checked there
        if tm.row_action != data_map.ROW_DELETE and column_strategy(tm, tm.link.key).keeps_link:
            continue  # the suite's own records keep the id by design (request registry, ledger)
        account_ids = ids_for(tm)
        if not account_ids:
            continue
        table = _table(tm.name)
        checks.append(
            select(sa.literal(tm.name).label("t")).where(sa.exists().where(table.c[tm.link.key].in_(account_ids)))
        )
    return [row[0] for row in conn.execute(sa.union_all(*checks))] if checks else []


def _held(
    conn: Connection, account_ids: Sequence[str], now: dt.datetime
) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Per account under a legal hold: (the tables whose rows it keeps, plus `accounts` for its shell; the categories)."""
    kept: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
    for account_id, in_force in holds.holds_in_force(conn, account_ids, now).items():
        categories = frozenset(c for hold in in_force for c in hold.categories)
        tables = holds.held_tables(categories)
        if tables:
            kept[account_id] = (tables | {"accounts"}, categories)
    return kept


def _shell_values(account_id: str, held: frozenset[str], now: dt.datetime) -> dict[str, Any]:
    """The account row a hold keeps as the anchor of its held rows: erased but for the columns of held categories.

    The row is marked `erased` (no login, no job picks it up); the held categories' columns keep their
    values; every other column is emptied (the address, unique and required, becomes a non-address).
    """
    tm = data_map.table_map("accounts")
    table = _table("accounts")
    values: dict[str, Any] = {"status": "erased"}
    for col in tm.columns:
        if not col.personal or col.category in held or col.name == "id":
            continue
        column = table.c[col.name]
        if column.nullable:
            values[col.name] = None
        elif isinstance(column.type, sa.String):
            values[col.name] = f"{account_id}@erased.invalid"
        else:
            values[col.name] = now  # timestamps: the erasure's
    return values


def erase_accounts_data(
    conn: Connection, account_ids: Sequence[str], *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Apply the data map to the given accounts in the caller's transaction, then verify; reused by replay.

    1. scrub: delete the rows of `delete` tables, null/pseudonymise the columns of kept rows;
    2. verify: no subject's identifier appears in a remaining column outside the retained set;
    3. unlink: retained rows lose the account id (NULL or its pseudonym), get archived_at; the accounts go;
    4. verify: no row points at an erased account any more.
    Legal holds (`shared.records.holds`): the rows a hold in force keeps are left as they are, still
    linked, and the account row stays as their anchor, erased but for the held categories' columns;
    the retention schedule finishes the erasure when the hold ends (`suspended.finish_suspended`).
    Raises ErasureVerificationFailed (the caller's transaction must roll back); its message
    names tables and columns, never a value. Every statement is set-based over the accounts'
    indexed rows: its cost depends on their data, not on how many other accounts exist.
    """
    now = moment(now)
    account_ids = list(account_ids)
    if not account_ids:
        return {"rows_deleted": 0, "rows_updated": 0}
    held = _held(conn, account_ids, now)

    def ids_for(tm: data_map.TableMap) -> list[str]:
        return [a for a in account_ids if a not in held or tm.name not in held[a][0]]

    identifiers = _identifiers(conn, account_ids)
    counter = _Counter()
    linked = _linked_tables()
    for tm in linked:
        if tm.name == "accounts" or not ids_for(tm):
            continue
        table = _table(tm.name)
        where = _subject_filter(tm, ids_for(tm))
        if tm.row_action == data_map.ROW_DELETE:
            counter.add(conn.execute(delete(table).where(where)), deleted=True)
            continue
        for values in _column_assignments(conn, tm, where):
            match = values.pop("_match", None)
            condition = where if match is None else sa.and_(where, table.c[match[0]] == match[1])
            counter.add(conn.execute(update(table).where(condition).values(**values)), deleted=False)
    failures = _verify_scrubbed(conn, identifiers, ids_for)
    if failures:
        raise ErasureVerificationFailed("identifiers remain outside the retained set in " + "; ".join(failures))
    for tm in linked:
        if tm.name == "accounts" or tm.row_action == data_map.ROW_DELETE or not ids_for(tm):
            continue
        values = _unlink_assignments(tm, ids_for(tm), now)
        if values:
            table = _table(tm.name)
            counter.add(
                conn.execute(update(table).where(_subject_filter(tm, ids_for(tm))).values(**values)), deleted=False
            )
    gone = ids_for(data_map.table_map("accounts"))
    if gone:
        counter.add(conn.execute(delete(accounts).where(accounts.c.id.in_(gone))), deleted=True)
    for account_id in account_ids:
        if account_id not in gone:
            counter.add(
                conn.execute(
                    update(accounts)
                    .where(accounts.c.id == account_id)
                    .values(**_shell_values(account_id, held[account_id][1], now))
                ),
                deleted=False,
            )
    still_linked = _verify_unlinked(conn, ids_for)
    if still_linked:
        raise ErasureVerificationFailed("rows still linked to an erased account in " + ", ".join(still_linked))
    return {"rows_deleted": counter.deleted, "rows_updated": counter.updated}


def erase_account_data(conn: Connection, account_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """`erase_accounts_data` for one account."""
    return erase_accounts_data(conn, [account_id], now=now)
