"""Where personal data lives, what it is, and what erasure does to it.

A declarative map of every column of every table in `shared.ports.tables`, every
object prefix and every processor record. Export, erasure and expiry are driven
by it; `unclassified_columns` compares it with the migrated database, so a new
column that nobody classified fails the build.

Per column: a category (an id of `shared.policy.facts.CATEGORIES`, or NON_PERSONAL /
TECHNICAL_KEY) and an erasure action, one small strategy class per action
chosen by name (as Fides' masking strategies):

- delete: the row goes (every column of a deleted table says so);
- null: the value is set to NULL;
- pseudonymise: replaced by a keyed hash (`shared.platform.pseudonym`), optionally moved
  into another column (log lines keep `subject_pseudonym`, not the account id);
- retain: kept under the table's retention rule and its legal basis until a
  date, then deleted by the retention schedule;
- keep: non-personal (amounts, ids, timestamps of bookkeeping), left as is.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Inspector

from shared.platform.pseudonym import pseudonymise
from shared.policy import facts as policy
from shared.ports import tables as schema

NON_PERSONAL = "non_personal"
TECHNICAL_KEY = "technical_key"  # ids and links: personal only through what they point at
NOT_PERSONAL = frozenset({NON_PERSONAL, TECHNICAL_KEY})

# Row-level actions of a table on erasure.
ROW_DELETE = "delete"  # the subject's rows go
ROW_RETAIN = "retain"  # rows stay until the retention rule's date; column actions apply
ROW_KEEP = "keep"  # no personal data: erasure leaves the rows alone

IGNORED_TABLES = frozenset({"alembic_version"})


# --- Erasure strategies ------------------------------------------------------------------


class ErasureStrategy:
    """What erasure does to one column. `outcome` is what the subject is told per category."""

    name: ClassVar[str]
    outcome: ClassVar[str]  # erased | pseudonymised | retained | kept

    def __init__(self, column: ColumnMap, table: TableMap) -> None:
        self.column = column
        self.table = table

    def assignments(self, value: Any) -> dict[str, Any]:
        """The column values to write on a row that stays."""
        return {}


class DeleteRow(ErasureStrategy):
    name = "delete"
    outcome = "erased"

    def assignments(self, value: Any) -> dict[str, Any]:
        raise TypeError(f"{self.table.name}.{self.column.name}: the row is deleted, not updated")


class SetNull(ErasureStrategy):
    name = "null"
    outcome = "erased"

    def assignments(self, value: Any) -> dict[str, Any]:
        return {self.column.name: None}


class Pseudonymise(ErasureStrategy):
    name = "pseudonymise"
    outcome = "pseudonymised"

    def assignments(self, value: Any) -> dict[str, Any]:

        hashed = None if value is None else pseudonymise(str(value), purpose=self.column.pseudonym_purpose)
        if self.column.into:
            return {self.column.into: hashed, self.column.name: None}
        return {self.column.name: hashed}


class Retain(ErasureStrategy):
    name = "retain"
    outcome = "retained"

    @property
    def rule(self) -> policy.RetentionRule:
        rule_id = self.column.retention or self.table.retention
        if rule_id is None:
            raise ValueError(f"{self.table.name}.{self.column.name}: no retention rule")
        return policy.retention_rule(rule_id)

    @property
    def legal_basis(self) -> policy.LegalBasis:
        return policy.LEGAL_BASES[self.rule.legal_basis]

    @property
    def legal_reference(self) -> str | None:
        return self.rule.legal_reference


class Keep(ErasureStrategy):
    name = "keep"
    outcome = "kept"


STRATEGIES: dict[str, type[ErasureStrategy]] = {s.name: s for s in (DeleteRow, SetNull, Pseudonymise, Retain, Keep)}


# --- The map's vocabulary ------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMap:
    name: str
    category: str
    action: str
    identifier: bool = False  # email, phone, names, SIRET/SIREN, VAT: searched after an erasure
    into: str | None = None  # pseudonymise: the column that receives the hash
    pseudonym_purpose: str = "subject"
    retention: str | None = None  # retain: overrides the table's rule
    note: str | None = None

    @property
    def personal(self) -> bool:
        return self.category not in NOT_PERSONAL


@dataclass(frozen=True)
class Link:
    """How a table's rows reach an account id.

    `column` holds the account id directly (parent=None), or a key into `parent`
    whose own link reaches the account; `pseudonym=True` means the column holds
    the subject's keyed pseudonym instead.
    """

    column: str | None
    parent: str | None = None
    parent_key: str = "id"
    pseudonym: bool = False

    @property
    def key(self) -> str:
        """The linking column of a linked table (a table without a link has none to name)."""
        if self.column is None:
            raise ValueError("this table is not linked to an account")
        return self.column


NO_LINK = Link(None)

# Identifier kinds a subject search compares (shared.desk.identifiers.SubjectIdentifiers' fields).
IDENTIFIER_KINDS = ("email", "phone", "siret", "name", "postal_address")
# Who the person is where a row names them.
ROLE_ACCOUNT_HOLDER = "account_holder"  # holds the account (or its company)
ROLE_PROSPECT = "prospect"  # a prospect, of the platform (owner NULL) or of an account
ROLE_THIRD_PARTY = "third_party"  # named in an account's documents (policy 2.4)
SEARCH_ROLES = (ROLE_ACCOUNT_HOLDER, ROLE_PROSPECT, ROLE_THIRD_PARTY)


@dataclass(frozen=True)
class SubjectKey:
    """Where rows of a table name a person, in which role, and which account owns them.

    `identifiers` pairs an identifier kind with the column(s) holding it (several columns are
    compared joined by one space: first_name + last_name); a kind may appear more than once
    (client name or contact name). `postal_address` only narrows a name match: a row matches
    on email, phone, SIRET, or name (and the address, when both the row and the request have one).
    `owner` holds the owning account id (NULL: the platform's own). The subject search
    (shared.desk.search) is generated from these declarations.
    """

    role: str
    owner: str
    identifiers: tuple[tuple[str, tuple[str, ...]], ...]

    def columns(self, kind: str) -> list[tuple[str, ...]]:
        return [cols for k, cols in self.identifiers if k == kind]


def _key_of(role: str, owner: str, *pairs: tuple[str, str | tuple[str, ...]]) -> SubjectKey:
    return SubjectKey(role, owner, tuple((k, (c,) if isinstance(c, str) else c) for k, c in pairs))


@dataclass(frozen=True)
class TableMap:
    name: str
    categories: tuple[str, ...]
    link: Link
    retention: str | None
    row_action: str
    columns: tuple[ColumnMap, ...]
    clock_columns: tuple[str, ...] = ()  # this table's columns that start the retention clock
    # (opened, closed) columns: while opened is set and closed is not, the clock does not run.
    held_while_open: tuple[str, str] | None = None
    suite: bool = False
    subject_keys: tuple[SubjectKey, ...] = ()  # where rows name a person (subject search)
    note: str | None = None
    _by_name: dict[str, ColumnMap] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    def column(self, name: str) -> ColumnMap:
        return self._by_name[name]

    def strategy(self, column_name: str) -> ErasureStrategy:
        col = self.column(column_name)
        return STRATEGIES[col.action](col, self)

    def retained_until(self, row: Mapping[str, Any]) -> dt.datetime | None:
        """When a retained row's rule ends, from the clock columns of `row`; None while held (open dispute)."""
        if self.retention is None or not self.clock_columns:
            raise ValueError(f"{self.name}: no retention clock of its own")
        if self.held_while_open and row[self.held_while_open[0]] is not None and row[self.held_while_open[1]] is None:
            return None
        start = policy.clock_start(*(row[c] for c in self.clock_columns))
        return policy.expires_at(self.retention, start)


def _c(name: str, category: str, action: str, **kw: Any) -> ColumnMap:
    return ColumnMap(name, category, action, **kw)


def _key(name: str, action: str = "keep") -> ColumnMap:
    return ColumnMap(name, TECHNICAL_KEY, action)


def _plain(*names: str, action: str = "keep") -> tuple[ColumnMap, ...]:
    return tuple(ColumnMap(n, NON_PERSONAL, action) for n in names)


DEL = "delete"
ACCOUNT = Link("account_id")

# Ordered children before parents, so deleting in this order never trips a foreign key.
TABLES: tuple[TableMap, ...] = (
    TableMap(
        "invoice_lines",
        ("documents.invoices", "documents.third_parties"),
        Link("invoice_id", parent="invoices"),
        retention="invoices",
        row_action=ROW_RETAIN,
        note="Part of the invoice: kept and deleted with it (ON DELETE CASCADE).",
        columns=(
            _key("id"),
            _key("invoice_id"),
            *_plain("position", "quantity", "unit_price_cents", "vat_rate", "total_excl_tax_cents"),
            _c("description", "documents.invoices", "retain", note="Free text: may name third parties."),
        ),
    ),
    TableMap(
        "invoices",
        (
            "documents.invoices",
            "documents.third_parties",
            "identification.company_name",
            "identification.siret_siren",
            "identification.vat_number",
            "identification.business_address",
        ),
        ACCOUNT,
        retention="invoices",
        clock_columns=("issue_date",),
        row_action=ROW_RETAIN,
        note="Kept 10 years in restricted archive (archived_at set), unlinked from the erased account.",
        subject_keys=(
            _key_of(ROLE_THIRD_PARTY, "account_id", ("name", "buyer_name"), ("postal_address", "buyer_address")),
            _key_of(ROLE_ACCOUNT_HOLDER, "account_id", ("siret", "seller_siret")),
        ),
        columns=(
            _key("id"),
            _key("account_id", "null"),
            _key("company_id", "null"),
            _key("client_id", "null"),
            *_plain(
                "number",
                "issue_date",
                "due_date",
                "currency",
                "total_excl_tax_cents",
                "total_tax_cents",
                "total_incl_tax_cents",
                "status",
                "transmitted_at",
                "archived_at",
                "created_at",
            ),
            _c("seller_name", "identification.company_name", "retain", identifier=True),
            _c("seller_siret", "identification.siret_siren", "retain", identifier=True),
            _c("seller_vat_number", "identification.vat_number", "retain", identifier=True),
            _c("seller_address", "identification.business_address", "retain"),
            _c("buyer_name", "documents.third_parties", "retain", identifier=True),
            _c("buyer_vat_number", "documents.third_parties", "retain", identifier=True),
            _c("buyer_address", "documents.third_parties", "retain"),
            ColumnMap(
                "pdf_object_key", TECHNICAL_KEY, "keep", note="Rewritten when the PDF moves to the retention archive."
            ),
        ),
    ),
    TableMap(
        "analytics_events",
        ("analytics.events", "usage.events"),
        ACCOUNT,
        retention="active_account",
        row_action=ROW_DELETE,
        note="Collected under the analytics consent (deleted when it is withdrawn) or, for service improvement and "
        "usage statistics, the legitimate interest (deleted when the account objects).",
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            _key("consent_event_id", DEL),
            *_plain("purpose", action=DEL),
            _c("occurred_at", "analytics.events", DEL),
            _c("name", "analytics.events", DEL),
            _c("page", "analytics.events", DEL),
        ),
    ),
    TableMap(
        "consent_events",
        ("consent.records", "technical.user_agent"),
        ACCOUNT,
        retention="active_account",
        row_action=ROW_DELETE,
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            *(
                _c(n, "consent.records", DEL)
                for n in ("purpose", "action", "occurred_at", "channel", "policy_version", "proof_ip_pseudonym")
            ),
            _c("proof_user_agent", "technical.user_agent", DEL),
        ),
    ),
    TableMap(
        "companies",
        (
            "identification.company_name",
            "identification.siret_siren",
            "identification.vat_number",
            "identification.business_address",
        ),
        ACCOUNT,
        retention="inactive_account",
        row_action=ROW_DELETE,
        note="What invoices must keep is copied onto each invoice (seller_*), retained there.",
        subject_keys=(_key_of(ROLE_ACCOUNT_HOLDER, "account_id", ("siret", "siret")),),
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            _c("name", "identification.company_name", DEL, identifier=True),
            _c("siret", "identification.siret_siren", DEL, identifier=True),
            _c("siren", "identification.siret_siren", DEL, identifier=True),
            _c("vat_number", "identification.vat_number", DEL, identifier=True),
            *(
                _c(n, "identification.business_address", DEL)
                for n in ("address_line1", "address_line2", "postal_code", "city", "country")
            ),
            _c("created_at", NON_PERSONAL, DEL),
        ),
    ),
    TableMap(
        "clients",
        ("documents.third_parties",),
        ACCOUNT,
        retention="inactive_account",
        row_action=ROW_DELETE,
        note="The user's own customers (third parties, policy 2.4); invoices keep their printed copy (buyer_*).",
        subject_keys=(
            _key_of(
                ROLE_THIRD_PARTY,
                "account_id",
                ("email", "email"),
                ("phone", "phone"),
                ("siret", "siret"),
                ("name", "name"),
                ("name", "contact_name"),
                ("postal_address", "address_line1"),
            ),
        ),
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            *(
                _c(n, "documents.third_parties", DEL, identifier=True)
                for n in ("name", "contact_name", "email", "phone", "siret", "vat_number")
            ),
            *(_c(n, "documents.third_parties", DEL) for n in ("address_line1", "postal_code", "city", "country")),
            _c("created_at", NON_PERSONAL, DEL),
        ),
    ),
    TableMap(
        "prospects",
        ("prospects.contact",),
        ACCOUNT,
        retention="prospects",
        clock_columns=("last_contact_at",),
        row_action=ROW_DELETE,
        note="account_id is NULL for the platform's own prospects: they are reached by the prospects rule, not by erasure.",
        subject_keys=(_key_of(ROLE_PROSPECT, "account_id", ("email", "email"), ("phone", "phone"), ("name", "name")),),
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            *(_c(n, "prospects.contact", DEL, identifier=True) for n in ("email", "name", "phone")),
            *(_c(n, "prospects.contact", DEL) for n in ("company_name", "source", "last_contact_at")),
            _c("created_at", NON_PERSONAL, DEL),
        ),
    ),
    TableMap(
        "sessions",
        ("account.credentials", "technical.ip_address", "technical.user_agent", "technical.action_timestamps"),
        ACCOUNT,
        retention="connection_logs",
        clock_columns=("created_at",),
        row_action=ROW_DELETE,
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            _c("token_hash", "account.credentials", DEL),
            _c("ip_address", "technical.ip_address", DEL),
            _c("user_agent", "technical.user_agent", DEL),
            *(_c(n, "technical.action_timestamps", DEL) for n in ("created_at", "expires_at", "revoked_at")),
        ),
    ),
    TableMap(
        "api_keys",
        ("account.credentials", "technical.action_timestamps"),
        ACCOUNT,
        retention="active_account",
        row_action=ROW_DELETE,
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            *(_c(n, "account.credentials", DEL) for n in ("label", "key_prefix", "key_hash")),
            *(_c(n, "technical.action_timestamps", DEL) for n in ("created_at", "last_used_at", "revoked_at")),
        ),
    ),
    TableMap(
        "connection_logs",
        ("technical.ip_address", "technical.user_agent", "technical.action_timestamps"),
        ACCOUNT,
        retention="connection_logs",
        clock_columns=("occurred_at",),
        row_action=ROW_RETAIN,
        note="LCEN: the connection data (IP, time) stays its year under a pseudonym; the user-agent is not required and goes.",
        columns=(
            _key("id"),
            _c("account_id", TECHNICAL_KEY, "pseudonymise", into="subject_pseudonym"),
            _key("subject_pseudonym"),
            _c("occurred_at", "technical.action_timestamps", "retain"),
            _c("event", NON_PERSONAL, "keep"),
            _c("ip_address", "technical.ip_address", "retain"),
            _c("user_agent", "technical.user_agent", "null"),
        ),
    ),
    TableMap(
        "access_logs",
        ("technical.access_logs", "technical.ip_address", "technical.user_agent", "technical.action_timestamps"),
        ACCOUNT,
        retention="access_logs",
        clock_columns=("occurred_at",),
        row_action=ROW_RETAIN,
        note="Security audit (legitimate interest) keeps what was done and when, under a pseudonym; IP and user-agent go.",
        columns=(
            _key("id"),
            _c("account_id", TECHNICAL_KEY, "pseudonymise", into="subject_pseudonym"),
            _key("subject_pseudonym"),
            _c("occurred_at", "technical.action_timestamps", "retain"),
            _c("method", NON_PERSONAL, "keep"),
            _c("path", "technical.access_logs", "retain"),
            _c("status_code", NON_PERSONAL, "keep"),
            _c("ip_address", "technical.ip_address", "null"),
            _c("user_agent", "technical.user_agent", "null"),
        ),
    ),
    TableMap(
        "payment_records",
        ("payment.transactions",),
        ACCOUNT,
        retention="payment_data",
        clock_columns=("transaction_at", "disputed_until"),
        row_action=ROW_RETAIN,
        note="13 months active (contesting a payment) + 5 years archive, under a pseudonym.",
        columns=(
            _key("id"),
            _c("account_id", TECHNICAL_KEY, "pseudonymise", into="subject_pseudonym"),
            _key("subject_pseudonym"),
            *(
                _c(n, "payment.transactions", "retain")
                for n in ("stripe_customer_id", "stripe_object_id", "description", "transaction_at")
            ),
            _c(
                "card_brand",
                "payment.transactions",
                "retain",
                note="Policy 2.3: card data stays at Stripe. Brand and last 4 digits only, so the user can recognise "
                "a payment; never the card number, CVC or expiry.",
            ),
            _c("card_last4", "payment.transactions", "retain", note="See card_brand."),
            *_plain(
                "kind",
                "amount_cents",
                "amount_refunded_cents",
                "currency",
                "status",
                "stripe_updated_at",
                "dispute_status",
                "dispute_opened_at",
                "disputed_until",
                "customer_deleted_at",
                "archived_at",
                "created_at",
                "updated_at",
            ),
        ),
        held_while_open=("dispute_opened_at", "disputed_until"),
    ),
    TableMap(
        "verification_codes",
        ("suite.verification",),
        ACCOUNT,
        retention="verification_records",
        clock_columns=("created_at",),
        row_action=ROW_DELETE,
        suite=True,
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            *(
                _c(n, "suite.verification", DEL)
                for n in ("code_hash", "created_at", "expires_at", "attempts", "consumed_at")
            ),
        ),
    ),
    TableMap(
        "email_changes",
        ("identification.email", "suite.verification"),
        ACCOUNT,
        retention="verification_records",
        clock_columns=("created_at",),
        row_action=ROW_DELETE,
        suite=True,
        note="The suite's verification of a change of address (rectification): the new address until its code "
        "confirms it, the previous one only until Resend is told, then the row goes; deleted on erasure.",
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            _key("request_id", DEL),
            _c("new_email", "identification.email", DEL, identifier=True),
            _c("previous_email", "identification.email", DEL, identifier=True),
            *(
                _c(n, "suite.verification", DEL)
                for n in ("code_hash", "created_at", "expires_at", "attempts", "confirmed_at")
            ),
        ),
    ),
    TableMap(
        "totp_used_steps",
        ("suite.verification",),
        ACCOUNT,
        retention="verification_records",
        clock_columns=("used_at",),
        row_action=ROW_DELETE,
        suite=True,
        columns=(
            _key("account_id", DEL),
            _c("time_step", "suite.verification", DEL),
            _c("used_at", "suite.verification", DEL),
        ),
    ),
    TableMap(
        "verification_attempts",
        ("suite.verification",),
        ACCOUNT,
        retention="verification_records",
        clock_columns=("attempted_at",),
        row_action=ROW_DELETE,
        suite=True,
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            _c("attempted_at", "suite.verification", DEL),
            _c("succeeded", "suite.verification", DEL),
        ),
    ),
    TableMap(
        "processing_restrictions",
        ("rights.restrictions",),
        ACCOUNT,
        retention="active_account",
        row_action=ROW_DELETE,
        suite=True,
        note="Flags are lifted, never deleted, while the account lives; they go with it.",
        columns=(
            _key("id", DEL),
            _key("account_id", DEL),
            _key("request_id", DEL),
            _key("lift_request_id", DEL),
            *(
                _c(n, "rights.restrictions", DEL)
                for n in (
                    "kind",
                    "reason_code",
                    "channel",
                    "set_at",
                    "set_by",
                    "lift_notified_at",
                    "lifted_at",
                    "lifted_by",
                    "lift_reason_code",
                )
            ),
            _c("note", "rights.restrictions", DEL, note="The DPO's free text: may hold personal data."),
        ),
    ),
    TableMap(
        "inactivity_notices",
        ("technical.action_timestamps",),
        ACCOUNT,
        retention="inactive_account",
        row_action=ROW_DELETE,
        suite=True,
        note="Warnings before an erasure for inactivity (issue 6); goes with the account or when it is active again.",
        columns=(
            _key("account_id", DEL),
            _key("erasure_request_id", DEL),
            _c("last_activity_at", "technical.action_timestamps", DEL),
            _c("warned_at", "technical.action_timestamps", DEL),
            *_plain("erase_after", "warned_offset_days", "next_action_on", action=DEL),
        ),
    ),
    TableMap(
        "policy_notices",
        ("suite.policy_notices",),
        ACCOUNT,
        retention="active_account",
        row_action=ROW_DELETE,
        suite=True,
        note="Which policy version each account was told of and acknowledged (policy 11); goes with the account.",
        columns=(
            _key("account_id", DEL),
            _key("message_id", DEL),
            _plain("version", action=DEL)[0],
            _c("told_at", "suite.policy_notices", DEL),
            _c("acknowledged_at", "suite.policy_notices", DEL),
        ),
    ),
    TableMap(
        "accounts",
        (
            "identification.name",
            "identification.email",
            "identification.phone",
            "account.credentials",
            "payment.transactions",
            "technical.action_timestamps",
        ),
        Link("id"),
        retention="inactive_account",
        clock_columns=("last_activity_at",),
        row_action=ROW_DELETE,
        note="The row goes last: foreign keys cascade to its children or unlink the records that are retained.",
        subject_keys=(
            _key_of(
                ROLE_ACCOUNT_HOLDER, "id", ("email", "email"), ("phone", "phone"), ("name", ("first_name", "last_name"))
            ),
        ),
        columns=(
            _key("id", DEL),
            _c("email", "identification.email", DEL, identifier=True),
            _c("first_name", "identification.name", DEL, identifier=True),
            _c("last_name", "identification.name", DEL, identifier=True),
            _c("phone", "identification.phone", DEL, identifier=True),
            _c("password_hash", "account.credentials", DEL),
            _c("totp_secret", "account.credentials", DEL),
            _c("locale", NON_PERSONAL, DEL),
            _c("status", NON_PERSONAL, DEL),
            _c(
                "stripe_customer_id",
                "payment.transactions",
                DEL,
                note="The Stripe customer itself is deleted through the processor.",
            ),
            _c("created_at", "technical.action_timestamps", DEL),
            _c("last_activity_at", "technical.action_timestamps", DEL),
        ),
    ),
    # --- The suite's own bookkeeping: no personal data beyond account ids and pseudonyms ---
    TableMap(
        "dsr_notices",
        ("suite.request_records",),
        Link("request_id", parent="dsr_requests"),
        retention="request_records",
        row_action=ROW_RETAIN,
        suite=True,
        note="Which notice of a request went out, when and how (mail or letter): proof, kept and deleted with it.",
        columns=(_key("request_id"), *_plain("notice", "sent_at", "delivery")),
    ),
    TableMap(
        "dsr_requests",
        ("suite.request_records",),
        ACCOUNT,
        retention="request_records",
        clock_columns=("closed_at",),
        row_action=ROW_RETAIN,
        suite=True,
        note="Proof that each request was answered; outlives the account (no foreign key).",
        columns=(
            _key("id"),
            _key("account_id"),
            _key("subject_pseudonym"),
            *_plain(
                "kind",
                "channel",
                "state",
                "received_at",
                "due_at",
                "extended_due_at",
                "extension_reason",
                "state_changed_at",
                "closed_at",
                "reason",
                "details",
                "version",
            ),
            _c(
                "subject_identifiers",
                "suite.request_records",
                DEL,
                note="Sealed identifiers (email, phone, SIRET, name, address) of a person the desk knows no account "
                "of, to answer them; erased with the account they turn out to name, else kept with the request.",
            ),
        ),
    ),
    TableMap(
        "audit_log",
        ("suite.audit_trail",),
        Link("subject_pseudonym", pseudonym=True),
        retention="request_records",
        clock_columns=("occurred_at",),
        row_action=ROW_RETAIN,
        suite=True,
        note="Append-only, HMAC-chained and anchored by locked checkpoints: erasure never rewrites it; subjects appear "
        "only as pseudonyms, so it holds no personal data. Kept whole (retention never cuts it: a cut chain could "
        "no longer be verified) for the life of the service, then the request-records period after its last entry.",
        columns=(
            _key("seq"),
            _key("entry_id"),
            _key("request_id"),
            _key("subject_pseudonym"),
            *_plain("occurred_at", "actor", "action", "outcome", "details", "prev_hash", "hash", "key_id"),
        ),
    ),
    TableMap(
        "erasure_ledger",
        ("suite.request_records",),
        ACCOUNT,
        retention="request_records",
        clock_columns=("erased_at",),
        row_action=ROW_RETAIN,
        suite=True,
        note="Ids and pseudonyms only: lets erasures be replayed after a backup restore.",
        columns=(
            _key("request_id"),
            _key("account_id"),
            _key("subject_pseudonym"),
            _c("erased_at", NON_PERSONAL, "keep"),
        ),
    ),
    # Legal holds and the register of authority requests (policy 6.4): not linked to the person on purpose,
    # so neither export nor erasure reaches them (an authority may require confidentiality; a hold must
    # outlive the erasure it suspends). Institutions, ids and reasons checked free of personal data.
    TableMap(
        "legal_hold_categories",
        (),
        NO_LINK,
        retention="disclosure_records",
        row_action=ROW_KEEP,
        suite=True,
        columns=(_key("hold_id"), *_plain("category")),
    ),
    TableMap(
        "legal_holds",
        (),
        NO_LINK,
        retention="disclosure_records",
        row_action=ROW_KEEP,
        suite=True,
        note="In force from placed_at until released or past ends_on; purged the register's period after that.",
        columns=(
            _key("id"),
            _key("account_id"),
            _key("subject_pseudonym"),
            _key("prospect_id"),
            _key("authority_request_id"),
            *_plain("reason", "placed_at", "placed_by", "ends_on", "released_at", "released_by", "release_reason"),
        ),
    ),
    TableMap(
        "authority_disclosures",
        (),
        NO_LINK,
        retention="disclosure_records",
        row_action=ROW_KEEP,
        suite=True,
        columns=(
            _key("id"),
            _key("request_id"),
            _key("account_id"),
            _key("prospect_id"),
            *_plain("categories", "disclosed_at", "method", "recorded_at", "recorded_by"),
        ),
    ),
    TableMap(
        "authority_requests",
        (),
        NO_LINK,
        retention="disclosure_records",
        row_action=ROW_KEEP,
        suite=True,
        columns=(
            _key("id"),
            *_plain(
                "authority_kind",
                "authority_name",
                "reference",
                "legal_basis",
                "received_on",
                "registered_at",
                "registered_by",
                "last_activity_at",
            ),
        ),
    ),
    TableMap(
        "stripe_events",
        (),
        NO_LINK,
        retention=None,
        row_action=ROW_KEEP,
        suite=True,
        note="Event ids and types only, never the payload.",
        columns=(
            _key("id"),
            _key("object_id"),
            *_plain("type", "api_version", "livemode", "created", "received_at", "processed_at", "outcome"),
        ),
    ),
    TableMap(
        "console_sessions",
        (),
        NO_LINK,
        retention=None,
        row_action=ROW_KEEP,
        suite=True,
        note="DPO console sessions: the cookie's secret stored hashed; rows of ended or idle sessions are deleted at the next sign-in.",
        columns=(_key("id"), _key("credential_id"), *_plain("token_hash", "created_at", "last_seen_at", "ended_at")),
    ),
    TableMap(
        "console_sign_in_failures",
        (),
        NO_LINK,
        retention=None,
        row_action=ROW_KEEP,
        suite=True,
        note="Failed console sign-ins: a keyed pseudonym of the address, deleted once older than the 15-minute window.",
        columns=(_key("id"), *_plain("source", "attempted_at")),
    ),
    TableMap(
        "dpo_credentials",
        (),
        NO_LINK,
        retention=None,
        row_action=ROW_KEEP,
        suite=True,
        note="Labels are roles, not people; secrets are stored hashed.",
        columns=(_key("id"), *_plain("label", "secret_hash", "created_at", "revoked_at")),
    ),
    TableMap(
        "processed_messages",
        (),
        NO_LINK,
        retention=None,
        row_action=ROW_KEEP,
        suite=True,
        columns=(_key("idempotency_key"), *_plain("function", "processed_at", "result")),
    ),
    TableMap(
        "saga_steps",
        (),
        NO_LINK,
        retention=None,
        row_action=ROW_KEEP,
        suite=True,
        note="last_error holds an exception class name only, never a message.",
        columns=(_key("job_id"), *_plain("step", "state", "attempts", "result", "last_error", "updated_at")),
    ),
    TableMap(
        "prospect_suppressions",
        (),
        NO_LINK,
        retention=None,
        row_action=ROW_KEEP,
        suite=True,
        note="Objections to prospect marketing (shared.desk.prospects): a keyed pseudonym of the email or phone, "
        "never the value; kept while prospect mailings exist, so that an objection outlives the prospect row.",
        columns=(_key("pseudonym"), *_plain("identifier_kind", "request_id", "suppressed_at", "set_by")),
    ),
)

