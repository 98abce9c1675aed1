"""The DPO console's request pages: one request's timeline and its actions, through the desk's operations.

Each action is a form with the session's CSRF token; it answers with the request's page and what it
changed; a refusal shows the desk's message with its 4xx and changes nothing.
"""

from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from shared.identity.dpo import create_dpo_credential
from shared.local.demo import create_account
from shared.local.server import build_app, load_manifest
from shared.ports.tables import audit_log, dsr_notices, dsr_requests
from tests.integration.test_dpo_console import MARKUP, _form_csrf, sign_in

CANARY_NAME = "Canaryconsole Personne"
CANARY_ADDRESS = "7 rue du Canaryconsole, 69001 Lyon"
REQUEST_ID = re.compile(r"<code>([0-9a-f-]{36})</code>")


@pytest.fixture
def credential(engine) -> str:
    with engine.begin() as conn:
        return create_dpo_credential(conn, "dpo")


@pytest.fixture
def client(env):
    return build_app(load_manifest()).test_client()


def _post(client, path: str, page: str, **fields):
    return client.post(f"/dpo-console{path}", data={"csrf": _form_csrf(page), **fields})


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (dsr_requests, dsr_notices, audit_log)
        }


def test_a_letter_is_registered_extended_and_refused_with_its_timeline(client, engine, credential, capsys, caplog):
    sign_in(client, credential, lang="en")
    listing = client.get("/dpo-console/requests?lang=en").get_data(as_text=True)
    assert 'id="register"' in listing
    created = _post(
        client,
        "/requests?lang=en",
        listing,
        kind="erasure",
        channel="post",
        name=CANARY_NAME,
        postal_address=CANARY_ADDRESS,
    )
    page = created.get_data(as_text=True)
    assert created.status_code == 200 and "Request registered." in page
    request_id = REQUEST_ID.search(page).group(1)
    # A person without an account: the page names the kinds of identifiers given, never their values.
    assert "no account (name, postal_address)" in page
    assert CANARY_NAME not in page and "Canaryconsole" not in page
    assert 'data-event="received"' in page and 'data-event="identity_asked"' in page
    assert 'id="verify-identity"' in page and 'id="extend"' in page and 'id="reject"' in page

    # A refusal from the desk (a reason code it does not know) is shown on the page, nothing changes.
    before = _counts(engine)
    refused = _post(client, f"/requests/{request_id}/reject?lang=en", page, reason_code="because", note="")
    assert refused.status_code == 400 and 'role="alert"' in refused.get_data(as_text=True)
    assert "invalid_reason_code" in refused.get_data(as_text=True)
    assert _counts(engine) == before
    empty = _post(client, f"/requests/{request_id}/extend?lang=en", page, months="1", reason="")
    assert empty.status_code == 400 and 'role="alert"' in empty.get_data(as_text=True)
    forged = client.post(
        f"/dpo-console/requests/{request_id}/extend", data={"csrf": "forged", "months": "1", "reason": "x"}
    )
    assert forged.status_code == 403 and _counts(engine) == before

    reason = "Many <archives> to gather"
    extended = _post(client, f"/requests/{request_id}/extend?lang=en", page, months="1", reason=reason)
    page = extended.get_data(as_text=True)
    assert extended.status_code == 200 and "Deadline extended." in page
    assert re.search(r"<li>Due : [^<]+ → [^<]+</li>", page)  # what changed: the deadline
    assert "letter to post (printed below)" in page and '<pre class="letter">' in page  # no email: a letter
    assert html.escape(reason) in page and reason not in page
    assert 'data-event="extended"' in page and 'data-event="notice_sent"' in page
    again = _post(client, f"/requests/{request_id}/extend?lang=en", page, months="2", reason="more")
    assert again.status_code == 409 and 'role="alert"' in again.get_data(as_text=True)

    rejected = _post(
        client, f"/requests/{request_id}/reject?lang=en", page, reason_code="identity_not_established", note=""
    )
    page = rejected.get_data(as_text=True)
    assert rejected.status_code == 200 and "Request refused." in page
    assert 'data-event="state_rejected"' in page and 'id="reject"' not in page  # closed: no more actions
    with engine.connect() as conn:
        notices = conn.execute(sa.select(dsr_notices.c.notice).where(dsr_notices.c.request_id == request_id)).scalars()
        assert sorted(notices) == ["extension:1", "refusal"]
        trail = repr(conn.execute(sa.select(audit_log)).all())
    assert CANARY_NAME not in trail and CANARY_ADDRESS not in trail
    logged = capsys.readouterr().out + caplog.text
    assert "request handled" in logged  # the functions did log, and none of it names the person
    assert CANARY_NAME not in logged and CANARY_ADDRESS not in logged and "Canaryconsole" not in logged
    assert client.get(f"/dpo-console/requests/{request_id}").status_code == 200


