"""DPO console: sessions opened with a DPO credential, and failed sign-ins for rate limiting (issue 16).

Revision ID: 0016_console_sessions
Revises: 0015_subject_search
"""

import sqlalchemy as sa
from alembic import op

import shared.ports.db

revision = "0016_console_sessions"
down_revision = "0015_subject_search"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("credential_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ended_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["credential_id"], ["dpo_credentials.id"],
            name=op.f("fk_console_sessions_credential_id_dpo_credentials"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_sessions_token_hash")),
    )
    op.create_index(op.f("ix_console_sessions_credential_id"), "console_sessions", ["credential_id"], unique=False)
    op.create_index(op.f("ix_console_sessions_last_seen_at"), "console_sessions", ["last_seen_at"], unique=False)
    op.create_table(
        "console_sign_in_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("attempted_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sign_in_failures")),
    )
    op.create_index(
        op.f("ix_console_sign_in_failures_attempted_at"), "console_sign_in_failures", ["attempted_at"], unique=False
    )
    op.create_index(
        "ix_console_sign_in_failures_source_attempted_at", "console_sign_in_failures", ["source", "attempted_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("console_sign_in_failures")
    op.drop_table("console_sessions")
