"""Objection to legitimate-interest processing (Art. 21(1); policy 8.6, 3.3), on SQLite and PostgreSQL.

Improvement and statistics: the objection stops collection at once and deletes the events held.
Security and fraud prevention: a request the DPO decides (accepted, or overridden by compelling
legitimate grounds); the person is told the outcome and the right to complain, once; the logs keep
their year. Every collector asks the one shared check, `may_process`.
"""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from shared.identity.client import issue_dev_token
from shared.local.demo import create_account
from shared.local.server import http_event, invoke, load_manifest
from shared.platform.errors import AppError
from shared.policy import facts
from shared.ports.db import utcnow
from shared.ports.tables import (
    analytics_events,
    audit_log,
    connection_logs,
    dsr_requests,
    processing_restrictions,
)
from shared.records import processing
from shared.rights import consent

EVENTS = Path(__file__).resolve().parents[2] / "events" / "withdraw-consent"
CANARY_EMAIL = "canary.objection@example.test"
GROUNDS = "Repeated fraudulent sign-in attempts from this account are under investigation."


def call(event: dict) -> tuple[int, dict]:
    response = invoke(load_manifest().functions["withdraw-consent"], event)
    return response["statusCode"], json.loads(response["body"])


def client(account_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token(account_id)}", "User-Agent": "pytest"}


def object_event(account_id: str, body: str) -> dict:
    return http_event("POST", "/objections", body=body, headers=client(account_id))


def new_account(engine) -> str:
    account_id = create_account(engine, email=CANARY_EMAIL)["id"]
    consent.give_consent(engine, account_id, "analytics", channel=consent.CLIENT_AREA, actor="client")
    return account_id


def collect(engine, account_id: str, purpose: str, n: int = 1) -> list[bool]:
    return [
        consent.collect_analytics_event(engine, account_id, "page_view", page="/factures", purpose=purpose)
        for _ in range(n)
    ]


def events_by_purpose(engine, account_id: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(analytics_events.c.purpose, func.count())
            .where(analytics_events.c.account_id == account_id)
            .group_by(analytics_events.c.purpose)
        ).all()
    return dict(rows)


def snapshot(engine) -> tuple:
    with engine.connect() as conn:
        return (
            sorted(
                tuple(r)
                for r in conn.execute(select(processing_restrictions.c.kind, processing_restrictions.c.lifted_at))
            ),
            sorted(tuple(r) for r in conn.execute(select(dsr_requests.c.kind, dsr_requests.c.state))),
            conn.execute(select(func.count()).select_from(analytics_events)).scalar_one(),
        )


def may(engine, account_id: str, purpose: str) -> bool:
    with engine.connect() as conn:
        return processing.may_process(conn, account_id, purpose)


def outbox(env, prefix: str) -> list[dict]:
    root = env.data_dir / "outbox"
    mails = [json.loads(p.read_text()) for p in root.glob("*.json")] if root.exists() else []
    return [m for m in mails if m["idempotency_key"].startswith(prefix)]


def mail_text(env, mail: dict) -> str:
    """The plain-text part of an outbox mail (its .eml beside the JSON sidecar)."""
    (eml,) = [p for p in (env.data_dir / "outbox").glob("*.eml") if mail["idempotency_key"] in _sidecar(p)]
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    return message.get_body(preferencelist=("plain",)).get_content()


def _sidecar(eml: Path) -> str:
    sidecar = eml.with_suffix(".json")
    return sidecar.read_text() if sidecar.exists() else ""


# --- The vocabulary ---------------------------------------------------------------------------------


def test_each_legitimate_interest_purpose_has_its_objection_kind():
    li = {p.id for p in facts.PURPOSES if p.legal_basis == "legitimate_interest"}
    assert set(processing.LI_PURPOSES) == li
    assert set(processing.OBJECTION_FOR_LI_PURPOSE.values()) <= set(processing.FLAG_KINDS)
    assert set(processing.DPO_DECIDED_LI_PURPOSES) == {"platform_security", "fraud_prevention"}
    with pytest.raises(ValueError):
        processing.may_process(None, "x", "profiling")


# --- Improvement and statistics: at once ----------------------------------------------------------


