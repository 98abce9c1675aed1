"""Mail port: Resend (over a local HTTP fake of its API) and the outbox folder."""

from __future__ import annotations

import email
import email.policy
import json
from email.utils import parseaddr
from urllib.parse import unquote

import pytest

from shared.platform.errors import ExternalServiceError
from shared.platform.pseudonym import pseudonymise
from shared.ports.backends import get_mailer
from shared.ports.mail import Message, OutboxMailer, ResendMailer
from tests.fakes.fixtures import RESEND_TEST_KEY

# The mail port never touches the database: one database backend is enough here.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://jefacturebien.fr/unsubscribe/tok>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}


def message(key: str = "verify:req-1", **overrides) -> Message:
    fields = {
        "to": "alice@example.com",
        "subject": "Votre code de vérification",
        "text": "Code : 123456",
        "html": "<p>Code : <b>123456</b></p>",
        "idempotency_key": key,
    }
    return Message(**{**fields, **overrides})


# --- Resend -----------------------------------------------------------------------------


@sqlite_only
def test_resend_sends_once_per_idempotency_key(resend_env, resend_fake):
    mailer = get_mailer()
    assert isinstance(mailer, ResendMailer)

    first = mailer.send(message())
    second = mailer.send(message())

    assert first == second
    assert len(resend_fake.emails) == 1
    posts = [r for r in resend_fake.requests if r.method == "POST"]
    assert len(posts) == 2
    request = posts[0]
    assert request.path == "/emails"
    assert request.headers["Authorization"] == f"Bearer {RESEND_TEST_KEY}"
    assert request.headers["Idempotency-Key"] == "verify:req-1"
    assert request.body["from"] == resend_env.mail_from
    assert request.body["to"] == ["alice@example.com"]
    assert request.body["subject"] == "Votre code de vérification"
    assert request.body["text"] == "Code : 123456"
    assert request.body["html"] == "<p>Code : <b>123456</b></p>"
    assert "headers" not in request.body

    mailer.send(message("verify:req-2"))
    assert len(resend_fake.emails) == 2


@sqlite_only
def test_resend_marketing_mail_carries_unsubscribe_headers(resend_env, resend_fake):
    get_mailer().send(message("news:2025-01", category="marketing", headers=UNSUBSCRIBE))
    [sent] = resend_fake.emails
    assert sent["headers"] == UNSUBSCRIBE
    assert {"name": "category", "value": "marketing"} in sent["tags"]


@sqlite_only
def test_resend_failures_raise_external_service_error_and_a_retry_sends_once(resend_env, resend_fake):
    mailer = get_mailer()
    resend_fake.fail_next(1, status=500)
    with pytest.raises(ExternalServiceError) as server_error:
        mailer.send(message())
    assert server_error.value.retryable and server_error.value.status == 500
    assert "alice@example.com" not in str(server_error.value)

    resend_fake.fail_next(1, status=422)
    with pytest.raises(ExternalServiceError) as client_error:
        mailer.send(message())
    assert not client_error.value.retryable

    mailer.send(message())
    mailer.send(message())
    assert len(resend_fake.emails) == 1


