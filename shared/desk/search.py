"""Finding the person: where given identifiers appear, by data-map category and by owning account.

    search_subject(conn, identifiers: SubjectIdentifiers, *, actor=None, request_id=None) -> SubjectSearch
    SubjectSearch.to_json() -> {"searched", "matches", "by_category", "accounts_holding", "is_account_holder",
                                "account_id", "third_party_accounts", "prospect_accounts", "is_platform_prospect"}
    owners(conn, identifiers, role) -> {account id or None: identifier kinds matched}  (the desk's other modules)
    matching_rows(table_name, identifiers, role) -> Select of the rows of one table naming the person

Generated from the data map (shared.policy.data_map): each table's `subject_keys` say which
columns carry which identifier kind, in which role (account holder, prospect, third party named
in an account's documents) and which column owns the row. For each key one set-based query counts
the matching rows per owning account, with one conditional count per identifier kind; then, for
the accounts the person holds, one statement (a count per table linked to accounts, UNION ALL)
counts what hangs off them (payment records, connection and access logs, consent events...).
Every comparison has its index (migration 0015_subject_search): lower(email), phone, SIRET, lower(name).

Comparisons: email lower-cased; phone in the spellings it may be stored in (E.164, 0X XX XX XX XX,
with dots or dashes); SIRET digits; name case-folded by the database's lower() (on SQLite ASCII
letters only: "ÉLODIE" and "élodie" differ there); a postal address only narrows a name match
(either contains the other, case-folded; a row without an address matches on the name).

The answer and the audit entry (when `actor` is given) hold table names, categories, account ids,
identifier kinds and counts: never an identifier.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, func

from shared.desk.identifiers import SubjectIdentifiers
from shared.policy import data_map
from shared.ports import tables as schema
from shared.records import audit

VIA_IDENTIFIERS = "identifiers"
VIA_ACCOUNT = "account"
_SPACE: sa.ColumnClause[str] = sa.literal_column("' '")


@dataclass(frozen=True)
class Match:
    """Rows of one table naming the person, for one owner (None: the platform's own) and role."""

    table: str
    role: str
    account_id: str | None
    count: int
    categories: tuple[str, ...]
    via: str  # identifiers | account
    matched_on: tuple[str, ...] = ()  # identifier kinds that matched (never their values)

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.categories[0] if self.categories else None,
            "categories": list(self.categories),
            "table": self.table,
            "role": self.role,
            "account_id": self.account_id,
            "count": self.count,
            "via": self.via,
            "matched_on": list(self.matched_on),
        }


