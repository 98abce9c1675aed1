"""objection to legitimate-interest processing (Art. 21(1), policy 3.3): four flag kinds, analytics_events.purpose

`processing_restrictions.kind` accepts an objection kind per purpose of policy 3.3;
`analytics_events.purpose` says under which purpose an event was collected (`analytics`, the
consent of 3.4, for every existing row; `service_improvement` and `usage_statistics`, legitimate
interest), so an objection deletes exactly the events of its purpose. Both tables are children
of `accounts`: SQLite's batch rebuild of them cascades nothing.

Revision ID: 0014_li_objections
Revises: 0013_policy_notices
"""
from alembic import op
import sqlalchemy as sa


revision = "0014_li_objections"
# Reserved with down_revision 0009_sealed_secrets; chained after 0013_policy_notices (same branch) to keep one head.
down_revision = "0013_policy_notices"
branch_labels = None
depends_on = None

_OLD_KINDS = "kind IN ('restriction', 'objection_direct_marketing', 'objection_analytics')"
_NEW_KINDS = (
    "kind IN ('restriction', 'objection_direct_marketing', 'objection_analytics', "
    "'objection_service_improvement', 'objection_usage_statistics', 'objection_platform_security', "
    "'objection_fraud_prevention')"
)
_PURPOSES = "purpose IN ('analytics', 'service_improvement', 'usage_statistics')"


def upgrade() -> None:
    with op.batch_alter_table("processing_restrictions") as batch:
        batch.drop_constraint(op.f("ck_processing_restrictions_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_processing_restrictions_kind"), sa.text(_NEW_KINDS))
    with op.batch_alter_table("analytics_events") as batch:
        batch.add_column(sa.Column("purpose", sa.String(length=32), nullable=False, server_default="analytics"))
        batch.create_check_constraint(op.f("ck_analytics_events_purpose"), sa.text(_PURPOSES))


def downgrade() -> None:
    # Objections to legitimate interest and the events collected under it have no place in the old schema.
    op.execute("DELETE FROM processing_restrictions WHERE kind NOT IN ('restriction', 'objection_direct_marketing', "
               "'objection_analytics')")
    op.execute("DELETE FROM analytics_events WHERE purpose <> 'analytics'")
    with op.batch_alter_table("analytics_events") as batch:
        batch.drop_constraint(op.f("ck_analytics_events_purpose"), type_="check")
        batch.drop_column("purpose")
    with op.batch_alter_table("processing_restrictions") as batch:
        batch.drop_constraint(op.f("ck_processing_restrictions_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_processing_restrictions_kind"), sa.text(_OLD_KINDS))
