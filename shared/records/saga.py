"""Persisted saga steps and processed-message bookkeeping.

A multi-step job (erasure across the database, objects, Stripe, Resend) runs as
named steps. A completed step is never run again: its stored result is returned.
A step interrupted by a crash runs again, so every external side effect inside a
step carries `step_key(job_id, step)` as its idempotency key and the provider
deduplicates it: a side effect never happens twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from shared.ports.db import dialect_insert, get_engine, utcnow
from shared.ports.tables import processed_messages, saga_steps

STARTED = "started"
COMPLETED = "completed"
FAILED = "failed"


def _json_result(value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError("a step result must be a dict or None")
    # Fail before the effect is recorded as done if the result cannot be stored.
    return json.loads(json.dumps(value)) if value is not None else None


def step_key(job_id: str, step: str) -> str:
    """The idempotency key for external side effects of this step (stable across retries)."""
    return f"saga:{job_id}:{step}"


def run_step(
    engine: Engine,
    job_id: str,
    step: str,
    fn: Callable[[], dict[str, Any] | None],
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """Run `fn` once for (job_id, step): a completed step returns its stored result without calling it.

    On failure the step records the exception's class name only (messages can carry
    personal data) and the exception propagates, so the job can be retried.
    """
    with engine.begin() as conn:
        row = conn.execute(
            select(saga_steps.c.state, saga_steps.c.result).where(
                saga_steps.c.job_id == job_id, saga_steps.c.step == step
            )
        ).first()
        if row is not None and row.state == COMPLETED:
            return row.result
        started = dialect_insert(conn, saga_steps).values(
            job_id=job_id, step=step, state=STARTED, attempts=1, updated_at=now or utcnow()
        )
        conn.execute(
            started.on_conflict_do_update(
                index_elements=[saga_steps.c.job_id, saga_steps.c.step],
                set_={"state": STARTED, "attempts": saga_steps.c.attempts + 1, "updated_at": now or utcnow()},
            )
        )
    where = (saga_steps.c.job_id == job_id, saga_steps.c.step == step)
    try:
        result = _json_result(fn())
    except Exception as exc:
        with engine.begin() as conn:
            conn.execute(
                update(saga_steps)
                .where(*where)
                .values(state=FAILED, last_error=type(exc).__name__[:200], updated_at=now or utcnow())
            )
        raise
    with engine.begin() as conn:
        conn.execute(
            update(saga_steps)
            .where(*where)
            .values(state=COMPLETED, result=result, last_error=None, updated_at=now or utcnow())
        )
    return result


def completed_steps(engine: Engine, job_id: str) -> dict[str, dict[str, Any] | None]:
    """Completed steps of the job and their results, in completion order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(saga_steps.c.step, saga_steps.c.result)
            .where(saga_steps.c.job_id == job_id, saga_steps.c.state == COMPLETED)
            .order_by(saga_steps.c.updated_at, saga_steps.c.step)
        )
        return {row.step: row.result for row in rows}


def mark_processed(
    conn: Connection,
    key: str,
    function: str,
    result: dict[str, Any] | None = None,
    *,
    now: dt.datetime | None = None,
) -> bool:
    """Record that the message `key` was handled; False when it already was (the first record stays)."""
    inserted = conn.execute(
        dialect_insert(conn, processed_messages)
        .values(idempotency_key=key, function=function, processed_at=now or utcnow(), result=_json_result(result))
        .on_conflict_do_nothing(index_elements=[processed_messages.c.idempotency_key])
        .returning(processed_messages.c.idempotency_key)
    ).first()
    return inserted is not None


def is_processed(conn: Connection, key: str) -> bool:
    return (
        conn.execute(
            select(processed_messages.c.idempotency_key).where(processed_messages.c.idempotency_key == key)
        ).first()
        is not None
    )


class ProcessedMessagesTable:
    """The queue functions' memory of handled message keys (`processed_messages`), in the configured database."""

    def seen(self, key: str) -> bool:
        with get_engine().connect() as conn:
            return is_processed(conn, key)

    def record(self, key: str, function: str, result: dict[str, Any] | None) -> None:
        with get_engine().begin() as conn:
            mark_processed(conn, key, function, result)


PROCESSED_MESSAGES = ProcessedMessagesTable()
