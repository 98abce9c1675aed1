"""What the three retention jobs share: bounded deletes, keyset pages, object deletes, the audit of a run.

The period arithmetic (cutoffs, invoice clocks, the last expired day) lives in
`shared.policy.rules`: this module only applies a boundary it is given, in batches small
enough that no statement, transaction or S3 call grows with the amount of data due.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, delete, func, select

from shared.policy import data_map
from shared.policy import facts as policy
from shared.ports.storage import ObjectRetained, ObjectStore
from shared.records import audit

ACTOR = "system:retention"
BATCH_SIZE = 1000  # rows per delete statement, and at most one S3 DeleteObjects call per batch

# Called with (category id, items done so far) while a long run progresses.
Progress = Callable[[str, int], None]


def no_progress(_category: str, _done: int) -> None:
    return None


def pages(engine: Engine, query: sa.Select, key: sa.Column) -> Iterator[Sequence[sa.Row]]:
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


def delete_in_batches(
    engine: Engine, table: sa.Table, condition: sa.ColumnElement[bool], category: str, progress: Progress
) -> int:
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


def count_rows(conn: Connection, table: sa.Table, condition: sa.ColumnElement[bool]) -> int:
    return conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()


def object_prefix(prefix_id: str) -> data_map.ObjectPrefix:
    """An object prefix of the data map, by id."""
    return next(p for p in data_map.OBJECT_PREFIXES if p.id == prefix_id)


def delete_objects(storage: ObjectStore, bucket: str, keys: list[str]) -> tuple[int, set[str]]:
    """Delete every version of `keys`; returns (deleted, keys still present because Object Lock holds them)."""
    if not keys:
        return 0, set()
    try:
        return storage.delete_many(bucket, keys, versions=True), set()
    except ObjectRetained:
        held = {key for key in keys if storage.exists(bucket, key)}
        return len(keys) - len(held), held


def rule_json(rule: policy.RetentionRule) -> dict[str, Any]:
    return {"id": rule.id, "period": rule.period.en, "clock": rule.clock, "legal_basis": rule.legal_basis}


def record_run(
    engine: Engine,
    category: str,
    rule: policy.RetentionRule,
    counts: dict[str, Any],
    now: dt.datetime,
    *,
    outcome: str = "applied",
) -> None:
    """One audit entry per category and run: counts and the rule, never personal data."""
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=ACTOR,
            action=f"retention.{category}",
            outcome=outcome,
            details={"rule": rule.id, "counts": counts},
        )
