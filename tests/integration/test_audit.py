"""The audit trail: one unbroken hash chain, tamper evidence, and no personal data."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
import sqlalchemy as sa

from shared.platform.pseudonym import subject_pseudonym
from shared.ports.tables import audit_log
from shared.records import audit

T0 = dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC)


def append(engine, n: int, **kw) -> list[audit.AuditEntry]:
    entries = []
    for i in range(n):
        with engine.begin() as conn:
            entries.append(
                audit.record(
                    conn,
                    actor="system:test",
                    action="test.append",
                    outcome="succeeded",
                    details={"index": i, "when": (T0 + dt.timedelta(minutes=i)).isoformat()},
                    **kw,
                )
            )
    return entries


def verify(engine) -> audit.VerifyResult:
    with engine.connect() as conn:
        return audit.verify_chain(conn)


def test_entries_form_a_chain_from_the_genesis_hash(engine):
    entries = append(engine, 3)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == audit.GENESIS_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert verify(engine) == audit.VerifyResult(ok=True, checked=3, first_broken_seq=None, reason=None)


def test_empty_trail_verifies(engine):
    assert verify(engine) == audit.VerifyResult(ok=True, checked=0, first_broken_seq=None, reason=None)


def test_subject_is_stored_only_as_its_pseudonym(engine):
    account_id = str(uuid.uuid4())
    [entry] = append(engine, 1, subject=account_id, request_id=str(uuid.uuid4()))
    assert entry.subject_pseudonym == subject_pseudonym(account_id)
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_log)).one()
    assert account_id not in repr(tuple(row))


def test_pseudonyms_are_keyed_and_separated_by_purpose(env, monkeypatch):
    from shared.platform.config import reset_settings
    from shared.platform.pseudonym import pseudonymise

    value = str(uuid.uuid4())
    assert pseudonymise(value) == subject_pseudonym(value) == pseudonymise(value, purpose="subject")
    assert pseudonymise(value, purpose="ip") != pseudonymise(value)
    assert len(pseudonymise(value)) == 64 and value not in pseudonymise(value)
    before = pseudonymise(value)
    monkeypatch.setenv("PSEUDONYM_KEY", "another-key")
    reset_settings()
    assert pseudonymise(value) != before


def test_edited_entry_is_named(engine):
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(sa.update(audit_log).where(audit_log.c.seq == 3).values(details={"index": 99}))
    result = verify(engine)
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 3, 2)
    assert "hash" in result.reason


def test_rewritten_entry_with_recomputed_plain_hash_is_named(engine):
    # An attacker without the audit key can only recompute a plain SHA-256: the entry's HMAC fails.
    entries = append(engine, 4)
    forged = {k: v for k, v in entries[1].__dict__.items() if k not in ("hash", "key_id")} | {"outcome": "failed"}
    with engine.begin() as conn:
        conn.execute(
            sa.update(audit_log).where(audit_log.c.seq == 2).values(outcome="failed", hash=audit.entry_hash(**forged))
        )
    result = verify(engine)
    assert (result.ok, result.first_broken_seq, result.problem) == (False, 2, "hash")


def test_deleted_entry_is_named_by_its_successor(engine):
    append(engine, 5)
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq == 2))
    result = verify(engine)
    assert (result.ok, result.first_broken_seq) == (False, 3)


def test_deleted_first_entry_is_detected(engine):
    append(engine, 3)
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq == 1))
    assert verify(engine).first_broken_seq == 2


def test_reordered_entries_are_detected(engine):
    append(engine, 5)
    with engine.begin() as conn:
        for old, new in ((2, 1000), (4, 2), (1000, 4)):
            conn.execute(sa.update(audit_log).where(audit_log.c.seq == old).values(seq=new))
    result = verify(engine)
    assert (result.ok, result.first_broken_seq) == (False, 2)


def test_concurrent_appends_keep_one_chain(engine):
    threads, per_thread = 6, 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def writer(worker: int) -> None:
        barrier.wait()
        try:
            for i in range(per_thread):
                with engine.begin() as conn:
                    audit.record(
                        conn,
                        actor="system:test",
                        action="test.concurrent",
                        outcome="succeeded",
                        details={"worker": worker, "i": i},
                    )
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    assert errors == []
    result = verify(engine)
    assert result.ok and result.checked == threads * per_thread
    with engine.connect() as conn:
        seqs = conn.execute(sa.select(audit_log.c.seq).order_by(audit_log.c.seq)).scalars().all()
    assert seqs == list(range(1, threads * per_thread + 1))


@pytest.mark.parametrize(
    "details",
    [
        {"email": "x"},
        {"contact": {"phone_number": "x"}},
        {"client_ip": "x"},
        {"first_name": "x"},
        {"User-Agent": "x"},
        {"note": "written by jean.dupont@example.fr"},
        {"note": "call 06 12 34 56 78"},
        {"note": "+33612345678"},
        {"seen_from": "192.168.10.4"},
        {"seen_from": "2001:db8::42"},
        {"list": ["ok", "0033 6 12 34 56 78"]},
    ],
)
def test_personal_data_is_refused_and_nothing_is_written(engine, details):
    append(engine, 1)
    with pytest.raises(audit.PersonalDataRefused), engine.begin() as conn:
        audit.record(conn, actor="system:test", action="test.guard", outcome="succeeded", details=details)
    assert verify(engine).checked == 1


def test_non_personal_details_pass_the_guard(engine):
    details = {
        "kind": "erasure",
        "request": str(uuid.uuid4()),
        "pseudonym": subject_pseudonym(str(uuid.uuid4())),
        "at": "2027-01-31T10:00:00.123456Z",
        "object_key": f"exports/{uuid.uuid4()}/a1b2c3.zip",
        "counts": {"invoices": 12345678901, "rows": [1, 2, 3]},
        "policy_version": "1.1",
        "retained_until": "2037-12-31",
    }
    with engine.begin() as conn:
        entry = audit.record(
            conn, actor="dpo:" + str(uuid.uuid4()), action="test.ok", outcome="succeeded", details=details
        )
    assert entry.details == details
    assert verify(engine).ok


@pytest.mark.parametrize("actor", ["jean.dupont@example.fr", "Jean Dupont", ""])
def test_actor_must_be_a_role_label(engine, actor):
    with pytest.raises(ValueError), engine.begin() as conn:
        audit.record(conn, actor=actor, action="test.actor", outcome="succeeded")
