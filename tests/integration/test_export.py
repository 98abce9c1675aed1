"""export-on-request end to end: through the function handlers, on SQLite and PostgreSQL,
S3 over the moto server, mail through the Resend fake, the queue delivered as Scaleway does."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import time
import urllib.request
import zipfile
from urllib.parse import parse_qs, urlparse

import jsonschema
import pyotp
import pytest
import sqlalchemy as sa

from shared.identity.client import issue_dev_token, require_step_up
from shared.identity.dpo import create_dpo_credential
from shared.local.demo import create_account, populate_account
from shared.local.server import consumer_for, http_event, invoke, load_manifest
from shared.platform.clock import add_months
from shared.platform.config import get_settings
from shared.platform.errors import AppError, Unauthorized
from shared.ports.backends import get_queue, get_storage
from shared.ports.db import get_engine, utcnow
from shared.ports.tables import accounts, audit_log, dsr_requests, invoices, processed_messages
from shared.records.audit import verify_chain
from shared.rights import export
from shared.rights.export import archive as export_archive

MANIFEST = load_manifest()
SHARED_CLIENT = "Boulangerie Dupont SARL"
CANARY_A = "canaryExpA7"
CANARY_B = "canaryExpB9"


def call(
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: str = "",
    headers: dict | None = None,
    query: dict | None = None,
) -> dict:
    extra = dict(headers or {})
    if token:
        extra["Authorization"] = f"Bearer {token}"
    event = http_event(method, path, body=body, headers=extra, query=query)
    return invoke(MANIFEST.functions["export-on-request"], event)


def drain() -> int:
    return get_queue(export.QUEUE_NAME).deliver_pending(consumer_for(export.QUEUE_NAME, MANIFEST))


def body_of(response: dict) -> dict:
    return json.loads(response["body"]) if response["body"] else {}


def totp_header(account: dict) -> dict:
    return {"X-Verification-Code": pyotp.TOTP(account["totp_secret"]).now()}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the moto server on loopback
        return answer.read()


def follow_download(download_url: str) -> dict:
    parsed = urlparse(download_url)
    path = parsed.path.removeprefix("/export-on-request")
    return call("GET", path, query={k: v[0] for k, v in parse_qs(parsed.query).items()})


@pytest.fixture
def services(s3_env, resend_env, resend_fake):
    """S3 on moto, Resend fake, in-process queue: what the tests of this file run against."""
    return resend_fake


@pytest.fixture
def two_accounts(services):
    """Account A (2FA) and account B (mailed codes) whose clients share a name; canaries mark their data."""
    engine, storage = get_engine(), get_storage()
    a = create_account(engine, with_2fa=True, canary=CANARY_A)
    b = create_account(engine, canary=CANARY_B)
    populate_account(engine, storage, a["id"], invoices=4, log_lines=12, canary=CANARY_A, client_name=SHARED_CLIENT)
    populate_account(engine, storage, b["id"], invoices=3, log_lines=8, canary=CANARY_B, client_name=SHARED_CLIENT)
    return a, b


def start_export(account: dict) -> dict:
    response = call("POST", "/", token=issue_dev_token(account["id"]), headers=totp_header(account))
    assert response["statusCode"] == 202, response["body"]
    return body_of(response)


def archive_of(account: dict, request_id: str) -> zipfile.ZipFile:
    view = call("GET", f"/{request_id}", token=issue_dev_token(account["id"]))
    assert view["statusCode"] == 200
    redirect = follow_download(body_of(view)["download_url"])
    assert redirect["statusCode"] == 302, redirect["body"]
    return zipfile.ZipFile(io.BytesIO(fetch(redirect["headers"]["Location"])))


def test_export_end_to_end(two_accounts, services, capfd):
    a, b = two_accounts
    token = issue_dev_token(a["id"])

    started = start_export(a)
    assert started["state"] == "verified" and started["kind"] == "access"
    received = dt.datetime.fromisoformat(started["received_at"].replace("Z", "+00:00"))
    assert started["due_at"] == add_months(received, 1).isoformat().replace("+00:00", "Z")
    # A second click while the first is pending returns it: no second verification, no duplicate work.
    again = call("POST", "/", token=token, body="{}")
    assert again["statusCode"] == 202 and body_of(again)["request_id"] == started["request_id"]
    pending = body_of(call("GET", f"/{started['request_id']}", token=token))
    assert pending["state"] == "verified" and "download_url" not in pending

    assert drain() >= 1
    view = body_of(call("GET", f"/{started['request_id']}", token=token))
    assert view["state"] == "completed"
    assert view["download_url"].startswith(
        f"http://127.0.0.1:8080/export-on-request/{started['request_id']}/download?token="
    )
    link_expiry = dt.datetime.fromisoformat(view["download_url_expires_at"].replace("Z", "+00:00"))
    assert link_expiry - utcnow() <= dt.timedelta(hours=24)

    with archive_of(a, started["request_id"]) as archive:
        names = set(archive.namelist())
        assert {"data.json", "schema.json", "README.html"} <= names
        data = json.loads(archive.read("data.json"))
        schema = json.loads(archive.read("schema.json"))
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(data)

        # Every category the seed filled for this account is in the export.
        expected_tables = {
            "accounts",
            "companies",
            "clients",
            "prospects",
            "invoices",
            "invoice_lines",
            "sessions",
            "api_keys",
            "connection_logs",
            "access_logs",
            "consent_events",
            "analytics_events",
            "payment_records",
            "dsr_requests",
        }
        assert all(data["data"][table] for table in expected_tables), {t: len(data["data"][t]) for t in expected_tables}
        for category in (
            "identification.email",
            "identification.company_name",
            "technical.ip_address",
            "technical.access_logs",
            "consent.records",
            "payment.transactions",
            "documents.invoices",
            "documents.third_parties",
            "prospects.contact",
        ):
            assert category in data["summary"]["categories"]
        assert data["data"]["accounts"] == [dict(data["data"]["accounts"][0], id=a["id"])]
        assert len(data["data"]["invoices"]) == 4 and len(data["data"]["invoice_lines"]) == 8
        assert {"en", "fr"} == set(data["information"])
        assert data["information"]["fr"]["complaint"]["website"] == "https://www.cnil.fr"
        # Payment records without card data: brand and last 4 digits at most.
        assert set(data["data"]["payment_records"][0]) >= {"card_brand", "card_last4"}
        assert not any(k in data["data"]["payment_records"][0] for k in ("card_number", "cvc", "exp_month"))

        # One CSV per table, UTF-8 with a header row that matches data.json.
        columns = {t.name: t.column_names for t in export.export_tables()}
        for table, rows in data["data"].items():
            text = archive.read(f"csv/{table}.csv").decode("utf-8-sig")
            header, *lines = text.splitlines()
            assert header.split(",") == list(columns[table])
            assert len(lines) >= len(rows)
        # The invoice PDFs, as issued.
        pdfs = [n for n in names if n.startswith("invoices/")]
        assert len(pdfs) == 4 and all(archive.read(n).startswith(b"%PDF-") for n in pdfs)
        assert all(d["included"] and d["file"] in names for d in data["documents"])
        readme = archive.read("README.html").decode()
        assert "CNIL" in readme and "Vos droits" in readme and "Your rights" in readme

        everything = b"".join(archive.read(n) for n in names)
    assert CANARY_A.encode() in everything
    assert CANARY_B.encode() not in everything  # B's client has the same name: none of B's data came along
    assert SHARED_CLIENT.encode() in everything
    assert a["totp_secret"].encode() not in everything and b"$2b$" not in everything  # no secrets

    # Encrypted at rest, under an unguessable key in the account's prefix; exactly one archive.
    storage = get_storage()
    objects = list(storage.list(get_settings().exports_bucket, f"exports/{a['id']}/"))
    assert len(objects) == 1 and re.fullmatch(rf"exports/{a['id']}/[0-9a-f]{{64}}\.zip", objects[0].key)
    assert (
        storage.client.head_object(Bucket=get_settings().exports_bucket, Key=objects[0].key)["ServerSideEncryption"]
        == "AES256"
    )

    # One mail, to A, French then English, with the client area link and no data.
    mails = [m for m in services.emails if m["idempotency_key"] == f"export-ready:{started['request_id']}"]
    assert len(mails) == 1 and mails[0]["to"] in (a["email"], [a["email"]])
    assert mails[0]["text"].index("Bonjour") < mails[0]["text"].index("Hello")
    assert CANARY_A not in mails[0]["text"] + mails[0]["html"] and "token=" not in mails[0]["text"]

    with get_engine().connect() as conn:
        actions = [
            r.action
            for r in conn.execute(sa.select(audit_log.c.action).where(audit_log.c.request_id == started["request_id"]))
        ]
        assert verify_chain(conn).ok
    for action in ("request.created", "export.completed", "export.notified", "export.downloaded"):
        assert action in actions
    captured = capfd.readouterr()
    for secret in (CANARY_A, CANARY_B, a["email"], b["email"], token):
        assert secret not in captured.out + captured.err


def test_worker_resumes_without_second_archive_or_mail(two_accounts, services):
    a, _b = two_accounts
    started = start_export(a)
    services.fail_next(1, status=500)  # Resend fails once: the worker answers 500, the queue redelivers
    drain()
    engine = get_engine()
    with engine.connect() as conn:
        state = conn.execute(sa.select(dsr_requests.c.state).where(dsr_requests.c.id == started["request_id"])).scalar()
    assert state == "completed"

    # The same message delivered again after a crash before it was recorded as processed.
    with engine.begin() as conn:
        conn.execute(sa.delete(processed_messages))
    message = {
        "type": export.MESSAGE_TYPE,
        "idempotency_key": f"export:{started['request_id']}",
        "payload": {"request_id": started["request_id"]},
    }
    worker = MANIFEST.functions["export-on-request-worker"]
    for _ in range(2):
        response = invoke(worker, http_event("POST", "/", body=json.dumps(message)))
        assert response["statusCode"] == 200, response["body"]

    sent = [m for m in services.emails if m["idempotency_key"] == f"export-ready:{started['request_id']}"]
    assert len(sent) == 1
    objects = list(get_storage().list(get_settings().exports_bucket, f"exports/{a['id']}/"))
    assert len(objects) == 1


def test_link_expiry_and_tampering(two_accounts, services):
    a, b = two_accounts
    started = start_export(a)
    drain()
    engine = get_engine()
    request_id = started["request_id"]
    view = body_of(call("GET", f"/{request_id}", token=issue_dev_token(a["id"])))
    token = parse_qs(urlparse(view["download_url"]).query)["token"][0]

    # The link works now, and stops working after its expiry (at most 24 h, here 1 h).
    assert export.download_location(engine, request_id, token)
    later = utcnow() + dt.timedelta(hours=1, seconds=1)
    with pytest.raises(Unauthorized) as expired:
        export.download_location(engine, request_id, token, now=later)
    assert expired.value.code == "invalid_download_token"

    # Tampered or borrowed tokens are refused, through the handler too.
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    for path, query in (
        (f"/{request_id}/download", {"token": tampered}),
        (f"/{request_id}/download", {}),
        (f"/{'0' * 8}-0000-0000-0000-{'0' * 12}/download", {"token": token}),
    ):
        response = call("GET", path, query=query)
        assert response["statusCode"] == 401 and body_of(response)["error"]["code"] == "invalid_download_token"

    # After 7 days the export is gone: no link in the view; a removed archive answers 410.
    week = utcnow() + dt.timedelta(days=7, seconds=1)
    expired_view = export.export_view(engine, request_id, account_id=a["id"], now=week)
    assert expired_view["expired"] is True and "download_url" not in expired_view
    get_storage().delete_prefix(get_settings().exports_bucket, f"exports/{a['id']}/")
    gone = follow_download(view["download_url"])
    assert gone["statusCode"] == 410 and body_of(gone)["error"]["code"] == "export_expired"

    # Another account's request id: 404, whether it exists or not.
    other = call("GET", f"/{request_id}", token=issue_dev_token(b["id"]))
    assert other["statusCode"] == 404


def test_refusals_change_nothing(two_accounts, services):
    a, b = two_accounts
    token_a, token_b = issue_dev_token(a["id"]), issue_dev_token(b["id"])
    cases = [
        (call("POST", "/"), 401, "missing_token"),
        (call("POST", "/", token="not-a-jwt"), 401, "invalid_token"),
        (call("POST", "/", token=token_a, body="{not json"), 400, "invalid_request"),
        (call("POST", "/", token=token_a, body='{"everything": true}'), 400, "invalid_request"),
        (call("POST", "/", token=token_a, body='{"x": "' + "y" * 70_000 + '"}'), 413, "payload_too_large"),
        (call("POST", "/", token=token_a, headers={"X-Verification-Code": "000000"}), 401, "invalid_code"),
        (call("POST", "/dpo/requests", token=token_a, body="{}"), 401, "wrong_token_type"),
    ]
    for response, status, code in cases:
        assert (response["statusCode"], body_of(response)["error"]["code"]) == (status, code)

    # A valid TOTP code works once; replayed, it is refused.
    code = totp_header(a)
    assert call("POST", "/", token=token_a, headers=code)["statusCode"] == 202
    drain()
    replay = call("POST", "/", token=token_a, headers=code)
    assert replay["statusCode"] == 401 and body_of(replay)["error"]["code"] == "code_already_used"

    # Account without 2FA: a mailed code, too many wrong attempts, then the right code no longer helps.
    asked = call("POST", "/", token=token_b)
    assert asked["statusCode"] == 401 and body_of(asked)["error"]["code"] == "verification_required"
    mailed = [m for m in services.emails if m["to"] in (b["email"], [b["email"]])][-1]
    right = re.search(r"\b(\d{6})\b", mailed["text"]).group(1)
    wrong = "111111" if right != "111111" else "222222"
    statuses = [
        call("POST", "/", token=token_b, headers={"X-Verification-Code": wrong})["statusCode"] for _ in range(6)
    ]
    assert statuses[-1] == 429
    late = call("POST", "/", token=token_b, headers={"X-Verification-Code": right})
    assert late["statusCode"] in (401, 429)

    with get_engine().connect() as conn:
        kinds = conn.execute(sa.select(dsr_requests.c.account_id, dsr_requests.c.state)).all()
    assert kinds == [(a["id"], "completed")]  # only the one verified export exists
    assert get_queue(export.QUEUE_NAME).pending_count() == 0
    assert not list(get_storage().list(get_settings().exports_bucket, f"exports/{b['id']}/"))


def test_expired_mailed_code_exports_nothing(two_accounts, services):
    _a, b = two_accounts
    engine = get_engine()
    headers = {"Authorization": f"Bearer {issue_dev_token(b['id'])}"}
    with pytest.raises(AppError) as asked:
        require_step_up(engine, b["id"], headers, action="export")
    assert asked.value.code == "verification_required"
    code = re.search(r"\b(\d{6})\b", services.emails[-1]["text"]).group(1)
    later = utcnow() + dt.timedelta(minutes=11)
    with pytest.raises(AppError) as expired:
        require_step_up(engine, b["id"], {**headers, "X-Verification-Code": code}, action="export", now=later)
    assert expired.value.code == "code_expired"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(dsr_requests)).scalar() == 0


def test_dpo_registers_a_postal_request(two_accounts, services):
    a, _b = two_accounts
    engine = get_engine()
    with engine.begin() as conn:
        dpo_token = create_dpo_credential(conn, "dpo")
    received = (utcnow() - dt.timedelta(days=3)).replace(microsecond=0)
    body = {
        "account_id": a["id"],
        "channel": "post",
        "kind": "portability",
        "identity_verification": "identity_document",
        "received_at": received.isoformat(),
    }
    bad = [
        dict(body, channel="fax"),
        dict(body, identity_verification="trust_me"),
        dict(body, extra=1),
        dict(body, account_id="../etc"),
        dict(body, received_at=(utcnow() + dt.timedelta(days=1)).isoformat()),
    ]
    for payload in bad:
        assert call("POST", "/dpo/requests", token=dpo_token, body=json.dumps(payload))["statusCode"] == 400
    unknown = call(
        "POST",
        "/dpo/requests",
        token=dpo_token,
        body=json.dumps(dict(body, account_id="0" * 8 + "-0000-0000-0000-" + "0" * 12)),
    )
    assert unknown["statusCode"] == 404

    response = call("POST", "/dpo/requests", token=dpo_token, body=json.dumps(body))
    assert response["statusCode"] == 202, response["body"]
    created = body_of(response)
    assert created["channel"] == "post" and created["kind"] == "portability" and created["state"] == "verified"
    assert created["received_at"].startswith(received.strftime("%Y-%m-%dT%H:%M:%S"))
    # The same worker, the same archive, the same mail.
    drain()
    view = body_of(call("GET", f"/dpo/requests/{created['request_id']}", token=dpo_token))
    assert view["state"] == "completed" and "download_url" not in view
    assert call("GET", f"/dpo/requests/{created['request_id']}", token=issue_dev_token(a["id"]))["statusCode"] == 401
    assert len([m for m in services.emails if m["idempotency_key"] == f"export-ready:{created['request_id']}"]) == 1
    with engine.connect() as conn:
        entry = conn.execute(sa.select(audit_log).where(audit_log.c.action == "export.identity_verified")).one()
    assert entry.actor.startswith("dpo:") and entry.details == {"method": "identity_document", "channel": "post"}


def test_local_storage_download(env):
    """Without S3, the archive sits in the local folder and the link goes to the local server's signed URL."""
    engine, storage = get_engine(), get_storage()
    account = create_account(engine, with_2fa=True)
    populate_account(engine, storage, account["id"], invoices=2, log_lines=3)
    started = start_export(account)
    drain()
    with archive_of_local(account, started["request_id"], storage) as archive:
        assert "data.json" in archive.namelist()


