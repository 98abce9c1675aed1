"""withdraw-consent end to end, through the function handlers, on SQLite and PostgreSQL.

Consent is withdrawn at once and idempotently, objections and restrictions are
flags every function honours, unsubscribe links work without login, and the
newsletter withdrawal reaches Resend exactly once.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select

from shared.identity.client import issue_dev_token
from shared.identity.dpo import create_dpo_credential
from shared.local.demo import create_account
from shared.local.server import drain_queues, http_event, invoke, load_manifest
from shared.ports.db import UTC, utcnow
from shared.ports.tables import (
    analytics_events,
    audit_log,
    consent_events,
    dsr_requests,
    processing_restrictions,
)
from shared.records.audit import verify_chain
from shared.rights import consent

PROJECT = Path(__file__).resolve().parents[2]
EVENTS = PROJECT / "events" / "withdraw-consent"
CANARY_EMAIL = "canary.consent@example.test"
CANARY_IP = "203.0.113.77"


# --- Helpers ------------------------------------------------------------------------------------


def call(event: dict) -> tuple[int, dict | str, dict]:
    spec = load_manifest().functions["withdraw-consent"]
    response = invoke(spec, event)
    body = response["body"]
    content_type = next((v for k, v in response["headers"].items() if k.lower() == "content-type"), "")
    return response["statusCode"], json.loads(body) if "json" in content_type else body, response["headers"]


def sample(name: str, **replace: str) -> dict:
    """A sample event of events/withdraw-consent with its placeholders filled in."""
    text = (EVENTS / f"{name}.json").read_text()
    for placeholder, value in replace.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


def client(account_id: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {issue_dev_token(account_id)}",
        "User-Agent": "pytest",
        "X-Forwarded-For": CANARY_IP,
    }


def dpo_headers(engine) -> dict[str, str]:
    with engine.begin() as conn:
        return {"Authorization": f"Bearer {create_dpo_credential(conn, 'dpo')}"}


def withdraw_event(account_id: str, body: str, **headers: str) -> dict:
    return http_event("POST", "/", body=body, headers={**client(account_id), **headers})


def new_account(engine, *, consents=("newsletter", "analytics"), email=CANARY_EMAIL, now=None) -> str:
    account_id = create_account(engine, email=email)["id"]
    for purpose in consents:
        consent.give_consent(
            engine,
            account_id,
            purpose,
            channel=consent.CLIENT_AREA,
            actor="client",
            ip=CANARY_IP,
            user_agent="pytest",
            now=now,
        )
    return account_id


def ledger(engine, account_id: str) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(consent_events.c.purpose, consent_events.c.action, consent_events.c.channel)
            .where(consent_events.c.account_id == account_id)
            .order_by(consent_events.c.occurred_at)
        )
        return [tuple(r) for r in rows]


def count(engine, table, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def outbox(env) -> list[dict]:
    root = env.data_dir / "outbox"
    return [json.loads(p.read_text()) for p in sorted(root.glob("*.json"))] if root.exists() else []


def drain() -> int:
    return drain_queues(load_manifest())


# --- Client area --------------------------------------------------------------------------------


def test_withdraw_then_status_and_export_show_the_withdrawal(env, engine):
    account_id = new_account(engine)
    status, body, _ = call(sample("withdraw-newsletter") | {"headers": client(account_id)})
    assert status == 200
    assert body["changed"] and body["withdrawn"] == ["newsletter"]
    assert body["consents"]["newsletter"]["granted"] is False
    assert body["consents"]["analytics"]["granted"] is True

    status, body, _ = call(sample("status") | {"headers": client(account_id)})
    assert status == 200
    history = [(e["purpose"], e["action"], e["channel"]) for e in body["history"]]
    assert history[-1] == ("newsletter", "withdrawn", "client_area")
    assert ("newsletter", "given", "client_area") in history
    withdrawal = body["history"][-1]
    assert withdrawal["policy_version"] == "1.1"
    # Proof without the raw IP: a keyed pseudonym.
    assert withdrawal["proof_ip_pseudonym"] and CANARY_IP not in json.dumps(body)

    with engine.connect() as conn:
        exported = consent.export_section(conn, account_id)
    assert exported["consent_history"][-1]["action"] == "withdrawn"
    assert exported["consents"]["newsletter"]["granted"] is False

    with engine.connect() as conn:
        request = conn.execute(select(dsr_requests).where(dsr_requests.c.account_id == account_id)).one()
        assert (request.kind, request.channel, request.state) == ("consent_withdrawal", "client_area", "completed")
        assert verify_chain(conn).ok


def test_withdrawing_twice_writes_one_event_and_one_request(env, engine):
    account_id = new_account(engine)
    first = call(withdraw_event(account_id, '{"purpose": "all"}'))
    second = call(withdraw_event(account_id, '{"purpose": "all"}'))
    assert first[0] == second[0] == 200
    assert first[1]["changed"] and sorted(first[1]["withdrawn"]) == ["analytics", "newsletter"]
    assert not second[1]["changed"] and second[1]["request_id"] is None
    assert count(engine, consent_events, consent_events.c.action == "withdrawn") == 2  # one per purpose
    assert count(engine, dsr_requests) == 1


def test_concurrent_withdrawals_write_one_event(env, engine):
    account_id = new_account(engine, consents=("newsletter",))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def withdraw() -> None:
        barrier.wait()
        try:
            consent.withdraw(engine, account_id, "newsletter", channel=consent.CLIENT_AREA, actor="client")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=withdraw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(engine, consent_events, consent_events.c.action == "withdrawn") == 1


@pytest.mark.parametrize(
    ("case", "code"),
    [("withdraw-unknown-purpose", "unknown_purpose"), ("withdraw-malformed", "invalid_request")],
)
def test_bad_input_is_400_and_changes_nothing(env, engine, case, code):
    account_id = new_account(engine)
    before = ledger(engine, account_id), count(engine, audit_log)
    status, body, _ = call(sample(case) | {"headers": client(account_id)})
    assert status == 400 and body["error"]["code"] == code
    assert (ledger(engine, account_id), count(engine, audit_log)) == before


def test_unknown_fields_are_refused(env, engine):
    account_id = new_account(engine)
    status, body, _ = call(withdraw_event(account_id, '{"purpose": "newsletter", "email": "x@example.test"}'))
    assert status == 400 and "unknown field" in body["error"]["message"]
    assert ledger(engine, account_id)[-1][1] == "given"


def test_gpc_header_is_an_objection_to_analytics(env, engine):
    account_id = new_account(engine)
    assert consent.collect_analytics_event(engine, account_id, "page_view", page="/factures")
    assert count(engine, analytics_events) == 1

    status, body, _ = call(sample("status-with-gpc") | {"headers": {**client(account_id), "sec-gpc": "1"}})
    assert status == 200
    assert body["consents"]["analytics"] == {**body["consents"]["analytics"], "granted": False, "channel": "gpc"}
    assert body["objections"]["analytics"] is True
    assert body["consents"]["newsletter"]["granted"] is True  # GPC is about analytics only
    # The events collected under the withdrawn consent are gone, and no new one is collected.
    assert count(engine, analytics_events) == 0
    assert not consent.collect_analytics_event(engine, account_id, "page_view")
    with engine.connect() as conn:
        assert not consent.may_collect_analytics(conn, account_id)

    # Honoured once: further calls with the header change nothing.
    before = ledger(engine, account_id), count(engine, processing_restrictions), count(engine, dsr_requests)
    call(http_event("GET", "/", headers={**client(account_id), "Sec-GPC": "1"}))
    assert (ledger(engine, account_id), count(engine, processing_restrictions), count(engine, dsr_requests)) == before


def test_objection_blocks_resubscription_until_a_new_explicit_consent(env, engine):
    account_id = new_account(engine)
    status, body, _ = call(sample("object-direct-marketing") | {"headers": client(account_id)})
    assert status == 200 and body["objections"]["direct_marketing"] is True
    with engine.connect() as conn:
        request = conn.execute(select(dsr_requests.c.kind)).scalar_one()
    assert request == "objection"

    with pytest.raises(Exception) as refused:
        consent.give_consent(engine, account_id, "newsletter", channel=consent.EMAIL_LINK, actor="email_link")
    assert getattr(refused.value, "code", None) == "objection_in_force"
    with engine.connect() as conn:
        assert not consent.may_send_marketing(conn, account_id)

    change = consent.give_consent(engine, account_id, "newsletter", channel=consent.CLIENT_AREA, actor="client")
    assert change.flags_lifted == (consent.OBJECTION_DIRECT_MARKETING,)
    with engine.connect() as conn:
        assert consent.may_send_marketing(conn, account_id)


# --- Unsubscribe links ----------------------------------------------------------------------------


def _mailed_token(env) -> str:
    (mail,) = [m for m in outbox(env) if m["category"] == "marketing"]
    header = mail["headers"]["List-Unsubscribe"]
    assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = header.strip("<>")
    return parse_qs(urlsplit(url).query)["t"][0]


def test_one_click_unsubscribe_without_login(env, engine):
    account_id = new_account(engine)
    assert consent.send_marketing(
        engine, account_id, campaign_id="spring-2026", subject="Nouveautés", text="Bonjour", html="<p>Bonjour</p>"
    )
    token = _mailed_token(env)

    # The page does not unsubscribe (link scanners follow GETs); it POSTs.
    status, page, headers = call(
        sample("unsubscribe-page", **{"<unsubscribe token from a marketing mail's List-Unsubscribe header>": token})
    )
    assert status == 200 and 'method="post"' in page and 'name="List-Unsubscribe" value="One-Click"' in page
    assert headers["Cache-Control"] == "no-store"
    # No script, nothing from another origin, never framed, the token never leaves in a Referer.
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert headers["Referrer-Policy"] == "no-referrer" and "<script" not in page
    assert ledger(engine, account_id)[-1][1] == "given"

    event = sample(
        "unsubscribe-one-click", **{"<unsubscribe token from a marketing mail's List-Unsubscribe header>": token}
    )
    assert "Authorization" not in event["headers"]
    status, body, _ = call(event)
    assert status == 200 and body == {"status": "unsubscribed", "changed": True}
    assert ("newsletter", "withdrawn", "email_link") in ledger(engine, account_id)
    with engine.connect() as conn:
        assert conn.execute(select(dsr_requests.c.channel)).scalar_one() == "email"

    # Idempotent, and no marketing mail is sent afterwards.
    assert call(event)[1] == {"status": "unsubscribed", "changed": False}
    assert (
        consent.send_marketing(
            engine, account_id, campaign_id="summer-2026", subject="Été", text="Bonjour", html="<p>Bonjour</p>"
        )
        is None
    )
    assert len([m for m in outbox(env) if m["category"] == "marketing"]) == 1


def test_multipart_one_click_body_is_accepted(env, engine):
    account_id = new_account(engine)
    token = consent.unsubscribe_token(account_id)
    boundary = "XyZ"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--{boundary}--\r\n'
    event = http_event(
        "POST",
        "/unsubscribe",
        body=body,
        query={"t": token},
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert call(event)[0] == 200
    assert ledger(engine, account_id)[-1] == ("newsletter", "withdrawn", "email_link")


def test_tampered_expired_or_not_one_click_changes_nothing(env, engine):
    account_id = new_account(engine)
    token = consent.unsubscribe_token(account_id)
    version, payload, signature = token.split(".")
    other = consent.unsubscribe_token(new_account(engine, email="other@example.test"))
    forged = f"{version}.{other.split('.')[1]}.{signature}"
    expired = consent.unsubscribe_token(
        account_id, now=utcnow() - dt.timedelta(days=env.unsubscribe_token_ttl_days + 1)
    )
    before = ledger(engine, account_id), count(engine, audit_log)

    cases = [
        (forged, "List-Unsubscribe=One-Click", 400, "invalid_unsubscribe_token"),
        (token[:-2] + "xx", "List-Unsubscribe=One-Click", 400, "invalid_unsubscribe_token"),
        ("garbage", "List-Unsubscribe=One-Click", 400, "invalid_unsubscribe_token"),
        (expired, "List-Unsubscribe=One-Click", 410, "unsubscribe_token_expired"),
        (token, "List-Unsubscribe=Yes", 400, "not_one_click"),
    ]
    for t, body, status, code in cases:
        event = http_event(
            "POST",
            "/unsubscribe",
            body=body,
            query={"t": t},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        got_status, got, _ = call(event)
        assert (got_status, got["error"]["code"]) == (status, code)
    assert call(sample("unsubscribe-tampered"))[0] == 400
    page_status, page, _ = call(http_event("GET", "/unsubscribe", query={"t": forged}))
    assert page_status == 400 and "<form" not in page
    assert (ledger(engine, account_id), count(engine, audit_log)) == before


# --- Propagation to Resend ------------------------------------------------------------------------


def _contact_patches(resend_fake) -> list:
    return [r for r in resend_fake.requests if r.method == "PATCH" and r.path.startswith("/contacts/")]


def test_resend_failure_is_retried_until_done(resend_env, resend_fake, engine):
    account_id = new_account(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    resend_fake.fail_next(1, status=503)
    call(withdraw_event(account_id, '{"purpose": "newsletter"}'))
    assert drain() == 1  # the first delivery failed (5xx), the queue's retry succeeded
    patches = _contact_patches(resend_fake)
    assert len(patches) == 2 and patches[-1].body.get("unsubscribed") is True
    assert resend_fake.contact(CANARY_EMAIL)["unsubscribed"] is True
    assert _pending(engine) == []
    assert count(engine, audit_log, audit_log.c.action == "consent.propagated") == 1


def test_resend_sees_one_unsubscribe_even_after_a_crash_and_retry(resend_env, resend_fake, engine):
    account_id = new_account(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    call(withdraw_event(account_id, '{"purpose": "newsletter"}'))
    ((event_id, _),) = _pending(engine)
    # A worker unsubscribed the contact, then crashed before the delivery was acknowledged:
    # the worker's body ran, the queue still holds the message.
    consent.propagate_newsletter_withdrawal(engine, event_id)
    assert len(_contact_patches(resend_fake)) == 1
    assert drain() == 1  # redelivered
    # The account's next call queues nothing more: the propagation is done.
    call(withdraw_event(account_id, '{"purpose": "newsletter"}'))
    assert drain() == 0
    assert len(_contact_patches(resend_fake)) == 1
    assert resend_fake.contact(CANARY_EMAIL)["unsubscribed"] is True
    assert count(engine, audit_log, audit_log.c.action == "consent.propagated") == 1


def test_queue_delivers_the_propagation(env, engine):
    account_id = new_account(engine)
    call(withdraw_event(account_id, '{"purpose": "newsletter"}'))
    assert drain() == 1
    assert _pending(engine) == []
    contacts = (env.data_dir / "outbox" / "contacts.jsonl").read_text().splitlines()
    assert [json.loads(line)["action"] for line in contacts] == ["unsubscribe"]
    assert CANARY_EMAIL not in "".join(contacts)


def test_propagation_of_a_superseded_withdrawal_does_not_unsubscribe(resend_env, resend_fake, engine):
    account_id = new_account(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    consent.withdraw(engine, account_id, "newsletter", channel=consent.CLIENT_AREA, actor="client")
    consent.give_consent(engine, account_id, "newsletter", channel=consent.CLIENT_AREA, actor="client")
    drain()
    assert not [r for r in resend_fake.requests if r.method == "PATCH"]
    assert _pending(engine) == []


def test_the_hourly_sweep_queues_a_propagation_whose_enqueue_failed(resend_env, resend_fake, engine, monkeypatch):
    from shared.platform.errors import ExternalServiceError
    from shared.ports.backends import get_queue

    account_id = new_account(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    queue = get_queue(consent.PROPAGATION_QUEUE)

    def queue_down(*_args, **_kwargs):
        raise ExternalServiceError("queue", "unreachable", retryable=True)

    monkeypatch.setattr(type(queue), "send_many", queue_down)
    status, body, _ = call(withdraw_event(account_id, '{"purpose": "newsletter"}'))
    assert status == 200  # the withdrawal holds; only its propagation waits
    monkeypatch.undo()
    assert drain() == 0 and len(_pending(engine)) == 1
    with engine.connect() as conn:
        assert not consent.may_send_marketing(conn, account_id)  # marketing reads the ledger meanwhile

    spec = load_manifest().functions["withdraw-consent-worker"]
    response = invoke(spec, json.loads((EVENTS / "worker-propagation-sweep.json").read_text()))
    assert response["statusCode"] == 200 and json.loads(response["body"]) == {"queued": 1}
    assert drain() == 1
    assert _pending(engine) == []
    assert resend_fake.contact(CANARY_EMAIL)["unsubscribed"] is True
    # Nothing left: the next sweep queues nothing, Resend sees one unsubscribe.
    assert json.loads(invoke(spec, json.loads((EVENTS / "worker-propagation-sweep.json").read_text()))["body"]) == {
        "queued": 0
    }
    assert len(_contact_patches(resend_fake)) == 1


def _pending(engine):
    with engine.connect() as conn:
        return consent.pending_propagations(conn)


def test_malformed_propagation_message_is_400(env, engine):
    spec = load_manifest().functions["withdraw-consent-worker"]
    event = json.loads((EVENTS / "worker-newsletter-withdrawn.json").read_text())
    envelope = json.loads(event["body"])
    envelope["payload"] = {"consent_event_id": 42}
    response = invoke(spec, {**event, "body": json.dumps(envelope)})
    assert response["statusCode"] == 400


# --- Restriction (DPO) -----------------------------------------------------------------------------


def test_restriction_is_honoured_everywhere_and_lifted_after_notice(env, engine):
    account_id = new_account(engine)
    dpo = dpo_headers(engine)
    event = sample("dpo-set-restriction", **{"<account id>": account_id}) | {"headers": dpo}
    status, body, _ = call(event)
    assert status == 201 and body["flag"]["kind"] == "restriction" and body["flag"]["in_force"]
    flag_id = body["flag"]["id"]
    assert call(event)[0] == 200  # already in force: same flag, nothing new
    assert count(engine, processing_restrictions) == 1

    with engine.connect() as conn:
        assert consent.is_restricted(conn, account_id)
        # The shared check the inactivity erasure uses, one by one and in bulk.
        assert not consent.erasure_by_inactivity_allowed(conn, account_id)
        assert account_id in set(conn.execute(consent.restricted_accounts()).scalars())
        assert not consent.may_send_marketing(conn, account_id)
        assert not consent.may_collect_analytics(conn, account_id)
        # Export stays allowed.
        assert consent.export_section(conn, account_id)["restrictions_and_objections"][0]["in_force"]
        request = conn.execute(select(dsr_requests)).one()
        assert (request.kind, request.channel, request.state) == ("restriction", "dpo", "completed")
    assert consent.send_marketing(engine, account_id, campaign_id="c1", subject="S", text="t", html="<p>t</p>") is None
    status, body, _ = call(http_event("GET", "/", headers=client(account_id)))
    assert body["restriction"]["in_force"] and body["restriction"]["legal_ground"] == "Art. 18(1)(a)"
    assert "note" not in json.dumps(body["restriction"])  # the DPO's note stays with the DPO

    # Lifting: the user is told first (Art. 18(3)), once, whatever the retries.
    lift = sample("dpo-lift-restriction", **{"<restriction id>": flag_id}) | {"headers": dpo}
    status, body, _ = call(lift)
    assert status == 200 and not body["flag"]["in_force"]
    assert body["flag"]["lift_notified_at"] <= body["flag"]["lifted_at"]
    assert call(lift)[0] == 200
    notices = [m for m in outbox(env) if m["idempotency_key"] == f"restriction-lift-notice:{flag_id}"]
    assert len(notices) == 1 and notices[0]["to"] == CANARY_EMAIL and notices[0]["category"] == "transactional"
    with engine.connect() as conn:
        assert consent.erasure_by_inactivity_allowed(conn, account_id)
        assert consent.may_send_marketing(conn, account_id)
        assert verify_chain(conn).ok


def test_dpo_route_refuses_client_tokens_and_bad_input(env, engine):
    account_id = new_account(engine)
    event = sample("dpo-set-restriction", **{"<account id>": account_id})
    status, body, _ = call(event | {"headers": client(account_id)})
    assert status == 401 and body["error"]["code"] == "wrong_token_type"
    status, body, _ = call(http_event("GET", "/dpo/restrictions", query={"account_id": account_id}))
    assert status == 401
    dpo = dpo_headers(engine)
    status, body, _ = call(http_event("GET", "/", headers=dpo))
    assert status == 401 and body["error"]["code"] == "wrong_token_type"

    bad = http_event(
        "POST", "/dpo/restrictions", headers=dpo, body=json.dumps({"account_id": account_id, "reason_code": "because"})
    )
    assert call(bad)[1]["error"]["code"] == "invalid_reason"
    missing = http_event(
        "POST",
        "/dpo/restrictions",
        headers=dpo,
        body=json.dumps({"account_id": "00000000-0000-0000-0000-000000000000", "reason_code": "legal_claims"}),
    )
    assert call(missing)[0] == 404
    assert count(engine, processing_restrictions) == 0


def test_dpo_objection_withdraws_and_lists_with_notes(env, engine):
    account_id = new_account(engine)
    dpo = dpo_headers(engine)
    status, body, _ = call(sample("dpo-set-objection", **{"<account id>": account_id}) | {"headers": dpo})
    assert status == 201 and body["flag"]["kind"] == "objection_direct_marketing"
    assert ("newsletter", "withdrawn", "dpo") in ledger(engine, account_id)
    status, body, _ = call(sample("dpo-list", **{"<account id>": account_id}) | {"headers": dpo})
    assert status == 200 and body["restrictions_and_objections"][0]["kind"] == "objection_direct_marketing"


# --- Logs, and the single marketing path ---------------------------------------------------------


def test_no_personal_data_in_logs(env, engine, capfd):
    account_id = new_account(engine)
    dpo = dpo_headers(engine)
    call(withdraw_event(account_id, '{"purpose": "newsletter"}', **{"Sec-GPC": "1"}))
    call(sample("withdraw-unknown-purpose") | {"headers": client(account_id)})
    drain()
    flag = call(
        http_event(
            "POST",
            "/dpo/restrictions",
            headers=dpo,
            body=json.dumps(
                {"account_id": account_id, "reason_code": "legal_claims", "note": f"Écrit par {CANARY_EMAIL}"}
            ),
        )
    )[1]["flag"]
    call(
        http_event(
            "POST",
            f"/dpo/restrictions/{flag['id']}/lift",
            headers=dpo,
            body=json.dumps({"reason_code": "legal_claims_closed"}),
        )
    )
    token = consent.unsubscribe_token(account_id)
    call(
        http_event(
            "POST",
            "/unsubscribe",
            body="List-Unsubscribe=One-Click",
            query={"t": token},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    out = capfd.readouterr()
    logs = out.out + out.err
    assert "request handled" in logs
    for secret in (CANARY_EMAIL, CANARY_IP, token, "Écrit par"):
        assert secret not in logs
    with engine.connect() as conn:
        trail = json.dumps([dict(r._mapping) for r in conn.execute(select(audit_log))], default=str)
    assert CANARY_EMAIL not in trail and "Écrit par" not in trail


def _marketing_call_sites(source: str) -> list[int]:
    """Lines of calls that can build a marketing mail: `category=` anything but the literal "transactional",
    or a `Message(...)` given its category positionally."""
    sites = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "category" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value == "transactional"
            ):
                sites.append(node.lineno)
        callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if callee == "Message" and len(node.args) >= 6:
            sites.append(node.lineno)
    return sites


def test_no_other_code_sends_marketing_mail():
    """Marketing mail has one path, shared.rights.consent.send_marketing: nothing else builds one."""
    gate = PROJECT / "shared" / "rights" / "consent" / "marketing.py"
    sources = [path for folder in ("shared", "functions") for path in sorted((PROJECT / folder).rglob("*.py"))]
    assert gate in sources and len(sources) > 40
    assert _marketing_call_sites(gate.read_text()), "the gate itself must be found, or this check sees nothing"
    offenders = {
        f"{path.relative_to(PROJECT)}:{line}"
        for path in sources
        # The mail port and the notices renderer pass a caller's category through; they choose none.
        if path not in (gate, PROJECT / "shared" / "ports" / "mail.py", PROJECT / "shared" / "notices" / "__init__.py")
        for line in _marketing_call_sites(path.read_text())
    }
    assert offenders == set()


def test_ledger_timestamps_keep_the_order_of_events(env, engine):
    """Events given and withdrawn at the same instant still derive the right state."""
    now = dt.datetime(2026, 7, 1, 12, tzinfo=UTC)
    account_id = new_account(engine, consents=(), email="same.instant@example.test")
    for _ in range(2):
        consent.give_consent(engine, account_id, "analytics", channel=consent.CLIENT_AREA, actor="client", now=now)
        consent.withdraw(engine, account_id, "analytics", channel=consent.CLIENT_AREA, actor="client", now=now)
    consent.give_consent(engine, account_id, "analytics", channel=consent.CLIENT_AREA, actor="client", now=now)
    with engine.connect() as conn:
        assert consent.consent_state(conn, account_id)["analytics"].granted
    assert [a for _, a, _ in ledger(engine, account_id)] == ["given", "withdrawn"] * 2 + ["given"]


# --- With the other functions of the suite ----------------------------------------------------------


def test_export_under_restriction_shows_the_withdrawal_and_the_flag(env, engine):
    import io
    import zipfile

    from shared.ports.backends import get_storage
    from shared.rights import export

    account_id = new_account(engine)
    call(withdraw_event(account_id, '{"purpose": "newsletter"}'))
    consent.restrict(engine, account_id, reason_code="accuracy_contested", actor="dpo")

    # Export stays allowed while processing is restricted (Art. 18(2) keeps storage and the subject's rights).
    record, _ = export.register_dpo_export(
        engine, actor="dpo", account_id=account_id, channel="email", kind="access", verification_method="signed_letter"
    )
    assert export.run_export(engine, record.id)["status"] == "completed"
    archive = get_storage().get_bytes(env.exports_bucket, export.object_key(record))
    data = json.loads(zipfile.ZipFile(io.BytesIO(archive)).read("data.json"))["data"]
    events = {(e["purpose"], e["action"], e["channel"]) for e in data["consent_events"]}
    assert ("newsletter", "withdrawn", "client_area") in events and ("newsletter", "given", "client_area") in events
    assert [f["kind"] for f in data["processing_restrictions"]] == ["restriction"]


def test_restriction_blocks_erasure_for_inactivity_only(env, engine):
    from shared.rights import erasure

    account_id = new_account(engine)
    flag, _ = consent.restrict(engine, account_id, reason_code="legal_claims", actor="dpo")
    with pytest.raises(erasure.ProcessingRestricted), engine.begin() as conn:
        erasure.register_erasure(conn, account_id, channel=erasure.RETENTION_CHANNEL, actor="system:retention")
    with engine.connect() as conn:
        assert conn.execute(select(dsr_requests).where(dsr_requests.c.kind == "erasure")).first() is None

    consent.lift(engine, flag.id, reason_code="legal_claims_closed", actor="dpo")
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account_id, channel=erasure.RETENTION_CHANNEL, actor="system:retention")
    assert record.kind == "erasure"
