"""retention: inactivity notices, and log tables partitioned by month on PostgreSQL (issue 6)

On PostgreSQL `connection_logs` and `access_logs` become tables partitioned by RANGE
(occurred_at), one partition per month in the schema `log_partitions` plus a default
partition, so that log-rotation drops a whole expired month instead of deleting its
rows. The column set is unchanged; the primary key becomes (id, occurred_at), as
PostgreSQL requires the partition key in it. SQLite keeps its plain tables.

Revision ID: 0006_retention
Revises: 0001_foundation
"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

import shared.ports.db
from shared.platform.clock import add_months
from shared.retention.log_rotation import LOG_TABLES, MONTHS_AHEAD, PARTITION_SCHEMA, ensure_partitions

revision = "0006_retention"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inactivity_notices",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("last_activity_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("erase_after", sa.Date(), nullable=False),
        sa.Column("warned_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("warned_offset_days", sa.Integer(), nullable=False),
        sa.Column("next_action_on", sa.Date(), nullable=False),
        sa.Column("erasure_request_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_inactivity_notices_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_inactivity_notices")),
    )
    op.create_index(op.f("ix_inactivity_notices_next_action_on"), "inactivity_notices", ["next_action_on"], unique=False)
    op.create_index("ix_accounts_last_activity_at_id", "accounts", ["last_activity_at", "id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {PARTITION_SCHEMA}")
        for table in LOG_TABLES:
            _partition(table)


def _partition(table: str) -> None:
    old = f"{table}_unpartitioned"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT pk_{table} TO pk_{old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT fk_{table}_account_id_accounts TO fk_{old}_account_id")
    op.execute(f"ALTER INDEX ix_{table}_occurred_at RENAME TO ix_{old}_occurred_at")
    op.execute(f"ALTER INDEX ix_{table}_account_id_occurred_at RENAME TO ix_{old}_account_id_occurred_at")
    # Same columns, same order, same id sequence as default.
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at)")
    op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {table}.id")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id, occurred_at)")
    op.execute(
        f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_account_id_accounts FOREIGN KEY (account_id) "
        "REFERENCES accounts (id) ON DELETE SET NULL"
    )
    op.execute(f"CREATE INDEX ix_{table}_occurred_at ON {table} (occurred_at)")
    op.execute(f"CREATE INDEX ix_{table}_account_id_occurred_at ON {table} (account_id, occurred_at)")
    op.execute(f"CREATE TABLE {PARTITION_SCHEMA}.{table}_default PARTITION OF {table} DEFAULT")
    bind = op.get_bind()
    oldest = bind.execute(sa.text(f"SELECT min(occurred_at) FROM {old}")).scalar()
    today = dt.datetime.now(dt.timezone.utc).date()
    first = min(oldest.astimezone(dt.timezone.utc).date(), today) if oldest else today
    ensure_partitions(bind, table, first, add_months(today, MONTHS_AHEAD))
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")
    op.execute(f"DROP TABLE {old}")


def _unpartition(table: str) -> None:
    plain = f"{table}_plain"
    op.execute(f"CREATE TABLE {plain} (LIKE {table} INCLUDING DEFAULTS)")
    op.execute(f"INSERT INTO {plain} SELECT * FROM {table}")
    op.execute(f"ALTER SEQUENCE {table}_id_seq OWNED BY {plain}.id")
    op.execute(f"DROP TABLE {table}")  # and its partitions
    op.execute(f"ALTER TABLE {plain} RENAME TO {table}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY (id)")
    op.execute(
        f"ALTER TABLE {table} ADD CONSTRAINT fk_{table}_account_id_accounts FOREIGN KEY (account_id) "
        "REFERENCES accounts (id) ON DELETE SET NULL"
    )
    op.execute(f"CREATE INDEX ix_{table}_occurred_at ON {table} (occurred_at)")
    op.execute(f"CREATE INDEX ix_{table}_account_id_occurred_at ON {table} (account_id, occurred_at)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in LOG_TABLES:
            _unpartition(table)
        op.execute(f"DROP SCHEMA IF EXISTS {PARTITION_SCHEMA}")
    op.drop_index("ix_accounts_last_activity_at_id", table_name="accounts")
    op.drop_index(op.f("ix_inactivity_notices_next_action_on"), table_name="inactivity_notices")
    op.drop_table("inactivity_notices")