def archive_of_local(account: dict, request_id: str, storage) -> zipfile.ZipFile:
    view = body_of(call("GET", f"/{request_id}", token=issue_dev_token(account["id"])))
    redirect = follow_download(view["download_url"])
    assert redirect["statusCode"] == 302
    location = urlparse(redirect["headers"]["Location"])
    assert location.path.startswith("/_objects/")
    bucket, key = location.path.removeprefix("/_objects/").split("/", 1)
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert storage.verify_local_signature(bucket, key, query["expires"], query["signature"])
    return zipfile.ZipFile(io.BytesIO(storage.get_bytes(bucket, key)))


def test_sample_events_are_complete_scaleway_events(env):
    from pathlib import Path

    from shared.local.server import PROJECT_ROOT

    keys = {"path", "httpMethod", "headers", "queryStringParameters", "body", "isBase64Encoded", "multiValueHeaders"}
    for folder in ("export-on-request", "export-on-request-worker"):
        paths = sorted(Path(PROJECT_ROOT, "events", folder).glob("*.json"))
        assert paths, f"no sample event in events/{folder}"
        for path in paths:
            event = json.loads(path.read_text())
            assert keys <= set(event) and event["multiValueHeaders"] is None, path.name
    root = Path(PROJECT_ROOT, "events")
    missing = invoke(
        MANIFEST.functions["export-on-request"], json.loads((root / "export-on-request/missing-token.json").read_text())
    )
    assert missing["statusCode"] == 401
    malformed = invoke(
        MANIFEST.functions["export-on-request-worker"],
        json.loads((root / "export-on-request-worker/malformed.json").read_text()),
    )
    assert malformed["statusCode"] == 400
    # A sound envelope whose payload is not {"request_id": str}: refused the same way, not retried.
    for payload in ({}, {"request_id": 42}, {"request_id": "r1", "extra": 1}):
        body = json.dumps({"type": "export.run", "idempotency_key": "export:k", "payload": payload})
        answer = invoke(MANIFEST.functions["export-on-request-worker"], http_event("POST", "/", body=body))
        assert answer["statusCode"] == 400 and json.loads(answer["body"])["error"]["code"] == "invalid_request"


