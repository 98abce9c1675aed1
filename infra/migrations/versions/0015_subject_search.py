"""subject search indexes and prospect suppressions (issue 12, the DPO desk)

The subject search (shared.desk.search) compares identifiers case-folded, one set-based query
per table: each comparison gets the index of its exact expression (lower(email), phone, SIRET,
lower(name)...), so a search is a handful of index lookups whatever the size of the tables.
`prospect_suppressions` holds objections to prospect marketing as keyed pseudonyms.

Revision ID: 0015_subject_search
Revises: 0014_li_objections
"""

import sqlalchemy as sa
from alembic import op

import shared.ports.db

revision = "0015_subject_search"
down_revision = "0014_li_objections"
branch_labels = None
depends_on = None

# (index name, table, expression): as in shared/ports/tables.py.
INDEXES = (
    ("ix_accounts_lower_email", "accounts", "lower(email)"),
    ("ix_accounts_phone", "accounts", "phone"),
    ("ix_accounts_lower_first_name_last_name", "accounts", "lower(first_name || ' ' || last_name)"),
    ("ix_companies_siret", "companies", "siret"),
    ("ix_clients_lower_email", "clients", "lower(email)"),
    ("ix_clients_phone", "clients", "phone"),
    ("ix_clients_siret", "clients", "siret"),
    ("ix_clients_lower_name", "clients", "lower(name)"),
    ("ix_clients_lower_contact_name", "clients", "lower(contact_name)"),
    ("ix_prospects_lower_email", "prospects", "lower(email)"),
    ("ix_prospects_phone", "prospects", "phone"),
    ("ix_prospects_lower_name", "prospects", "lower(name)"),
    ("ix_invoices_lower_buyer_name", "invoices", "lower(buyer_name)"),
    ("ix_invoices_seller_siret", "invoices", "seller_siret"),
)


def upgrade() -> None:
    op.create_table(
        "prospect_suppressions",
        sa.Column("pseudonym", sa.String(length=64), nullable=False),
        sa.Column("identifier_kind", sa.String(length=16), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("suppressed_at", shared.ports.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("pseudonym", name=op.f("pk_prospect_suppressions")),
    )
    for name, table, expression in INDEXES:
        column = expression if expression.isidentifier() else None
        op.create_index(name, table, [column or sa.text(expression)], unique=False)


def downgrade() -> None:
    for name, table, _expression in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table("prospect_suppressions")
