"""The DPO desk end to end, on SQLite and PostgreSQL: through the dpo-desk handler, the CLI and the CRON.

What must hold: the deadline runs from receipt; no work before identity is verified; a person
is told of an extension or a refusal once; the DPO's digest lists each request at each threshold
once, even after missed days; bad input changes nothing; identifiers never reach the audit or a log.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa

from shared.desk import digest, notify, operations
from shared.identity.client import issue_dev_token
from shared.identity.dpo import create_dpo_credential
from shared.local.cli import main as cli
from shared.local.demo import create_account
from shared.local.server import consumer_for, http_event, invoke, load_manifest
from shared.platform.clock import UTC, add_months, utcnow
from shared.ports.backends import get_queue
from shared.ports.db import get_engine
from shared.ports.tables import accounts, audit_log, dsr_notices, dsr_requests
from shared.ports.tables import invoices as invoices_table
from shared.ports.tables import prospects as prospects_table
from shared.records import registry
from shared.rights import export

MANIFEST = load_manifest()
CANARY_EMAIL = "canary.desk.person@example.org"
CANARY_NAME = "Canarydesk Personne"
CANARY_ADDRESS = "12 rue du Canarydesk, 75011 Paris"


def call(method: str, path: str, *, token: str | None, body: object = None, query: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    payload = "" if body is None else (body if isinstance(body, str) else json.dumps(body))
    return invoke(MANIFEST.functions["dpo-desk"], http_event(method, path, body=payload, headers=headers, query=query))


def answer(response: dict) -> dict:
    return json.loads(response["body"]) if response["body"] else {}


def sent_to(desk: dict, address: str) -> list[dict]:
    """The mails the Resend fake received for `address` (the mail port sends one recipient each)."""
    return [m for m in desk["mails"] if m["to"] == [address]]


def verify_by_route(desk: dict, request_id: str, method: str = "account_email_confirmed") -> dict:
    return answer(call("POST", f"/requests/{request_id}/verify-identity", token=desk["token"], body={"method": method}))


@pytest.fixture
def desk(resend_env, resend_fake):
    engine = get_engine()
    with engine.begin() as conn:
        token = create_dpo_credential(conn, "dpo")
    return {"engine": engine, "token": token, "mails": resend_fake.emails}


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (dsr_requests, dsr_notices, audit_log)
        }


def days_ago(days: int) -> str:
    return (utcnow() - dt.timedelta(days=days)).replace(microsecond=0).isoformat()


def test_due_date_runs_from_receipt_with_month_ends_and_leap_day(desk):
    account = create_account(desk["engine"])
    on_31 = dt.datetime(2028, 1, 31, 9, 0, tzinfo=UTC)
    leap = operations.register(
        actor="dpo:test",
        kind="access",
        channel="post",
        received_at=on_31,
        account_id=account["id"],
        now=dt.datetime(2028, 2, 3, tzinfo=UTC),
    )
    assert leap["due_at"] == "2028-02-29T09:00:00Z"  # one calendar month, clamped to the leap day
    other = operations.register(
        actor="dpo:test",
        kind="erasure",
        channel="email",
        received_at=dt.datetime(2027, 1, 31, 9, 0, tzinfo=UTC),
        identifiers={"email": "someone.else@example.org"},
        now=dt.datetime(2027, 2, 1, tzinfo=UTC),
    )
    assert other["due_at"] == "2027-02-28T09:00:00Z"
    assert other["identity"] == {"state": "awaiting_identity"} and other["state"] == "received"

    # Through the route: received three days ago, due a month after that day, not after registration.
    received = days_ago(3)
    response = call(
        "POST",
        "/requests",
        token=desk["token"],
        body={
            "kind": "access",
            "channel": "email",
            "received_at": received,
            "account_id": account["id"],
        },
    )
    assert response["statusCode"] == 409  # an access request is already open for the account
    assert answer(response)["error"]["code"] == "request_already_open"
    response = call(
        "POST",
        "/requests",
        token=desk["token"],
        body={
            "kind": "restriction",
            "channel": "email",
            "received_at": received,
            "account_id": account["id"],
        },
    )
    assert response["statusCode"] == 201, response["body"]
    created = answer(response)
    expected = registry.due_date_for(dt.datetime.fromisoformat(received))
    assert created["due_at"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_bad_input_is_refused_and_changes_nothing(desk):
    account = create_account(desk["engine"])
    good = {"kind": "access", "channel": "post", "received_at": days_ago(2), "account_id": account["id"]}
    before = counts(desk["engine"])
    bad = [
        dict(good, kind="everything"),
        dict(good, channel="fax"),
        dict(good, received_at=(utcnow() + dt.timedelta(days=2)).isoformat()),
        dict(good, received_at="2020-01-01T00:00:00+00:00"),  # before the policy existed
        dict(good, received_at="yesterday"),
        dict(good, account_id="../../etc/passwd"),
        dict(good, extra=True),
        {**{k: v for k, v in good.items() if k != "account_id"}},  # nobody named
        {**good, "identifiers": {"email": CANARY_EMAIL}},  # both
        {**{k: v for k, v in good.items() if k != "account_id"}, "identifiers": {"email": "not-an-email"}},
        {**{k: v for k, v in good.items() if k != "account_id"}, "identifiers": {"postal_address": CANARY_ADDRESS}},
        {**{k: v for k, v in good.items() if k != "account_id"}, "identifiers": {"email": True}},
        "not json",
    ]
    for payload in bad:
        response = call("POST", "/requests", token=desk["token"], body=payload)
        assert response["statusCode"] == 400, (payload, response["body"])
        assert set(answer(response)["error"]) == {"code", "message"}
    assert (
        call(
            "POST",
            "/requests",
            token=desk["token"],
            body=dict(good, account_id="0" * 8 + "-0000-4000-8000-" + "0" * 12),
        )["statusCode"]
        == 404
    )
    for query in (
        {"overdue": "yes"},
        {"due_within_days": "-1"},
        {"due_within_days": "seven"},
        {"kind": "all"},
        {"other": "1"},
    ):
        assert call("GET", "/requests", token=desk["token"], query=query)["statusCode"] == 400, query
    assert call("GET", "/requests/not-a-uuid", token=desk["token"])["statusCode"] == 404
    assert counts(desk["engine"]) == before

    # A client token never reaches a DPO route; no token neither.
    client = issue_dev_token(account["id"])
    for method, path in (("POST", "/requests"), ("GET", "/requests"), ("GET", f"/requests/{account['id']}")):
        assert call(method, path, token=client, body=good if method == "POST" else None)["statusCode"] == 401
        assert call(method, path, token=None, body=good if method == "POST" else None)["statusCode"] == 401
    assert counts(desk["engine"]) == before


def test_no_work_before_identity_then_the_erasure_starts(desk):
    engine = desk["engine"]
    account = create_account(engine)
    created = answer(
        call(
            "POST",
            "/requests",
            token=desk["token"],
            body={
                "kind": "erasure",
                "channel": "post",
                "received_at": days_ago(1),
                "account_id": account["id"],
            },
        )
    )
    request_id = created["request_id"]
    assert created["identity"]["state"] == "awaiting_identity"
    # Nothing moves it to work while identity is awaited.
    assert (
        call("POST", f"/requests/{request_id}/complete", token=desk["token"], body={"note": "done"})["statusCode"]
        == 409
    )
    with pytest.raises(registry.InvalidTransition), engine.begin() as conn:
        registry.transition(conn, request_id, registry.WAITING, actor="dpo:test")
    with engine.connect() as conn:
        assert conn.execute(sa.select(accounts.c.status).where(accounts.c.id == account["id"])).scalar() == "active"

    for bad in ({"method": "trust_me"}, {"method": 1}, {}):
        assert (
            call("POST", f"/requests/{request_id}/verify-identity", token=desk["token"], body=bad)["statusCode"] == 400
        )
    verified = call(
        "POST", f"/requests/{request_id}/verify-identity", token=desk["token"], body={"method": "identity_document"}
    )
    assert verified["statusCode"] == 200, verified["body"]
    body = answer(verified)
    assert body["identity"] == {"state": "verified", "method": "identity_document"}
    assert body["state"] == "waiting" and body["work"]["started"] == "erasure"
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(accounts.c.status).where(accounts.c.id == account["id"])).scalar() == "deactivated"
        )
    # Verified once: a second check is refused.
    again = call(
        "POST", f"/requests/{request_id}/verify-identity", token=desk["token"], body={"method": "identity_document"}
    )
    assert again["statusCode"] == 409
    timeline = [
        entry["action"] for entry in answer(call("GET", f"/requests/{request_id}", token=desk["token"]))["timeline"]
    ]
    assert timeline[:3] == ["request.created", "request.transition", "request.identity_verified"]
    assert "erasure.registered" in timeline


def test_an_access_request_by_email_mails_a_download_link(desk):
    engine = desk["engine"]
    account = create_account(engine)
    created = operations.register(actor="dpo:test", kind="access", channel="email", account_id=account["id"])
    before_verification = get_queue(export.QUEUE_NAME).deliver_pending(consumer_for(export.QUEUE_NAME, MANIFEST))
    assert before_verification == 0
    operations.verify_identity(created["request_id"], method="account_email_confirmed", actor="dpo:test")
    get_queue(export.QUEUE_NAME).deliver_pending(consumer_for(export.QUEUE_NAME, MANIFEST))
    ready = [m for m in desk["mails"] if m["idempotency_key"] == f"export-ready:{created['request_id']}"]
    assert len(ready) == 1 and ready[0]["to"] == [account["email"]]
    assert f"/{created['request_id']}/download?token=" in ready[0]["text"]
    link = answer(call("GET", f"/requests/{created['request_id']}/archive-link", token=desk["token"]))
    assert "/download?token=" in link["download_url"]
    with engine.connect() as conn:
        actions = (
            conn.execute(sa.select(audit_log.c.action).where(audit_log.c.request_id == created["request_id"]))
            .scalars()
            .all()
        )
    assert "export.link_issued_to_dpo" in actions


def test_extension_is_told_once_within_the_limits(desk):
    engine = desk["engine"]
    account = create_account(engine)
    request_id = operations.register(
        actor="dpo:test",
        kind="access",
        channel="post",
        account_id=account["id"],
        received_at=utcnow() - dt.timedelta(days=5),
    )["request_id"]
    before = counts(engine)
    for bad in (
        {"months": 3, "reason": "x"},
        {"months": "1", "reason": "complex"},
        {"months": 1},
        {"months": 1, "reason": ""},
        {"months": True, "reason": "complex"},
    ):
        assert call("POST", f"/requests/{request_id}/extend", token=desk["token"], body=bad)["statusCode"] == 400, bad
    assert counts(engine) == before

    response = call(
        "POST",
        f"/requests/{request_id}/extend",
        token=desk["token"],
        body={"months": 1, "reason": "complex request: ten years of invoices"},
    )
    assert response["statusCode"] == 200, response["body"]
    body = answer(response)
    assert body["notices_delivered"] == [{"request_id": request_id, "notice": "extension:1", "delivery": "mail"}]
    mails = [m for m in desk["mails"] if m["idempotency_key"] == f"desk:extension:1:{request_id}"]
    assert len(mails) == 1
    french, english = mails[0]["text"].index("Motif"), mails[0]["text"].index("Reason")
    assert french < english and "ten years of invoices" in mails[0]["text"]
    new_due = dt.datetime.fromisoformat(body["extended_due_at"].replace("Z", "+00:00"))
    assert new_due.strftime("%d/%m/%Y") in mails[0]["text"]

    # Told once: delivering again, or the CRON, sends nothing more.
    assert operations.deliver_notices(request_id)["notices_delivered"] == []
    digest.daily(engine)
    assert len([m for m in desk["mails"] if m["idempotency_key"].startswith("desk:extension:1:")]) == 1

    # A second month is allowed, a third is not; nothing changes on refusal.
    second = answer(
        call(
            "POST", f"/requests/{request_id}/extend", token=desk["token"], body={"months": 1, "reason": "many requests"}
        )
    )
    assert [n["notice"] for n in second["notices_delivered"]] == ["extension:2"]
    before = counts(engine)
    third = call("POST", f"/requests/{request_id}/extend", token=desk["token"], body={"months": 1, "reason": "more"})
    assert third["statusCode"] == 409 and answer(third)["error"]["code"] == "extension_limit_reached"
    assert counts(engine) == before


def test_extension_only_before_the_original_due_date(desk):
    account = create_account(desk["engine"])
    request_id = operations.register(
        actor="dpo:test",
        kind="rectification",
        channel="email",
        account_id=account["id"],
        received_at=utcnow() - dt.timedelta(days=40),
    )["request_id"]
    before = counts(desk["engine"])
    late = call("POST", f"/requests/{request_id}/extend", token=desk["token"], body={"months": 1, "reason": "complex"})
    assert late["statusCode"] == 409 and answer(late)["error"]["code"] == "extension_too_late"
    assert counts(desk["engine"]) == before and desk["mails"] == []


def test_refusal_tells_the_reason_the_cnil_and_a_letter_for_the_post(desk):
    by_post = operations.register(
        actor="dpo:test",
        kind="access",
        channel="post",
        identifiers={"name": CANARY_NAME, "postal_address": CANARY_ADDRESS},
    )
    refused = answer(
        call(
            "POST",
            f"/requests/{by_post['request_id']}/reject",
            token=desk["token"],
            body={"reason_code": "identity_not_established"},
        )
    )
    assert refused["state"] == "rejected" and refused["identity"]["state"] == "not_established"
    (letter,) = refused["notices_delivered"]
    assert letter["delivery"] == "post" and "CNIL" in letter["letter"] and "judicial remedy" in letter["letter"]
    assert "recours juridictionnel" in letter["letter"]
    assert desk["mails"] == []  # nobody to mail

    by_mail = operations.register(
        actor="dpo:test", kind="erasure", channel="email", identifiers={"email": CANARY_EMAIL}
    )
    for bad in ({"reason_code": "because"}, {"reason_code": "excessive", "note": ""}, {}):
        assert (
            call("POST", f"/requests/{by_mail['request_id']}/reject", token=desk["token"], body=bad)["statusCode"]
            == 400
        )
    response = call(
        "POST",
        f"/requests/{by_mail['request_id']}/reject",
        token=desk["token"],
        body={"reason_code": "legal_obligation_to_retain", "note": "invoices are kept ten years"},
    )
    assert response["statusCode"] == 200, response["body"]
    (mail,) = [m for m in desk["mails"] if m["idempotency_key"] == f"desk:refusal:{by_mail['request_id']}"]
    assert mail["to"] == [CANARY_EMAIL]
    assert "www.cnil.fr" in mail["text"] and "invoices are kept ten years" in mail["text"]
    assert operations.deliver_notices(by_mail["request_id"])["notices_delivered"] == []


def test_digest_lists_each_request_at_each_threshold_once_across_a_missed_week(desk):
    engine = desk["engine"]
    now = dt.datetime(2027, 3, 10, 9, 0, tzinfo=UTC)  # a fixed day: every month below has the days needed

    def received_for_due_in(days: float) -> dt.datetime:
        # due = received + 1 calendar month: the receipt is a month before the wanted due date.
        return add_months(now + dt.timedelta(days=days), -1)

    ids = {}
    for name, days in (("in_10_days", 10), ("in_5_days", 5), ("in_12_hours", 0.5), ("in_30_days", 29)):
        record = operations.register(
            actor="dpo:test",
            kind="objection",
            channel="email",
            identifiers={"email": f"{name}@example.org"},
            received_at=received_for_due_in(days),
            now=now,
        )
        ids[name] = record["request_id"]

    def digest_mails():
        return [m for m in desk["mails"] if m["idempotency_key"].startswith("dpo-digest:")]

    first = digest.send_digest(engine, now=now)
    assert first == {"mailed": True, "overdue": 0, "due_tomorrow": 1, "due_within_7_days": 1}
    (mail,) = digest_mails()
    assert mail["to"] == ["dpo@jefacturebien.fr"]
    assert ids["in_12_hours"] in mail["text"] and ids["in_5_days"] in mail["text"]
    assert ids["in_10_days"] not in mail["text"] and ids["in_30_days"] not in mail["text"]
    # The same day again: nothing new, no mail.
    assert digest.send_digest(engine, now=now + dt.timedelta(hours=1))["mailed"] is False
    assert len(digest_mails()) == 1

    # A week without digest: everything that crossed thresholds is listed once, under the most urgent.
    later = now + dt.timedelta(days=11)
    second = digest.send_digest(engine, now=later)
    assert second == {"mailed": True, "overdue": 3, "due_tomorrow": 0, "due_within_7_days": 0}
    text = digest_mails()[-1]["text"]
    assert ids["in_10_days"] in text and ids["in_12_hours"] in text and ids["in_5_days"] in text
    # The thresholds it skipped are recorded too: they are never announced later, out of order.
    with engine.connect() as conn:
        notices = set(conn.execute(sa.select(dsr_notices.c.request_id, dsr_notices.c.notice)).all())
    assert any(n.startswith("digest:due_tomorrow:") for rid, n in notices if rid == ids["in_10_days"])
    assert digest.send_digest(engine, now=later + dt.timedelta(days=1))["mailed"] is False
    assert len(digest_mails()) == 2


def test_lists_sorted_by_due_date_with_filters_from_route_and_cli(desk, capsys):
    engine = desk["engine"]
    a, b = create_account(engine), create_account(engine)
    old = operations.register(
        actor="dpo:test",
        kind="access",
        channel="post",
        account_id=a["id"],
        received_at=utcnow() - dt.timedelta(days=45),
    )
    soon = operations.register(
        actor="dpo:test",
        kind="erasure",
        channel="email",
        account_id=b["id"],
        received_at=utcnow() - dt.timedelta(days=27),
    )
    fresh = operations.register(
        actor="dpo:test", kind="objection", channel="email", identifiers={"email": CANARY_EMAIL}
    )
    listed = answer(call("GET", "/requests", token=desk["token"]))["requests"]
    assert [r["request_id"] for r in listed] == [old["request_id"], soon["request_id"], fresh["request_id"]]
    assert listed[0]["overdue"] is True and listed[1]["overdue"] is False
    overdue = answer(call("GET", "/requests", token=desk["token"], query={"overdue": "true"}))["requests"]
    assert [r["request_id"] for r in overdue] == [old["request_id"]]
    within = answer(call("GET", "/requests", token=desk["token"], query={"due_within_days": "7"}))["requests"]
    assert [r["request_id"] for r in within] == [old["request_id"], soon["request_id"]]
    assert [
        r["request_id"]
        for r in answer(call("GET", "/requests", token=desk["token"], query={"kind": "objection"}))["requests"]
    ] == [fresh["request_id"]]

    capsys.readouterr()  # the handler's log lines
    assert cli(["dpo", "requests", "--overdue", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["request_id"] for r in printed["requests"]] == [old["request_id"]]
    assert set(printed["requests"][0]) >= {"request_id", "kind", "channel", "state", "received_at", "due_at"}

    two_days_ago = (utcnow() - dt.timedelta(days=2)).date().isoformat()
    register = "dpo register --kind access --channel post --email {email} --received-at {day} --json"
    assert cli(register.format(email="cli.person@example.org", day=two_days_ago).split()) == 0
    registered = json.loads(capsys.readouterr().out)
    assert registered["channel"] == "post" and registered["identity"]["state"] == "awaiting_identity"
    assert cli(register.format(email="x@example.org", day="2999-01-01").split()) == 2
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "invalid_received_at"
    assert cli(["dpo", "extend", registered["request_id"], "--months", "2", "--reason", "complex request"]) == 0
    assert json.loads(capsys.readouterr().out)["notices_delivered"][0]["notice"] == "extension:2"
    assert cli(["dpo", "reject", registered["request_id"], "--reason-code", "excessive"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "rejected"


def test_identifiers_never_reach_the_audit_or_a_log(desk, capfd):
    engine = desk["engine"]
    response = call(
        "POST",
        "/requests",
        token=desk["token"],
        body={
            "kind": "erasure",
            "channel": "post",
            "identifiers": {
                "email": CANARY_EMAIL,
                "name": CANARY_NAME,
                "postal_address": CANARY_ADDRESS,
                "phone": "06 11 22 33 44",
            },
        },
    )
    assert response["statusCode"] == 201
    request_id = answer(response)["request_id"]
    call("POST", f"/requests/{request_id}/verify-identity", token=desk["token"], body={"method": "identity_document"})
    call("POST", f"/requests/{request_id}/reject", token=desk["token"], body={"reason_code": "not_the_controller"})
    shown = call("GET", f"/requests/{request_id}", token=desk["token"])["body"]
    captured = capfd.readouterr()
    with engine.connect() as conn:
        audit_text = json.dumps([dict(r._mapping) for r in conn.execute(sa.select(audit_log))], default=str)
        row = conn.execute(sa.select(dsr_requests).where(dsr_requests.c.id == request_id)).one()
    for canary in (CANARY_EMAIL, CANARY_NAME, "Canarydesk", "+33611223344", "06 11 22 33 44"):
        assert canary not in captured.out + captured.err
        assert canary not in audit_text
        assert canary not in shown  # the DPO's view says which kinds were given, not the values
        assert canary not in json.dumps(row.details) and canary not in (row.subject_identifiers or "")
    assert json.loads(shown)["subject"]["identified_by"] == ["email", "name", "phone", "postal_address"]
    # Sealed, yet the desk can still write to the person.
    with engine.connect() as conn:
        record = registry.get_request(conn, request_id)
        assert notify.contact_email(conn, record) == CANARY_EMAIL


def test_a_rectification_by_post_applies_once_identity_is_verified(desk):
    engine = desk["engine"]
    account = create_account(engine, phone="+33 6 00 00 00 01")
    request_id = operations.register(actor="dpo:test", kind="rectification", channel="post", account_id=account["id"])[
        "request_id"
    ]
    corrections = {"fields": {"phone": "07 98 76 54 32"}}
    early = call("POST", f"/requests/{request_id}/rectify", token=desk["token"], body=corrections)
    assert early["statusCode"] == 409 and answer(early)["error"]["code"] == "identity_not_verified"
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(accounts.c.phone).where(accounts.c.id == account["id"])).scalar()
            == "+33 6 00 00 00 01"
        )
    verified = answer(
        call(
            "POST",
            f"/requests/{request_id}/verify-identity",
            token=desk["token"],
            body={"method": "postal_address_confirmed"},
        )
    )
    assert verified["work"]["started"] is None and "rectify" in verified["work"]["next"]
    for bad in ({"fields": {"phone": "12"}}, {"fields": {"password": "x"}}, {"fields": "phone"}, {}):
        assert call("POST", f"/requests/{request_id}/rectify", token=desk["token"], body=bad)["statusCode"] == 400, bad
    applied = call("POST", f"/requests/{request_id}/rectify", token=desk["token"], body=corrections)
    assert applied["statusCode"] == 200, applied["body"]
    assert answer(applied)["rectification"]["state"] == "in_progress"
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(accounts.c.phone).where(accounts.c.id == account["id"])).scalar()
            == "+33 7 98 76 54 32"
        )
    # It completes by itself once the processors are told; the DPO cannot close it by hand.
    assert (
        call("POST", f"/requests/{request_id}/complete", token=desk["token"], body={"note": "done"})["statusCode"]
        == 409
    )


def test_an_objection_to_fraud_prevention_is_decided_at_the_desk(desk):
    engine = desk["engine"]
    account = create_account(engine)
    objected = invoke(
        MANIFEST.functions["withdraw-consent"],
        http_event(
            "POST",
            "/objections",
            body=json.dumps({"purpose": "fraud_prevention"}),
            headers={"Authorization": f"Bearer {issue_dev_token(account['id'])}"},
        ),
    )
    assert objected["statusCode"] == 202, objected["body"]
    request_id = answer(objected)["request_id"]
    listed = answer(call("GET", "/requests", token=desk["token"], query={"kind": "objection"}))["requests"]
    assert [r["request_id"] for r in listed] == [request_id]
    before = counts(engine)
    for bad in (
        {"outcome": "maybe"},
        {"outcome": "accepted", "grounds": "x"},
        {"outcome": "overridden"},
        {"outcome": True},
    ):
        assert (
            call("POST", f"/requests/{request_id}/decide-objection", token=desk["token"], body=bad)["statusCode"] == 400
        ), bad
    assert counts(engine) == before
    decided = call(
        "POST",
        f"/requests/{request_id}/decide-objection",
        token=desk["token"],
        body={"outcome": "overridden", "grounds": "fraud checks are required by the payment providers"},
    )
    assert decided["statusCode"] == 200, decided["body"]
    assert answer(call("GET", "/requests", token=desk["token"], query={"kind": "objection"}))["requests"] == []


PROSPECT_EMAIL = "canary.desk.prospect@example.org"
THIRD_PARTY_EMAIL = "canary.desk.buyer@example.org"


def test_people_without_an_account_are_served_at_the_desk(desk, capfd):
    from tests.integration import desk_people_data as data

    engine = desk["engine"]
    with engine.begin() as conn:
        data.prospect(conn, email=PROSPECT_EMAIL, name="Canarydesk Prospect")
        named_by = [data.account(conn, email=f"seller{n}@example.org") for n in range(2)]
        data.account(conn, email="bystander@example.org")
        for account_id in named_by:
            data.client(conn, account_id, name="Canarydesk Buyer SARL", email=THIRD_PARTY_EMAIL)
        invoices_before = data.rows(conn, invoices_table)

    # The search says where, never what.
    found = call("POST", "/search", token=desk["token"], body={"email": THIRD_PARTY_EMAIL})
    assert found["statusCode"] == 200, found["body"]
    assert sorted(answer(found)["third_party_accounts"]) == sorted(named_by) and THIRD_PARTY_EMAIL not in found["body"]
    assert call("POST", "/search", token=desk["token"], body={"email": "x", "extra": 1})["statusCode"] == 400

    # A prospect's erasure: registered, verified, served, closed.
    erasure = operations.register(
        actor="dpo:test", kind="erasure", channel="email", identifiers={"email": PROSPECT_EMAIL}
    )
    served = verify_by_route(desk, erasure["request_id"])
    assert served["state"] == "completed" and served["work"]["prospect_erasure"]["prospects_deleted"] == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(prospects_table)).scalar() == 0

    # A third party's access request: each naming account told once, the person told whom to address.
    access = operations.register(
        actor="dpo:test", kind="access", channel="email", identifiers={"email": THIRD_PARTY_EMAIL}
    )
    served = verify_by_route(desk, access["request_id"])
    assert served["state"] == "completed" and sorted(served["work"]["forwarded"]["accounts"]) == sorted(named_by)
    # Resuming repeats nothing.
    call("POST", f"/requests/{access['request_id']}/resume", token=desk["token"])
    # Each naming account told exactly once (even after the resume), the bystander never, the person answered.
    assert [len(sent_to(desk, f"seller{n}@example.org")) for n in range(2)] == [1, 1]
    assert sent_to(desk, "bystander@example.org") == []
    assert sent_to(desk, THIRD_PARTY_EMAIL)
    with engine.connect() as conn:
        assert data.rows(conn, invoices_table) == invoices_before
        audit_text = json.dumps([dict(r._mapping) for r in conn.execute(sa.select(audit_log))], default=str)
    logs = capfd.readouterr()
    for canary in (PROSPECT_EMAIL, THIRD_PARTY_EMAIL, "Canarydesk"):
        assert canary not in audit_text and canary not in logs.out + logs.err


def test_register_of_processing_from_the_desk(desk, capsys):
    response = call("GET", "/register-of-processing", token=desk["token"], query={"format": "csv", "language": "fr"})
    assert response["statusCode"] == 200 and response["headers"]["Content-Type"].startswith("text/csv")
    assert call("GET", "/register-of-processing", token=desk["token"], query={"format": "pdf"})["statusCode"] == 400
    as_json = json.loads(call("GET", "/register-of-processing", token=desk["token"])["body"])
    assert as_json["activities"] and as_json["transfers_outside_eu"]
    capsys.readouterr()
    assert cli(["dpo", "register-of-processing", "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("#")


def test_a_person_we_hold_nothing_on_is_told_so_once(desk):
    request = operations.register(
        actor="dpo:test", kind="access", channel="email", identifiers={"email": "nobody.here@example.org"}
    )
    served = operations.verify_identity(request["request_id"], method="account_email_confirmed", actor="dpo:test")
    assert served["state"] == "completed" and served["work"]["found"] is False
    operations.resume(request["request_id"], actor="dpo:test")
    (mail,) = [m for m in desk["mails"] if m["idempotency_key"] == f"desk:answer:{request['request_id']}"]
    assert "We hold no data about you" in mail["text"] and "Nous ne détenons aucune donnée" in mail["text"]
    assert [n["notice"] for n in operations.view(request["request_id"])["notices"]] == ["answer"]


def test_a_prospect_gets_the_link_to_their_archive(desk):
    from tests.integration import desk_people_data as data

    with desk["engine"].begin() as conn:
        data.prospect(conn, email=PROSPECT_EMAIL, name="Canarydesk Prospect")
    request = operations.register(
        actor="dpo:test", kind="access", channel="email", identifiers={"email": PROSPECT_EMAIL}
    )
    served = operations.verify_identity(request["request_id"], method="account_email_confirmed", actor="dpo:test")
    assert served["state"] == "completed" and served["work"]["prospect_archive"]["rows"] >= 1
    (mail,) = [m for m in desk["mails"] if m["idempotency_key"] == f"desk:answer:{request['request_id']}"]
    assert "Article 15" in mail["text"] and "http" in mail["text"]
    link = operations.archive_link(request["request_id"], actor="dpo:test")
    assert link["download_url"]
