"""Subject search (shared.desk.search): canaries found in every category, by owning account, never logged."""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from shared.desk.identifiers import SubjectIdentifiers
from shared.desk.search import matching_rows, phone_spellings, search_subject
from shared.policy import data_map
from shared.ports import tables as schema
from shared.ports.tables import audit_log
from tests.integration import desk_people_data as seed

CANARY_EMAIL = "Canary.Person@Example.TEST"
CANARY_PHONE = "06 12 34 56 78"
CANARY_SIRET = "73282932000074"
CANARY_NAME = "Zoltan Canaryson"


def _world(engine) -> dict[str, str]:
    with engine.begin() as conn:
        holder = seed.account(conn, email=CANARY_EMAIL.lower(), phone="+33612345678", first="Zoltan", last="Canaryson")
        seed.company(conn, holder, name="Canary Conseil", siret=CANARY_SIRET)
        seed.invoice(conn, holder, buyer_name="Someone Else", seller_siret=CANARY_SIRET)
        seed.account_activity(conn, holder)
        # Another account whose documents name the person, and one whose documents do not.
        user_a = seed.account(conn, email="user.a@example.test")
        seed.company(conn, user_a, name="Atelier A")
        seed.client(conn, user_a, name="Client SA", contact_name="ZOLTAN CANARYSON", email=CANARY_EMAIL)
        seed.invoice(conn, user_a, buyer_name="zoltan canaryson", buyer_address="12 rue des Canaris, 75011 Paris")
        user_b = seed.account(conn, email="user.b@example.test")
        seed.client(conn, user_b, name="Other Client", email="other@example.test", phone="0700000000")
        seed.invoice(conn, user_b, buyer_name="Other Client")
        user_c = seed.account(conn, email="user.c@example.test")
        seed.client(conn, user_c, name="By Phone", phone=CANARY_PHONE)
        seed.prospect(conn, None, email=CANARY_EMAIL, name="Zoltan Canaryson")
        seed.prospect(conn, user_b, phone="+33 6 12 34 56 78")
        seed.prospect(conn, None, email="someone.else@example.test")
    return {"holder": holder, "a": user_a, "b": user_b, "c": user_c}


def _by(found: dict, **where) -> list[dict]:
    return [m for m in found["matches"] if all(m[k] == v for k, v in where.items())]


def test_search_finds_the_person_everywhere_by_owner(engine):
    ids = _world(engine)
    identifiers = SubjectIdentifiers.parse(email=CANARY_EMAIL, phone=CANARY_PHONE, siret=CANARY_SIRET, name=CANARY_NAME)
    with engine.connect() as conn:
        found = search_subject(conn, identifiers).to_json()
    assert (
        found["accounts_holding"] == [ids["holder"]]
        and found["is_account_holder"]
        and found["account_id"] == ids["holder"]
    )
    assert sorted(found["third_party_accounts"]) == sorted([ids["a"], ids["c"]])
    assert found["prospect_accounts"] == [ids["b"]] and found["is_platform_prospect"]
    # Account holder: the account row, the company by SIRET, invoices issued under that SIRET...
    (acc,) = _by(found, table="accounts")
    assert (
        acc["role"] == "account_holder" and acc["count"] == 1 and set(acc["matched_on"]) == {"email", "phone", "name"}
    )
    assert _by(found, table="companies", account_id=ids["holder"])[0]["matched_on"] == ["siret"]
    # ... and what hangs off the account: payments, connection and access logs, consents, sessions.
    for table, category in [
        ("payment_records", "payment.transactions"),
        ("connection_logs", "technical.ip_address"),
        ("access_logs", "technical.access_logs"),
        ("consent_events", "consent.records"),
        ("sessions", "account.credentials"),
        ("invoice_lines", "documents.invoices"),
    ]:
        (m,) = _by(found, table=table)
        assert (
            m["via"] == "account"
            and m["account_id"] == ids["holder"]
            and m["count"] == 1
            and category in m["categories"]
        )
    # Third party in user A's documents (client row by email and contact name, invoice buyer) and user C's (phone).
    (client_a,) = _by(found, table="clients", account_id=ids["a"])
    assert client_a["role"] == "third_party" and set(client_a["matched_on"]) == {"email", "name"}
    assert client_a["category"] == "documents.third_parties"
    (buyer_a,) = _by(found, table="invoices", role="third_party")
    assert buyer_a["account_id"] == ids["a"] and buyer_a["matched_on"] == ["name"]
    assert _by(found, table="clients", account_id=ids["c"])[0]["matched_on"] == ["phone"]
    assert not _by(found, account_id=ids["b"], role="third_party")
    # Prospects: the platform's own (no owner) and user B's.
    platform, of_b = (
        _by(found, table="prospects", account_id=None)[0],
        _by(found, table="prospects", account_id=ids["b"])[0],
    )
    assert platform["role"] == of_b["role"] == "prospect" and platform["category"] == "prospects.contact"
    assert set(platform["matched_on"]) == {"email", "name"} and of_b["matched_on"] == ["phone"]
    assert found["by_category"]["prospects.contact"] == 2
    # Never an identifier in the answer.
    text = json.dumps(found).lower()
    for canary in (CANARY_EMAIL, "0612345678", "+33612345678", CANARY_SIRET, CANARY_NAME):
        assert canary.lower() not in text


