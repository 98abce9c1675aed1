"""The audit chain is keyed: each entry stores the id of the AUDIT_KEYS key whose HMAC is its hash.

Existing entries keep key_id NULL: they are legacy (plain SHA-256) and verified as such; the
first append after them writes a keyed `audit.chain_rekeyed` entry pinning their head
(shared/records/audit/__init__.py). Nothing is re-chained: that would mean trusting them.

Revision ID: 0008_audit_keyed
Revises: 0007_one_head
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_audit_keyed"
down_revision = "0007_one_head"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("key_id", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("key_id")
