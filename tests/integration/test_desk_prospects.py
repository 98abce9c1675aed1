"""Prospects of the platform (shared.desk.prospects): access archive, erasure, objection; each once, across crashes."""

from __future__ import annotations

import io
import json
import logging
import uuid
import zipfile

import pytest
import sqlalchemy as sa

from shared.desk import prospects as desk
from shared.desk.identifiers import SubjectIdentifiers
from shared.platform.config import get_settings
from shared.platform.errors import ExternalServiceError
from shared.ports.backends import get_storage
from shared.ports.tables import audit_log, prospect_suppressions
from shared.ports.tables import prospects as prospects_table
from tests.integration import desk_people_data as seed

CANARY_EMAIL = "prospect.canary@example.test"
CANARY_NAME = "Ophelia Prospectine"
CANARY_PHONE = "+33698765432"


def _identifiers(**extra) -> SubjectIdentifiers:
    return SubjectIdentifiers.parse(email=CANARY_EMAIL, **extra)


def _world(engine) -> dict[str, str]:
    with engine.begin() as conn:
        mine = seed.prospect(
            conn,
            None,
            email=CANARY_EMAIL.upper(),
            name=CANARY_NAME,
            phone=CANARY_PHONE,
            company_name="=HYPERLINK(1)",
            source="salon",
        )
        other = seed.prospect(conn, None, email="someone.else@example.test")
        holder = seed.account(conn, email="holder@example.test")
        of_account = seed.prospect(conn, holder, email=CANARY_EMAIL)  # the account's own prospect: not ours to erase
    return {"mine": mine, "other": other, "of_account": of_account}


def _prospect_ids(engine) -> set[str]:
    with engine.connect() as conn:
        return {r.id for r in conn.execute(sa.select(prospects_table.c.id))}


def _audit(engine, action: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(audit_log).where(audit_log.c.action == action)).all()


def test_access_archive_holds_the_rows_and_the_art15_information(engine):
    ids = _world(engine)
    request_id = str(uuid.uuid4())
    meta = desk.prospect_access_archive(
        engine, get_storage(), request_id=request_id, identifiers=_identifiers(), now=seed.NOW
    )
    assert (
        meta["rows"] == 1
        and meta["object_key"].startswith("exports/prospects/")
        and request_id not in meta["object_key"]
    )
    body = get_storage().get_bytes(get_settings().exports_bucket, meta["object_key"])
    zf = zipfile.ZipFile(io.BytesIO(body))
    assert set(zf.namelist()) == {"data.json", "csv/prospects.csv", "README.html"}
    data = json.loads(zf.read("data.json"))
    assert [r["id"] for r in data["data"]["prospects"]] == [ids["mine"]]
    for language in ("fr", "en"):
        info = data["information"][language]
        you = info["concerning_you"]
        assert {"purposes", "recipients", "retention", "rights", "complaint", "transfers_outside_eu"} <= set(info)
        assert you["category"]["id"] == "prospects.contact" and you["retention"]["id"] == "prospects"
        assert {s["id"] for s in you["recipients"]} == {"scaleway", "resend"}
        assert "salon" in you["source"] and "22" in you["automated_decision"]
    csv_text = zf.read("csv/prospects.csv").decode()
    assert CANARY_NAME in csv_text and "'=HYPERLINK(1)" in csv_text
    readme = zf.read("README.html").decode()
    assert '<html lang="fr">' in readme and "Your personal data" in readme
    # Again: the same archive, no second audit entry.
    again = desk.prospect_access_archive(engine, get_storage(), request_id=request_id, identifiers=_identifiers())
    assert again == meta and len(_audit(engine, "desk.prospect_archive_stored")) == 1


def test_access_archive_resumes_after_a_crash_while_storing(engine, monkeypatch):
    _world(engine)
    request_id = str(uuid.uuid4())
    storage = get_storage()
    real_put = storage.put
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        raise ConnectionError("storage down")

    monkeypatch.setattr(storage, "put", crash)
    with pytest.raises(ConnectionError):
        desk.prospect_access_archive(engine, storage, request_id=request_id, identifiers=_identifiers())
    monkeypatch.setattr(storage, "put", real_put)
    meta = desk.prospect_access_archive(engine, storage, request_id=request_id, identifiers=_identifiers())
    assert meta["rows"] == 1 and storage.exists(get_settings().exports_bucket, meta["object_key"])
    assert [o.key for o in storage.list(get_settings().exports_bucket, "exports/prospects/")] == [meta["object_key"]]


def _deletes(resend_fake) -> list:
    return [r for r in resend_fake.requests if r.method == "DELETE"]


