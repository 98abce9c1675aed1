"""expire-inactive-accounts end to end: warnings at 30 and 7 days, catch-up, reset, restriction, erasure.

Every test runs on SQLite and PostgreSQL (`env`). Days are simulated by giving the
domain operations a `now`; the queue between the CRON and the worker is the real
(in-process) queue, and the erasure at the end is the erase-account saga itself.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from shared.local.demo import create_account
from shared.local.server import cron_event, drain_queues, http_event, invoke, load_manifest
from shared.policy.rules import last_expired_day
from shared.ports import tables as schema
from shared.ports.backends import get_queue
from shared.ports.db import UTC, utcnow
from shared.retention import inactivity

pytestmark = pytest.mark.usefixtures("env")

CANARY = "canaryInactive4"
ONE_DAY = dt.timedelta(days=1)


@pytest.fixture
def manifest():
    return load_manifest()


@pytest.fixture
def immediate(monkeypatch):
    """As deployed: no cooling-off after the inactivity warnings."""
    from shared.platform.config import reset_settings
    from shared.ports.backends import reset_backends

    monkeypatch.setenv("ERASURE_COOLING_OFF_DAYS", "0")
    reset_settings()
    reset_backends()


def noon(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(12), tzinfo=UTC)


def inactive_account(engine, erasure_on: dt.date, **kw) -> dict:
    """An account whose 3 years of inactivity end on `erasure_on`."""
    last_day = last_expired_day(36, 0, erasure_on)
    account = create_account(engine, last_activity_at=noon(last_day), canary=CANARY, **kw)
    assert inactivity.erasure_day(account["last_activity_at"]) == erasure_on
    return account


def run_day(engine, now: dt.datetime, **kw) -> dict:
    """One daily CRON run at `now`, and the worker on every chunk it queued (same `now`)."""
    scheduled = inactivity.schedule(engine, now=now, **kw)
    results = []

    def consume(event: dict) -> dict:
        message = json.loads(event["body"])
        results.append(inactivity.process_chunk(engine, message["payload"]["account_ids"], now=now))
        return {"statusCode": 200}

    get_queue(inactivity.QUEUE_NAME).deliver_pending(consume)
    return {"scheduled": scheduled, "chunks": results}


def warnings(settings, account_id: str) -> list[str]:
    """Idempotency keys of the warning mails in the outbox for this account."""
    outbox = settings.data_dir / "outbox"
    keys = [json.loads(p.read_text())["idempotency_key"] for p in outbox.glob("*.json")] if outbox.exists() else []
    return sorted(k for k in keys if k.startswith(f"inactivity-warning:{account_id}:"))


def notice(engine, account_id: str):
    with engine.connect() as conn:
        n = schema.inactivity_notices
        return conn.execute(sa.select(n).where(n.c.account_id == account_id)).first()


def account_status(engine, account_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.accounts.c.status).where(schema.accounts.c.id == account_id)).scalar()


def erasure_requests(engine, account_id: str) -> list:
    r = schema.dsr_requests
    with engine.connect() as conn:
        return conn.execute(sa.select(r).where(r.c.account_id == account_id, r.c.kind == "erasure")).all()


# --- The rules, without a database -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_activity", "erasure_on"),
    [
        (dt.date(2024, 2, 29), dt.date(2027, 2, 28)),  # leap day: the day does not exist 3 years later
        (dt.date(2021, 2, 28), dt.date(2024, 2, 28)),
        (dt.date(2023, 3, 31), dt.date(2026, 3, 31)),
        (dt.date(2023, 1, 31), dt.date(2026, 1, 31)),
    ],
)
def test_erasure_day_at_month_ends_and_leap_days(last_activity, erasure_on):
    assert inactivity.erasure_day(noon(last_activity)) == erasure_on


def test_decide_walks_warnings_then_erasure():
    offsets = (30, 7)
    last = noon(dt.date(2023, 5, 10))
    day = dt.date(2026, 5, 10)
    decide = inactivity.decide
    assert decide(last, None, day - dt.timedelta(days=31), offsets).action == "wait"
    first = decide(last, None, day - dt.timedelta(days=30), offsets)
    assert (first.action, first.offset, first.erase_after) == ("warn", 30, day)
    warned_30 = inactivity.Notice(last, day, 30, None)
    assert decide(last, warned_30, day - dt.timedelta(days=8), offsets).action == "wait"
    assert decide(last, warned_30, day - dt.timedelta(days=7), offsets).offset == 7
    warned_7 = inactivity.Notice(last, day, 7, None)
    assert decide(last, warned_7, day - ONE_DAY, offsets).action == "wait"
    assert decide(last, warned_7, day, offsets).action == "erase"
    # Activity after a warning: the notice is stale, the clock starts over.
    assert decide(last + dt.timedelta(days=60), warned_7, day, offsets) == inactivity.Decision("wait", reset=True)


# --- Through the queue, day after day ----------------------------------------------------------------


def test_each_warning_is_sent_once_then_the_saga_erases(env, engine, manifest, immediate, capfd):
    today = utcnow().date()
    account = inactive_account(engine, today)
    bystander = inactive_account(engine, today + dt.timedelta(days=60))
    for offset in (30, 29, 7, 6, 1):
        run_day(engine, noon(today - dt.timedelta(days=offset)))
    keys = warnings(env, account["id"])
    assert keys == [
        f"inactivity-warning:{account['id']}:{today.isoformat()}:30",
        f"inactivity-warning:{account['id']}:{today.isoformat()}:7",
    ]
    assert warnings(env, bystander["id"]) == []
    assert account_status(engine, account["id"]) == "active"

    # The erasure day: registered with channel `retention`, then the erase-account saga runs.
    result = invoke(
        manifest.functions["expire-inactive-accounts"],
        cron_event(manifest.functions["expire-inactive-accounts"].schedules[0]),
    )
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["accounts_queued"] == 1
    drain_queues(manifest)
    [request] = erasure_requests(engine, account["id"])
    assert (request.channel, request.state) == ("retention", "completed")
    assert account_status(engine, account["id"]) is None  # erased
    assert account_status(engine, bystander["id"]) == "active"
    assert notice(engine, account["id"]) is None  # gone with the account

    # A later run finds nothing more to do for it, and sends no further warning.
    run_day(engine, noon(today + ONE_DAY))
    assert len(warnings(env, account["id"])) == 2
    out = capfd.readouterr()
    assert CANARY not in out.out + out.err
    assert account["email"] not in out.out + out.err


def test_erasures_due_in_one_chunk_reach_the_eraser_as_one_message(env, engine, manifest, immediate):
    from shared.rights import erasure

    today = utcnow().date()
    accounts = [inactive_account(engine, today) for _ in range(3)]
    for offset in (30, 7):
        run_day(engine, noon(today - dt.timedelta(days=offset)))
    run_day(engine, utcnow())
    sent: list[dict] = []
    queue = get_queue(erasure.QUEUE_NAME)
    queue.deliver_pending(lambda event: sent.append(json.loads(event["body"])) or {"statusCode": 200})
    [message] = sent  # one message for the chunk: the eraser runs them as one batch
    requests = [erasure_requests(engine, a["id"])[0].id for a in accounts]
    assert message["type"] == erasure.RUN_MESSAGE and sorted(message["payload"]["request_ids"]) == sorted(requests)
    queue.send(message)
    drain_queues(manifest)
    assert [account_status(engine, a["id"]) for a in accounts] == [None] * 3


def test_a_missed_week_of_runs_catches_up(env, engine):
    day = utcnow().date() + dt.timedelta(days=90)
    account = inactive_account(engine, day)
    run_day(engine, noon(day - dt.timedelta(days=25)))  # the runs of D-30..D-26 were missed
    assert [k.rsplit(":", 1)[1] for k in warnings(env, account["id"])] == ["30"]
    run_day(engine, noon(day - dt.timedelta(days=3)))  # D-7..D-4 missed
    assert [k.rsplit(":", 1)[1] for k in warnings(env, account["id"])] == ["30", "7"]
    assert erasure_requests(engine, account["id"]) == []
    run_day(engine, noon(day + dt.timedelta(days=4)))  # the erasure day itself was missed
    [request] = erasure_requests(engine, account["id"])
    assert request.channel == "retention"
    assert account_status(engine, account["id"]) == "deactivated"
    assert notice(engine, account["id"]).erasure_request_id == request.id


def test_never_erased_without_the_last_warning(env, engine):
    today = utcnow().date() + dt.timedelta(days=30)
    # Four years without activity, never warned (first run over an old base, or months of missed runs).
    account = create_account(engine, last_activity_at=noon(today - dt.timedelta(days=4 * 365)), canary=CANARY)
    run_day(engine, noon(today))
    erase_after = today + dt.timedelta(days=7)
    assert warnings(env, account["id"]) == [f"inactivity-warning:{account['id']}:{erase_after.isoformat()}:7"]
    assert notice(engine, account["id"]).erase_after == erase_after
    run_day(engine, noon(erase_after - ONE_DAY))
    assert erasure_requests(engine, account["id"]) == []
    run_day(engine, noon(erase_after))
    assert len(erasure_requests(engine, account["id"])) == 1


def test_activity_after_a_warning_resets_the_clock_and_the_warning(env, engine):
    day = utcnow().date() + dt.timedelta(days=60)
    account = inactive_account(engine, day)
    run_day(engine, noon(day - dt.timedelta(days=30)))
    assert len(warnings(env, account["id"])) == 1
    with engine.begin() as conn:
        inactivity.record_activity(conn, account["id"], noon(day - dt.timedelta(days=20)))
    result = run_day(engine, noon(day - dt.timedelta(days=7)))
    assert result["scheduled"]["notices_reset"] == 1
    assert notice(engine, account["id"]) is None
    run_day(engine, noon(day + dt.timedelta(days=3)))
    assert len(warnings(env, account["id"])) == 1  # no 7-day warning, no erasure: the account was used
    assert erasure_requests(engine, account["id"]) == []


def test_a_restricted_account_is_neither_warned_nor_erased(env, engine):
    from shared.rights import consent

    day = utcnow().date() + dt.timedelta(days=40)
    warned = inactive_account(engine, day)
    restricted_early = inactive_account(engine, day)
    consent.restrict(engine, restricted_early["id"], reason_code="legal_claims", actor="dpo")
    run_day(engine, noon(day - dt.timedelta(days=30)))
    run_day(engine, noon(day - dt.timedelta(days=7)))
    assert len(warnings(env, warned["id"])) == 2
    assert warnings(env, restricted_early["id"]) == []
    # Restricted after its warnings: still not erased on the day.
    consent.restrict(engine, warned["id"], reason_code="legal_claims", actor="dpo")
    run_day(engine, noon(day + ONE_DAY))
    assert erasure_requests(engine, warned["id"]) == []
    assert erasure_requests(engine, restricted_early["id"]) == []
    assert account_status(engine, warned["id"]) == "active"


def test_due_accounts_fan_out_in_chunks(env, engine, manifest, monkeypatch):
    from shared.platform.config import reset_settings

    monkeypatch.setenv("RETENTION_CHUNK_SIZE", "2")
    reset_settings()
    today = utcnow().date()
    due = [inactive_account(engine, today + dt.timedelta(days=10 + i)) for i in range(5)]
    not_due = [inactive_account(engine, today + dt.timedelta(days=40 + i)) for i in range(3)]
    spec = manifest.functions["expire-inactive-accounts"]
    result = invoke(spec, cron_event(spec.schedules[0]))
    assert json.loads(result["body"]) | {"ran_at": None} == {
        "ran_at": None,
        "notices_reset": 0,
        "chunks_queued": 3,
        "accounts_queued": 5,
    }
    queue = get_queue(inactivity.QUEUE_NAME)
    assert queue.pending_count() == 3
    drain_queues(manifest)
    assert queue.pending_count() == 0 and queue.dead_letter_count() == 0
    assert all(len(warnings(env, a["id"])) == 1 for a in due)
    assert all(warnings(env, a["id"]) == [] for a in not_due)
    # The next day's run queues nothing: the warnings sent are persisted, none is due again yet.
    assert inactivity.schedule(engine, now=utcnow() + ONE_DAY)["accounts_queued"] == 0


def test_mail_down_the_chunk_is_retried_and_each_warning_sent_once(resend_env, resend_fake, engine):
    today = utcnow().date() + dt.timedelta(days=20)
    accounts = [inactive_account(engine, today) for _ in range(2)]
    now = noon(today - dt.timedelta(days=7))
    inactivity.schedule(engine, now=now)
    resend_fake.fail_next(1, status=503)
    statuses = []

    def consume(event: dict) -> dict:
        message = json.loads(event["body"])
        try:
            inactivity.process_chunk(engine, message["payload"]["account_ids"], now=now)
        except Exception:
            statuses.append(503)
            return {"statusCode": 503}
        statuses.append(200)
        return {"statusCode": 200}

    get_queue(inactivity.QUEUE_NAME).deliver_pending(consume)
    assert statuses == [503, 200]
    assert sorted(e["idempotency_key"] for e in resend_fake.emails) == sorted(
        f"inactivity-warning:{a['id']}:{today.isoformat()}:7" for a in accounts
    )
    assert all(notice(engine, a["id"]).warned_offset_days == 7 for a in accounts)


def test_bad_input_is_refused_and_changes_nothing(engine, manifest):
    account = inactive_account(engine, utcnow().date())
    spec = manifest.functions["expire-inactive-accounts"]
    response = invoke(spec, http_event("POST", "/", body=json.dumps({"job": "log-rotation"})))
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "unknown_job"
    worker = manifest.functions["expire-inactive-accounts-worker"]
    body = json.dumps(
        {"type": inactivity.CHUNK_MESSAGE, "idempotency_key": "inactivity:bad", "payload": {"account_ids": []}}
    )
    response = invoke(worker, http_event("POST", "/", body=body))
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"]["code"] == "invalid_request"
    assert notice(engine, account["id"]) is None
    assert get_queue(inactivity.QUEUE_NAME).pending_count() == 0
