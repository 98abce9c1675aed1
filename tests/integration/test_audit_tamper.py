"""Someone who can write the database but holds no audit key cannot rewrite, forge, cut or empty the trail unseen.

Each attack below answered ok with the unkeyed SHA-256 chain: the chain is now HMAC-keyed
(AUDIT_KEYS, outside the database) and anchored by signed checkpoints under Object Lock.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
import sqlalchemy as sa

from shared.local import cli
from shared.platform.config import reset_settings
from shared.ports.backends import get_storage
from shared.ports.storage import ObjectRetained
from shared.ports.tables import audit_log
from shared.records import audit
from shared.records.audit import chain

CANARY_KEY_1 = base64.b64encode(b"canary-audit-key-one-0123456789ab").decode()
CANARY_KEY_2 = base64.b64encode(b"canary-audit-key-two-0123456789ab").decode()


def append(engine, n: int, action: str = "test.append") -> list[audit.AuditEntry]:
    written = []
    for i in range(n):
        with engine.begin() as conn:
            written.append(
                audit.record(conn, actor="system:test", action=action, outcome="succeeded", details={"index": i})
            )
    return written


def verify(engine) -> audit.VerifyResult:
    with engine.connect() as conn:
        return audit.verify_chain(conn)


def rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()


def plain_fields(row, **changes) -> dict:
    fields = {
        c: getattr(row, c)
        for c in (
            "seq",
            "entry_id",
            "occurred_at",
            "actor",
            "action",
            "request_id",
            "subject_pseudonym",
            "outcome",
            "details",
            "prev_hash",
        )
    }
    return fields | changes


def use_keys(monkeypatch, value: str) -> None:
    monkeypatch.setenv("AUDIT_KEYS", value)
    reset_settings()


def cli_verify(capsys) -> tuple[int, dict]:
    code = cli.main(["audit", "verify"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("key_id", ["keep", None])
def test_rewrite_recomputing_every_later_plain_hash_is_named(engine, capsys, key_id):
    append(engine, 5)
    stored = rows(engine)
    prev = stored[0].hash
    with engine.begin() as conn:
        for row in stored[1:]:
            changes = {"outcome": "failed"} if row.seq == 2 else {}
            digest = audit.entry_hash(**plain_fields(row, prev_hash=prev, **changes))
            conn.execute(
                sa.update(audit_log)
                .where(audit_log.c.seq == row.seq)
                .values(prev_hash=prev, hash=digest, key_id=row.key_id if key_id == "keep" else None, **changes)
            )
            prev = digest
    result = verify(engine)
    assert (result.ok, result.first_broken_seq, result.checked) == (False, 2, 1)
    assert result.problem == ("hash" if key_id == "keep" else "unkeyed")
    code, printed = cli_verify(capsys)
    assert code == 1 and printed["first_broken_seq"] == 2


@pytest.mark.parametrize("key_id, problem", [("dev", "hash"), ("forger", "unknown_key"), (None, "unkeyed")])
def test_forged_append_is_named(engine, key_id, problem):
    append(engine, 3)
    tail = rows(engine)[-1]
    fields = plain_fields(tail, seq=4, entry_id=str(uuid.uuid4()), action="erasure.completed", prev_hash=tail.hash)
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_log).values(**fields, hash=audit.entry_hash(**fields), key_id=key_id))
    result = verify(engine)
    assert (result.ok, result.first_broken_seq, result.problem, result.checked) == (False, 4, problem, 3)


def test_tail_truncation_after_a_checkpoint_is_named(engine, capsys):
    append(engine, 5)
    point = audit.checkpoint(engine)
    assert (point.seq, point.head_hash) == (5, rows(engine)[-1].hash)
    assert verify(engine).ok and verify(engine).checkpoints == 1
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_log).where(audit_log.c.seq >= 4))
    result = verify(engine)
    assert (result.ok, result.first_broken_seq, result.problem, result.checked) == (False, 4, "truncated", 3)
    assert "4..5" in result.reason
    code, printed = cli_verify(capsys)
    assert code == 1 and printed["problem"] == "truncated"


def test_deleting_every_entry_is_named(engine, capsys):
    append(engine, 3)
    audit.checkpoint(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(audit_log))
    result = verify(engine)
    assert (result.ok, result.problem, result.first_broken_seq) == (False, "emptied", 1)
    assert cli_verify(capsys)[0] == 1


def test_rewrite_by_a_key_holder_still_shows_against_an_earlier_checkpoint(engine):
    append(engine, 4)
    audit.checkpoint(engine)
    stored = rows(engine)
    key_id, key = chain.current_key()
    prev = stored[0].hash
    with engine.begin() as conn:
        for row in stored[1:]:
            changes = {"outcome": "failed"} if row.seq == 2 else {}
            digest = audit.entry_mac(key_id, key, **plain_fields(row, prev_hash=prev, **changes))
            conn.execute(
                sa.update(audit_log).where(audit_log.c.seq == row.seq).values(prev_hash=prev, hash=digest, **changes)
            )
            prev = digest
    result = verify(engine)
    assert (result.ok, result.first_broken_seq, result.problem) == (False, 4, "checkpoint_mismatch")


def test_a_checkpoint_with_a_bad_signature_is_reported(env, engine):
    append(engine, 2)
    point = audit.checkpoint(engine)
    doc = point.document() | {"seq": 1}
    get_storage().put(
        env.effective_audit_checkpoint_bucket,
        f"{env.audit_checkpoint_prefix}000000000001-forged.json",
        json.dumps(doc).encode(),
        content_type="application/json",
    )
    result = verify(engine)
    assert (result.ok, result.problem) == (False, "checkpoint_forged")


def test_key_rotation_verifies_each_entry_under_its_own_key_id(engine, monkeypatch):
    use_keys(monkeypatch, f"k2026:{CANARY_KEY_1}")
    append(engine, 2)
    audit.checkpoint(engine)
    use_keys(monkeypatch, f"k2027:{CANARY_KEY_2},k2026:{CANARY_KEY_1}")
    append(engine, 2)
    assert [r.key_id for r in rows(engine)] == ["k2026", "k2026", "k2027", "k2027"]
    result = verify(engine)
    assert (result.ok, result.checked, result.checkpoints) == (True, 4, 1)
    # Retiring the old key too early leaves its entries and checkpoint unverifiable: reported, never passed.
    use_keys(monkeypatch, f"k2027:{CANARY_KEY_2}")
    assert verify(engine).problem == "checkpoint_forged"


def test_legacy_entries_are_pinned_by_the_rekey_entry(engine):
    # Entries written before 0008_audit_keyed: plain SHA-256, key_id NULL.
    prev = audit.GENESIS_HASH
    with engine.begin() as conn:
        for seq in (1, 2):
            fields = dict(
                seq=seq,
                entry_id=str(uuid.uuid4()),
                occurred_at=dt.datetime(2026, 1, seq, tzinfo=dt.UTC),
                actor="system:test",
                action="test.legacy",
                request_id=None,
                subject_pseudonym=None,
                outcome="succeeded",
                details=None,
                prev_hash=prev,
            )
            prev = audit.entry_hash(**fields)
            conn.execute(sa.insert(audit_log).values(**fields, hash=prev, key_id=None))
    [entry] = append(engine, 1)
    stored = rows(engine)
    assert [(r.seq, r.action, r.key_id) for r in stored] == [
        (1, "test.legacy", None),
        (2, "test.legacy", None),
        (3, audit.REKEY_ACTION, "dev"),
        (4, "test.append", "dev"),
    ]
    assert stored[2].details["legacy_head_seq"] == 2 and entry.seq == 4
    assert verify(engine).ok
    # Rewriting a legacy entry (recomputing the legacy hashes) breaks the keyed link of the rekey entry.
    prev = stored[0].hash
    with engine.begin() as conn:
        fields = plain_fields(stored[1], outcome="failed")
        conn.execute(
            sa.update(audit_log).where(audit_log.c.seq == 2).values(outcome="failed", hash=audit.entry_hash(**fields))
        )
    result = verify(engine)
    assert (result.ok, result.first_broken_seq, result.problem) == (False, 3, "link")


def test_checkpoint_is_kept_locked_on_the_local_folder(env, engine):
    append(engine, 1)
    audit.checkpoint(engine)
    storage = get_storage()
    [info] = list(storage.list(env.effective_audit_checkpoint_bucket, env.audit_checkpoint_prefix))
    assert storage.head(env.effective_audit_checkpoint_bucket, info.key)["retain_until"] > dt.datetime.now(dt.UTC)
    with pytest.raises(ObjectRetained):
        storage.delete_many(env.effective_audit_checkpoint_bucket, [info.key])


def test_checkpoint_is_under_object_lock_compliance_on_s3(s3_env, engine, moto_endpoint):
    from tests.fakes.moto import raw_client

    append(engine, 2)
    point = audit.checkpoint(engine)
    bucket, prefix = s3_env.effective_audit_checkpoint_bucket, s3_env.audit_checkpoint_prefix
    [info] = list(get_storage().list(bucket, prefix))
    head = raw_client("s3", moto_endpoint).head_object(Bucket=bucket, Key=info.key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 4)
    with pytest.raises(ObjectRetained):
        get_storage().delete_many(bucket, [info.key], versions=True)
    assert (verify(engine).ok, verify(engine).checkpoints, point.seq) == (True, 1, 2)


def test_audit_time_is_the_server_clock_not_a_dpo_given_received_at(env, engine, monkeypatch):
    from shared.local.demo import create_account
    from shared.rights import export

    server_now = dt.datetime(2027, 3, 10, 9, 30, tzinfo=dt.UTC)
    monkeypatch.setattr(chain, "clock", lambda: server_now)
    account_id = create_account(engine, email="canary.audit@example.org")["id"]
    received_at = dt.datetime(2027, 3, 1, 8, 0, tzinfo=dt.UTC)  # the letter's arrival, given by the DPO
    record, _ = export.register_dpo_export(
        engine,
        actor="dpo",
        account_id=account_id,
        channel="email",
        kind="access",
        verification_method="signed_letter",
        received_at=received_at,
        now=server_now,
    )
    assert record.received_at == received_at
    with engine.connect() as conn:
        times = (
            conn.execute(sa.select(audit_log.c.occurred_at).where(audit_log.c.request_id == record.id)).scalars().all()
        )
    assert times and all(t == server_now for t in times)
    # A caller's `now` never becomes the audit time either.
    with engine.begin() as conn:
        entry = audit.record(conn, actor="system:test", action="test.clock", outcome="succeeded")
    assert entry.occurred_at == server_now


def test_an_erasure_run_ends_with_a_checkpoint(env, engine):
    from shared.local.demo import create_account
    from shared.rights import erasure

    account_id = create_account(engine, email="canary.erased@example.org")["id"]
    with engine.begin() as conn:
        record = erasure.register_erasure(conn, account_id, channel="client_area", actor="client")
    assert list(audit.load_checkpoints()) == []
    erasure.run_erasure(engine, record.id, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    points = [p for _, p in audit.load_checkpoints()]
    assert points and points[-1].seq == rows(engine)[-1].seq
    assert verify(engine).ok


def test_the_daily_enforce_retention_run_writes_a_checkpoint(env, engine):
    from shared.local.server import cron_event, invoke, load_manifest

    append(engine, 2)
    spec = load_manifest().functions["enforce-retention"]
    response = invoke(spec, cron_event(spec.schedules[0]))
    assert response["statusCode"] == 200
    points = [p for _, p in audit.load_checkpoints()]
    assert len(points) == 1 and points[0].seq == rows(engine)[-1].seq
    assert verify(engine).ok


@pytest.mark.parametrize(
    "value",
    [
        "nokey",
        "k1:not base64!",
        "k1:" + base64.b64encode(b"short").decode(),
        f"k1:{CANARY_KEY_1},k1:{CANARY_KEY_2}",
        f"K1:{CANARY_KEY_1}",
    ],
)
def test_bad_audit_keys_are_refused_without_echoing_a_key(value):
    from shared.platform.config import ConfigurationError, load_settings

    with pytest.raises(ConfigurationError) as error:
        load_settings({"AUDIT_KEYS": value})
    assert "AUDIT_KEYS" in str(error.value) and CANARY_KEY_1 not in str(error.value)


def test_production_requires_audit_keys():
    from shared.platform.config import ConfigurationError, load_settings

    with pytest.raises(ConfigurationError, match="AUDIT_KEYS"):
        load_settings({"PRIVACY_ENV": "production"})
