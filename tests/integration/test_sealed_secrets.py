"""TOTP secrets sealed at rest (issue 14, section 2; policy 7.1), on SQLite and PostgreSQL.

What must hold: `accounts.totp_secret` holds only `v1:<key id>:<ciphertext>` (a raw read never shows the
base32 seed), step-up with TOTP still works, an old key id still opens after a rotation and
`privacy-functions secrets reseal` moves every value to the new key, a ciphertext copied to another
account does not open, migration 0009 seals a clear value left by earlier revisions (and its
downgrade opens it again), and no log line carries the seed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import uuid
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from alembic import command

from shared.identity import client as auth
from shared.local import cli
from shared.local.demo import create_account
from shared.platform import config as config_module
from shared.platform.sealing import SealingError
from shared.ports.db import alembic_config, dispose_engines, migrate, normalise_url
from shared.ports.tables import accounts
from tests.conftest import TEST_POSTGRES_URL, drop_database_later

T0 = dt.datetime(2027, 5, 10, 9, 0, tzinfo=dt.UTC)
# A recognisable base32 seed: it must never be found in clear in the database nor in a log.
CANARY_SEED = "CANARYTOTPSEEDISSUEFOURTEENQZXWV"
OTHER_SEED = "SECONDCANARYSEEDFORACOPYTESTQQQQ"
KEY_1 = "k1:" + base64.b64encode(bytes([1]) * 32).decode()
KEY_2 = "k2:" + base64.b64encode(bytes([2]) * 32).decode()


@pytest.fixture(autouse=True)
def _forget_keys():
    yield
    config_module.reset_settings()  # no cached SECRETS_KEYS outlives a test


def use_keys(monkeypatch, value: str) -> None:
    monkeypatch.setenv("SECRETS_KEYS", value)
    config_module.reset_settings()


def stored(engine, account_id: str) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT totp_secret FROM accounts WHERE id = :id"), {"id": account_id}).scalar_one()


def step_up(engine, account_id: str, seed: str, *, now=T0) -> str:
    code = pyotp.TOTP(seed).at(now)
    return auth.require_step_up(engine, account_id, {"X-Verification-Code": code}, action="export", now=now)


def sqlite_bytes(url: str) -> bytes:
    path = Path(url.split("///", 1)[1])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def test_the_column_holds_ciphertext_only_and_step_up_still_works(env, engine, db_url, caplog):
    caplog.set_level(logging.DEBUG)
    account = create_account(engine, totp_secret=CANARY_SEED)
    assert account["totp_secret"] == CANARY_SEED  # the caller (demo, tests) gets it in clear

    value = stored(engine, account["id"])
    assert value.startswith("v1:dev:") and CANARY_SEED not in value and len(value) <= 255
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM accounts WHERE id = :id"), {"id": account["id"]}).one()
    assert not [column for column in row if isinstance(column, str) and CANARY_SEED in column]
    assert step_up(engine, account["id"], CANARY_SEED) == "totp"
    if db_url.startswith("sqlite"):
        assert CANARY_SEED.encode() not in sqlite_bytes(db_url)  # nor in the file or its WAL
    assert CANARY_SEED not in caplog.text


def test_two_seals_of_one_seed_differ(env, engine):
    first = create_account(engine, totp_secret=CANARY_SEED)
    second = create_account(engine, totp_secret=CANARY_SEED)
    assert stored(engine, first["id"]) != stored(engine, second["id"])


def test_a_ciphertext_copied_to_another_account_does_not_open(env, engine, caplog):
    victim = create_account(engine, totp_secret=CANARY_SEED)
    attacker = create_account(engine, totp_secret=OTHER_SEED)
    with engine.begin() as conn:
        conn.execute(
            sa.update(accounts).where(accounts.c.id == attacker["id"]).values(totp_secret=stored(engine, victim["id"]))
        )
    with pytest.raises(SealingError) as error:
        step_up(engine, attacker["id"], CANARY_SEED)
    assert attacker["id"] in str(error.value) and CANARY_SEED not in str(error.value)
    with pytest.raises(SealingError):
        step_up(engine, attacker["id"], OTHER_SEED)
    assert step_up(engine, victim["id"], CANARY_SEED) == "totp"
    assert CANARY_SEED not in caplog.text


def test_rotation_old_key_id_still_opens_and_reseal_moves_to_the_new_key(env, engine, monkeypatch, capsys):
    use_keys(monkeypatch, KEY_1)
    account = create_account(engine, totp_secret=CANARY_SEED)
    plain = create_account(engine)  # no 2FA: nothing to seal
    assert stored(engine, account["id"]).startswith("v1:k1:")

    use_keys(monkeypatch, f"{KEY_2},{KEY_1}")  # the new key first: it seals, k1 still opens
    assert step_up(engine, account["id"], CANARY_SEED) == "totp"
    assert stored(engine, account["id"]).startswith("v1:k1:")  # reading changes nothing

    assert cli.main(["secrets", "reseal"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "totp_secrets": {"key_id": "k2", "checked": 1, "resealed": 1},
        "subject_identifiers": {"key_id": "k2", "checked": 0, "resealed": 0},
    }
    assert stored(engine, account["id"]).startswith("v1:k2:")
    assert stored(engine, plain["id"]) is None
    assert auth.reseal_totp_secrets(engine)["resealed"] == 0  # idempotent

    use_keys(monkeypatch, KEY_2)  # k1 retired
    later = T0 + dt.timedelta(minutes=5)
    assert step_up(engine, account["id"], CANARY_SEED, now=later) == "totp"


def test_a_retired_key_id_is_named_when_a_value_still_needs_it(env, engine, monkeypatch):
    use_keys(monkeypatch, KEY_1)
    account = create_account(engine, totp_secret=CANARY_SEED)
    use_keys(monkeypatch, KEY_2)  # k1 dropped before the re-seal: refused, naming the key id
    with pytest.raises(SealingError, match="'k1'"):
        step_up(engine, account["id"], CANARY_SEED)


def test_a_tampered_ciphertext_does_not_open(env, engine):
    account = create_account(engine, totp_secret=CANARY_SEED)
    value = stored(engine, account["id"])
    head, data = value.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(data))
    raw[-1] ^= 1
    with engine.begin() as conn:
        tampered = f"{head}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
        conn.execute(sa.update(accounts).where(accounts.c.id == account["id"]).values(totp_secret=tampered))
    with pytest.raises(SealingError):
        step_up(engine, account["id"], CANARY_SEED)


# --- Migration 0009_sealed_secrets ------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path, worker_id):
    """An empty database (no revision applied), on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        dispose_engines()
        return
    admin_url = normalise_url(TEST_POSTGRES_URL)
    name = f"pf_sealed_{worker_id}_{uuid.uuid4().hex[:8]}".replace("-", "_")
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip("PostgreSQL not reachable")
    yield admin_url.rsplit("/", 1)[0] + "/" + name
    dispose_engines()
    admin.dispose()
    drop_database_later(admin_url, name)