def test_export_states_sources_automated_decisions_and_log_files(two_accounts, services):
    """Art. 15(1)(g), (h): the source of each category, no automated decision; the log files held under logs/."""
    a, _b = two_accounts
    engine, storage, settings = get_engine(), get_storage(), get_settings()
    with engine.connect() as conn:
        created = conn.execute(sa.select(accounts.c.created_at).where(accounts.c.id == a["id"])).scalar()
    before, since, today = created - dt.timedelta(days=1), created, utcnow()
    keys = {
        f"logs/connection/{before:%Y/%m/%d}/000001.log": False,  # before the account existed
        f"logs/connection/{since:%Y/%m/%d}/000002.log": True,
        f"logs/access/{today:%Y/%m/%d}/000003.log": True,
        "logs/access/not-dated.log": False,
    }
    for key in keys:
        storage.put(settings.logs_bucket, key, b"log line", content_type="text/plain")
    started = start_export(a)
    drain()
    with archive_of(a, started["request_id"]) as archive:
        data = json.loads(archive.read("data.json"))
        jsonschema.Draft202012Validator(
            json.loads(archive.read("schema.json")), format_checker=jsonschema.FormatChecker()
        ).validate(data)
        readme = archive.read("README.html").decode()
    for table in export.export_tables():
        for category in table.categories:
            assert data["sources"]["categories"][category], category
    assert data["sources"]["categories"]["payment.transactions"] == ["stripe"]
    assert data["sources"]["categories"]["documents.third_parties"] == ["documents"]
    assert data["sources"]["categories"]["identification.email"] == ["user"]
    assert "Stripe" in data["sources"]["labels"]["stripe"]["fr"]
    assert (
        data["automated_decisions"]["automated_decision_making"] is False
        and data["automated_decisions"]["profiling"] is False
    )
    listed = [o["key"] for o in data["log_objects"]]
    assert sorted(listed) == sorted(k for k, shown in keys.items() if shown)
    assert data["summary"]["log_objects"] == 2
    assert {o["kind"] for o in data["log_objects"]} == {"connection", "access"}
    for text in ("Origine des données", "Where the data comes from", "profilage", "profiling", "Stripe", "logs/"):
        assert text in readme, text