_TABLES_BY_NAME = {t.name: t for t in TABLES}


# --- Objects and processors -----------------------------------------------------------------


@dataclass(frozen=True)
class ObjectPrefix:
    id: str
    bucket_setting: str  # the Settings attribute naming the bucket
    key_pattern: str
    category: str
    retention: str
    action: str  # erasure action, as for columns
    linked_by: str | None  # the placeholder of key_pattern holding the account id, if any
    archive_bucket_setting: str | None = None  # erasure moves the objects there
    note: str | None = None

    def key(self, **values: str) -> str:
        return self.key_pattern.format(**values)

    def prefix(self, **values: str) -> str:
        """The pattern filled up to its first placeholder without a value (for listing)."""
        out = []
        for literal, name, _spec, _conv in string.Formatter().parse(self.key_pattern):
            out.append(literal)
            if name is None:
                continue
            if name not in values:
                break
            out.append(str(values[name]))
        return "".join(out)


OBJECT_PREFIXES: tuple[ObjectPrefix, ...] = (
    ObjectPrefix(
        "invoice_pdfs",
        "documents_bucket",
        "invoices/{account_id}/{invoice_id}.pdf",
        "documents.invoices",
        retention="invoices",
        action="retain",
        linked_by="account_id",
        archive_bucket_setting="archive_bucket",
        note="On erasure the PDF moves to the retention archive (Object Lock until its 10 years end).",
    ),
    ObjectPrefix(
        "archived_invoice_pdfs",
        "archive_bucket",
        "invoices/{invoice_id}.pdf",
        "documents.invoices",
        retention="invoices",
        action="retain",
        linked_by=None,
        note="No account id in the key: the archive is unlinked from the erased account.",
    ),
    ObjectPrefix(
        "exports",
        "exports_bucket",
        "exports/{account_id}/{archive_id}.zip",
        "suite.exports",
        retention="exports",
        action="delete",
        linked_by="account_id",
    ),
    ObjectPrefix(
        "prospect_exports",
        "exports_bucket",
        "exports/prospects/{archive_id}.zip",
        "suite.exports",
        retention="exports",
        action="delete",
        linked_by=None,
        note="Access archives of the platform's own prospects (no account): shared.desk.prospects.",
    ),
    ObjectPrefix(
        "access_log_files",
        "logs_bucket",
        "logs/access/{yyyy}/{mm}/{dd}/{name}",
        "technical.access_logs",
        retention="access_logs",
        action="retain",
        linked_by=None,
        note="Files mix every user; they are not searchable per account and expire by bucket lifecycle after 1 year.",
    ),
    ObjectPrefix(
        "connection_log_files",
        "logs_bucket",
        "logs/connection/{yyyy}/{mm}/{dd}/{name}",
        "technical.ip_address",
        retention="connection_logs",
        action="retain",
        linked_by=None,
        note="LCEN year; expire by bucket lifecycle.",
    ),
    ObjectPrefix(
        "erasure_receipts",
        "archive_bucket",
        "receipts/erasure/{request_id}.json",
        "suite.request_records",
        retention="request_records",
        action="keep",
        linked_by=None,
        note="Proof of erasure: request id, dates, per-category outcomes; no personal data.",
    ),
    ObjectPrefix(
        "erasure_ledger_mirror",
        "archive_bucket",
        "ledger/erasures/{request_id}.json",
        "suite.request_records",
        retention="request_records",
        action="keep",
        linked_by=None,
        note="Copy of each erasure_ledger row (ids and pseudonym) outside the database, so a backup restore "
        "cannot roll it back; `replay-erasures` reads both.",
    ),
)