def test_objection_stops_collection_and_deletes_held_events(env, engine, capfd):
    me, other = new_account(engine), create_account(engine)["id"]
    assert collect(engine, me, "service_improvement", 3) == [True] * 3
    collect(engine, me, "usage_statistics", 2)
    collect(engine, me, "analytics", 2)
    collect(engine, other, "service_improvement", 2)

    sample = json.loads((EVENTS / "object-service-improvement.json").read_text())
    status, body = call(sample | {"headers": client(me)})
    assert status == 200
    assert body["state"] == "in_force" and body["changed"] and body["events_deleted"] == 3
    assert body["kind"] == "objection_service_improvement" and body["note"]["fr"] and body["note"]["en"]

    assert events_by_purpose(engine, me) == {"usage_statistics": 2, "analytics": 2}
    assert events_by_purpose(engine, other) == {"service_improvement": 2}  # another account is untouched
    assert collect(engine, me, "service_improvement") == [False]  # no more collected
    assert not may(engine, me, "service_improvement") and may(engine, other, "service_improvement")
    assert collect(engine, me, "usage_statistics") == [True]  # the other purposes go on

    status, again = call(object_event(me, '{"purpose": "service_improvement"}'))
    assert status == 200 and again["changed"] is False and again["events_deleted"] == 0

    status, state = call(http_event("GET", "/", headers=client(me)))
    assert state["objections"]["service_improvement"] is True and state["objections"]["usage_statistics"] is False
    with engine.connect() as conn:
        requests = conn.execute(
            select(dsr_requests).where(dsr_requests.c.account_id == me, dsr_requests.c.kind == "objection")
        ).all()
        assert [(r.state, r.details["events_deleted"]) for r in requests] == [("completed", 3)]
        exported = consent.export_section(conn, me)
    assert "objection_service_improvement" in {f["kind"] for f in exported["restrictions_and_objections"]}
    assert CANARY_EMAIL not in capfd.readouterr().out


def test_objection_to_statistics_says_anonymised_statistics_no_longer_relate(env, engine):
    me = new_account(engine)
    collect(engine, me, "usage_statistics", 2)
    status, body = call(object_event(me, '{"purpose": "usage_statistics"}'))
    assert status == 200 and body["events_deleted"] == 2
    assert "no longer relate to you" in body["note"]["en"] and "ne se rapportent plus" in body["note"]["fr"]
    assert events_by_purpose(engine, me) == {}
    with engine.connect() as conn:
        objectors = set(conn.execute(processing.objecting_accounts("usage_statistics")).scalars())
    assert objectors == {me}


def test_a_withdrawal_of_analytics_consent_leaves_the_legitimate_interest_events(env, engine):
    me = new_account(engine)
    collect(engine, me, "analytics", 2)
    collect(engine, me, "service_improvement", 1)
    consent.withdraw(engine, me, "analytics", channel=consent.CLIENT_AREA, actor="client")
    assert events_by_purpose(engine, me) == {"service_improvement": 1}


def test_a_restriction_stops_improvement_but_not_security(env, engine):
    me = new_account(engine)
    consent.restrict(engine, me, reason_code="accuracy_contested", actor="dpo:test")
    assert collect(engine, me, "service_improvement") == [False]
    assert may(engine, me, "platform_security") and may(engine, me, "fraud_prevention")


# --- Security and fraud prevention: the DPO decides ------------------------------------------------


def _pending(engine, me: str, purpose: str = "fraud_prevention") -> str:
    status, body = call(object_event(me, json.dumps({"purpose": purpose})))
    assert status == 202 and body["state"] == "pending_dpo_decision" and body["due_at"]
    return body["request_id"]


def test_security_objection_is_a_request_the_dpo_decides(env, engine):
    me = new_account(engine)
    request_id = _pending(engine, me)
    assert may(engine, me, "fraud_prevention")  # until the DPO decides
    status, again = call(object_event(me, '{"purpose": "fraud_prevention"}'))
    assert status == 202 and again["request_id"] == request_id and again["changed"] is False
    status, body = call(object_event(me, '{"purpose": "platform_security"}'))
    assert status == 409 and body["error"]["code"] == "objection_pending"

    # Other objections meanwhile are requests of their own, answered at once; the pending one stays open.
    assert call(object_event(me, '{"purpose": "service_improvement"}'))[0] == 200
    status, _ = call(http_event("POST", "/", body='{"purpose": "newsletter", "object": true}', headers=client(me)))
    assert status == 200
    with engine.connect() as conn:
        states = dict(
            conn.execute(
                select(dsr_requests.c.id, dsr_requests.c.state).where(dsr_requests.c.kind == "objection")
            ).all()
        )
    assert states.pop(request_id) == "verified" and set(states.values()) == {"completed"} and len(states) == 2

    status, state = call(http_event("GET", "/", headers=client(me)))
    assert state["objections_awaiting_decision"][0]["purposes"] == ["fraud_prevention"]
    with engine.connect() as conn:
        desk = consent.objections_awaiting_decision(conn)
    assert [(d["request_id"], d["account_id"], d["purposes"]) for d in desk] == [(request_id, me, ["fraud_prevention"])]
    assert state["objections"]["fraud_prevention"] is False


