"""Alembic environment: runs the same migrations on SQLite and PostgreSQL."""

from alembic import context

from shared.platform.config import get_settings
from shared.ports.db import alembic_url, make_engine
from shared.ports.tables import metadata

config = context.config
# alembic.ini names no database: like the functions, take DATABASE_URL (or the embedded default).
if not config.get_main_option("sqlalchemy.url"):
    config.set_main_option("sqlalchemy.url", alembic_url(get_settings().effective_database_url))


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
