"""The migrations the standard way: `alembic upgrade head` with the repository's alembic.ini.

The chain has one head, and it goes up, down to base and up again on SQLite and PostgreSQL,
taking the database from DATABASE_URL as the functions do (alembic.ini names none).
"""

from __future__ import annotations

import pathlib

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _config() -> Config:
    return Config(str(ROOT / "alembic.ini"))


def test_the_chain_has_one_head():
    assert len(ScriptDirectory.from_config(_config()).get_heads()) == 1


def test_upgrade_head_down_to_base_and_up_again(env):
    from shared.ports.db import get_engine

    config = _config()
    command.upgrade(config, "head")
    head = ScriptDirectory.from_config(config).get_current_head()
    tables_at_head = set(sa.inspect(get_engine()).get_table_names())
    assert {"accounts", "dsr_requests", "audit_log"} <= tables_at_head

    command.downgrade(config, "base")
    get_engine().dispose()
    assert set(sa.inspect(get_engine()).get_table_names()) <= {"alembic_version"}

    command.upgrade(config, "head")
    get_engine().dispose()
    assert set(sa.inspect(get_engine()).get_table_names()) == tables_at_head
    with get_engine().connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == head
