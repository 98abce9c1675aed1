"""policy-change notices (policy 11): which version each account was told of, and its acknowledgement

Revision ID: 0013_policy_notices
Revises: 0012_rectification
"""
from alembic import op
import sqlalchemy as sa
import shared.ports.db


revision = "0013_policy_notices"
down_revision = "0012_rectification"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_notices",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("told_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("message_id", sa.String(length=100), nullable=True),
        sa.Column("acknowledged_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_policy_notices_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", "version", name=op.f("pk_policy_notices")),
    )
    op.create_index("ix_policy_notices_version_told_at", "policy_notices", ["version", "told_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_policy_notices_version_told_at", table_name="policy_notices")
    op.drop_table("policy_notices")