def test_every_searched_category_is_found(engine):
    """Each table the data map declares searchable finds a canary placed in it, and only it."""
    _world(engine)
    identifiers = SubjectIdentifiers.parse(email=CANARY_EMAIL, phone=CANARY_PHONE, siret=CANARY_SIRET, name=CANARY_NAME)
    with engine.connect() as conn:
        found = search_subject(conn, identifiers).to_json()
    direct = {(m["table"], m["role"]) for m in found["matches"] if m["via"] == "identifiers"}
    declared = {(tm.name, key.role) for tm in data_map.searched_tables() for key in tm.subject_keys}
    assert direct == declared
    categories = {c for tm in data_map.searched_tables() for c in tm.categories if c in found["by_category"]}
    assert {
        "identification.email",
        "identification.siret_siren",
        "documents.third_parties",
        "prospects.contact",
        "payment.transactions",
        "technical.access_logs",
        "technical.ip_address",
        "consent.records",
    } <= set(found["by_category"]) and categories


def test_each_identifier_alone(engine):
    ids = _world(engine)
    with engine.connect() as conn:
        by_siret = search_subject(conn, SubjectIdentifiers.parse(siret=CANARY_SIRET)).to_json()
        by_phone = search_subject(conn, SubjectIdentifiers.parse(phone="+33 6 12 34 56 78")).to_json()
        nobody = search_subject(conn, SubjectIdentifiers.parse(email="nobody@example.test")).to_json()
    assert by_siret["accounts_holding"] == [ids["holder"]] and not by_siret["third_party_accounts"]
    assert by_phone["accounts_holding"] == [ids["holder"]] and by_phone["third_party_accounts"] == [ids["c"]]
    assert by_phone["prospect_accounts"] == [ids["b"]] and not by_phone["is_platform_prospect"]
    assert nobody["matches"] == [] and not nobody["is_account_holder"] and nobody["account_id"] is None


def test_name_with_postal_address_narrows_the_match(engine):
    ids = _world(engine)
    with engine.connect() as conn:
        right = search_subject(
            conn, SubjectIdentifiers.parse(name=CANARY_NAME, postal_address="12 RUE des Canaris, 75011 Paris")
        ).to_json()
        wrong = search_subject(
            conn, SubjectIdentifiers.parse(name=CANARY_NAME, postal_address="1 avenue Ailleurs, Lyon")
        ).to_json()
    assert _by(right, table="invoices", role="third_party")[0]["account_id"] == ids["a"]
    assert not _by(wrong, table="invoices", role="third_party")
    # Where no address is stored (the client row has none), the name alone still matches.
    assert _by(wrong, table="clients", account_id=ids["a"])


def test_phone_spellings():
    assert {"+33612345678", "0612345678", "06 12 34 56 78", "06.12.34.56.78", "0033612345678"} <= set(
        phone_spellings("+33612345678")
    )
    assert phone_spellings("+4915112345678") == ["+4915112345678", "004915112345678"]


def test_identifiers_never_reach_logs_or_the_audit(engine, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    ids = _world(engine)
    identifiers = SubjectIdentifiers.parse(email=CANARY_EMAIL, phone=CANARY_PHONE, siret=CANARY_SIRET, name=CANARY_NAME)
    with engine.begin() as conn:
        found = search_subject(conn, identifiers, actor="dpo:test", request_id=None)
    assert found.accounts_holding == [ids["holder"]]
    with engine.connect() as conn:
        (entry,) = conn.execute(sa.select(audit_log).where(audit_log.c.action == "desk.subject_searched")).all()
        trail = json.dumps([dict(r._mapping) for r in conn.execute(sa.select(audit_log))], default=str).lower()
    assert entry.details["searched"] == ["email", "name", "phone", "siret"]
    out = capfd.readouterr()
    logs = (out.out + out.err + caplog.text).lower()
    for canary in (CANARY_EMAIL, "0612345678", "+33612345678", CANARY_SIRET, CANARY_NAME):
        assert canary.lower() not in trail and canary.lower() not in logs


def test_searches_use_the_indexes(engine):
    """Each identifier comparison is an index lookup (EXPLAIN), not a scan of the table."""
    identifiers = SubjectIdentifiers.parse(email=CANARY_EMAIL)
    query = matching_rows("clients", identifiers)
    with engine.connect() as conn:
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        if conn.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))
    assert "ix_clients_lower_email" in plan, plan


def test_the_migration_creates_the_indexes_of_the_schema_module(engine):
    expected = {
        index.name
        for tm in data_map.searched_tables()
        for index in schema.metadata.tables[tm.name].indexes
        if index.name.startswith(
            (
                "ix_accounts_lower",
                "ix_accounts_phone",
                "ix_companies_siret",
                "ix_clients_",
                "ix_prospects_lower",
                "ix_prospects_phone",
                "ix_invoices_lower",
                "ix_invoices_seller",
            )
        )
        and index.name != "ix_clients_account_id"
    }
    assert len(expected) == 14
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            names = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
        else:
            names = {r[0] for r in conn.exec_driver_sql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert expected <= names