@dataclass(frozen=True)
class ProcessorRecord:
    id: str
    subprocessor: str  # shared.policy.facts.SUBPROCESSORS id
    key_column: str  # table.column holding the processor-side key
    categories: tuple[str, ...]
    action: str
    note: str


PROCESSOR_RECORDS: tuple[ProcessorRecord, ...] = (
    ProcessorRecord(
        "stripe_customer",
        "stripe",
        "accounts.stripe_customer_id",
        (
            "identification.email",
            "identification.name",
            "identification.phone",
            "identification.business_address",
            "payment.transactions",
        ),
        "delete",
        "Active subscriptions are cancelled, then the customer is deleted; Stripe keeps what its own obligations require.",
    ),
    ProcessorRecord(
        "resend_contact",
        "resend",
        "accounts.email",
        ("identification.email", "identification.name"),
        "delete",
        "The contact is removed from every audience.",
    ),
)


# --- Helpers ----------------------------------------------------------------------------------


def table_map(name: str) -> TableMap:
    try:
        return _TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"table {name!r} is not in the data map") from None


def searched_tables() -> tuple[TableMap, ...]:
    """The tables whose rows name a person by an identifier (their `subject_keys`)."""
    return tuple(t for t in TABLES if t.subject_keys)


def personal_columns(table_name: str) -> list[str]:
    return [c.name for c in table_map(table_name).columns if c.personal]