def test_text_entries_are_deflated_by_isal_and_read_by_the_standard_library(tmp_path):
    text = ('{"note": "ligne é ü 😀, \\"quoted\\"\\n"}\n' * 40_000).encode()
    path = tmp_path / "entries.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with export_archive._open_text_entry(zf, "data.json") as entry:
            assert type(entry._compressor).__module__.startswith("isal")  # the hook still takes
            entry.write(text)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("data.json")
        assert info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size < len(text) / 10
        assert zf.testzip() is None and zf.read("data.json") == text


def test_documents_of_every_size_are_stored_unchanged(two_accounts, services, monkeypatch):
    """A PDF is read in pieces: one piece, several pieces read whole, streamed past the whole-read limit, or
    empty; each lands in the archive byte for byte, stored (not deflated)."""
    a, _b = two_accounts
    monkeypatch.setattr(export_archive, "_COPY_BYTES", 64 * 1024)
    monkeypatch.setattr(export_archive, "_WHOLE_DOCUMENT_BYTES", 200 * 1024)
    engine, storage, settings = get_engine(), get_storage(), get_settings()
    with engine.connect() as conn:
        documents = conn.execute(
            sa.select(invoices.c.id, invoices.c.number, invoices.c.pdf_object_key)
            .where(invoices.c.account_id == a["id"], invoices.c.pdf_object_key.is_not(None))
            .order_by(invoices.c.id)
        ).all()
    assert len(documents) >= 4
    # Past the limit (streamed), between one piece and the limit (pieces joined), exactly one piece, empty.
    for (_id, _number, key), size in zip(documents, (300 * 1024 + 7, 150 * 1024, 64 * 1024, 0), strict=False):
        storage.put(settings.documents_bucket, key, os.urandom(size), content_type="application/pdf")
    started = start_export(a)
    drain()
    with archive_of(a, started["request_id"]) as archive:
        assert archive.testzip() is None
        for invoice_id, number, key in documents:
            info = archive.getinfo(export_archive.document_file(invoice_id, number))
            assert info.compress_type == zipfile.ZIP_STORED
            assert archive.read(info) == storage.get_bytes(settings.documents_bucket, key)


