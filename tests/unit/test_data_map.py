"""The data map classifies every column of the migrated database, and only real ones."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from shared.local.demo import create_account, populate_account
from shared.policy import data_map
from shared.policy import facts as policy
from shared.policy.data_map import NOT_PERSONAL, STRATEGIES, TABLES
from shared.ports import tables as schema

UTC = dt.UTC


def test_migrated_schema_is_fully_classified(engine):
    assert data_map.unclassified_columns(engine) == []
    assert data_map.missing_columns(engine) == []
    with engine.connect() as conn:
        assert data_map.unclassified_columns(sa.inspect(conn)) == []


def test_an_unclassified_column_or_table_is_named(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE clients ADD COLUMN birth_date VARCHAR(10)"))
        conn.execute(sa.text("CREATE TABLE shadow_notes (id VARCHAR(36) PRIMARY KEY, note TEXT)"))
    try:
        assert data_map.unclassified_columns(engine) == ["clients.birth_date", "shadow_notes.id", "shadow_notes.note"]
    finally:
        # The PostgreSQL database is shared by the session's tests: put it back.
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE clients DROP COLUMN birth_date"))
            conn.execute(sa.text("DROP TABLE shadow_notes"))
    assert data_map.unclassified_columns(engine) == []


def test_a_dropped_column_is_named(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE prospects DROP COLUMN source"))
    try:
        assert data_map.missing_columns(engine) == ["prospects.source"]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE prospects ADD COLUMN source VARCHAR(40)"))


def test_map_matches_the_schema_module_exactly():
    assert {t.name for t in TABLES} == set(schema.metadata.tables)
    for tm in TABLES:
        assert [c.name for c in tm.columns] != [], tm.name
        assert {c.name for c in tm.columns} == set(schema.metadata.tables[tm.name].columns.keys()), tm.name
        assert len({c.name for c in tm.columns}) == len(tm.columns), f"{tm.name}: a column is mapped twice"
    assert {t.name for t in TABLES if t.suite} >= schema.SUITE_TABLES


def test_category_and_rule_ids_exist_in_the_policy():
    category_ids = {c.id for c in policy.CATEGORIES}
    rule_ids = {r.id for r in policy.RETENTION_RULES}
    for tm in TABLES:
        assert set(tm.categories) <= category_ids, tm.name
        assert tm.retention is None or tm.retention in rule_ids, tm.name
        # A table declares every category its columns hold (it may add what its rows are as a whole).
        assert {c.category for c in tm.columns if c.personal} <= set(tm.categories), tm.name
        for col in tm.columns:
            assert col.category in category_ids | NOT_PERSONAL, f"{tm.name}.{col.name}"
            assert col.retention is None or col.retention in rule_ids
    for prefix in data_map.OBJECT_PREFIXES:
        assert prefix.category in category_ids and prefix.retention in rule_ids
        assert prefix.action in STRATEGIES
    for record in data_map.PROCESSOR_RECORDS:
        assert policy.subprocessor(record.subprocessor)
        assert set(record.categories) <= category_ids
        table, column = record.key_column.split(".")
        assert data_map.table_map(table).column(column).personal


def test_identifier_columns_are_personal():
    identifiers = data_map.identifier_columns()
    assert {
        ("accounts", "email"),
        ("accounts", "phone"),
        ("accounts", "first_name"),
        ("accounts", "last_name"),
        ("companies", "siret"),
        ("companies", "siren"),
        ("companies", "vat_number"),
        ("clients", "email"),
        ("prospects", "email"),
    } <= set(identifiers)
    for table, column in identifiers:
        assert data_map.table_map(table).column(column).personal, f"{table}.{column}"


def test_erasure_actions_are_consistent():
    for tm in TABLES:
        actions = {c.action for c in tm.columns}
        assert actions <= set(STRATEGIES), tm.name
        # A deleted table deletes every column; a delete action means the whole row goes.
        assert (tm.row_action == data_map.ROW_DELETE) == (actions == {"delete"}), tm.name
        if tm.row_action == data_map.ROW_KEEP:
            assert not data_map.personal_columns(tm.name), tm.name
        for col in tm.columns:
            where = f"{tm.name}.{col.name}"
            if col.action == "keep":
                assert not col.personal, f"{where}: personal data cannot simply be kept"
            if col.action == "retain":
                assert tm.row_action == data_map.ROW_RETAIN, where
                assert policy.retention_rule(col.retention or tm.retention).total_months, where
            if col.action == "pseudonymise" and col.into:
                assert tm.column(col.into), where
        if tm.row_action == data_map.ROW_RETAIN:
            assert policy.retention_rule(tm.retention).total_months, tm.name


def test_card_data_is_at_most_brand_and_last4():
    payments = data_map.table_map("payment_records")
    assert "PAN" not in {c.name for c in payments.columns}
    assert "never the card number" in payments.column("card_brand").note
    assert schema.payment_records.c.card_last4.type.length == 4
    card_columns = {c.name for c in payments.columns if "card" in c.name}
    assert card_columns == {"card_brand", "card_last4"}


def test_tables_are_ordered_children_first():
    position = {t.name: i for i, t in enumerate(TABLES)}
    for table in schema.metadata.tables.values():
        for fk in table.foreign_keys:
            parent = fk.column.table.name
            if parent != table.name:
                assert position[table.name] < position[parent], f"{table.name} must come before {parent}"


def test_object_prefixes():
    pdfs = next(p for p in data_map.OBJECT_PREFIXES if p.id == "invoice_pdfs")
    assert pdfs.key(account_id="a1", invoice_id="i1") == "invoices/a1/i1.pdf"
    assert pdfs.prefix(account_id="a1") == "invoices/a1/"
    assert pdfs.archive_bucket_setting == "archive_bucket" and pdfs.action == "retain"
    exports = next(p for p in data_map.OBJECT_PREFIXES if p.id == "exports")
    assert exports.prefix(account_id="a1") == "exports/a1/" and exports.action == "delete"
    logs = next(p for p in data_map.OBJECT_PREFIXES if p.id == "access_log_files")
    assert logs.prefix(yyyy="2026", mm="06") == "logs/access/2026/06/"


def test_subject_rows_select_only_that_account(engine):
    a = create_account(engine)
    b = create_account(engine)
    populate_account(engine, None, a["id"], pdfs=False, log_lines=4)
    populate_account(engine, None, b["id"], pdfs=False, log_lines=4)
    linked = [t for t in TABLES if t.link.column and not t.suite]
    with engine.connect() as conn:
        for tm in linked:
            table = schema.metadata.tables[tm.name]
            rows_a = conn.execute(data_map.subject_rows(tm.name, a["id"])).mappings().all()
            rows_b = conn.execute(data_map.subject_rows(tm.name, b["id"])).mappings().all()
            assert rows_a and rows_b, tm.name
            assert len(rows_a) + len(rows_b) == conn.execute(sa.select(sa.func.count()).select_from(table)).scalar(), (
                tm.name
            )
            key = [c.name for c in table.primary_key.columns]
            assert not {tuple(r[k] for k in key) for r in rows_a} & {tuple(r[k] for k in key) for r in rows_b}, tm.name
            if "account_id" in table.c:
                assert {r["account_id"] for r in rows_a} == {a["id"]}, tm.name
        # Through the parent: the lines of A's invoices, and only those.
        lines_a = conn.execute(data_map.subject_rows("invoice_lines", a["id"])).mappings().all()
        invoices_a = {r.id for r in conn.execute(data_map.subject_rows("invoices", a["id"]))}
        assert lines_a and {r["invoice_id"] for r in lines_a} <= invoices_a


def test_subject_rows_by_pseudonym(env, engine):
    from shared.platform.pseudonym import pseudonymise

    now = dt.datetime(2026, 7, 1, tzinfo=UTC)
    with engine.begin() as conn:
        for seq, subject in enumerate(("acc-a", "acc-b", "acc-a"), start=1):
            conn.execute(
                schema.audit_log.insert(),
                {
                    "seq": seq,
                    "entry_id": f"e{seq}",
                    "occurred_at": now,
                    "actor": "test",
                    "action": "probe",
                    "subject_pseudonym": pseudonymise(subject, purpose="subject"),
                    "outcome": "ok",
                    "prev_hash": "0" * 64,
                    "hash": f"{seq:064d}",
                },
            )
        assert [r.seq for r in conn.execute(data_map.subject_rows("audit_log", "acc-a"))] == [1, 3]
    with pytest.raises(ValueError):
        data_map.subject_rows("saga_steps", "acc-a")


def test_erasure_update_of_a_retained_log_line(env):
    from shared.platform.pseudonym import pseudonymise

    row = {
        "id": 7,
        "account_id": "acc-1",
        "subject_pseudonym": None,
        "occurred_at": dt.datetime(2026, 1, 2, tzinfo=UTC),
        "event": "login_succeeded",
        "ip_address": "203.0.113.9",
        "user_agent": "Firefox",
    }
    assert data_map.erasure_update("connection_logs", row) == {
        "account_id": None,
        "subject_pseudonym": pseudonymise("acc-1", purpose="subject"),
        "user_agent": None,
    }
    assert data_map.table_map("connection_logs").strategy("ip_address").outcome == "retained"
    retain = data_map.table_map("invoices").strategy("buyer_name")
    assert retain.legal_reference == "Code de commerce, art. L123-22"
    assert retain.legal_basis.gdpr_article == "Art. 6.1.c"
    with pytest.raises(ValueError):
        data_map.erasure_update("clients", {"id": "c1"})


def test_retained_until():
    invoices = data_map.table_map("invoices")
    assert invoices.retained_until({"issue_date": dt.date(2026, 3, 31)}) == dt.date(2036, 3, 31)
    payments = data_map.table_map("payment_records")
    paid = dt.datetime(2026, 1, 31, tzinfo=UTC)
    closed = dt.datetime(2026, 3, 15, tzinfo=UTC)
    base = {"transaction_at": paid, "dispute_opened_at": None, "disputed_until": None}
    assert payments.retained_until(base) == dt.datetime(2032, 2, 29, tzinfo=UTC)
    assert payments.retained_until({**base, "dispute_opened_at": paid}) is None  # open dispute: clock held
    assert payments.retained_until({**base, "dispute_opened_at": paid, "disputed_until": closed}) == dt.datetime(
        2032, 4, 15, tzinfo=UTC
    )