def test_erasure_removes_rows_and_the_resend_contact_once(resend_env, resend_fake, engine):
    ids = _world(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    request_id = str(uuid.uuid4())
    receipt = desk.erase_prospect(
        engine, request_id=request_id, identifiers=_identifiers(), actor="dpo:test", now=seed.NOW
    )
    assert receipt["prospects_deleted"] == 1 and receipt["categories"] == [
        {"category": "prospects.contact", "outcome": "erased"}
    ]
    assert receipt["subprocessors"] == [{"subprocessor": "resend", "outcome": "contact_removed"}]
    assert _prospect_ids(engine) == {ids["other"], ids["of_account"]}
    assert resend_fake.contact(CANARY_EMAIL) is None and len(_deletes(resend_fake)) == 1
    assert desk.erase_prospect(engine, request_id=request_id, identifiers=_identifiers(), actor="dpo:test") == receipt
    assert len(_deletes(resend_fake)) == 1 and len(_audit(engine, "desk.prospect_erased")) == 1


def test_erasure_after_a_crash_removes_the_contact_once(resend_env, resend_fake, engine, monkeypatch):
    ids = _world(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    request_id = str(uuid.uuid4())
    real_record = desk.audit.record

    def crash(*args, **kwargs):
        raise RuntimeError("killed while deleting")

    monkeypatch.setattr(desk.audit, "record", crash)
    with pytest.raises(RuntimeError):
        desk.erase_prospect(engine, request_id=request_id, identifiers=_identifiers(), actor="dpo:test")
    assert ids["mine"] in _prospect_ids(engine)  # the delete rolled back with its marker
    monkeypatch.setattr(desk.audit, "record", real_record)
    receipt = desk.erase_prospect(engine, request_id=request_id, identifiers=_identifiers(), actor="dpo:test")
    assert receipt["prospects_deleted"] == 1 and ids["mine"] not in _prospect_ids(engine)
    assert len(_deletes(resend_fake)) == 1


def test_a_failed_resend_call_is_retried(resend_env, resend_fake, engine):
    _world(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    request_id = str(uuid.uuid4())
    resend_fake.fail_next(1, status=500)
    with pytest.raises(ExternalServiceError):
        desk.erase_prospect(engine, request_id=request_id, identifiers=_identifiers(), actor="dpo:test")
    receipt = desk.erase_prospect(engine, request_id=request_id, identifiers=_identifiers(), actor="dpo:test")
    assert receipt["prospects_deleted"] == 1 and resend_fake.contact(CANARY_EMAIL) is None


def test_erasure_leaves_an_account_holders_contact_to_its_consents(resend_env, resend_fake, engine):
    with engine.begin() as conn:
        seed.account(conn, email=CANARY_EMAIL)
        seed.prospect(conn, None, email=CANARY_EMAIL)
    resend_fake.add_contact(CANARY_EMAIL)
    receipt = desk.erase_prospect(engine, request_id=str(uuid.uuid4()), identifiers=_identifiers(), actor="dpo:test")
    assert receipt["prospects_deleted"] == 1 and receipt["subprocessors"][0]["outcome"] == "kept_for_account"
    assert resend_fake.contact(CANARY_EMAIL) is not None and not _deletes(resend_fake)


def test_objection_suppresses_from_prospect_mailings_once(resend_env, resend_fake, engine):
    _world(engine)
    resend_fake.add_contact(CANARY_EMAIL)
    request_id = str(uuid.uuid4())
    identifiers = _identifiers(phone="06 98 76 54 32")
    result = desk.object_to_prospect_marketing(engine, request_id=request_id, identifiers=identifiers, actor="dpo:test")
    assert result["suppressed"] == ["email", "phone"] and result["added"] == 2 and result["contacts_unsubscribed"] == 1
    assert resend_fake.contact(CANARY_EMAIL)["unsubscribed"] is True
    again = desk.object_to_prospect_marketing(engine, request_id=request_id, identifiers=identifiers, actor="dpo:test")
    assert again == result
    assert len([r for r in resend_fake.requests if r.method == "PATCH"]) == 1
    with engine.connect() as conn:
        assert desk.is_suppressed(conn, email=CANARY_EMAIL.upper()) and desk.is_suppressed(
            conn, phone="+33 6 98 76 54 32"
        )
        assert not desk.is_suppressed(conn, email="someone.else@example.test")
        assert desk.unsuppressed(conn, ["someone.else@example.test", CANARY_EMAIL]) == ["someone.else@example.test"]
        stored = json.dumps([dict(r._mapping) for r in conn.execute(sa.select(prospect_suppressions))], default=str)
    assert CANARY_EMAIL not in stored and "98765432" not in stored
    # A second request for the same person adds nothing, and the objection outlives the prospect's erasure.
    desk.object_to_prospect_marketing(engine, request_id=str(uuid.uuid4()), identifiers=identifiers, actor="dpo:test")
    desk.erase_prospect(engine, request_id=str(uuid.uuid4()), identifiers=identifiers, actor="dpo:test")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(prospect_suppressions)).scalar() == 2
        assert desk.is_suppressed(conn, email=CANARY_EMAIL)


def test_no_identifier_in_logs_audit_or_saga(resend_env, resend_fake, engine, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    _world(engine)
    identifiers = _identifiers(name=CANARY_NAME, phone=CANARY_PHONE)
    desk.prospect_access_archive(engine, get_storage(), request_id=str(uuid.uuid4()), identifiers=identifiers)
    desk.object_to_prospect_marketing(engine, request_id=str(uuid.uuid4()), identifiers=identifiers, actor="dpo:test")
    desk.erase_prospect(engine, request_id=str(uuid.uuid4()), identifiers=identifiers, actor="dpo:test")
    with engine.connect() as conn:
        stored = json.dumps(
            [
                dict(r._mapping)
                for t in ("audit_log", "saga_steps", "processed_messages")
                for r in conn.execute(sa.text(f"SELECT * FROM {t}"))
            ],
            default=str,
        ).lower()
    out = capfd.readouterr()
    logs = (out.out + out.err + caplog.text).lower()
    for canary in (CANARY_EMAIL, CANARY_NAME.lower(), "98765432"):
        assert canary not in stored and canary not in logs
