"""Third parties in users' documents (shared.desk.third_parties): exactly the naming accounts mailed, once each."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import sqlalchemy as sa

from shared.desk import third_parties as desk
from shared.desk.identifiers import SubjectIdentifiers
from shared.platform.errors import Conflict, ValidationFailed
from shared.ports import tables as t
from tests.integration import desk_people_data as seed

CANARY_EMAIL = "third.canary@example.test"
CANARY_NAME = "Bartholomew Thirdparty"


def _world(engine) -> dict[str, str]:
    with engine.begin() as conn:
        by_client = seed.account(conn, email="owner.a@example.test")
        seed.company(conn, by_client, name="Atelier Alpha SARL")
        seed.client(conn, by_client, name="Thirdparty Consulting", contact_name=CANARY_NAME, email=CANARY_EMAIL)
        seed.invoice(conn, by_client, buyer_name=CANARY_NAME, seller_name="Atelier Alpha SARL")
        by_invoice = seed.account(conn, email="owner.b@example.test", first="Bruno", last="Beta")
        seed.invoice(conn, by_invoice, buyer_name=CANARY_NAME.upper(), seller_name="Beta Services")
        by_prospect = seed.account(conn, email="owner.c@example.test", first="Chloé", last="Gamma")
        seed.prospect(conn, by_prospect, email=CANARY_EMAIL)
        unrelated = seed.account(conn, email="owner.d@example.test")
        seed.client(conn, unrelated, name="Someone Else", email="else@example.test")
        seed.invoice(conn, unrelated, buyer_name="Someone Else")
        seed.prospect(conn, None, email=CANARY_EMAIL)  # the platform's own prospect: not forwarded
    return {"client": by_client, "invoice": by_invoice, "prospect": by_prospect, "unrelated": unrelated}


def _identifiers() -> SubjectIdentifiers:
    return SubjectIdentifiers.parse(email=CANARY_EMAIL, name=CANARY_NAME)


def _sent(resend_fake) -> list[dict]:
    return [e for e in resend_fake.emails]


def _documents(engine) -> list:
    with engine.connect() as conn:
        return [seed.rows(conn, table) for table in (t.invoices, t.invoice_lines, t.clients)]


def test_exactly_the_accounts_naming_the_person_are_mailed_once(resend_env, resend_fake, engine):
    ids = _world(engine)
    before = _documents(engine)
    request_id = str(uuid.uuid4())
    result = desk.forward_to_controllers(engine, request_id=request_id, kind="access", identifiers=_identifiers())
    assert result["accounts"] == sorted([ids["client"], ids["invoice"], ids["prospect"]]) and result["mailed"] == 3
    mails = _sent(resend_fake)
    assert sorted(m["to"][0] for m in mails) == ["owner.a@example.test", "owner.b@example.test", "owner.c@example.test"]
    by_to = {m["to"][0]: m for m in mails}
    # Each mail: the request and the duty to answer, French first; only what that account already holds.
    a = by_to["owner.a@example.test"]
    assert (
        a["text"].index("Bonjour") < a["text"].index("Hello")
        and "Droit d'accès" in a["text"]
        and "Art. 15" in a["text"]
    )
    assert request_id in a["text"] and "un mois" in a["text"] and "one month" in a["text"]
    assert CANARY_EMAIL in a["text"] and CANARY_NAME in a["text"]
    b = by_to["owner.b@example.test"]
    assert CANARY_NAME in b["text"] and CANARY_EMAIL not in b["text"]  # B's invoices hold the name only
    c = by_to["owner.c@example.test"]
    assert CANARY_EMAIL in c["text"] and CANARY_NAME not in c["text"]
    # Never another account.
    known_as = {
        "owner.a@example.test": ("Atelier Alpha", ids["client"]),
        "owner.b@example.test": ("Beta", ids["invoice"]),
        "owner.c@example.test": ("Gamma", ids["prospect"]),
        "owner.d@example.test": ("", ids["unrelated"]),
    }
    for mail in mails:
        for to, (name, account_id) in known_as.items():
            if to != mail["to"][0]:
                assert to not in mail["text"] + mail["html"] and account_id not in mail["text"] + mail["html"]
                assert not name or name not in mail["text"]
    # Again: nothing more.
    again = desk.forward_to_controllers(engine, request_id=request_id, kind="access", identifiers=_identifiers())
    assert again["accounts"] == result["accounts"] and again["mailed"] == 0 and len(_sent(resend_fake)) == 3
    with engine.connect() as conn:
        audited = conn.execute(sa.select(t.audit_log).where(t.audit_log.c.action == "desk.third_party_forwarded")).all()
    assert len(audited) == 3 and all(e.subject_pseudonym for e in audited)
    assert _documents(engine) == before  # issued invoices and client records byte-identical


def test_a_crash_between_mails_sends_each_once(resend_env, resend_fake, engine, monkeypatch):
    ids = _world(engine)
    request_id = str(uuid.uuid4())
    real_record = desk.audit.record
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed after the second mail, before its marker")
        return real_record(*args, **kwargs)

    monkeypatch.setattr(desk.audit, "record", crash_on_second)
    with pytest.raises(RuntimeError):
        desk.forward_to_controllers(engine, request_id=request_id, kind="erasure", identifiers=_identifiers())
    assert len(_sent(resend_fake)) == 2
    monkeypatch.setattr(desk.audit, "record", real_record)
    result = desk.forward_to_controllers(engine, request_id=request_id, kind="erasure", identifiers=_identifiers())
    assert result["accounts"] == sorted([ids["client"], ids["invoice"], ids["prospect"]])
    # The second account's mail went again under its key: the provider kept one.
    assert sorted(m["to"][0] for m in _sent(resend_fake)) == [
        "owner.a@example.test",
        "owner.b@example.test",
        "owner.c@example.test",
    ]
    assert len(resend_fake.emails) == 3


def test_the_person_is_told_whom_to_address(resend_env, resend_fake, engine):
    ids = _world(engine)
    request_id = str(uuid.uuid4())
    with pytest.raises(Conflict):
        desk.third_party_answer(engine, request_id=request_id, kind="access", identifiers=_identifiers())
    desk.forward_to_controllers(engine, request_id=request_id, kind="access", identifiers=_identifiers())
    answer = desk.third_party_answer(engine, request_id=request_id, kind="access", identifiers=_identifiers())
    assert answer["sent"] and {c["name"] for c in answer["controllers"]} == {
        "Atelier Alpha SARL",
        "Beta Services",
        "Chloé Gamma",
    }
    assert {c["account_id"] for c in answer["controllers"]} == {ids["client"], ids["invoice"], ids["prospect"]}
    (mail,) = [m for m in resend_fake.emails if m["to"] == [CANARY_EMAIL]]
    for name in ("Atelier Alpha SARL", "Beta Services", "Chloé Gamma"):
        assert name in mail["text"]
    assert "10 ans" in mail["text"] and "10 years" in mail["text"] and "CNIL" in mail["text"]
    assert desk.third_party_answer(engine, request_id=request_id, kind="access", identifiers=_identifiers())["sent"]
    assert len([m for m in resend_fake.emails if m["to"] == [CANARY_EMAIL]]) == 1


def test_without_an_email_nothing_is_mailed_to_the_person(env, engine):
    _world(engine)
    request_id = str(uuid.uuid4())
    identifiers = SubjectIdentifiers.parse(name=CANARY_NAME)
    forwarded = desk.forward_to_controllers(
        engine, request_id=request_id, kind="rectification", identifiers=identifiers
    )
    assert len(forwarded["accounts"]) == 2  # the name is on A's client row and invoice, and on B's invoice
    answer = desk.third_party_answer(engine, request_id=request_id, kind="rectification", identifiers=identifiers)
    assert not answer["sent"] and len(answer["controllers"]) == 2


def test_nobody_named_means_no_mail_and_an_answer_saying_so(resend_env, resend_fake, engine):
    _world(engine)
    request_id = str(uuid.uuid4())
    identifiers = SubjectIdentifiers.parse(email="nobody@example.test")
    assert (
        desk.forward_to_controllers(engine, request_id=request_id, kind="access", identifiers=identifiers)["accounts"]
        == []
    )
    answer = desk.third_party_answer(engine, request_id=request_id, kind="access", identifiers=identifiers)
    assert answer["controllers"] == [] and "ne vous désigne" in resend_fake.emails[0]["text"]


def test_unknown_kind_is_refused_and_changes_nothing(env, engine):
    _world(engine)
    with pytest.raises(ValidationFailed) as refused:
        desk.forward_to_controllers(engine, request_id=str(uuid.uuid4()), kind="everything", identifiers=_identifiers())
    assert refused.value.code == "invalid_kind"
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.processed_messages)).scalar() == 0


def test_no_identifier_in_logs_or_audit(resend_env, resend_fake, engine, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    _world(engine)
    request_id = str(uuid.uuid4())
    desk.forward_to_controllers(engine, request_id=request_id, kind="access", identifiers=_identifiers())
    desk.third_party_answer(engine, request_id=request_id, kind="access", identifiers=_identifiers())
    with engine.connect() as conn:
        stored = json.dumps(
            [dict(r._mapping) for table in (t.audit_log, t.processed_messages) for r in conn.execute(sa.select(table))],
            default=str,
        ).lower()
    out = capfd.readouterr()
    logs = (out.out + out.err + caplog.text).lower()
    for canary in (CANARY_EMAIL, CANARY_NAME.lower()):
        assert canary not in stored and canary not in logs
