"""Table definitions (SQLAlchemy Core), mirrored by the Alembic migrations in infra/migrations.

Two groups:
- the platform's reference schema: the personal data the policy speaks of
  (accounts, companies, invoices, clients, prospects, sessions, logs, consents,
  payments, analytics); every column is classified in `shared.policy.data_map`;
- the suite's own bookkeeping: requests, audit trail, verification, idempotency.
  It holds no personal data beyond account ids and keyed pseudonyms.

Ids are UUID strings so they travel unchanged through events, logs and exports.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ColumnClause,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    func,
    literal_column,
    text,
)

from shared.ports.db import UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)

# --- Platform reference schema (policy 2.1 to 2.4) ---------------------------------

accounts = Table(
    "accounts",
    metadata,
    Column("id", ID, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("phone", String(32)),
    Column("password_hash", String(100)),
    # Present only when 2FA is enabled: the base32 seed sealed (v1:<key id>:<data>, shared.platform.sealing).
    Column("totp_secret", String(255)),
    Column("locale", String(8), nullable=False, server_default="fr"),
    # active -> deactivated (erasure pending) -> erased
    Column("status", String(16), nullable=False, server_default="active"),
    Column("stripe_customer_id", String(64), unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    # Activity = a login or an API call by the account (policy 5, inactive accounts).
    Column("last_activity_at", UtcDateTime, nullable=False),
    CheckConstraint("status IN ('active', 'deactivated', 'erased')", name="status"),
)
Index("ix_accounts_last_activity_at", accounts.c.last_activity_at)

companies = Table(
    "companies",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("siret", String(14)),
    Column("siren", String(9)),
    Column("vat_number", String(20)),
    Column("address_line1", String(200)),
    Column("address_line2", String(200)),
    Column("postal_code", String(10)),
    Column("city", String(100)),
    Column("country", String(2), nullable=False, server_default="FR"),
    Column("created_at", UtcDateTime, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    # The user's own customers: third-party data in documents (policy 2.4).
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("contact_name", String(200)),
    Column("email", String(320)),
    Column("phone", String(32)),
    Column("address_line1", String(200)),
    Column("postal_code", String(10)),
    Column("city", String(100)),
    Column("country", String(2), nullable=False, server_default="FR"),
    Column("siret", String(14)),
    Column("vat_number", String(20)),
    Column("created_at", UtcDateTime, nullable=False),
)

invoices = Table(
    "invoices",
    metadata,
    # account_id becomes NULL when the account is erased: the invoice stays, in
    # restricted archive, for its 10 legal years (Code de commerce L123-22).
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="SET NULL"), index=True),
    Column("company_id", ID, ForeignKey("companies.id", ondelete="SET NULL")),
    Column("client_id", ID, ForeignKey("clients.id", ondelete="SET NULL")),
    Column("number", String(40), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date),
    Column("currency", String(3), nullable=False, server_default="EUR"),
    Column("total_excl_tax_cents", BigInteger, nullable=False),
    Column("total_tax_cents", BigInteger, nullable=False),
    Column("total_incl_tax_cents", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    # Seller and buyer as printed on the invoice: legally part of the document.
    Column("seller_name", String(200), nullable=False),
    Column("seller_siret", String(14)),
    Column("seller_vat_number", String(20)),
    Column("seller_address", Text),
    Column("buyer_name", String(200), nullable=False),
    Column("buyer_vat_number", String(20)),
    Column("buyer_address", Text),
    Column("pdf_object_key", String(300)),
    Column("transmitted_at", UtcDateTime),  # handed to SuperPDP (Factur-X)
    Column("archived_at", UtcDateTime),  # moved to restricted archive (account erased)
    Column("created_at", UtcDateTime, nullable=False),
)
Index("ix_invoices_issue_date", invoices.c.issue_date)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("id", ID, primary_key=True),
    Column("invoice_id", ID, ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("quantity", Numeric(12, 3), nullable=False),
    Column("unit_price_cents", BigInteger, nullable=False),
    Column("vat_rate", Numeric(5, 2), nullable=False),
    Column("total_excl_tax_cents", BigInteger, nullable=False),
)

prospects = Table(
    "prospects",
    metadata,
    # Non-clients: the platform's own prospects (account_id NULL) or an account's.
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), index=True),
    Column("email", String(320)),
    Column("name", String(200)),
    Column("company_name", String(200)),
    Column("phone", String(32)),
    Column("source", String(40)),
    # The retention clock: last contact initiated by the prospect (policy 5).
    Column("last_contact_at", UtcDateTime, nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("ip_address", String(45)),
    Column("user_agent", String(400)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("label", String(100)),
    Column("key_prefix", String(12), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
)

connection_logs = Table(
    "connection_logs",
    metadata,
    # account_id NULL + subject_pseudonym after erasure: the LCEN year runs on.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="SET NULL")),
    Column("subject_pseudonym", String(64)),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("event", String(32), nullable=False),  # login_succeeded, login_failed, logout, ...
    Column("ip_address", String(45)),
    Column("user_agent", String(400)),
)
Index("ix_connection_logs_account_id_occurred_at", connection_logs.c.account_id, connection_logs.c.occurred_at)
Index("ix_connection_logs_occurred_at", connection_logs.c.occurred_at)

access_logs = Table(
    "access_logs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="SET NULL")),
    Column("subject_pseudonym", String(64)),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String(400), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("ip_address", String(45)),
    Column("user_agent", String(400)),
)
Index("ix_access_logs_account_id_occurred_at", access_logs.c.account_id, access_logs.c.occurred_at)
Index("ix_access_logs_occurred_at", access_logs.c.occurred_at)

consent_events = Table(
    "consent_events",
    metadata,
    # Append-only ledger: the current consent is derived from it, never stored apart.
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", String(32), nullable=False),  # newsletter, analytics
    Column("action", String(16), nullable=False),  # given, withdrawn
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("channel", String(16), nullable=False),  # client_area, email_link, dpo, gpc
    Column("policy_version", String(16), nullable=False),
    Column("proof_ip_pseudonym", String(64)),  # keyed hash, never the raw IP
    Column("proof_user_agent", String(400)),
    CheckConstraint("action IN ('given', 'withdrawn')", name="action"),
)
Index(
    "ix_consent_events_account_id_purpose",
    consent_events.c.account_id,
    consent_events.c.purpose,
    consent_events.c.occurred_at,
)

analytics_events = Table(
    "analytics_events",
    metadata,
    # Collected under the `analytics` consent (deleted when it is withdrawn) or, for improvement and
    # statistics, the legitimate interest (deleted when the account objects).
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("name", String(64), nullable=False),
    Column("page", String(400)),
    Column("consent_event_id", ID, ForeignKey("consent_events.id", ondelete="SET NULL")),
    # Added by 0014_li_objections: `analytics` (consent, 3.4) or a legitimate-interest purpose (3.3)
    # an objection stops (`service_improvement`, `usage_statistics`).
    Column("purpose", String(32), nullable=False, server_default="analytics"),
    CheckConstraint("purpose IN ('analytics', 'service_improvement', 'usage_statistics')", name="purpose"),
)

payment_records = Table(
    "payment_records",
    metadata,
    # Mirrors of Stripe objects. Never card number, CVC or full expiry (policy 2.3).
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="SET NULL"), index=True),
    Column("subject_pseudonym", String(64)),
    Column("stripe_customer_id", String(64), index=True),
    Column("stripe_object_id", String(64), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),  # payment_intent, charge, invoice, subscription
    Column("amount_cents", BigInteger),
    Column("currency", String(3)),
    Column("status", String(32), nullable=False),
    Column("description", String(200)),
    Column("card_brand", String(20)),
    Column("card_last4", String(4)),
    # The retention clock starts at the transaction date (policy 5, 13 months + 5 years).
    Column("transaction_at", UtcDateTime, nullable=False, index=True),
    Column("stripe_updated_at", UtcDateTime),
    Column("disputed_until", UtcDateTime),
    Column("archived_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Added by 0002_stripe_webhook (shared/payment_data/stripe_events.py keeps them).
    Column("amount_refunded_cents", BigInteger),
    # An open dispute holds the record in the active base; `disputed_until` is when it closed.
    Column("dispute_status", String(32)),
    Column("dispute_opened_at", UtcDateTime),
    Column("customer_deleted_at", UtcDateTime),  # Stripe deleted the customer: the link is gone
)

# --- The suite's own bookkeeping -----------------------------------------------------

dsr_requests = Table(
    "dsr_requests",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, index=True),  # no FK: the request outlives the account
    Column("subject_pseudonym", String(64), nullable=False),
    Column("kind", String(24), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("extended_due_at", UtcDateTime),
    Column("extension_reason", Text),
    Column("state_changed_at", UtcDateTime, nullable=False),
    Column("closed_at", UtcDateTime),
    Column("reason", Text),  # why rejected or cancelled; never personal data
    Column("details", JSON),  # kind-specific, non-personal (e.g. export object key, receipt)
    Column("version", Integer, nullable=False, server_default="1"),
    # Who the request is about when no account is named: the identifiers the person gave,
    # sealed (shared.platform.sealing, bound to the request id); personal data, never logged.
    Column("subject_identifiers", Text),
)
Index("ix_dsr_requests_state_due_at", dsr_requests.c.state, dsr_requests.c.due_at)
# Notices sent about a request (extension, refusal, digest thresholds): each one once.
dsr_notices = Table(
    "dsr_notices",
    metadata,
    Column("request_id", ID, ForeignKey("dsr_requests.id", ondelete="CASCADE"), primary_key=True),
    Column("notice", String(40), primary_key=True),
    Column("sent_at", UtcDateTime, nullable=False),
    Column("delivery", String(16), nullable=False),  # mail | post (the DPO sends the letter)
)
Index("ix_dsr_requests_account_id_kind_state", dsr_requests.c.account_id, dsr_requests.c.kind, dsr_requests.c.state)
# At most one open request per account and kind, even under concurrent submissions.
_OPEN_DSR = text("state IN ('received', 'verified', 'waiting', 'in_progress')")
Index(
    "uq_dsr_requests_open_account_id_kind",
    dsr_requests.c.account_id,
    dsr_requests.c.kind,
    unique=True,
    postgresql_where=_OPEN_DSR,
    sqlite_where=_OPEN_DSR,
)

audit_log = Table(
    "audit_log",
    metadata,
    # Append-only, hash-chained. Subjects appear as keyed pseudonyms only.
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("entry_id", ID, nullable=False, unique=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("request_id", ID),
    Column("subject_pseudonym", String(64)),
    Column("outcome", String(32), nullable=False),
    Column("details", JSON),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # The AUDIT_KEYS id whose HMAC is `hash` (migration 0008_audit_keyed); NULL: a legacy SHA-256 entry.
    Column("key_id", String(16)),
)
# A request's timeline (the desk and the console read it).
Index("ix_audit_log_request_id", audit_log.c.request_id)

verification_codes = Table(
    "verification_codes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("code_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("consumed_at", UtcDateTime),
)

totp_used_steps = Table(
    "totp_used_steps",
    metadata,
    # One use per TOTP time step: the primary key refuses a replay, even concurrent.
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("time_step", BigInteger, primary_key=True, autoincrement=False),
    Column("used_at", UtcDateTime, nullable=False),
)

verification_attempts = Table(
    "verification_attempts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("attempted_at", UtcDateTime, nullable=False),
    Column("succeeded", Boolean, nullable=False),
)
Index(
    "ix_verification_attempts_account_id_attempted_at",
    verification_attempts.c.account_id,
    verification_attempts.c.attempted_at,
)

dpo_credentials = Table(
    "dpo_credentials",
    metadata,
    Column("id", ID, primary_key=True),
    Column("label", String(100), nullable=False),  # a role, e.g. "dpo", not a person's name
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

processed_messages = Table(
    "processed_messages",
    metadata,
    # Idempotency of queue and CRON deliveries: one row per message key once handled.
    Column("idempotency_key", String(200), primary_key=True),
    Column("function", String(64), nullable=False),
    Column("processed_at", UtcDateTime, nullable=False),
    Column("result", JSON),
)

saga_steps = Table(
    "saga_steps",
    metadata,
    # Persisted steps of multi-step jobs: a completed step is never run again.
    Column("job_id", ID, primary_key=True),
    Column("step", String(64), primary_key=True),
    Column("state", String(16), nullable=False),  # started, completed, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("result", JSON),
    Column("last_error", String(200)),
    Column("updated_at", UtcDateTime, nullable=False),
)

SUITE_TABLES = frozenset(
    t.name
    for t in (
        dsr_requests,
        audit_log,
        verification_codes,
        totp_used_steps,
        verification_attempts,
        dpo_credentials,
        processed_messages,
        saga_steps,
    )
)


# --- Stripe webhook (issue 7, migration 0002_stripe_webhook) ------------------------------

stripe_events = Table(
    "stripe_events",
    metadata,
    # One row per Stripe event received: each is applied once. Holds ids and types only, never the payload.
    Column("id", String(255), primary_key=True),  # evt_...
    Column("type", String(100), nullable=False),
    Column("api_version", String(40)),
    Column("livemode", Boolean, nullable=False),
    Column("object_id", String(255)),  # the Stripe object the event is about
    Column("created", UtcDateTime, nullable=False),  # Stripe's own timestamp: orders the events
    Column("received_at", UtcDateTime, nullable=False),
    Column("processed_at", UtcDateTime),
    Column("outcome", String(32), nullable=False),  # queued, applied, stale, ignored
)
Index("ix_stripe_events_object_id_type", stripe_events.c.object_id, stripe_events.c.type)
Index("ix_stripe_events_received_at", stripe_events.c.received_at)


# --- Erasure (issue 4, migration 0005_erasure) ----------------------------------------------

erasure_ledger = Table(
    "erasure_ledger",
    metadata,
    # One row per completed erasure, ids and pseudonyms only: after a backup is restored,
    # `privacy-functions replay-erasures --since DATE` re-applies every erasure listed here.
    # Mirrored as objects under `ledger/erasures/` in the archive bucket, which a database
    # restore does not roll back.
    Column("request_id", ID, primary_key=True),
    Column("account_id", ID, nullable=False, index=True),  # no FK: the account is gone
    Column("subject_pseudonym", String(64), nullable=False),
    Column("erased_at", UtcDateTime, nullable=False, index=True),
)


# --- Consent, objection and restriction flags (issue 5, migration 0003_consent_restriction) --

processing_restrictions = Table(
    "processing_restrictions",
    metadata,
    # Art. 18 restriction and Art. 21 objections. A flag is in force while lifted_at is NULL;
    # flags are never deleted (proof), only lifted. Consent itself lives in consent_events.
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(40), nullable=False),  # restriction, objection_direct_marketing, objection_analytics
    Column("reason_code", String(40), nullable=False),  # a fixed code (Art. 18(1)(a)-(d), gpc_signal, ...)
    Column("note", Text),  # the DPO's free text: may hold personal data, never logged nor audited
    Column("channel", String(16), nullable=False),  # client_area, email_link, dpo, gpc
    Column("set_at", UtcDateTime, nullable=False),
    Column("set_by", String(64), nullable=False),  # an actor label (client, gpc, dpo:<credential id>)
    Column("request_id", ID),
    Column("lift_notified_at", UtcDateTime),  # Art. 18(3): the user is told before the lift
    Column("lifted_at", UtcDateTime),
    Column("lifted_by", String(64)),
    Column("lift_reason_code", String(40)),
    Column("lift_request_id", ID),
    # Objections to the legitimate-interest purposes of policy 3.3 added by 0014_li_objections.
    CheckConstraint(
        "kind IN ('restriction', 'objection_direct_marketing', 'objection_analytics', "
        "'objection_service_improvement', 'objection_usage_statistics', 'objection_platform_security', "
        "'objection_fraud_prevention')",
        name="kind",
    ),
)
# At most one flag of a kind in force per account, even under concurrent writers.
_FLAG_IN_FORCE = text("lifted_at IS NULL")
Index(
    "uq_processing_restrictions_in_force",
    processing_restrictions.c.account_id,
    processing_restrictions.c.kind,
    unique=True,
    postgresql_where=_FLAG_IN_FORCE,
    sqlite_where=_FLAG_IN_FORCE,
)


# --- Retention schedule (issue 6, migration 0006_retention) ---------------------------------

inactivity_notices = Table(
    "inactivity_notices",
    metadata,
    # One row per inactive account being warned before its erasure (policy 5: 3 years after last
    # activity). Gone with the account, or reset as soon as the account is active again.
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("last_activity_at", UtcDateTime, nullable=False),  # the activity the warnings count from
    Column("erase_after", Date, nullable=False),  # the day the erasure is registered
    Column("warned_at", UtcDateTime, nullable=False),  # when the last warning was sent
    Column("warned_offset_days", Integer, nullable=False),  # which warning that was (days before erase_after)
    Column("next_action_on", Date, nullable=False, index=True),  # next warning or the erasure: the daily selection
    Column("erasure_request_id", ID),
)
# The daily selection of expire-inactive-accounts walks this index in (last_activity_at, id) order.
Index("ix_accounts_last_activity_at_id", accounts.c.last_activity_at, accounts.c.id)
# Foreign keys that an erasure's deletes check row by row: indexed, so the check is a lookup
# and the cost of erasing an account does not grow with the size of these tables.
Index("ix_invoices_company_id", invoices.c.company_id)
Index("ix_invoices_client_id", invoices.c.client_id)
Index("ix_analytics_events_consent_event_id", analytics_events.c.consent_event_id)


# --- Legal holds and the register of authority requests (issue 13, migration 0011_legal_holds) ---

authority_requests = Table(
    "authority_requests",
    metadata,
    # A request from an authority (policy 6.4): who asked, under what reference and legal basis, when.
    # Names institutions, never a person (checked by the audit's personal-data guard).
    Column("id", ID, primary_key=True),
    Column("authority_kind", String(32), nullable=False),  # tax_administration | court | police | other
    Column("authority_name", String(200), nullable=False),
    Column("reference", String(120), nullable=False),
    Column("legal_basis", String(300), nullable=False),
    Column("received_on", Date, nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("registered_by", String(64), nullable=False),
    # The register's retention clock: the latest disclosure made for it (or its registration).
    Column("last_activity_at", UtcDateTime, nullable=False, index=True),
    CheckConstraint("authority_kind IN ('tax_administration', 'court', 'police', 'other')", name="authority_kind"),
)

authority_disclosures = Table(
    "authority_disclosures",
    metadata,
    # What was disclosed to the authority, when and how (kept as proof with its request).
    Column("id", ID, primary_key=True),
    Column("request_id", ID, ForeignKey("authority_requests.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("account_id", ID),  # the account concerned (an id: no foreign key, the register outlives it)
    Column("prospect_id", ID),
    Column("categories", JSON, nullable=False),  # data-map category ids
    Column("disclosed_at", UtcDateTime, nullable=False),
    Column("method", String(32), nullable=False),  # secure_transfer | registered_mail | in_person | authority_portal
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("recorded_by", String(64), nullable=False),
)

legal_holds = Table(
    "legal_holds",
    metadata,
    # A legal hold suspends erasure and retention for the named person's data of these categories.
    # No foreign key to accounts: a hold outlives the account it keeps (its shell) and is never cascaded away.
    Column("id", ID, primary_key=True),
    Column("account_id", ID, index=True),
    Column("subject_pseudonym", String(64), index=True),  # reaches rows kept under a pseudonym after erasure
    Column("prospect_id", ID, index=True),
    Column("authority_request_id", ID, ForeignKey("authority_requests.id", ondelete="RESTRICT"), index=True),
    Column("reason", String(500), nullable=False),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("placed_by", String(64), nullable=False),
    Column("ends_on", Date),  # in force through this day (inclusive); NULL: until released
    Column("released_at", UtcDateTime, index=True),
    Column("released_by", String(64)),
    Column("release_reason", String(500)),
    CheckConstraint("(account_id IS NULL) <> (prospect_id IS NULL)", name="one_subject"),
)

legal_hold_categories = Table(
    "legal_hold_categories",
    metadata,
    Column("hold_id", ID, ForeignKey("legal_holds.id", ondelete="CASCADE"), primary_key=True),
    Column("category", String(64), primary_key=True),
)
Index("ix_legal_hold_categories_category", legal_hold_categories.c.category)
# --- Rectification (issue 13, migration 0012_rectification) ---------------------------------

email_changes = Table(
    "email_changes",
    metadata,
    # A change of address waiting for the new address to confirm a mailed code (Art. 16; policy 8.2).
    # The code is stored only as a keyed hash bound to the row's id. Once confirmed, the row keeps the
    # previous address only until Resend is told (the contact moves), then it is deleted.
    Column("id", ID, primary_key=True),
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("new_email", String(320), nullable=False),
    Column("previous_email", String(320)),  # set at confirmation, cleared when the processors were told
    Column("code_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("confirmed_at", UtcDateTime),
    Column("request_id", ID),  # the rectification request the confirmed change belongs to
)
# --- Policy-change notices (issue 13, migration 0013_policy_notices) ------------------------------

policy_notices = Table(
    "policy_notices",
    metadata,
    # Which version of the policy each account was told of (policy 11) and whether it acknowledged
    # it: one row per account and version. `told_at` is set once the notice mail was handed to the
    # mail service; an acknowledgement in the client area may come first (told_at NULL).
    Column("account_id", ID, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("told_at", UtcDateTime),
    Column("message_id", String(100)),  # the mail service's id of the notice
    Column("acknowledged_at", UtcDateTime),
)
Index("ix_policy_notices_version_told_at", policy_notices.c.version, policy_notices.c.told_at)
# --- The DPO desk: subject search and people without an account (migration 0015_subject_search) --

prospect_suppressions = Table(
    "prospect_suppressions",
    metadata,
    # Objections to prospect marketing: every prospect mailing skips these. A keyed pseudonym
    # (shared.platform.pseudonym, purpose "prospect-suppression") of "email:<address>" or
    # "phone:<E.164>", never the value itself.
    Column("pseudonym", String(64), primary_key=True),
    Column("identifier_kind", String(16), nullable=False),  # email, phone
    Column("request_id", ID),
    Column("suppressed_at", UtcDateTime, nullable=False),
    Column("set_by", String(64), nullable=False),  # an actor label (dpo:<credential id>)
)

# The subject search (shared.desk.search) compares identifiers case-folded: each predicate has
# the index of its exact expression, on SQLite and PostgreSQL alike.
_SPACE: ColumnClause[str] = literal_column("' '")
Index("ix_accounts_lower_email", func.lower(accounts.c.email))
Index("ix_accounts_phone", accounts.c.phone)
Index("ix_accounts_lower_first_name_last_name", func.lower(accounts.c.first_name + _SPACE + accounts.c.last_name))
Index("ix_companies_siret", companies.c.siret)
Index("ix_clients_lower_email", func.lower(clients.c.email))
Index("ix_clients_phone", clients.c.phone)
Index("ix_clients_siret", clients.c.siret)
Index("ix_clients_lower_name", func.lower(clients.c.name))
Index("ix_clients_lower_contact_name", func.lower(clients.c.contact_name))
Index("ix_prospects_lower_email", func.lower(prospects.c.email))
Index("ix_prospects_phone", prospects.c.phone)
Index("ix_prospects_lower_name", func.lower(prospects.c.name))
Index("ix_invoices_lower_buyer_name", func.lower(invoices.c.buyer_name))
Index("ix_invoices_seller_siret", invoices.c.seller_siret)
# The DPO console (function dpo-console): sessions opened with a DPO credential, and failed sign-ins.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id", ID, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the cookie's 256-bit secret
    Column("credential_id", ID, ForeignKey("dpo_credentials.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False, index=True),  # idle expiry counts from here
    Column("ended_at", UtcDateTime),  # signed out, or found expired
)
console_sign_in_failures = Table(
    "console_sign_in_failures",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),  # keyed pseudonym of the caller's address, never the address
    Column("attempted_at", UtcDateTime, nullable=False, index=True),
)
Index(
    "ix_console_sign_in_failures_source_attempted_at",
    console_sign_in_failures.c.source,
    console_sign_in_failures.c.attempted_at,
)