def test_an_account_holders_request_is_verified_then_completed(client, engine, credential):
    account = create_account(engine, email=MARKUP["email"], first_name=MARKUP["first_name"], last_name="Dupont")
    sign_in(client, credential, lang="en")
    listing = client.get("/dpo-console/requests?lang=en").get_data(as_text=True)
    page = _post(
        client, "/requests?lang=en", listing, kind="restriction", channel="email", account_id=account["id"]
    ).get_data(as_text=True)
    request_id = REQUEST_ID.search(page).group(1)
    assert "<script>alert" not in page and html.escape(MARKUP["first_name"]) in page
    assert 'id="complete"' not in page  # identity first
    verified = _post(client, f"/requests/{request_id}/verify-identity?lang=en", page, method="identity_document")
    page = verified.get_data(as_text=True)
    assert verified.status_code == 200 and "Identity verified" in page
    assert "<li>Identity : to verify → verified</li>" in page
    assert 'data-event="identity_verified"' in page and "identity document" in page
    done = _post(client, f"/requests/{request_id}/complete?lang=en", page, note="Processing restricted.")
    page = done.get_data(as_text=True)
    assert done.status_code == 200 and "Request completed." in page and 'data-event="state_completed"' in page
    listing = client.get("/dpo-console/requests?lang=en").get_data(as_text=True)
    assert request_id not in listing


def test_bad_registrations_and_unknown_requests_answer_4xx_pages(client, engine, credential):
    sign_in(client, credential, lang="en")
    listing = client.get("/dpo-console/requests?lang=en").get_data(as_text=True)
    before = _counts(engine)
    for fields in (
        {"kind": "everything", "channel": "post", "name": CANARY_NAME},
        {"kind": "access", "channel": "fax", "name": CANARY_NAME},
        {"kind": "access", "channel": "post"},  # nobody named
        {"kind": "access", "channel": "post", "received_on": "2999-01-01", "name": CANARY_NAME},
        {"kind": "access", "channel": "post", "received_on": "yesterday", "name": CANARY_NAME},
        {"kind": "access", "channel": "post", "account_id": "../../etc", "name": CANARY_NAME},
        {"kind": "access", "channel": "post", "surprise": "1"},
    ):
        answer = _post(client, "/requests?lang=en", listing, **fields)
        assert 400 <= answer.status_code < 500, fields
        text = answer.get_data(as_text=True)
        assert 'role="alert"' in text and CANARY_NAME not in text, fields
    assert _counts(engine) == before
    for path in ("/requests/" + "0" * 8 + "-0000-4000-8000-" + "0" * 12, "/requests/not-a-uuid"):
        answer = client.get(f"/dpo-console{path}")
        assert answer.status_code == 404 and 'role="alert"' in answer.get_data(as_text=True)


def test_verifying_an_access_request_says_the_export_is_under_way(client, engine, credential):
    account = create_account(engine)
    sign_in(client, credential, lang="en")
    listing = client.get("/dpo-console/requests?lang=en").get_data(as_text=True)
    page = _post(
        client, "/requests?lang=en", listing, kind="access", channel="post", account_id=account["id"]
    ).get_data(as_text=True)
    request_id = REQUEST_ID.search(page).group(1)
    verified = _post(client, f"/requests/{request_id}/verify-identity?lang=en", page, method="signed_letter")
    page = verified.get_data(as_text=True)
    assert verified.status_code == 200 and 'id="work"' in page and "The export is being prepared" in page


def test_a_mail_provider_down_shows_where_the_request_stands_with_a_503(client, engine, credential, monkeypatch):
    from shared.desk import notify
    from shared.platform.errors import ExternalServiceError

    def down(*_args, **_kwargs):
        raise ExternalServiceError("resend", "unreachable", retryable=True)

    account = create_account(engine)
    sign_in(client, credential, lang="en")
    listing = client.get("/dpo-console/requests?lang=en").get_data(as_text=True)
    page = _post(
        client, "/requests?lang=en", listing, kind="restriction", channel="email", account_id=account["id"]
    ).get_data(as_text=True)
    request_id = REQUEST_ID.search(page).group(1)
    monkeypatch.setattr(notify, "deliver_pending", down)
    answer = _post(client, f"/requests/{request_id}/extend?lang=en", page, months="1", reason="Complex request")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 503 and 'role="alert"' in text and "external_service_unavailable" in text
    assert 'id="extension"' in text and 'data-event="notice_sent"' not in text  # extended; the notice still owed