def test_overridden_the_person_is_told_the_grounds_and_the_right_to_complain(env, engine, capfd):
    me = new_account(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(connection_logs).values(
                account_id=me, occurred_at=utcnow(), event="login_succeeded", ip_address="203.0.113.9"
            )
        )
    request_id = _pending(engine, me)
    result = consent.decide_objection(
        engine, request_id=request_id, outcome="overridden", grounds=GROUNDS, actor="dpo:test"
    )
    assert result["told"] is True and result["request"]["state"] == "rejected"
    assert may(engine, me, "fraud_prevention")  # the processing goes on, on its grounds
    (mail,) = outbox(env, f"saga:{request_id}:")
    text = mail_text(env, mail)
    assert GROUNDS in text and facts.CNIL.website in text and "CNIL" in text

    # Again with the same outcome: nothing more; another outcome: refused.
    consent.decide_objection(engine, request_id=request_id, outcome="overridden", grounds=GROUNDS, actor="dpo:test")
    assert len(outbox(env, f"saga:{request_id}:")) == 1
    with pytest.raises(AppError) as refused:
        consent.decide_objection(engine, request_id=request_id, outcome="accepted", grounds=None, actor="dpo:test")
    assert getattr(refused.value, "code", None) == "already_decided"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(connection_logs)).scalar_one() == 1  # the year runs on
        reason = conn.execute(select(dsr_requests.c.reason).where(dsr_requests.c.id == request_id)).scalar_one()
        audit_text = json.dumps([dict(r._mapping) for r in conn.execute(select(audit_log))], default=str)
    assert reason == GROUNDS
    assert CANARY_EMAIL not in audit_text and GROUNDS not in audit_text
    assert CANARY_EMAIL not in capfd.readouterr().out


def test_accepted_the_purpose_stops_and_the_person_is_told(env, engine):
    me = new_account(engine)
    request_id = _pending(engine, me, "platform_security")
    result = consent.decide_objection(engine, request_id=request_id, outcome="accepted", grounds=None, actor="dpo:test")
    assert result["request"]["state"] == "completed" and result["told"] is True
    assert not may(engine, me, "platform_security") and may(engine, me, "fraud_prevention")
    (mail,) = outbox(env, f"saga:{request_id}:")
    assert "accepted" in mail_text(env, mail) or "acceptée" in mail_text(env, mail)
    _, state = call(http_event("GET", "/", headers=client(me)))
    assert state["objections"]["platform_security"] is True and state["objections_awaiting_decision"] == []
    with engine.connect() as conn:
        flag = conn.execute(
            select(processing_restrictions).where(processing_restrictions.c.kind == "objection_platform_security")
        ).one()
    assert flag.request_id == request_id and flag.lifted_at is None


def test_mail_down_the_decision_stands_and_the_notice_goes_once(resend_env, resend_fake, engine):
    me = new_account(engine)
    request_id = _pending(engine, me)
    resend_fake.fail_next(1, status=503)
    with pytest.raises(AppError) as failed:
        consent.decide_objection(engine, request_id=request_id, outcome="accepted", grounds=None, actor="dpo:test")
    assert getattr(failed.value, "status", None) == 503
    assert not may(engine, me, "fraud_prevention")  # decided
    consent.decide_objection(engine, request_id=request_id, outcome="accepted", grounds=None, actor="dpo:test")
    consent.decide_objection(engine, request_id=request_id, outcome="accepted", grounds=None, actor="dpo:test")
    assert [e["idempotency_key"] for e in resend_fake.emails] == [f"saga:{request_id}:tell-objection-outcome"]


