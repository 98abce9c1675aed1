"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local server, database
`test`). Each xdist worker gets its own database, migrated once; each test starts
from empty tables. With REQUIRE_POSTGRES=1 (set by CI) an unreachable server is
a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
import sqlalchemy as sa

from shared.platform import config as config_module
from shared.ports.db import dispose_engines, migrate, normalise_url

TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DEV_TOKEN_KEY = "test-dev-token-key-0123456789abcdef"


def _reset_process_state() -> None:
    config_module.reset_settings()
    try:
        from shared.ports.backends import reset_backends
    except ImportError:  # pragma: no cover - during bootstrap only
        pass
    else:
        reset_backends()
    dispose_engines()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    migrate(f"sqlite:///{path}")
    dispose_engines()
    return str(path)


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
    yield url
    dispose_engines()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            )
        ]
        if names:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A migrated, empty database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "privacy.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database")
        _truncate_postgres(url)
        yield url
    dispose_engines()


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
