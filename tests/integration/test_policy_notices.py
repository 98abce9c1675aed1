"""Policy-change notices (policy 11), on SQLite and PostgreSQL.

Every active account is told once of each substantial version, through the queue in chunks,
whatever its marketing consent; a crash of the CRON or of the worker mid-run mails nobody twice
and skips nobody; the privacy-notice function answers the version in force and records the
acknowledgement, refusing bad input without changing anything.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, update

from shared.identity.client import issue_dev_token
from shared.local.cli import main as cli_main
from shared.local.demo import create_account
from shared.local.server import drain_queues, http_event, invoke, load_manifest
from shared.platform.clock import UTC
from shared.policy import facts
from shared.ports.backends import get_queue
from shared.ports.db import utcnow
from shared.ports.tables import accounts as accounts_table
from shared.ports.tables import audit_log, policy_notices
from shared.rights import consent
from shared.rights import policy_notices as notices_module

PROJECT = Path(__file__).resolve().parents[2]
EVENTS = PROJECT / "events"
CANARY = "canary.policy"

V12 = facts.PolicyVersion(
    "1.2",
    dt.date(2026, 9, 1),
    facts.Text("A new subprocessor sends the invoices.", "Un nouveau sous-traitant transmet les factures."),
    substantial=True,
)
V13 = facts.PolicyVersion("1.3", dt.date(2026, 10, 1), facts.Text("Typos.", "Coquilles."), substantial=False)


@pytest.fixture
def manifest():
    return load_manifest()


@pytest.fixture
def v12(monkeypatch):
    """Version 1.2, substantial, in force since 1 September 2026."""
    monkeypatch.setattr(facts, "POLICY_VERSIONS", (*facts.POLICY_VERSIONS, V12))
    return V12


def accounts(engine, n: int, **kw) -> list[str]:
    return [
        create_account(engine, email=f"{CANARY}.{i}.{kw.get('status', 'active')}@example.test", **kw)["id"]
        for i in range(n)
    ]


def notice_rows(engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        rows = conn.execute(select(policy_notices)).all()
    return {(r.account_id, r.version): (r.told_at, r.acknowledged_at) for r in rows}


def outbox_keys(env) -> list[str]:
    root = env.data_dir / "outbox"
    mails = [json.loads(p.read_text()) for p in root.glob("*.json")] if root.exists() else []
    return sorted(m["idempotency_key"] for m in mails if m["idempotency_key"].startswith("policy-notice:"))


def client(account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token(account_id)}", "User-Agent": "pytest"}


def call(manifest, event: dict) -> tuple[int, dict]:
    response = invoke(manifest.functions["privacy-notice"], event)
    return response["statusCode"], json.loads(response["body"])


# --- The versions ------------------------------------------------------------------------------


def test_the_declared_versions_end_with_the_one_the_policy_states():
    assert facts.POLICY_VERSIONS[-1].number == facts.POLICY_VERSION
    assert facts.POLICY_VERSIONS[-1].effective_date == facts.POLICY_EFFECTIVE_DATE
    assert facts.version_in_force(dt.date(2026, 12, 1)).number == facts.POLICY_VERSION
    assert [v.number for v in facts.POLICY_VERSIONS] == sorted({v.number for v in facts.POLICY_VERSIONS})
    assert all(v.summary.fr and v.summary.en for v in facts.POLICY_VERSIONS)


def test_the_version_to_announce_is_the_latest_substantial_one_in_force(monkeypatch, v12):
    monkeypatch.setattr(facts, "POLICY_VERSIONS", (*facts.POLICY_VERSIONS, V13))
    assert notices_module.version_to_announce(dt.date(2026, 8, 31)) is None
    assert notices_module.version_to_announce(dt.date(2026, 10, 2)) == V12
    assert facts.version_in_force(dt.date(2026, 10, 2)) == V13


def test_nothing_to_announce_queues_nothing(env, engine):
    accounts(engine, 2)
    assert notices_module.announce(engine) == {"version": None, "chunks_queued": 0, "accounts_queued": 0}
    assert get_queue(notices_module.QUEUE_NAME).pending_count() == 0


# --- The run -------------------------------------------------------------------------------------


def test_every_active_account_is_told_once_whatever_its_marketing_consent(env, engine, manifest, v12, capfd):
    active = accounts(engine, 4)
    gone = accounts(engine, 1, status="deactivated")
    # An objection to direct marketing does not stop a service notice.
    consent.withdraw(engine, active[0], "newsletter", channel=consent.CLIENT_AREA, actor="client", objection=True)

    result = notices_module.announce(engine, chunk_size=3)
    assert result == {"version": "1.2", "chunks_queued": 2, "accounts_queued": 4}
    assert drain_queues(manifest) == 2
    assert outbox_keys(env) == sorted(f"policy-notice:1.2:{a}" for a in active)
    root = env.data_dir / "outbox"
    mails = [json.loads(p.read_text()) for p in root.glob("*.json")]
    assert {m["category"] for m in mails if m["idempotency_key"].startswith("policy-notice:")} == {"transactional"}

    rows = notice_rows(engine)
    assert set(rows) == {(a, "1.2") for a in active}
    assert all(told is not None and ack is None for told, ack in rows.values())
    assert all((g, "1.2") not in rows for g in gone)

    # The next run finds everybody told: nothing queued, nothing mailed.
    assert notices_module.announce(engine)["accounts_queued"] == 0
    assert drain_queues(manifest) == 0
    assert outbox_keys(env) == sorted(f"policy-notice:1.2:{a}" for a in active)
    assert CANARY not in capfd.readouterr().out
    with engine.connect() as conn:
        assert CANARY not in json.dumps([dict(r._mapping) for r in conn.execute(select(audit_log))], default=str)


def test_a_crash_mid_run_mails_nobody_twice_and_skips_nobody(
    resend_env, resend_fake, engine, manifest, v12, monkeypatch
):
    everyone = accounts(engine, 12)

    # 1. The CRON dies after queuing its first batch of messages (10 chunks of 1 of the 12 accounts).
    def crash(done: int) -> None:
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        notices_module.announce(engine, chunk_size=1, progress=crash)
    queue = get_queue(notices_module.QUEUE_NAME)
    assert queue.pending_count() == 10

    # 2. The worker dies between a mail and its record (the 3rd account), once.
    record = notices_module._record_told
    calls = {"n": 0}

    def dying_record(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed between the mail and its record")
        return record(*args, **kw)

    monkeypatch.setattr(notices_module, "_record_told", dying_record)
    drain_queues(manifest)  # the failed chunk is delivered again (status 500), and succeeds
    assert queue.pending_count() == 0 and queue.dead_letter_count() == 0
    assert notices_module.pending_count(engine, "1.2") == 2

    # 3. The CRON runs again: only the two accounts it never queued.
    again = notices_module.announce(engine, chunk_size=5)
    assert again["accounts_queued"] == 2
    # And a run that repeats an already delivered chunk key is a duplicate, mailing nobody.
    notices_module.announce(engine, chunk_size=5)
    drain_queues(manifest)

    keys = sorted(e["idempotency_key"] for e in resend_fake.emails)
    assert keys == sorted(f"policy-notice:1.2:{a}" for a in everyone)  # one mail per account, none missing
    assert notices_module.pending_count(engine, "1.2") == 0
    assert all(told is not None for told, _ in notice_rows(engine).values())


def test_an_account_inactive_when_its_chunk_ran_is_told_once_active_again(env, engine, manifest, v12):
    (me,) = accounts(engine, 1)
    notices_module.announce(engine)
    set_status(engine, me, "deactivated")  # an erasure in its cooling-off when the chunk runs
    drain_queues(manifest)
    assert outbox_keys(env) == []
    set_status(engine, me, "active")  # the erasure was cancelled
    notices_module.announce(engine)  # the same day: the same chunk, a duplicate
    drain_queues(manifest)
    notices_module.announce(engine, now=utcnow() + dt.timedelta(days=1))
    drain_queues(manifest)
    assert outbox_keys(env) == [f"policy-notice:1.2:{me}"]


def set_status(engine, account_id: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(update(accounts_table).where(accounts_table.c.id == account_id).values(status=status))


def test_mail_down_the_chunk_is_retried_and_each_account_told_once(resend_env, resend_fake, engine, manifest, v12):
    everyone = accounts(engine, 3)
    notices_module.announce(engine)
    resend_fake.fail_next(1, status=503)
    drain_queues(manifest)
    assert sorted(e["idempotency_key"] for e in resend_fake.emails) == sorted(
        f"policy-notice:1.2:{a}" for a in everyone
    )
    assert len(notice_rows(engine)) == 3


def test_the_cli_announces_and_drains(env, engine, v12, capsys):
    everyone = accounts(engine, 3)
    assert cli_main(["policy", "announce", "--chunk-size", "2", "--drain"]) == 0
    printed = capsys.readouterr().out  # log lines (one JSON object each), then the indented result
    out = json.loads(printed[printed.index("{\n") :])
    assert out["version"] == "1.2" and out["accounts_queued"] == 3 and out["accounts_not_told"] == 0
    assert outbox_keys(env) == sorted(f"policy-notice:1.2:{a}" for a in everyone)
    with pytest.raises(SystemExit):
        cli_main(["policy", "announce", "--version", "1.1"])  # not substantial


def test_the_cron_and_worker_samples(env, engine, manifest, v12):
    cron = manifest.functions["announce-policy-changes"]
    worker = manifest.functions["announce-policy-changes-worker"]
    accounts(engine, 1)
    answer = invoke(cron, json.loads((EVENTS / "announce-policy-changes/cron.json").read_text()))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["accounts_queued"] == 1
    assert (
        invoke(cron, json.loads((EVENTS / "announce-policy-changes/unknown-job.json").read_text()))["statusCode"] == 400
    )
    malformed = json.loads((EVENTS / "announce-policy-changes-worker/malformed.json").read_text())
    assert invoke(worker, malformed)["statusCode"] == 400
    chunk = json.loads((EVENTS / "announce-policy-changes-worker/chunk.json").read_text())
    assert invoke(worker, chunk)["statusCode"] == 200  # the sample's account does not exist: nothing to do
    for folder in ("privacy-notice", "announce-policy-changes", "announce-policy-changes-worker"):
        for path in (EVENTS / folder).glob("*.json"):
            event = json.loads(path.read_text())
            assert event["multiValueHeaders"] is None and {"path", "httpMethod", "body", "isBase64Encoded"} <= set(
                event
            )


# --- The privacy-notice function -------------------------------------------------------------------


def test_the_notice_answers_the_version_in_force_and_records_the_acknowledgement(env, engine, manifest, v12):
    me, other = accounts(engine, 2)
    status, body = call(manifest, http_event("GET", "/", headers=client(me)))
    assert status == 200
    assert body["version"] == "1.2" and body["effective_date"] == "2026-09-01" and body["substantial"] is True
    assert body["summary"] == {"fr": V12.summary.fr, "en": V12.summary.en}
    assert (body["told"], body["acknowledged"]) == (False, False)

    notices_module.announce(engine)
    drain_queues(manifest)
    status, body = call(manifest, http_event("GET", "/", headers=client(me)))
    assert body["told"] is True and body["told_at"] and body["acknowledged"] is False

    status, body = call(manifest, http_event("POST", "/acknowledge", body='{"version": "1.2"}', headers=client(me)))
    assert status == 200 and body["acknowledged"] is True and body["told"] is True
    first = body["acknowledged_at"]
    status, again = call(manifest, http_event("POST", "/acknowledge", body='{"version": "1.2"}', headers=client(me)))
    assert status == 200 and again["acknowledged_at"] == first  # once
    assert notice_rows(engine)[(other, "1.2")][1] is None  # another account is untouched
    with engine.connect() as conn:
        actions = [r.action for r in conn.execute(select(audit_log.c.action))]
    assert actions.count("policy.acknowledged") == 1


def test_after_a_minor_version_the_notice_still_shows_the_substantial_change_told(
    env, engine, manifest, v12, monkeypatch
):
    (me,) = accounts(engine, 1)
    notices_module.announce(engine)
    drain_queues(manifest)
    monkeypatch.setattr(facts, "POLICY_VERSIONS", (*facts.POLICY_VERSIONS, V13))
    status, body = call(manifest, http_event("GET", "/", headers=client(me)))
    assert status == 200 and body["version"] == "1.3" and body["told"] is False
    assert body["last_substantial_change"]["version"] == "1.2" and body["last_substantial_change"]["told_at"]
    assert notices_module.announce(engine)["accounts_queued"] == 0  # 1.3 is not announced


def test_two_deliveries_of_one_chunk_at_once_mail_each_account_once(resend_env, resend_fake, engine, v12):
    everyone = accounts(engine, 6)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            notices_module.process_chunk(engine, "1.2", everyone)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(e["idempotency_key"] for e in resend_fake.emails) == sorted(
        f"policy-notice:1.2:{a}" for a in everyone
    )
    assert len(notice_rows(engine)) == 6


@pytest.mark.parametrize(
    "body, status, code",
    [
        ('{"version": "1.1"}', 409, "not_version_in_force"),
        ('{"version": "1.2", "accepted": true}', 400, None),
        ('{"version": 1.2}', 400, None),
        ('{"version": "1.2.x"}', 400, None),
        ('{"version": "' + "1" * 17 + '"}', 400, None),
        ("{}", 400, None),
        ("", 400, None),
        ("not json", 400, None),
        ('["1.2"]', 400, None),
    ],
)
def test_bad_acknowledgements_are_refused_and_change_nothing(env, engine, manifest, v12, body, status, code):
    (me,) = accounts(engine, 1)
    before = notice_rows(engine)
    answer, error = call(manifest, http_event("POST", "/acknowledge", body=body, headers=client(me)))
    assert answer == status and set(error["error"]) >= {"code", "message"}
    if code:
        assert error["error"]["code"] == code
    assert notice_rows(engine) == before


def test_the_notice_needs_a_client_token(env, engine, manifest):
    event = json.loads((EVENTS / "privacy-notice/missing-token.json").read_text())
    assert call(manifest, event)[0] == 401
    assert call(manifest, http_event("POST", "/acknowledge", body='{"version": "1.1"}'))[0] == 401
    assert notice_rows(engine) == {}


def test_the_version_in_force_1_1_can_be_acknowledged_without_a_notice(env, engine, manifest):
    (me,) = accounts(engine, 1)
    status, body = call(manifest, http_event("POST", "/acknowledge", body='{"version": "1.1"}', headers=client(me)))
    assert status == 200 and body["version"] == "1.1" and body["acknowledged"] and not body["told"]
    told_at, ack = notice_rows(engine)[(me, "1.1")]
    assert told_at is None and ack.astimezone(UTC).date() >= dt.date(2026, 1, 1)