def identifier_columns() -> list[tuple[str, str]]:
    """(table, column) of every column holding an identifier (email, phone, names, SIRET/SIREN, VAT)."""
    return [(t.name, c.name) for t in TABLES for c in t.columns if c.identifier]


def subject_rows(table_name: str, account_id: str) -> sa.Select:
    """SELECT of one account's rows of a table, joining through parents when needed."""
    tm = table_map(table_name)
    table = schema.metadata.tables[table_name]
    link = tm.link
    if link.column is None:
        raise ValueError(f"{table_name} holds no rows linked to an account")
    if link.pseudonym:
        return sa.select(table).where(table.c[link.column] == pseudonymise(account_id, purpose="subject"))
    if link.parent is None:
        return sa.select(table).where(table.c[link.column] == account_id)
    parent_ids = subject_rows(link.parent, account_id).with_only_columns(
        schema.metadata.tables[link.parent].c[link.parent_key]
    )
    return sa.select(table).where(table.c[link.column].in_(parent_ids.scalar_subquery()))


def erasure_update(table_name: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The values to write on one of the subject's rows that stays (retain/keep tables)."""
    tm = table_map(table_name)
    if tm.row_action == ROW_DELETE:
        raise ValueError(f"{table_name}: the subject's rows are deleted, not updated")
    values: dict[str, Any] = {}
    for col in tm.columns:
        values.update(tm.strategy(col.name).assignments(row.get(col.name)))
    return values


def _inspector(engine_or_inspector: sa.Engine | sa.Connection | Inspector) -> Inspector:
    if isinstance(engine_or_inspector, Inspector):
        return engine_or_inspector
    return sa.inspect(engine_or_inspector)


def _database_columns(engine_or_inspector: sa.Engine | sa.Connection | Inspector) -> set[str]:
    insp = _inspector(engine_or_inspector)
    return {
        f"{table}.{col['name']}"
        for table in insp.get_table_names()
        if table not in IGNORED_TABLES
        for col in insp.get_columns(table)
    }


def _mapped_columns() -> set[str]:
    return {f"{t.name}.{c.name}" for t in TABLES for c in t.columns}


def unclassified_columns(engine_or_inspector: sa.Engine | sa.Connection | Inspector) -> list[str]:
    """`table.column` of the migrated database that the map does not classify."""
    return sorted(_database_columns(engine_or_inspector) - _mapped_columns())


def missing_columns(engine_or_inspector: sa.Engine | sa.Connection | Inspector) -> list[str]:
    """`table.column` the map classifies but the migrated database lacks."""
    return sorted(_mapped_columns() - _database_columns(engine_or_inspector))
