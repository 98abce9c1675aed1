"""stripe webhook: received events, dispute and refund state of payment records

Revision ID: 0002_stripe_webhook
Revises: 0001_foundation
"""
from alembic import op
import sqlalchemy as sa
import shared.ports.db


revision = "0002_stripe_webhook"
down_revision = "0001_foundation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("api_version", sa.String(length=40), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("created", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
    )
    op.create_index("ix_stripe_events_object_id_type", "stripe_events", ["object_id", "type"], unique=False)
    op.create_index("ix_stripe_events_received_at", "stripe_events", ["received_at"], unique=False)

    op.add_column("payment_records", sa.Column("amount_refunded_cents", sa.BigInteger(), nullable=True))
    op.add_column("payment_records", sa.Column("dispute_status", sa.String(length=32), nullable=True))
    op.add_column(
        "payment_records", sa.Column("dispute_opened_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "payment_records", sa.Column("customer_deleted_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("payment_records") as batch_op:
        batch_op.drop_column("customer_deleted_at")
        batch_op.drop_column("dispute_opened_at")
        batch_op.drop_column("dispute_status")
        batch_op.drop_column("amount_refunded_cents")
    op.drop_index("ix_stripe_events_received_at", table_name="stripe_events")
    op.drop_index("ix_stripe_events_object_id_type", table_name="stripe_events")
    op.drop_table("stripe_events")
