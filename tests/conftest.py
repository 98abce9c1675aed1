"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local server, database
`test`). Each xdist worker gets its own database on each (PostgreSQL: migrated once,
emptied before each test; SQLite: one file, put back to a migrated template before
each test), under one URL whose engine serves every test. With REQUIRE_POSTGRES=1
(set by CI) an unreachable server is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.platform import config as config_module
from shared.ports.db import dispose_engines, migrate, normalise_url

TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEV_TOKEN_KEY = "test-dev-token-key-0123456789abcdef"


# The engines of the workers' PostgreSQL test databases outlive each test, as an engine outlives each request of
# a warm function: their pooled connections and compiled statements serve the next test (opening a connection,
# SQLAlchemy's first-connect queries and compiling every statement again cost each test a few milliseconds).
_KEPT_ENGINES: set[str] = set()


def _reset_process_state() -> None:
    config_module.reset_settings()
    try:
        from shared.ports.backends import reset_backends
    except ImportError:  # pragma: no cover - during bootstrap only
        pass
    else:
        reset_backends()
    dispose_engines(keep=_KEPT_ENGINES)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate(f"sqlite:///{path}")
    dispose_engines()
    return str(path)


_DROP_LATER = r"""
import sys, sqlalchemy as sa
admin = sa.create_engine(sys.argv[1], isolation_level="AUTOCOMMIT")
with admin.connect() as conn:
    conn.execute(sa.text('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % sys.argv[2]))
"""


def drop_database_later(admin_url: str, name: str) -> None:
    """DROP DATABASE in a detached process: on PostgreSQL 15 it waits for a checkpoint (seconds on a
    busy server), which no test needs to wait for. The names are unique to their test process."""
    subprocess.Popen(
        [sys.executable, "-c", _DROP_LATER, admin_url, name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture(scope="session")
def postgres_database(worker_id) -> str:
    """A database of this test process alone (xdist worker + pid), dropped at the end."""
    admin_url = normalise_url(TEST_POSTGRES_URL)
    name = f"pf_test_{worker_id}_{os.getpid()}".replace("-", "_")
    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip("PostgreSQL not reachable")
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    dispose_engines()
    _KEPT_ENGINES.add(normalise_url(url))
    yield url
    _KEPT_ENGINES.discard(normalise_url(url))
    dispose_engines()
    admin.dispose()
    drop_database_later(admin_url, name)


class _PostgresReset:
    """Empties a test database between tests, fast: one round trip finds the tables that hold rows,
    and only those are emptied (DELETE, children first, which costs far less than a TRUNCATE of every
    table), their sequences restarted as TRUNCATE ... RESTART IDENTITY would. One connection per session.

    Partitions (schema log_partitions) are emptied through their parent table."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.StaticPool)
        self._tables: list[str] = []
        self._sequences: dict[str, list[str]] = {}

    def _discover(self, conn: sa.Connection) -> None:
        from shared.ports.tables import metadata

        present = set(
            conn.execute(
                sa.text(
                    "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                    " AND c.relkind IN ('r', 'p') AND c.relname <> 'alembic_version' AND NOT c.relispartition"
                )
            ).scalars()
        )
        ordered = [t.name for t in reversed(metadata.sorted_tables) if t.name in present]
        self._tables = ordered + sorted(present - set(ordered))
        self._sequences = {}
        for table, sequence in conn.execute(
            sa.text(
                "SELECT t.relname, s.oid::regclass::text FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
                " JOIN pg_class t ON t.oid = d.refobjid WHERE t.relnamespace = 'public'::regnamespace"
            )
        ):
            self._sequences.setdefault(table, []).append(sequence)

    def __call__(self) -> None:
        with self.engine.begin() as conn:
            self._discover(conn)  # each time: a test may have added a table or a sequence
            probe = " UNION ALL ".join(
                f'SELECT {i} WHERE EXISTS (SELECT 1 FROM "{name}")' for i, name in enumerate(self._tables)
            )
            filled = [self._tables[i] for i in sorted(conn.execute(sa.text(probe)).scalars())]
            for name in filled:
                conn.execute(sa.text(f'DELETE FROM "{name}"'))
                for sequence in self._sequences.get(name, ()):
                    conn.execute(sa.text(f"ALTER SEQUENCE {sequence} RESTART"))

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres_reset(postgres_database):
    reset = _PostgresReset(postgres_database)
    yield reset
    reset.close()


class _SqliteReset:
    """One SQLite file per test process, put back to the migrated template before each test, under the same URL:
    its engine (and the statements it compiled) then serves every test, as PostgreSQL's does. The pooled
    connections are closed first; the template lands under a new inode (a connection a test left open keeps the
    old file), and the old file's WAL and shared memory go with it."""

    def __init__(self, template: str, path: Path) -> None:
        self.template, self.path = template, path
        self.url = f"sqlite:///{path}"

    def __call__(self) -> None:
        from shared.ports.db import get_engine

        if normalise_url(self.url) in _KEPT_ENGINES:
            get_engine(self.url).dispose()
        fresh = self.path.with_name(self.path.name + ".fresh")
        shutil.copyfile(self.template, fresh)
        for leftover in ("-wal", "-shm"):
            self.path.with_name(self.path.name + leftover).unlink(missing_ok=True)
        os.replace(fresh, self.path)


@pytest.fixture(scope="session")
def sqlite_reset(sqlite_template, tmp_path_factory):
    reset = _SqliteReset(sqlite_template, tmp_path_factory.mktemp("sqlite") / "privacy.db")
    _KEPT_ENGINES.add(normalise_url(reset.url))
    yield reset
    _KEPT_ENGINES.discard(normalise_url(reset.url))
    dispose_engines(keep=_KEPT_ENGINES)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """A migrated, empty database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        reset = request.getfixturevalue("sqlite_reset")
        reset()
        yield reset.url
    else:
        url = request.getfixturevalue("postgres_database")
        request.getfixturevalue("postgres_reset")()
        yield url
    dispose_engines(keep=_KEPT_ENGINES)


@pytest.fixture
def env(db_url, tmp_path, monkeypatch):
    """Embedded defaults under tmp_path, on the parametrised database; yields the settings."""
    for name in list(os.environ):
        if name in {f.alias for f in config_module.Settings.model_fields.values()}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PRIVACY_ENV", "test")
    monkeypatch.setenv("PRIVACY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DEV_TOKEN_KEY", DEV_TOKEN_KEY)
    monkeypatch.setenv("PSEUDONYM_KEY", "test-pseudonym-key")
    _reset_process_state()
    yield config_module.get_settings()
    _reset_process_state()


@pytest.fixture
def engine(env):
    from shared.ports.db import get_engine

    return get_engine()


@pytest.fixture(scope="session")
def worker_id(request) -> str:
    # pytest-xdist provides this fixture; keep a default for plain runs.
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


def new_id() -> str:
    return str(uuid.uuid4())


# Fakes of the external services (moto server for S3/SQS, Resend, Stripe).
pytest_plugins = ["tests.fakes.fixtures"]