def test_the_hourly_sweep_tells_an_outcome_left_untold(resend_env, resend_fake, engine):
    me = new_account(engine)
    request_id = _pending(engine, me)
    resend_fake.fail_next(1, status=503)
    with pytest.raises(AppError):
        consent.decide_objection(engine, request_id=request_id, outcome="overridden", grounds=GROUNDS, actor="dpo:test")
    spec = load_manifest().functions["withdraw-consent-worker"]
    sweep = json.loads((EVENTS / "worker-propagation-sweep.json").read_text())
    assert json.loads(invoke(spec, sweep)["body"]) == {"queued": 0, "objection_outcomes_told": 1}
    assert json.loads(invoke(spec, sweep)["body"]) == {"queued": 0}
    assert [e["idempotency_key"] for e in resend_fake.emails] == [f"saga:{request_id}:tell-objection-outcome"]
    assert GROUNDS in resend_fake.emails[0]["text"]


@pytest.mark.parametrize(
    "outcome, grounds, code",
    [
        ("maybe", None, "invalid_outcome"),
        ("overridden", None, "reason_required"),
        ("overridden", "   ", "reason_required"),
        ("overridden", "Ask jean.dupont@example.test", "invalid_reason"),
        ("overridden", "x" * 1001, "invalid_reason"),
        ("accepted", GROUNDS, "unexpected_grounds"),
    ],
)
def test_bad_decisions_are_refused_and_change_nothing(env, engine, outcome, grounds, code):
    me = new_account(engine)
    request_id = _pending(engine, me)
    before = snapshot(engine)
    with pytest.raises(AppError) as refused:
        consent.decide_objection(engine, request_id=request_id, outcome=outcome, grounds=grounds, actor="dpo:test")
    assert getattr(refused.value, "code", None) == code and 400 <= refused.value.status < 500
    assert snapshot(engine) == before and outbox(env, "saga:") == []


def test_deciding_what_is_not_an_objection_awaiting_a_decision_is_404(env, engine):
    me = new_account(engine)
    call(object_event(me, '{"purpose": "service_improvement"}'))
    with engine.connect() as conn:
        completed = conn.execute(select(dsr_requests.c.id).where(dsr_requests.c.kind == "objection")).scalar_one()
    for request_id in (completed, "00000000-0000-0000-0000-000000000000", "x" * 100):
        with pytest.raises(AppError) as missing:
            consent.decide_objection(engine, request_id=request_id, outcome="accepted", grounds=None, actor="dpo")
        assert getattr(missing.value, "status", None) == 404


# --- Bad input on the client route --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"purpose": "profiling"}',
        '{"purpose": "service_improvement", "object": true}',
        '{"purpose": true}',
        '{"purpose": ["usage_statistics"]}',
        "{}",
        "",
        "not json",
        '"service_improvement"',
    ],
)
def test_bad_objections_are_refused_and_change_nothing(env, engine, body):
    me = new_account(engine)
    collect(engine, me, "service_improvement", 2)
    before = snapshot(engine)
    status, answer = call(object_event(me, body))
    assert status == 400 and set(answer["error"]) == {"code", "message"}
    assert snapshot(engine) == before


def test_the_sample_with_an_unknown_purpose_is_refused(env, engine):
    me = new_account(engine)
    sample = json.loads((EVENTS / "object-unknown-purpose.json").read_text())
    assert call(sample | {"headers": client(me)})[0] == 400
    assert call(http_event("POST", "/objections", body='{"purpose": "usage_statistics"}'))[0] == 401


def test_usage_events_are_stored_only_by_the_collector_that_asks_may_process():
    """One path stores analytics_events (collect_analytics_event, which asks may_process): nothing else
    in the shipped code inserts into it (the demo data of shared/local is not shipped)."""
    project = Path(__file__).resolve().parents[2]
    gate = project / "shared" / "rights" / "consent" / "marketing.py"
    assert "may_process(conn, account_id, purpose)" in gate.read_text()
    offenders = [
        str(path.relative_to(project))
        for folder in ("shared", "functions")
        for path in sorted((project / folder).rglob("*.py"))
        if path != gate
        and "local" not in path.relative_to(project).parts
        and ("insert(analytics_events" in path.read_text() or "insert(schema.analytics_events" in path.read_text())
    ]
    assert offenders == []
