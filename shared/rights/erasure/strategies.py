"""What erasure does to one column, set-based: one small strategy per action of the data map.

The data map names each column's action (`delete`, `null`, `pseudonymise`, `retain`, `keep`)
and its per-value strategy (`shared.policy.data_map.STRATEGIES`: the outcome the subject is
told, the values one row receives). Here each action gets the strategy the database step
uses over all of a batch's rows at once, chosen by the same name:

    strategy = column_strategy(table_map, column_name)
    strategy.constant()            # assignments equal on every row: merged into one UPDATE
    strategy.per_value(conn, ...)  # one UPDATE per distinct value (pseudonyms), never per row
    strategy.unlink(account_ids)   # as the link column: what replaces the account id
    strategy.verified              # the self-check searches it for the subject's identifiers
    strategy.keeps_link            # as the link column: the rows keep the account id by design

Object prefixes have their own (`delete`, `retain`, `keep`): `object_strategy(prefix).erase(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy import Connection, select

from shared.policy import data_map
from shared.ports.storage import ObjectStore
from shared.rights.erasure.common import _bucket, _table


class ColumnErasure:
    """One column of a table's rows that stay (the rows of `delete` tables simply go)."""

    action: ClassVar[str]
    verified: ClassVar[bool] = True
    keeps_link: ClassVar[bool] = False
    pseudonymises_link: ClassVar[bool] = False

    def __init__(self, table_map: data_map.TableMap, column: data_map.ColumnMap) -> None:
        self.table_map = table_map
        self.column = column
        self.table = _table(table_map.name)

    @property
    def outcome(self) -> str:
        """What the subject is told for this column's category (the data map's word)."""
        return self.table_map.strategy(self.column.name).outcome

    def constant(self) -> dict[str, Any]:
        """Assignments with the same value on every row of the subjects."""
        return {}

    def per_value(self, conn: Connection, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
        """Assignments that depend on the current value: one dict per distinct value, `_match` naming it."""
        return []

    def unlink(self, account_ids: Sequence[str]) -> dict[str, Any]:
        """As the link column of retained rows: what replaces the account id (nothing: left as is)."""
        return {}


class DeleteColumn(ColumnErasure):
    """The row goes with its table's rows; a kept row's `delete` column is left to the self-check."""

    action = data_map.DeleteRow.name


class NullColumn(ColumnErasure):
    action = data_map.SetNull.name

    def constant(self) -> dict[str, Any]:
        return {self.column.name: None}

    def unlink(self, account_ids: Sequence[str]) -> dict[str, Any]:
        return {self.column.name: None}


class PseudonymiseColumn(ColumnErasure):
    action = data_map.Pseudonymise.name
    pseudonymises_link = True

    def per_value(self, conn: Connection, where: sa.ColumnElement[bool]) -> list[dict[str, Any]]:
        column = self.table.c[self.column.name]
        values = conn.execute(select(column).where(where, column.is_not(None)).distinct()).scalars()
        strategy = self.table_map.strategy(self.column.name)
        return [{"_match": (self.column.name, value), **strategy.assignments(value)} for value in values]

    def unlink(self, account_ids: Sequence[str]) -> dict[str, Any]:
        """Each account id moves into its own pseudonym: one CASE over the batch (a constant for one account)."""
        strategy = self.table_map.strategy(self.column.name)
        per_account = {a: strategy.assignments(a) for a in account_ids}
        values: dict[str, Any] = {}
        for target in per_account[account_ids[0]]:
            mapping = {a: assigned[target] for a, assigned in per_account.items()}
            distinct = set(mapping.values())
            values[target] = (
                distinct.pop() if len(distinct) == 1 else sa.case(mapping, value=self.table.c[self.column.name])
            )
        return values


class RetainColumn(ColumnErasure):
    """Kept as is under its retention rule: outside the self-check's search."""

    action = data_map.Retain.name
    verified = False


class KeepColumn(ColumnErasure):
    """Not personal, or the suite's own record: left as is; as a link, the rows keep the id."""

    action = data_map.Keep.name
    verified = False
    keeps_link = True


_BY_ACTION: dict[str, type[ColumnErasure]] = {
    s.action: s for s in (DeleteColumn, NullColumn, PseudonymiseColumn, RetainColumn, KeepColumn)
}
# Every action of the data map has its set-based strategy here.
assert set(_BY_ACTION) == set(data_map.STRATEGIES), sorted(set(data_map.STRATEGIES) ^ set(_BY_ACTION))


def column_strategy(table_map: data_map.TableMap, column_name: str) -> ColumnErasure:
    """The strategy the data map's action names for a column."""
    column = table_map.column(column_name)
    return _BY_ACTION[column.action](table_map, column)


def column_strategies(table_map: data_map.TableMap) -> list[ColumnErasure]:
    """The strategy of each column of a table, in the map's order."""
    return [column_strategy(table_map, column.name) for column in table_map.columns]


# --- Object prefixes -------------------------------------------------------------------------


Archive = Callable[[data_map.ObjectPrefix], dict[str, Any]]


class ObjectErasure:
    """What erasure does to the files of one object prefix (the data map's action for it)."""

    action: ClassVar[str]

    def __init__(self, prefix: data_map.ObjectPrefix) -> None:
        self.prefix = prefix

    @property
    def outcome(self) -> str:
        """What the subject is told (the data map's word for the action)."""
        return data_map.STRATEGIES[self.action].outcome

    def erase(self, storage: ObjectStore, account_id: str, archive: Archive) -> dict[str, Any] | None:
        """Apply the action to one account's files; None when there is nothing to do (or to report)."""
        return None


class DeleteObjects(ObjectErasure):
    action = data_map.DeleteRow.name

    def erase(self, storage: ObjectStore, account_id: str, archive: Archive) -> dict[str, Any] | None:
        bucket = _bucket(self.prefix.bucket_setting)
        return {"deleted": storage.delete_prefix(bucket, self.prefix.prefix(account_id=account_id), versions=True)}


class RetainObjects(ObjectErasure):
    """Kept until the rule's date: moved to the retention archive when the map names one, else left to expire."""

    action = data_map.Retain.name

    def erase(self, storage: ObjectStore, account_id: str, archive: Archive) -> dict[str, Any] | None:
        return archive(self.prefix) if self.prefix.archive_bucket_setting else None


class KeepObjects(ObjectErasure):
    action = data_map.Keep.name


_OBJECTS_BY_ACTION: dict[str, type[ObjectErasure]] = {s.action: s for s in (DeleteObjects, RetainObjects, KeepObjects)}
# Every object prefix's action has its strategy here.
assert {p.action for p in data_map.OBJECT_PREFIXES} <= set(_OBJECTS_BY_ACTION)


def object_strategy(prefix: data_map.ObjectPrefix) -> ObjectErasure:
    """The strategy the data map's action names for an object prefix."""
    return _OBJECTS_BY_ACTION[prefix.action](prefix)
