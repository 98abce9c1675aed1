"""rectification: pending changes of address, confirmed by a code mailed to the new address (issue 13)

Revision ID: 0012_rectification
Revises: 0011_legal_holds
"""

import sqlalchemy as sa
from alembic import op

import shared.ports.db

revision = "0012_rectification"
down_revision = "0011_legal_holds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_changes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("new_email", sa.String(length=320), nullable=False),
        sa.Column("previous_email", sa.String(length=320), nullable=True),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("confirmed_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_email_changes_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_changes")),
    )
    op.create_index(op.f("ix_email_changes_account_id"), "email_changes", ["account_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_email_changes_account_id"), table_name="email_changes")
    op.drop_table("email_changes")
