"""erasure: the erasure ledger, indexes on the foreign keys an erasure's deletes check (issue 4)

Revision ID: 0005_erasure
Revises: 0001_foundation
"""
from alembic import op
import sqlalchemy as sa
import shared.ports.db


revision = "0005_erasure"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erasure_ledger",
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("subject_pseudonym", sa.String(length=64), nullable=False),
        sa.Column("erased_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_erasure_ledger")),
    )
    with op.batch_alter_table("erasure_ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_erasure_ledger_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_erasure_ledger_erased_at"), ["erased_at"], unique=False)
    # Deleting a company, a client or a consent event makes the database look for the rows
    # pointing at it (ON DELETE SET NULL): without these indexes, a scan of the whole table.
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_company_id", ["company_id"], unique=False)
        batch_op.create_index("ix_invoices_client_id", ["client_id"], unique=False)
    with op.batch_alter_table("analytics_events", schema=None) as batch_op:
        batch_op.create_index("ix_analytics_events_consent_event_id", ["consent_event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("analytics_events", schema=None) as batch_op:
        batch_op.drop_index("ix_analytics_events_consent_event_id")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_client_id")
        batch_op.drop_index("ix_invoices_company_id")
    with op.batch_alter_table("erasure_ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_erasure_ledger_erased_at"))
        batch_op.drop_index(batch_op.f("ix_erasure_ledger_account_id"))
    op.drop_table("erasure_ledger")
