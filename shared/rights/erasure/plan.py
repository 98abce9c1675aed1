"""The plan of one account: per category, erased, pseudonymised or retained until a date under a legal basis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from shared.policy import data_map
from shared.policy import facts as policy
from shared.ports import tables as schema
from shared.ports.tables import accounts
from shared.records import holds
from shared.rights.erasure.common import (
    _day,
    _expiry,
    _linked_tables,
    _owner,
    _personal,
    _table,
)
from shared.rights.erasure.strategies import column_strategy, object_strategy


def _outcome(tm: data_map.TableMap, col: data_map.ColumnMap) -> str:
    if tm.row_action == data_map.ROW_DELETE:
        return "erased"
    return column_strategy(tm, col.name).outcome


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
        stats[tm.name] = {row[0]: (row[1], dict(zip(clocks, row[2:], strict=True))) for row in rows}
    return stats


def _basis_json(basis_id: str) -> dict[str, str]:
    basis = policy.LEGAL_BASES[basis_id]
    return {"id": basis.id, "gdpr_article": basis.gdpr_article, "en": basis.label.en, "fr": basis.label.fr}


def _category_json(category_id: str) -> dict[str, Any]:
    category = policy.category(category_id)
    return {"category": category.id, "label": {"en": category.label.en, "fr": category.label.fr}}


def _retained_entry(
    category_id: str, scope: str, rule_id: str, until: dt.date | dt.datetime, records: int, pseudonymised: bool
) -> dict[str, Any]:
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


def _holds_keeping(scope: str, in_force: Sequence[holds.LegalHold]) -> list[holds.LegalHold]:
    """The holds that keep the data of one scope (a table, or an object prefix); the account row anchors held rows."""

    def keeps(hold: holds.LegalHold) -> set[str]:
        tables = holds.held_tables(hold.categories)
        return set(tables) | set(holds.held_prefixes(hold.categories)) | ({"accounts"} if tables else set())

    return [hold for hold in in_force if scope in keeps(hold)]


def _held_entry(entry: dict[str, Any], keeping: Sequence[holds.LegalHold]) -> dict[str, Any]:
    """An entry a legal hold keeps: what is held and why; it returns to its rule (`then`) when the hold ends."""
    ends = [hold.ends_on for hold in keeping]
    dated = [end for end in ends if end is not None]
    return {
        **{k: entry[k] for k in ("category", "label", "scope", "records")},
        "outcome": "held",
        "legal_holds": [hold.receipt_json() for hold in keeping],
        "held_until": max(dated).isoformat() if dated and len(dated) == len(ends) else None,  # None: until released
        "then": entry["outcome"],
    }


def _plan_for(
    account_id: str,
    stats: Stats,
    transmitted: int,
    has_customer: bool,
    now: dt.datetime,
    in_force: Sequence[holds.LegalHold] = (),
) -> dict[str, Any]:
    """Per category: erased, pseudonymised, retained until a date under a legal basis, or held. No personal data."""
    categories = {c for hold in in_force for c in hold.categories}
    kept_tables, kept_prefixes = holds.held_tables(categories), holds.held_prefixes(categories)
    if kept_tables:
        kept_tables = kept_tables | {"accounts"}
    entries: list[dict[str, Any]] = []
    until_by_table: dict[str, dt.date | dt.datetime] = {}

    def until_for(tm: data_map.TableMap, rule_id: str) -> dt.date | dt.datetime:
        if tm.clock_columns:
            return _expiry(rule_id, policy.clock_start(*stats[tm.name][account_id][1].values()))
        # A child kept with its parent (invoice lines): the parent's clock decides.
        if tm.link.parent is None:
            raise ValueError(f"{tm.name}: retained without a clock of its own nor a parent")
        parent = data_map.table_map(tm.link.parent)
        return _expiry(rule_id, policy.clock_start(*stats[parent.name][account_id][1].values()))

    for tm in _linked_tables():
        count = stats.get(tm.name, {}).get(account_id, (0, {}))[0]
        if count == 0:
            continue
        link_pseudonymised = tm.link.parent is None and column_strategy(tm, tm.link.key).pseudonymises_link
        seen: set[tuple[str, str]] = set()
        for col in _personal(tm):
            outcome = _outcome(tm, col)
            if (col.category, outcome) in seen:
                continue
            seen.add((col.category, outcome))
            if outcome == "retained":
                rule_id = col.retention or tm.retention
                if rule_id is None:
                    raise ValueError(f"{tm.name}.{col.name}: retained without a retention rule")
                until = until_by_table.setdefault(tm.name, until_for(tm, rule_id))
                entries.append(_retained_entry(col.category, tm.name, rule_id, until, count, link_pseudonymised))
            else:
                entries.append({**_category_json(col.category), "scope": tm.name, "outcome": outcome, "records": count})
    for prefix in data_map.OBJECT_PREFIXES:
        outcome = object_strategy(prefix).outcome
        if prefix.linked_by is None and outcome == "retained" and prefix.category.startswith("technical."):
            # Rotated log files mix every user: they cannot be edited per account and expire on their own.
            entries.append(
                _retained_entry(prefix.category, prefix.id, prefix.retention, _expiry(prefix.retention, now), 0, False)
            )
        elif prefix.linked_by == "account_id":
            if outcome == "retained" and "invoices" in until_by_table:
                entries.append(
                    _retained_entry(prefix.category, prefix.id, prefix.retention, until_by_table["invoices"], 0, False)
                )
            elif outcome == "erased":
                entries.append(
                    {**_category_json(prefix.category), "scope": prefix.id, "outcome": "erased", "records": 0}
                )
    if in_force:
        entries = [
            _held_entry(entry, _holds_keeping(entry["scope"], in_force))
            if entry["scope"] in kept_tables | kept_prefixes
            else entry
            for entry in entries
        ]
    return {
        "categories": entries,
        "legal_holds": [hold.receipt_json() for hold in in_force],
        "has_stripe_customer": has_customer,
        "invoices_transmitted": transmitted,
        "policy_version": policy.POLICY_VERSION,
    }


def _plans(conn: Connection, account_ids: Sequence[str], now: dt.datetime) -> dict[str, dict[str, Any]]:
    """The plan of each account, from a few grouped queries for the whole batch."""
    stats = _table_stats(conn, account_ids)
    invoices = schema.invoices
    transmitted: dict[str, int] = dict(
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
    in_force = holds.holds_in_force(conn, account_ids, now)
    return {
        a: _plan_for(a, stats, transmitted.get(a, 0), a in customers, now, in_force.get(a, ())) for a in account_ids
    }
