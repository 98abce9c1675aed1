"""The batched saga: persisted idempotent steps, run for many erasures together."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared.platform.clock import moment, parse_iso
from shared.platform.errors import Conflict, NotFound
from shared.ports.db import dialect_insert, purge_deleted
from shared.ports.tables import accounts, saga_steps
from shared.records import audit, registry
from shared.records.registry import RequestRecord
from shared.records.saga import COMPLETED as STEP_COMPLETED
from shared.records.saga import FAILED as STEP_FAILED
from shared.rights.erasure.common import (
    _ID_BATCH,
    KIND,
    RETENTION_CHANNEL,
    STEPS,
    SYSTEM_ACTOR,
    ErasureVerificationFailed,
    _linked_tables,
    _Saga,
    erase_after,
)
from shared.rights.erasure.objects import _objects_step
from shared.rights.erasure.plan import _plans
from shared.rights.erasure.processors import (
    _contacts,
    _receipt_mail_effect,
    _resend_effect,
    _stripe_effect,
)
from shared.rights.erasure.receipt import (
    _build_receipt,
    _ledger_entry,
    _receipt_step,
    _record_ledger,
    receipt_key,
)
from shared.rights.erasure.registration import _reactivate, _restricted_among
from shared.rights.erasure.scrub import erase_accounts_data


def _record_steps(conn: Connection, step: str, results: Mapping[str, Any], now: dt.datetime) -> None:
    """Mark `step` completed for each request, with its result (the persisted saga state)."""
    if not results:
        return
    statement = dialect_insert(conn, saga_steps)
    rows = [
        {
            "job_id": request_id,
            "step": step,
            "state": STEP_COMPLETED,
            "attempts": 1,
            "result": result,
            "last_error": None,
            "updated_at": now,
        }
        for request_id, result in results.items()
    ]
    # A list of parameter sets: one cached statement, sent as multi-row INSERTs by the driver.
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[saga_steps.c.job_id, saga_steps.c.step],
            set_={
                "state": STEP_COMPLETED,
                "result": statement.excluded.result,
                "last_error": None,
                "attempts": saga_steps.c.attempts + 1,
                "updated_at": statement.excluded.updated_at,
            },
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
            {
                "job_id": saga.id,
                "step": step,
                "state": STEP_FAILED,
                "attempts": 1,
                "result": None,
                "last_error": type(saga.error).__name__[:200],
                "updated_at": now,
            }
            for saga in failed
        ]
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=[saga_steps.c.job_id, saga_steps.c.step],
                set_={
                    "state": STEP_FAILED,
                    "last_error": statement.excluded.last_error,
                    "attempts": saga_steps.c.attempts + 1,
                    "updated_at": statement.excluded.updated_at,
                },
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
        restricted = _restricted_among(
            conn, [r.account for r in loaded.values() if r.state == registry.WAITING and r.channel == RETENTION_CHANNEL]
        )
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
                            conn,
                            request_id,
                            registry.REJECTED,
                            actor=SYSTEM_ACTOR,
                            now=now,
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
                        saga_steps.c.job_id.in_([s.id for s in sagas[start : start + _ID_BATCH]]),
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
            present = set(
                conn.execute(select(accounts.c.id).where(accounts.c.id.in_(account_ids)).with_for_update()).scalars()
            )
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
    now = moment(now)
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
        # No erased value left in the SQLite WAL or in PostgreSQL's dead tuples.
        purge_deleted(engine, [accounts.name, *(table.name for table in _linked_tables())])
    if sagas:
        audit.checkpoint(engine)  # the head after the run, anchored outside the database
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
    engine: Engine,
    request_ids: Sequence[str],
    *,
    batch_size: int,
    deadline: float,
    workers: int = 8,
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
        batch_outcomes, batch_errors = _run(engine, ids[start : start + batch_size], None, workers)
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
                actor=SYSTEM_ACTOR,
                action="erasure.completed",
                outcome=registry.COMPLETED,
                request_id=saga.id,
                subject=saga.account_id,
                details={"receipt_object": receipt_key(saga.id), **stored["summary"]},
            )
            ledger_rows.append(_ledger_entry(saga.id, saga.account_id, parse_iso(stored["erased_at"])))
        registry.transition_many(
            conn,
            [loaded[s.id] for s in closing],
            registry.COMPLETED,
            actor=SYSTEM_ACTOR,
            now=now,
            details=details,
            follow_up=follow_up,
        )
        _record_ledger(conn, ledger_rows)
