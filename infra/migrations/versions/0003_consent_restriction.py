"""consent: restriction (Art. 18) and objection (Art. 21) flags

Revision ID: 0003_consent_restriction
Revises: 0001_foundation
"""
from alembic import op
import sqlalchemy as sa
import shared.ports.db


revision = "0003_consent_restriction"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "processing_restrictions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("reason_code", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("set_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("lift_notified_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("lifted_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=64), nullable=True),
        sa.Column("lift_reason_code", sa.String(length=40), nullable=True),
        sa.Column("lift_request_id", sa.String(length=36), nullable=True),
        sa.CheckConstraint(
            "kind IN ('restriction', 'objection_direct_marketing', 'objection_analytics')",
            name=op.f("ck_processing_restrictions_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"],
            name=op.f("fk_processing_restrictions_account_id_accounts"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processing_restrictions")),
    )
    op.create_index(
        op.f("ix_processing_restrictions_account_id"), "processing_restrictions", ["account_id"], unique=False
    )
    op.create_index(
        "uq_processing_restrictions_in_force",
        "processing_restrictions",
        ["account_id", "kind"],
        unique=True,
        postgresql_where=sa.text("lifted_at IS NULL"),
        sqlite_where=sa.text("lifted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_processing_restrictions_in_force", table_name="processing_restrictions")
    op.drop_index(op.f("ix_processing_restrictions_account_id"), table_name="processing_restrictions")
    op.drop_table("processing_restrictions")
