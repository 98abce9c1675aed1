"""Saga steps run once across crashes; processed messages are recorded once."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from shared.ports.tables import saga_steps
from shared.records import saga as jobs


class Provider:
    """An external service with idempotency keys, like Stripe or Resend: a repeated key has no new effect."""

    def __init__(self) -> None:
        self.calls = 0
        self.effects: dict[str, int] = {}

    def charge(self, idempotency_key: str) -> str:
        self.calls += 1
        self.effects.setdefault(idempotency_key, len(self.effects) + 1)
        return f"effect-{self.effects[idempotency_key]}"


class Crash(Exception):
    pass


def step_row(engine, job_id: str, step: str):
    with engine.connect() as conn:
        return conn.execute(sa.select(saga_steps).where(saga_steps.c.job_id == job_id, saga_steps.c.step == step)).one()


def test_completed_step_returns_its_stored_result_without_running_again(engine):
    job_id, calls = str(uuid.uuid4()), []

    def fn():
        calls.append(1)
        return {"deleted": 3}

    assert jobs.run_step(engine, job_id, "database", fn) == {"deleted": 3}
    assert jobs.run_step(engine, job_id, "database", fn) == {"deleted": 3}
    assert len(calls) == 1
    assert step_row(engine, job_id, "database").attempts == 1


def test_step_crashing_after_its_effect_repeats_no_effect(engine):
    job_id, provider = str(uuid.uuid4()), Provider()
    crash = [True]

    def cancel_subscription():
        effect = provider.charge(jobs.step_key(job_id, "stripe"))
        if crash.pop() if crash else False:
            raise Crash("process died after the call, before the step was recorded")
        return {"effect": effect}

    with pytest.raises(Crash):
        jobs.run_step(engine, job_id, "stripe", cancel_subscription)
    failed = step_row(engine, job_id, "stripe")
    assert (failed.state, failed.last_error, failed.attempts) == ("failed", "Crash", 1)
    assert jobs.completed_steps(engine, job_id) == {}

    assert jobs.run_step(engine, job_id, "stripe", cancel_subscription) == {"effect": "effect-1"}
    assert jobs.run_step(engine, job_id, "stripe", cancel_subscription) == {"effect": "effect-1"}

    assert provider.calls == 2  # the crashed attempt and its retry, none after completion
    assert provider.effects == {jobs.step_key(job_id, "stripe"): 1}  # one effect
    done = step_row(engine, job_id, "stripe")
    assert (done.state, done.attempts, done.last_error) == ("completed", 2, None)


def test_error_messages_are_not_stored(engine):
    job_id = str(uuid.uuid4())

    def fails():
        raise ValueError("no customer for jean.dupont@example.fr")

    with pytest.raises(ValueError):
        jobs.run_step(engine, job_id, "resend", fails)
    assert step_row(engine, job_id, "resend").last_error == "ValueError"


def test_steps_are_tracked_per_job(engine):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    jobs.run_step(engine, first, "mail", lambda: None)
    jobs.run_step(engine, first, "database", lambda: {"rows": 1})
    assert jobs.completed_steps(engine, first) == {"mail": None, "database": {"rows": 1}}
    assert jobs.completed_steps(engine, second) == {}
    assert jobs.step_key(first, "mail") != jobs.step_key(second, "mail")
    assert jobs.step_key(first, "mail") != jobs.step_key(first, "database")


def test_a_result_that_cannot_be_stored_fails_the_step(engine):
    job_id = str(uuid.uuid4())
    with pytest.raises(TypeError):
        jobs.run_step(engine, job_id, "bad", lambda: ["not", "a", "dict"])
    assert step_row(engine, job_id, "bad").state == "failed"


def test_processed_messages_are_recorded_once(engine):
    key = f"export-ready:{uuid.uuid4()}"
    with engine.begin() as conn:
        assert not jobs.is_processed(conn, key)
        assert jobs.mark_processed(conn, key, "export-worker", {"status": "done"})
    with engine.begin() as conn:
        assert jobs.is_processed(conn, key)
        assert not jobs.mark_processed(conn, key, "export-worker", {"status": "again"})
        assert not jobs.is_processed(conn, key + "-other")