@sqlite_only
def test_resend_unreachable_is_retryable(env, monkeypatch):
    from shared.platform import config as config_module
    from shared.ports.backends import reset_backends

    monkeypatch.setenv("RESEND_API_KEY", RESEND_TEST_KEY)
    monkeypatch.setenv("RESEND_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    config_module.reset_settings()
    reset_backends()
    with pytest.raises(ExternalServiceError) as error:
        get_mailer().send(message())
    assert error.value.retryable


@sqlite_only
def test_resend_unsubscribe_and_remove_contact(resend_env, resend_fake):
    mailer = get_mailer()
    contact_id = resend_fake.add_contact("Bob+news@example.com")

    assert mailer.unsubscribe_contact("Bob+news@example.com") == [contact_id]
    patch = resend_fake.requests[-1]
    assert (patch.method, unquote(patch.path), patch.body["unsubscribed"]) == (
        "PATCH",
        "/contacts/Bob+news@example.com",
        True,
    )
    assert resend_fake.contact("bob+news@example.com")["unsubscribed"] is True

    assert mailer.remove_contact("Bob+news@example.com") == [contact_id]
    delete = resend_fake.requests[-1]
    assert (delete.method, unquote(delete.path)) == ("DELETE", "/contacts/Bob+news@example.com")
    assert resend_fake.contact("bob+news@example.com") is None

    # Already gone (404): done, not an error.
    assert mailer.remove_contact("Bob+news@example.com") == []
    assert mailer.unsubscribe_contact("nobody@example.com") == []
    assert [r.method for r in resend_fake.requests] == ["PATCH", "DELETE", "DELETE", "PATCH"]


@sqlite_only
def test_resend_contact_errors_other_than_404_raise(resend_env, resend_fake):
    resend_fake.add_contact("carol@example.com")
    resend_fake.fail_next(1, status=503)
    with pytest.raises(ExternalServiceError) as error:
        get_mailer().remove_contact("carol@example.com")
    assert error.value.retryable
    assert resend_fake.contact("carol@example.com") is not None


# --- Message checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"to": "alice@example.com, eve@example.com"},
        {"to": "Alice <alice@example.com>"},
        {"to": "not-an-address"},
        {"subject": "Hello\r\nBcc: eve@example.com"},
        {"subject": ""},
        {"html": ""},
        {"text": ""},
        {"idempotency_key": ""},
        {"idempotency_key": "k" * 257},
        {"category": "newsletter"},
        {"category": "marketing"},  # no one-click unsubscribe
        {"category": "marketing", "headers": {"List-Unsubscribe": "<https://x>"}},
        {"headers": {"Bcc": "eve@example.com"}},
        {"headers": {"X-Note": "a\nb"}},
    ],
)
def test_invalid_messages_are_refused(overrides):
    with pytest.raises(ValueError):
        message(**overrides)


# --- Outbox -----------------------------------------------------------------------------


@sqlite_only
def test_outbox_writes_one_eml_per_idempotency_key(env):
    mailer = get_mailer()
    assert isinstance(mailer, OutboxMailer)
    outbox = env.data_dir / "outbox"

    first = mailer.send(message())
    assert mailer.send(message(subject="A different rendering")) == first
    assert len(list(outbox.glob("*.eml"))) == 1
    mailer.send(message("verify:req-2"))
    assert len(list(outbox.glob("*.eml"))) == 2

    eml = outbox / f"{first}.eml"
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["To"] == "alice@example.com"
    assert parseaddr(parsed["From"]) == parseaddr(env.mail_from)
    assert parsed["Subject"] == "Votre code de vérification"
    assert parsed["Message-ID"] and parsed["Date"]
    assert parsed.get_body(("plain",)).get_content().strip() == "Code : 123456"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>Code : <b>123456</b></p>"

    sidecar = json.loads((outbox / f"{first}.json").read_text())
    assert sidecar["idempotency_key"] == "verify:req-1"
    assert sidecar["category"] == "transactional"
    assert sidecar["subject"] == "Votre code de vérification"  # the first rendering, not the repeat


@sqlite_only
def test_outbox_marketing_message_carries_unsubscribe_headers(env):
    message_id = get_mailer().send(message("news:1", category="marketing", headers=UNSUBSCRIBE))
    parsed = email.message_from_bytes(
        (env.data_dir / "outbox" / f"{message_id}.eml").read_bytes(), policy=email.policy.default
    )
    assert parsed["List-Unsubscribe"] == UNSUBSCRIBE["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@sqlite_only
def test_outbox_records_contact_requests_under_a_pseudonym(env):
    mailer = get_mailer()
    assert mailer.unsubscribe_contact("Dave@Example.com") == []
    assert mailer.remove_contact("dave@example.com") == []

    contacts = env.data_dir / "outbox" / "contacts.jsonl"
    assert "dave" not in contacts.read_text().lower()
    entries = [json.loads(line) for line in contacts.read_text().splitlines()]
    assert [e["action"] for e in entries] == ["unsubscribe", "remove"]
    assert {e["contact"] for e in entries} == {pseudonymise("dave@example.com", purpose="mail-contact")}
