"""Database effects done once per key: the effect and its processed marker commit together.

    once(engine, key, function, effect: Callable[[Connection], dict | None], *, now=None) -> dict | None

A re-run after a crash finds the marker (processed_messages) and returns the stored result without
running the effect again; two concurrent runs cannot both commit (the second's marker conflicts and
its transaction is rolled back). For effects outside the database (a mail, a Resend call) use a
saga step (shared.records.saga.run_step) with the provider's idempotency key instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared.ports.tables import processed_messages
from shared.records.saga import mark_processed


class _AlreadyDone(Exception):
    pass


def stored_result(conn: Connection, key: str) -> tuple[bool, dict[str, Any] | None]:
    row = conn.execute(select(processed_messages.c.result).where(processed_messages.c.idempotency_key == key)).first()
    return (row is not None, row.result if row is not None else None)


def once(
    engine: Engine,
    key: str,
    function: str,
    effect: Callable[[Connection], dict[str, Any] | None],
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any] | None:
    with engine.connect() as conn:
        done, result = stored_result(conn, key)
    if done:
        return result
    try:
        with engine.begin() as conn:
            result = effect(conn)
            if not mark_processed(conn, key, function, result, now=now):
                raise _AlreadyDone  # a concurrent run committed first: roll this one back
    except _AlreadyDone:
        with engine.connect() as conn:
            return stored_result(conn, key)[1]
    return result