def test_documents_are_read_ahead_in_order_and_none_is_left_open_when_the_archive_stops(env, monkeypatch):
    """From a remote store, documents are fetched ahead of the one being written; a missing one keeps its
    place (None), and an archive abandoned midway (a failure, a closed stream) leaves no stream open."""
    engine, storage, settings = get_engine(), get_storage(), get_settings()
    account = create_account(engine)
    populate_account(engine, storage, account["id"], invoices=12)
    with engine.connect() as conn:
        keys = (
            conn.execute(
                sa.select(invoices.c.pdf_object_key)
                .where(invoices.c.account_id == account["id"], invoices.c.pdf_object_key.is_not(None))
                .order_by(invoices.c.id)
            )
            .scalars()
            .all()
        )
    storage.delete_many(settings.documents_bucket, [keys[1]])
    # Every document then streams past the whole-read limit: each fetched one holds an open stream.
    monkeypatch.setattr(export_archive, "_WHOLE_DOCUMENT_BYTES", 1)
    opened = []

    class RecordingStorage:
        concurrent_reads = 4  # a remote store's: fetched ahead on threads

        def open(self, bucket: str, key: str):
            stream = storage.open(bucket, key)
            opened.append(stream)
            return stream

    with engine.connect() as conn:
        documents = export_archive._fetched_documents(
            conn, account["id"], RecordingStorage(), settings.documents_bucket
        )
        first, second = next(documents), next(documents)
        # Read ahead: the next three (after the missing one) are opened by the reader threads meanwhile.
        deadline = time.monotonic() + 10
        while len(opened) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        documents.close()
    assert second[2] is None  # the deleted one, in its place
    assert first[2] is not None and first[2].head
    first[2].close()  # the caller's to close, as _write_documents does
    assert len(opened) == 4
    assert all(stream.closed for stream in opened)