def test_migration_seals_an_existing_clear_secret_and_downgrade_opens_it(fresh_url, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    use_keys(monkeypatch, KEY_1)
    migrate(fresh_url, "0007_one_head")
    account_id, without_2fa = str(uuid.uuid4()), str(uuid.uuid4())
    engine = sa.create_engine(normalise_url(fresh_url))
    insert = sa.text(
        "INSERT INTO accounts (id, email, totp_secret, locale, status, created_at, last_activity_at)"
        " VALUES (:id, :email, :secret, 'fr', 'active', :at, :at)"
    )
    with engine.begin() as conn:
        conn.execute(insert, {"id": account_id, "email": "canary.totp@example.com", "secret": CANARY_SEED, "at": T0})
        conn.execute(insert, {"id": without_2fa, "email": "no.2fa@example.com", "secret": None, "at": T0})

    migrate(fresh_url, "0009_sealed_secrets")
    value = stored(engine, account_id)
    assert value.startswith("v1:k1:") and CANARY_SEED not in value
    assert stored(engine, without_2fa) is None
    if engine.dialect.name == "postgresql":
        width = sa.inspect(engine).get_columns("accounts")
        assert next(c for c in width if c["name"] == "totp_secret")["type"].length == 255
    assert auth.open_totp_secret(account_id, value) == CANARY_SEED
    command.downgrade(alembic_config(fresh_url), "-1")
    assert stored(engine, account_id) == CANARY_SEED
    assert CANARY_SEED not in caplog.text
    engine.dispose()
