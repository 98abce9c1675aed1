"""Database port: SQLAlchemy 2 Core on PostgreSQL (psycopg 3) or an SQLite file.

Timestamps are stored in UTC and always come back timezone-aware, whatever the
backend (SQLite has no time zones: `UtcDateTime` normalises on the way in and out).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, Engine, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from shared.platform.clock import UTC, utcnow  # noqa: F401  (re-exported: the tables and ports use them)
from shared.platform.config import get_settings
from shared.platform.health import register_health_check
from shared.platform.logs import get_logger

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "infra" / "migrations"


class UtcDateTime(TypeDecorator):
    """A DateTime that refuses naive values and returns aware UTC datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def normalise_url(url: str) -> str:
    """Accept plain postgres URLs and route them to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # A deleted or overwritten row is zeroed in the file, not left in a free page.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def purge_deleted(engine: Engine, tables: Iterable[str] = ()) -> bool:
    """After an erasure batch: leave no erased value where the database keeps old copies.

    SQLite (with `secure_delete` on every connection): copy the WAL into the file and
    truncate it (`wal_checkpoint(TRUNCATE)`), so the old pages it held are gone.
    PostgreSQL: `VACUUM` the touched tables, so their dead tuples are reclaimed now rather
    than at autovacuum's pace (VACUUM runs outside any transaction: an AUTOCOMMIT connection).
    The WAL segments and backups PostgreSQL already wrote age out on their own schedule (README).
    Best effort: the erasure is committed already; a failure is logged and the next batch
    (or autovacuum) catches up. Returns whether it ran.
    """
    try:
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            return True
        names = sorted(set(tables))
        if engine.dialect.name != "postgresql" or not names:
            return False
        quote = engine.dialect.identifier_preparer.quote
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM " + ", ".join(quote(name) for name in names))
        return True
    except SQLAlchemyError as exc:
        get_logger().warning("purging deleted rows failed", extra={"error": type(exc).__name__})
        return False


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # One request at a time per function instance: a small pool is plenty.
    return create_engine(
        url,
        pool_size=2,
        max_overflow=2,
        pool_pre_ping=True,
        connect_args={"options": "-c timezone=UTC"},
    )


_engine_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def get_engine(url: str | None = None) -> Engine:
    """The engine for `url`, or for the configured database; created once per process."""
    if url is None:
        url = get_settings().effective_database_url
    url = normalise_url(url)
    with _engine_lock:
        if url not in _engines:
            _engines[url] = make_engine(url)
        return _engines[url]


def dispose_engines(*, keep: Collection[str] = ()) -> None:
    """Closes the engines' pooled connections and forgets them, but those whose URL is in `keep`."""
    with _engine_lock:
        for url, engine in list(_engines.items()):
            if url not in keep:
                engine.dispose()
                del _engines[url]


def alembic_config(url: str) -> Any:
    from alembic.config import Config  # deferred: Alembic is local-only, never in the function package

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", alembic_url(url))
    return cfg


def alembic_url(url: str) -> str:
    """The URL as an Alembic option: normalised, and `%` escaped for the ini file's interpolation."""
    return normalise_url(url).replace("%", "%%")


def migrate(url: str | None = None, revision: str = "heads") -> None:
    """Bring the schema up to date (every branch head), on SQLite or PostgreSQL."""
    from alembic import command  # deferred: Alembic is local-only, never in the function package

    if url is None:
        url = get_settings().effective_database_url
    command.upgrade(alembic_config(url), revision)


def dialect_insert(conn: Connection, table: Table) -> Any:
    """An INSERT with ON CONFLICT support (`on_conflict_do_nothing/do_update`) on PostgreSQL and SQLite."""

    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def serialise_writers(conn: Connection, lock_key: int, table: Table) -> None:
    """Holds, until the transaction ends, the lock that makes the writers of `table` that call this run one at a
    time, so that what one reads before writing cannot be stale: PostgreSQL takes the transaction-level advisory
    lock `lock_key`; SQLite, its database write lock, with a write to `table` that touches nothing."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
    else:
        conn.execute(text(f"DELETE FROM {table.name} WHERE 1 = 0"))  # our own table's name, never input


def _database_answers() -> None:
    """`/healthz`'s database check: the configured database answers a `SELECT 1`."""
    with get_engine().connect() as conn:
        conn.exec_driver_sql("SELECT 1")


# Every function that uses the database imports this module at load: its /healthz then checks the database.
register_health_check("database", _database_answers)
