"""legal holds and the register of authority requests and disclosures (issue 13, policy 6.4)

Revision ID: 0011_legal_holds
Revises: 0010_desk
"""
from alembic import op
import sqlalchemy as sa
import shared.ports.db


revision = "0011_legal_holds"
down_revision = "0010_desk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authority_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("authority_kind", sa.String(length=32), nullable=False),
        sa.Column("authority_name", sa.String(length=200), nullable=False),
        sa.Column("reference", sa.String(length=120), nullable=False),
        sa.Column("legal_basis", sa.String(length=300), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("registered_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.String(length=64), nullable=False),
        sa.Column("last_activity_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "authority_kind IN ('tax_administration', 'court', 'police', 'other')",
            name=op.f("ck_authority_requests_authority_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authority_requests")),
    )
    op.create_index(op.f("ix_authority_requests_last_activity_at"), "authority_requests", ["last_activity_at"])
    op.create_table(
        "authority_disclosures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("prospect_id", sa.String(length=36), nullable=True),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("disclosed_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"], ["authority_requests.id"], ondelete="CASCADE",
            name=op.f("fk_authority_disclosures_request_id_authority_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authority_disclosures")),
    )
    op.create_index(op.f("ix_authority_disclosures_request_id"), "authority_disclosures", ["request_id"])
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=True),
        sa.Column("subject_pseudonym", sa.String(length=64), nullable=True),
        sa.Column("prospect_id", sa.String(length=36), nullable=True),
        sa.Column("authority_request_id", sa.String(length=36), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("placed_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("placed_by", sa.String(length=64), nullable=False),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("released_at", shared.ports.db.UtcDateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=64), nullable=True),
        sa.Column("release_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint("(account_id IS NULL) <> (prospect_id IS NULL)", name=op.f("ck_legal_holds_one_subject")),
        sa.ForeignKeyConstraint(
            ["authority_request_id"], ["authority_requests.id"], ondelete="RESTRICT",
            name=op.f("fk_legal_holds_authority_request_id_authority_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    for column in ("account_id", "subject_pseudonym", "prospect_id", "authority_request_id", "released_at"):
        op.create_index(op.f(f"ix_legal_holds_{column}"), "legal_holds", [column])
    op.create_table(
        "legal_hold_categories",
        sa.Column("hold_id", sa.String(length=36), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["legal_holds.id"], ondelete="CASCADE", name=op.f("fk_legal_hold_categories_hold_id_legal_holds"),
        ),
        sa.PrimaryKeyConstraint("hold_id", "category", name=op.f("pk_legal_hold_categories")),
    )
    op.create_index("ix_legal_hold_categories_category", "legal_hold_categories", ["category"])


def downgrade() -> None:
    op.drop_index("ix_legal_hold_categories_category", table_name="legal_hold_categories")
    op.drop_table("legal_hold_categories")
    for column in ("account_id", "subject_pseudonym", "prospect_id", "authority_request_id", "released_at"):
        op.drop_index(op.f(f"ix_legal_holds_{column}"), table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_index(op.f("ix_authority_disclosures_request_id"), table_name="authority_disclosures")
    op.drop_table("authority_disclosures")
    op.drop_index(op.f("ix_authority_requests_last_activity_at"), table_name="authority_requests")
    op.drop_table("authority_requests")
