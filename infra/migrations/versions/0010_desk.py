"""The DPO desk: requests about people without an account, notices sent once, the due-date and timeline indexes.

Revision ID: 0010_desk
Revises: 0009_sealed_secrets
"""

import sqlalchemy as sa
from alembic import op

from shared.ports.db import UtcDateTime

revision = "0010_desk"
down_revision = "0009_sealed_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dsr_requests") as batch:
        batch.add_column(sa.Column("subject_identifiers", sa.Text()))
    op.create_index("ix_dsr_requests_state_due_at", "dsr_requests", ["state", "due_at"])
    op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"])
    op.create_table(
        "dsr_notices",
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("notice", sa.String(40), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=False),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["dsr_requests.id"], name="fk_dsr_notices_request_id_dsr_requests", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("request_id", "notice", name="pk_dsr_notices"),
    )


def downgrade() -> None:
    op.drop_table("dsr_notices")
    op.drop_index("ix_audit_log_request_id", table_name="audit_log")
    op.drop_index("ix_dsr_requests_state_due_at", table_name="dsr_requests")
    with op.batch_alter_table("dsr_requests") as batch:
        batch.drop_column("subject_identifiers")