@dataclass(frozen=True)
class SubjectSearch:
    searched: tuple[str, ...]  # identifier kinds given
    matches: tuple[Match, ...] = field(default=())

    def _owners(self, role: str) -> list[str | None]:
        seen: dict[str | None, None] = {}
        for m in self.matches:
            if m.role == role and m.via == VIA_IDENTIFIERS:
                seen.setdefault(m.account_id)
        return list(seen)

    @property
    def accounts_holding(self) -> list[str]:
        """Accounts the person holds (their email, phone or name on the account, their SIRET on its company)."""
        return sorted(a for a in self._owners(data_map.ROLE_ACCOUNT_HOLDER) if a is not None)

    @property
    def third_party_accounts(self) -> list[str]:
        """Accounts whose documents (clients, invoice buyers) name the person: the controllers (policy 2.4)."""
        return sorted(a for a in self._owners(data_map.ROLE_THIRD_PARTY) if a is not None)

    @property
    def prospect_accounts(self) -> list[str]:
        """Accounts holding the person as their own prospect."""
        return sorted(a for a in self._owners(data_map.ROLE_PROSPECT) if a is not None)

    @property
    def is_platform_prospect(self) -> bool:
        return None in self._owners(data_map.ROLE_PROSPECT)

    @property
    def found(self) -> bool:
        return bool(self.matches)

    def by_category(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for m in self.matches:
            for category in m.categories:
                counts[category] += m.count
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        holding = self.accounts_holding
        return {
            "searched": list(self.searched),
            "matches": [m.to_json() for m in self.matches],
            "by_category": self.by_category(),
            "accounts_holding": holding,
            "is_account_holder": bool(holding),
            "account_id": holding[0] if len(holding) == 1 else None,
            "third_party_accounts": self.third_party_accounts,
            "prospect_accounts": self.prospect_accounts,
            "is_platform_prospect": self.is_platform_prospect,
        }


# --- Predicates, one per identifier kind ----------------------------------------------------------


def phone_spellings(phone: str) -> list[str]:
    """The ways an E.164 number may have been typed into a phone column."""
    spellings = {phone, "00" + phone[1:]}
    if phone.startswith("+33") and len(phone) == 12:
        national = "0" + phone[3:]
        pairs = [national[i : i + 2] for i in range(0, 10, 2)]
        spellings |= {
            national,
            " ".join(pairs),
            ".".join(pairs),
            "-".join(pairs),
            "+33 " + phone[3] + " " + " ".join(pairs[1:]),
        }
    return sorted(spellings)


def column_expression(table: sa.Table, columns: tuple[str, ...]) -> sa.ColumnElement:
    expr: sa.ColumnElement = table.c[columns[0]]
    for name in columns[1:]:
        expr = expr + _SPACE + table.c[name]
    return expr


def _folded(text: str) -> str:
    return " ".join(text.split()).lower()


def _kind_predicate(
    table: sa.Table, key: data_map.SubjectKey, kind: str, ids: SubjectIdentifiers
) -> sa.ColumnElement | None:
    value = getattr(ids, kind)
    if value is None or kind == "postal_address":
        return None
    alternatives = []
    for columns in key.columns(kind):
        expr = column_expression(table, columns)
        if kind == "email":
            alternatives.append(func.lower(expr) == value.lower())
        elif kind == "phone":
            alternatives.append(expr.in_(phone_spellings(value)))
        elif kind == "siret":
            alternatives.append(expr == value)
        elif kind == "name":
            alternatives.append(func.lower(expr) == _folded(value))
    if not alternatives:
        return None
    predicate = sa.or_(*alternatives)
    if kind == "name" and ids.postal_address and key.columns("postal_address"):
        given = _folded(ids.postal_address)
        narrowed = []
        for columns in key.columns("postal_address"):
            column = column_expression(table, columns)
            stored = func.lower(column)
            # Either contains the other: "12 rue X" (a first line) within "12 rue x, 75001 paris", or the reverse;
            # a row without an address is matched by the name alone.
            narrowed.append(
                sa.or_(
                    column.is_(None),
                    sa.literal(given).contains(stored, autoescape=False),
                    stored.contains(given, autoescape=True),
                )
            )
        predicate = sa.and_(predicate, sa.or_(*narrowed))
    return predicate


def _predicates(table: sa.Table, key: data_map.SubjectKey, ids: SubjectIdentifiers) -> dict[str, sa.ColumnElement]:
    out = {}
    for kind in data_map.IDENTIFIER_KINDS:
        predicate = _kind_predicate(table, key, kind, ids)
        if predicate is not None:
            out[kind] = predicate
    return out


def _keys(role: str | None = None) -> Iterator[tuple[data_map.TableMap, data_map.SubjectKey]]:
    for tm in data_map.searched_tables():
        for key in tm.subject_keys:
            if role is None or key.role == role:
                yield tm, key


def matching_rows(table_name: str, identifiers: SubjectIdentifiers, role: str | None = None) -> sa.Select | None:
    """SELECT of the rows of `table_name` that name the person (in `role`), None when no key applies."""
    table = schema.metadata.tables[table_name]
    conditions = [
        sa.or_(*preds.values())
        for tm, key in _keys(role)
        if tm.name == table_name and (preds := _predicates(table, key, identifiers))
    ]
    if not conditions:
        return None
    return sa.select(table).where(sa.or_(*conditions))


def _key_matches(
    conn: Connection, tm: data_map.TableMap, key: data_map.SubjectKey, ids: SubjectIdentifiers
) -> list[Match]:
    table = schema.metadata.tables[tm.name]
    predicates = _predicates(table, key, ids)
    if not predicates:
        return []
    owner = table.c[key.owner]
    kinds = list(predicates)
    query = (
        sa.select(
            owner,
            func.count().label("n"),
            *(func.count(sa.case((p, 1))).label(f"m_{k}") for k, p in predicates.items()),
        )
        .where(sa.or_(*predicates.values()))
        .group_by(owner)
        .order_by(owner)
    )
    columns = {c for _kind, cols in key.identifiers for c in cols}
    categories = tuple(dict.fromkeys(tm.column(c).category for c in sorted(columns) if tm.column(c).personal))
    matches = []
    for row in conn.execute(query):
        matched_on = tuple(k for k in kinds if row._mapping[f"m_{k}"])
        matches.append(Match(tm.name, key.role, row[0], row.n, categories, VIA_IDENTIFIERS, matched_on))
    return matches


def _linked_tables() -> list[data_map.TableMap]:
    """Tables whose rows belong to an account and are the holder's own data (not the people they name)."""
    out = []
    for tm in data_map.TABLES:
        if tm.suite or not tm.categories or tm.link.column is None or tm.link.pseudonym:
            continue
        roles = {k.role for k in tm.subject_keys}
        if roles and data_map.ROLE_ACCOUNT_HOLDER not in roles:
            continue  # an account's clients and prospects are other people
        out.append(tm)
    return out


def _owner_column(tm: data_map.TableMap) -> tuple[sa.ColumnElement, sa.FromClause]:
    table = schema.metadata.tables[tm.name]
    link = tm.link
    if link.parent is None:
        return table.c[link.key], table
    parent_map = data_map.table_map(link.parent)
    parent = schema.metadata.tables[link.parent]
    if parent_map.link.parent is not None or parent_map.link.column is None:
        raise ValueError(f"{tm.name}: links through more than one parent")
    joined = table.join(parent, table.c[link.key] == parent.c[link.parent_key])
    return parent.c[parent_map.link.column], joined


def _account_matches(conn: Connection, account_ids: list[str], direct: set[tuple[str, str | None]]) -> list[Match]:
    """What hangs off the accounts, counted per table and account in one statement (UNION ALL of one count per table)."""
    tables = _linked_tables()
    counts = []
    for tm in tables:
        owner, source = _owner_column(tm)
        counts.append(
            sa.select(sa.literal(tm.name).label("table_name"), owner.label("owner"), func.count().label("n"))
            .select_from(source)
            .where(owner.in_(account_ids))
            .group_by(owner)
        )
    by_name = {tm.name: tm for tm in tables}
    rows = sorted(
        conn.execute(sa.union_all(*counts)), key=lambda r: ([t.name for t in tables].index(r.table_name), r.owner)
    )
    matches = []
    for row in rows:
        if (row.table_name, row.owner) in direct:
            continue  # already listed from the identifiers
        tm = by_name[row.table_name]
        matches.append(Match(tm.name, data_map.ROLE_ACCOUNT_HOLDER, row.owner, row.n, tm.categories, VIA_ACCOUNT))
    return matches


def search_subject(
    conn: Connection,
    identifiers: SubjectIdentifiers,
    *,
    actor: str | None = None,
    request_id: str | None = None,
) -> SubjectSearch:
    """Every place the person appears. With `actor`, the search is audited in the caller's transaction
    (identifier kinds and counts only): call it within `engine.begin()` then."""
    direct: list[Match] = []
    for tm, key in _keys():
        direct.extend(_key_matches(conn, tm, key, identifiers))
    holding = sorted({m.account_id for m in direct if m.role == data_map.ROLE_ACCOUNT_HOLDER and m.account_id})
    seen = {(m.table, m.account_id) for m in direct if m.role == data_map.ROLE_ACCOUNT_HOLDER}
    linked = _account_matches(conn, holding, seen) if holding else []
    result = SubjectSearch(tuple(identifiers.kinds), tuple(direct + linked))
    if actor is not None:
        audit.record(
            conn,
            actor=actor,
            action="desk.subject_searched",
            outcome="found" if result.found else "not_found",
            request_id=request_id,
            details={
                "searched": list(result.searched),
                "tables": sorted({m.table for m in result.matches}),
                "accounts_holding": len(result.accounts_holding),
                "third_party_accounts": len(result.third_party_accounts),
                "is_platform_prospect": result.is_platform_prospect,
            },
        )
    return result


def owners(conn: Connection, identifiers: SubjectIdentifiers, role: str) -> dict[str | None, tuple[str, ...]]:
    """Owning account (None: the platform) -> identifier kinds matched, over every table naming the person in `role`."""
    found: dict[str | None, set[str]] = defaultdict(set)
    for tm, key in _keys(role):
        for m in _key_matches(conn, tm, key, identifiers):
            found[m.account_id].update(m.matched_on)
    return {owner: tuple(sorted(kinds)) for owner, kinds in found.items()}
