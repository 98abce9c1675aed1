"""One head again: the four branches grown from 0001 meet here (no schema change).

Revision ID: 0007_one_head
Revises: 0002_stripe_webhook, 0003_consent_restriction, 0005_erasure, 0006_retention
"""

revision = "0007_one_head"
down_revision = ("0002_stripe_webhook", "0003_consent_restriction", "0005_erasure", "0006_retention")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
