"""The privacy policy of jefacturebien.fr (v1.1, effective 14 June 2026) as data.

One place states the policy's facts: controller, data categories (2.1-2.4),
purposes (3), legal bases (4), retention rules (5), recipients (6), rights (8)
and how to exercise them (9). Export answers, retention jobs, erasure and the
data map read them from here; `tests/unit/test_policy.py` checks every table of
`docs/privacy-policy-v1.1.txt` against this module, row by row.

English labels are the policy's own words; French labels are our translation
for French-speaking users. Ids are stable: other code and exports use them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TypeVar

from shared.platform.clock import add_months
from shared.platform.config import EU_REGIONS

POLICY_VERSION = "1.1"
POLICY_EFFECTIVE_DATE = dt.date(2026, 6, 14)
LANGUAGES = ("en", "fr")

D = TypeVar("D", dt.date, dt.datetime)


class Text(NamedTuple):
    """A label in English (the policy's words) and French."""

    en: str
    fr: str

    def get(self, language: str) -> str:
        if language not in LANGUAGES:
            raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
        return self.fr if language == "fr" else self.en


# --- 1. Controller -------------------------------------------------------------------


@dataclass(frozen=True)
class Controller:
    name: str
    legal_form: Text
    share_capital: str
    registration: str  # RCS
    siren: str
    vat_number: str
    registered_office: str
    representative: str
    dpo_email: str
    rights_postal_address: str  # 9.1, "by post"
    contact_email: str
    website: str


CONTROLLER = Controller(
    name="QR Communication SAS",
    legal_form=Text("Simplified joint-stock company", "Société par actions simplifiée"),
    share_capital="EUR 5,000",
    registration="Paris Trade and Companies Register 940 163 496",
    siren="940163496",
    # As published in the policy. The key computed from the SIREN would be 63
    # (FR63940163496): to be confirmed with the controller, not silently changed.
    vat_number="FR43940163496",
    registered_office="23 rue de Richelieu, 75001 Paris, France",
    representative="Joëlle Azogui, President",
    dpo_email="dpo@jefacturebien.fr",
    rights_postal_address="QR Communication SAS, For the attention of the DPO, 23 rue de Richelieu, 75001 Paris, France",
    contact_email="contact@qrcommunication.com",
    website="https://jefacturebien.fr",
)


# --- 4. Legal bases and the processings of table 4 ---------------------------------------


@dataclass(frozen=True)
class LegalBasis:
    id: str
    label: Text
    gdpr_article: str


LEGAL_BASES: dict[str, LegalBasis] = {
    b.id: b
    for b in (
        LegalBasis("consent", Text("Consent", "Consentement"), "Art. 6.1.a"),
        LegalBasis("contract", Text("Performance of the contract", "Exécution du contrat"), "Art. 6.1.b"),
        LegalBasis("legal_obligation", Text("Legal obligation", "Obligation légale"), "Art. 6.1.c"),
        LegalBasis("legitimate_interest", Text("Legitimate interest", "Intérêt légitime"), "Art. 6.1.f"),
    )
}


@dataclass(frozen=True)
class Processing:
    """A row of table 4: a processing and its legal basis."""

    id: str
    label: Text
    legal_basis: str


PROCESSINGS: tuple[Processing, ...] = (
    Processing("account_management", Text("Account management", "Gestion du compte"), "contract"),
    Processing("invoicing", Text("Invoicing", "Facturation"), "contract"),
    Processing("tax_retention", Text("Tax retention", "Conservation fiscale"), "legal_obligation"),
    Processing("security", Text("Security", "Sécurité"), "legitimate_interest"),
    Processing("direct_marketing", Text("Direct marketing", "Prospection commerciale"), "consent"),
)


# --- 3. Purposes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Purpose:
    id: str
    section: str
    label: Text
    legal_basis: str


PURPOSES: tuple[Purpose, ...] = (
    Purpose(
        "invoicing_services",
        "3.1",
        Text("Provide the invoicing services", "Fournir les services de facturation"),
        "contract",
    ),
    Purpose(
        "account_management", "3.1", Text("Manage your user account", "Gérer votre compte utilisateur"), "contract"
    ),
    Purpose("payments", "3.1", Text("Process your payments", "Traiter vos paiements"), "contract"),
    Purpose("customer_support", "3.1", Text("Provide customer support", "Assurer le support client"), "contract"),
    Purpose(
        "invoice_retention",
        "3.2",
        Text(
            "Retention of invoices (10 years — Commercial Code)",
            "Conservation des factures (10 ans — Code de commerce)",
        ),
        "legal_obligation",
    ),
    Purpose(
        "authority_requests",
        "3.2",
        Text("Response to requests from authorities", "Réponse aux réquisitions des autorités"),
        "legal_obligation",
    ),
    Purpose("tax_fraud", "3.2", Text("Combating tax fraud", "Lutte contre la fraude fiscale"), "legal_obligation"),
    Purpose(
        "service_improvement",
        "3.3",
        Text("Improvement of our services", "Amélioration de nos services"),
        "legitimate_interest",
    ),
    Purpose("platform_security", "3.3", Text("Platform security", "Sécurité de la plateforme"), "legitimate_interest"),
    Purpose("fraud_prevention", "3.3", Text("Fraud prevention", "Prévention de la fraude"), "legitimate_interest"),
    Purpose(
        "usage_statistics",
        "3.3",
        Text("Anonymized usage statistics", "Statistiques d'utilisation anonymisées"),
        "legitimate_interest",
    ),
    Purpose(
        "newsletter",
        "3.4",
        Text("Sending marketing communications (newsletter)", "Envoi de communications commerciales (newsletter)"),
        "consent",
    ),
    Purpose(
        "analytics", "3.4", Text("Non-essential analytics cookies", "Cookies analytiques non essentiels"), "consent"
    ),
)

# The purposes that need consent (3.4); consent_events.purpose takes these values.
CONSENT_PURPOSES: tuple[str, ...] = tuple(p.id for p in PURPOSES if p.legal_basis == "consent")


# --- 2. Data categories -------------------------------------------------------------------


@dataclass(frozen=True)
class DataCategory:
    """A kind of personal data. `in_table` marks the rows of the policy's tables 2.1-2.3;
    the others are named by the policy's prose (2.3 note, 2.4, 3.4, 5, 7.1) or are the
    suite's own records (`from_policy=False`)."""

    id: str
    section: str
    label: Text
    purpose: Text
    legal_basis: str
    retention: tuple[str, ...]  # retention rule ids
    in_table: bool = False
    from_policy: bool = True
    note: Text | None = None


_ACCOUNT_LIFETIME = ("active_account", "inactive_account")

CATEGORIES: tuple[DataCategory, ...] = (
    # 2.1 Identification data
    DataCategory(
        "identification.name",
        "2.1",
        Text("First and last name", "Nom et prénom"),
        Text("Account identification", "Identification du compte"),
        "contract",
        _ACCOUNT_LIFETIME,
        True,
    ),
    DataCategory(
        "identification.email",
        "2.1",
        Text("Email address", "Adresse e-mail"),
        Text("Communication, authentication", "Communication, authentification"),
        "contract",
        _ACCOUNT_LIFETIME,
        True,
    ),
    DataCategory(
        "identification.phone",
        "2.1",
        Text("Phone number", "Numéro de téléphone"),
        Text("2FA authentication, support", "Authentification à deux facteurs, support"),
        "contract",
        _ACCOUNT_LIFETIME,
        True,
    ),
    DataCategory(
        "identification.siret_siren",
        "2.1",
        Text("SIRET / SIREN", "SIRET / SIREN"),
        Text("Business verification (KYB)", "Vérification de l'entreprise (KYB)"),
        "contract",
        (*_ACCOUNT_LIFETIME, "invoices"),
        True,
    ),
    DataCategory(
        "identification.company_name",
        "2.1",
        Text("Company name", "Raison sociale"),
        Text("Invoicing, identification", "Facturation, identification"),
        "contract",
        (*_ACCOUNT_LIFETIME, "invoices"),
        True,
    ),
    DataCategory(
        "identification.business_address",
        "2.1",
        Text("Business address", "Adresse professionnelle"),
        Text("Invoicing", "Facturation"),
        "contract",
        (*_ACCOUNT_LIFETIME, "invoices"),
        True,
    ),
    DataCategory(
        "identification.vat_number",
        "2.1",
        Text("Intra-EU VAT number", "Numéro de TVA intracommunautaire"),
        Text("Invoicing", "Facturation"),
        "legal_obligation",
        (*_ACCOUNT_LIFETIME, "invoices"),
        True,
    ),
    # 2.2 Technical data
    DataCategory(
        "technical.ip_address",
        "2.2",
        Text("IP address", "Adresse IP"),
        Text("Security, connection logs", "Sécurité, journaux de connexion"),
        "legitimate_interest",
        ("connection_logs", "access_logs"),
        True,
    ),
    DataCategory(
        "technical.user_agent",
        "2.2",
        Text("User-agent (browser, OS)", "User-agent (navigateur, système)"),
        Text("Compatibility, support", "Compatibilité, support"),
        "legitimate_interest",
        ("connection_logs", "access_logs"),
        True,
    ),
    DataCategory(
        "technical.access_logs",
        "2.2",
        Text("Access logs", "Journaux d'accès"),
        Text("Security, audit", "Sécurité, audit"),
        "legitimate_interest",
        ("access_logs",),
        True,
    ),
    DataCategory(
        "technical.action_timestamps",
        "2.2",
        Text("Action timestamps", "Horodatage des actions"),
        Text("Traceability, security", "Traçabilité, sécurité"),
        "legitimate_interest",
        ("connection_logs", "access_logs"),
        True,
    ),
    # 2.3 Payment data
    DataCategory(
        "payment.card",
        "2.3",
        Text("Bank card information", "Informations de carte bancaire"),
        Text("Payment", "Paiement"),
        "contract",
        (),
        True,
        note=Text(
            "Bank card data is processed directly by our payment provider Stripe and is never stored on our servers.",
            "Les données de carte bancaire sont traitées directement par notre prestataire de paiement Stripe et ne sont jamais stockées sur nos serveurs.",
        ),
    ),
    DataCategory(
        "payment.transactions",
        "2.3",
        Text(
            "Payment records (amount, status, card brand and last 4 digits, Stripe references)",
            "Historique des paiements (montant, statut, marque et 4 derniers chiffres de la carte, références Stripe)",
        ),
        Text("Payment", "Paiement"),
        "contract",
        ("payment_data",),
        note=Text(
            "Never the card number, security code or expiry date: at most the brand and last 4 digits, so that you can recognise a payment.",
            "Jamais le numéro de carte, le cryptogramme ni la date d'expiration : au plus la marque et les 4 derniers chiffres, pour vous permettre de reconnaître un paiement.",
        ),
    ),
    # 2.4 Data contained in documents
    DataCategory(
        "documents.invoices",
        "2.4",
        Text("Invoices and other documents you submit", "Factures et autres documents que vous déposez"),
        Text("Provide the invoicing services", "Fournir les services de facturation"),
        "contract",
        ("invoices",),
    ),
    DataCategory(
        "documents.third_parties",
        "2.4",
        Text(
            "Personal data of third parties in documents (names, addresses, etc.)",
            "Données personnelles de tiers figurant dans les documents (noms, adresses, etc.)",
        ),
        Text("Provide the invoicing services", "Fournir les services de facturation"),
        "contract",
        (*_ACCOUNT_LIFETIME, "invoices"),
        note=Text(
            "The user is responsible for ensuring that they have the necessary rights to submit these documents and that the persons concerned have been duly informed.",
            "L'utilisateur est responsable de disposer des droits nécessaires pour déposer ces documents et de l'information des personnes concernées.",
        ),
    ),
    # Named by the policy's prose rather than its tables
    DataCategory(
        "account.credentials",
        "7.1",
        Text(
            "Authentication secrets (password hash, 2FA secret, session and API key hashes)",
            "Secrets d'authentification (empreinte du mot de passe, secret 2FA, empreintes des sessions et clés d'API)",
        ),
        Text("Manage your user account", "Gérer votre compte utilisateur"),
        "contract",
        _ACCOUNT_LIFETIME,
    ),
    DataCategory(
        "consent.records",
        "3.4",
        Text(
            "Consent records (purpose, given or withdrawn, when, how)",
            "Preuves de consentement (finalité, donné ou retiré, quand, comment)",
        ),
        Text("Demonstrate consent (GDPR Art. 7.1)", "Démontrer le consentement (RGPD art. 7.1)"),
        "legal_obligation",
        _ACCOUNT_LIFETIME,
    ),
    DataCategory(
        "analytics.events",
        "3.4",
        Text("Analytics events (non-essential cookies)", "Événements analytiques (cookies non essentiels)"),
        Text("Non-essential analytics cookies", "Cookies analytiques non essentiels"),
        "consent",
        _ACCOUNT_LIFETIME,
    ),
    DataCategory(
        "usage.events",
        "3.3",
        Text("Usage events (pages and features used)", "Événements d'utilisation (pages et fonctions utilisées)"),
        Text(
            "Improvement of our services, anonymized usage statistics",
            "Amélioration de nos services, statistiques d'utilisation anonymisées",
        ),
        "legitimate_interest",
        _ACCOUNT_LIFETIME,
    ),
    DataCategory(
        "prospects.contact",
        "5",
        Text("Prospect contact details (non-clients)", "Coordonnées des prospects (non-clients)"),
        Text("Direct marketing", "Prospection commerciale"),
        "consent",
        ("prospects",),
    ),
    DataCategory(
        "rights.restrictions",
        "8.4",
        Text(
            "Restrictions and objections you asked for (Art. 18, 21)",
            "Limitations et oppositions que vous avez demandées (art. 18, 21)",
        ),
        Text("Honour your rights", "Respecter vos droits"),
        "legal_obligation",
        _ACCOUNT_LIFETIME,
    ),
    # The suite's own records (not categories of the policy)
    DataCategory(
        "suite.request_records",
        "9",
        Text(
            "Records of your privacy requests and their answers",
            "Traces de vos demandes relatives à vos données et des réponses apportées",
        ),
        Text("Proof of compliance (GDPR Art. 5.2)", "Preuve de conformité (RGPD art. 5.2)"),
        "legal_obligation",
        ("request_records",),
        from_policy=False,
    ),
    DataCategory(
        "suite.audit_trail",
        "9",
        Text("Audit trail of privacy operations (pseudonymised)", "Journal d'audit des opérations (pseudonymisé)"),
        Text("Proof of compliance (GDPR Art. 5.2)", "Preuve de conformité (RGPD art. 5.2)"),
        "legal_obligation",
        ("request_records",),
        from_policy=False,
    ),
    DataCategory(
        "suite.verification",
        "9.3",
        Text(
            "Identity verification records (hashed codes, attempts)",
            "Traces de vérification d'identité (codes hachés, tentatives)",
        ),
        Text("Identity verification", "Vérification d'identité"),
        "legitimate_interest",
        ("verification_records",),
        from_policy=False,
    ),
    DataCategory(
        "suite.policy_notices",
        "11",
        Text(
            "Policy-change notices sent to you and your acknowledgements",
            "Avis de modification de la politique qui vous ont été envoyés et vos prises de connaissance",
        ),
        Text(
            "Inform you of substantial changes to this policy",
            "Vous informer des modifications substantielles de cette politique",
        ),
        "legal_obligation",
        _ACCOUNT_LIFETIME,
        from_policy=False,
    ),
    DataCategory(
        "suite.exports",
        "8.1",
        Text(
            "Copies of your data prepared for access or portability",
            "Copies de vos données préparées pour l'accès ou la portabilité",
        ),
        Text("Right of access and portability", "Droit d'accès et à la portabilité"),
        "legal_obligation",
        ("exports",),
        from_policy=False,
    ),
)

_CATEGORIES_BY_ID = {c.id: c for c in CATEGORIES}


# --- 5. Retention rules ---------------------------------------------------------------------


class FinalAction(enum.StrEnum):
    DELETE = "delete"
    ANONYMISE = "anonymise"
    ERASE_ACCOUNT = "erase_account"  # the whole account goes through erasure (data map, processors)


@dataclass(frozen=True)
class RetentionRule:
    """How long one kind of data lives. `expires_at` = clock start + active + archive.

    `clock` names the column(s) or event that start the clock; with several
    columns the clock starts at the latest non-empty one (see `clock_start`).
    `active_months=None` means "duration of the contractual relationship": no
    fixed end, the data goes when the account does. `from_policy=False` marks
    the suite's own operational rules.
    """

    id: str
    data_type: Text
    period: Text  # the policy's wording
    clock: str
    clock_columns: tuple[str, ...]
    active_months: int | None
    final_action: FinalAction
    legal_basis: str
    legal_reference: str | None = None
    archive_months: int = 0
    active_days: int = 0
    warning_days_before: tuple[int, ...] = ()
    hold_while: str | None = None  # a condition that stops the clock (open dispute)
    configurable: bool = False
    from_policy: bool = True
    note: str | None = None

    @property
    def total_months(self) -> int | None:
        return None if self.active_months is None else self.active_months + self.archive_months


RETENTION_RULES: tuple[RetentionRule, ...] = (
    RetentionRule(
        "active_account",
        Text("Active account data", "Données des comptes actifs"),
        Text("Duration of the contractual relationship", "Durée de la relation contractuelle"),
        clock="end of the contract (account closure or erasure request)",
        clock_columns=(),
        active_months=None,
        final_action=FinalAction.ERASE_ACCOUNT,
        legal_basis="contract",
    ),
    RetentionRule(
        "inactive_account",
        Text("Inactive account data", "Données des comptes inactifs"),
        Text("3 years after last activity", "3 ans après la dernière activité"),
        clock="accounts.last_activity_at (a login or an API call by the account)",
        clock_columns=("accounts.last_activity_at",),
        active_months=36,
        final_action=FinalAction.ERASE_ACCOUNT,
        legal_basis="contract",
        warning_days_before=(30, 7),
        note="The user is warned 30 and 7 days before the end; any activity restarts the clock.",
    ),
    RetentionRule(
        "invoices",
        Text("Issued invoices", "Factures émises"),
        Text("10 years (legal obligation)", "10 ans (obligation légale)"),
        clock="invoices.issue_date",
        clock_columns=("invoices.issue_date",),
        active_months=120,
        final_action=FinalAction.DELETE,
        legal_basis="legal_obligation",
        legal_reference="Code de commerce, art. L123-22",
        configurable=True,
        note=(
            "The clock starts at the issue date printed on the invoice: the policy names no other start, and "
            "this reading keeps nothing longer than the 10 years the policy states (data minimisation). "
            "Accounting practice may count from the close of the financial year; that would lengthen the "
            "period and is a configuration choice (`configured_rule`), not a code change."
        ),
    ),
    RetentionRule(
        "connection_logs",
        Text("Connection logs", "Journaux de connexion"),
        Text("1 year (LCEN)", "1 an (LCEN)"),
        clock="connection_logs.occurred_at",
        clock_columns=("connection_logs.occurred_at",),
        active_months=12,
        final_action=FinalAction.DELETE,
        legal_basis="legal_obligation",
        legal_reference="LCEN (loi n° 2004-575 du 21 juin 2004), art. 6; décret n° 2021-1362",
    ),
    RetentionRule(
        "access_logs",
        Text("Access logs", "Journaux d'accès"),
        Text("1 year", "1 an"),
        clock="access_logs.occurred_at",
        clock_columns=("access_logs.occurred_at",),
        active_months=12,
        final_action=FinalAction.DELETE,
        legal_basis="legitimate_interest",
    ),
    RetentionRule(
        "payment_data",
        Text("Payment data", "Données de paiement"),
        Text("13 months (+ 5-year archives)", "13 mois (+ 5 ans d'archives)"),
        clock="the later of payment_records.transaction_at and the close of a dispute (payment_records.disputed_until)",
        clock_columns=("payment_records.transaction_at", "payment_records.disputed_until"),
        active_months=13,
        archive_months=60,
        final_action=FinalAction.DELETE,
        legal_basis="legal_obligation",
        legal_reference="Code monétaire et financier, art. L133-24 (13 months to contest a payment); Code de commerce, art. L110-4 (5-year archive)",
        hold_while="a dispute is open (payment_records.dispute_opened_at set, disputed_until NULL)",
        note=(
            "A dispute keeps the record active until it closes: while it is open the clock does not run, "
            "and once closed the clock starts at the later of the transaction date and the dispute's close "
            "(disputed_until)."
        ),
    ),
    RetentionRule(
        "prospects",
        Text("Prospects (non-clients)", "Prospects (non-clients)"),
        Text("3 years after last contact", "3 ans après le dernier contact"),
        clock="prospects.last_contact_at (last contact initiated by the prospect)",
        clock_columns=("prospects.last_contact_at",),
        active_months=36,
        final_action=FinalAction.DELETE,
        legal_basis="consent",
    ),
    # --- Operational rules of this suite: NOT from the policy ---
    RetentionRule(
        "exports",
        Text("Data exports (access, portability)", "Exports de données (accès, portabilité)"),
        Text("7 days", "7 jours"),
        clock="creation of the export file",
        clock_columns=(),
        active_months=0,
        active_days=7,
        final_action=FinalAction.DELETE,
        legal_basis="legal_obligation",
        from_policy=False,
        note="Operational rule: an export is a copy of personal data; it lives only long enough to be downloaded.",
    ),
    RetentionRule(
        "request_records",
        Text("Records of privacy requests and receipts", "Traces des demandes et accusés de réception"),
        Text("5 years after the request is closed", "5 ans après la clôture de la demande"),
        clock="dsr_requests.closed_at",
        clock_columns=("dsr_requests.closed_at",),
        active_months=60,
        final_action=FinalAction.DELETE,
        legal_basis="legal_obligation",
        legal_reference="GDPR Art. 5.2 (accountability); limitation period of civil claims, Code civil art. 2224",
        configurable=True,
        from_policy=False,
        note="Operational rule: proof that each request was answered, holding no personal data beyond an account id and pseudonyms.",
    ),
    RetentionRule(
        "verification_records",
        Text("Identity verification records", "Traces de vérification d'identité"),
        Text("30 days", "30 jours"),
        clock="creation of the code or attempt",
        clock_columns=(),
        active_months=0,
        active_days=30,
        final_action=FinalAction.DELETE,
        legal_basis="legitimate_interest",
        from_policy=False,
        note="Operational rule: codes live minutes; attempts are kept a month to spot abuse.",
    ),
    RetentionRule(
        "disclosure_records",
        Text(
            "Register of authority requests, disclosures and legal holds",
            "Registre des réquisitions des autorités, des communications et des gels de données",
        ),
        Text(
            "6 years after the last disclosure (or the release of the hold)",
            "6 ans après la dernière communication (ou la levée du gel)",
        ),
        clock="authority_requests.last_activity_at; legal_holds.released_at",
        clock_columns=("authority_requests.last_activity_at", "legal_holds.released_at"),
        active_months=72,
        final_action=FinalAction.DELETE,
        legal_basis="legal_obligation",
        legal_reference="GDPR Art. 5.2 (accountability); Livre des procédures fiscales art. L102 B (6 years)",
        configurable=True,
        from_policy=False,
        note="Operational rule (policy 6.4): proof of what was disclosed to which authority, when and how; "
        "institutions and ids only, no personal data.",
    ),
)

_RULES_BY_ID = {r.id: r for r in RETENTION_RULES}


def retention_rule(rule_id: str) -> RetentionRule:
    try:
        return _RULES_BY_ID[rule_id]
    except KeyError:
        raise KeyError(f"unknown retention rule {rule_id!r}") from None


def configured_rule(rule_id: str, *, active_months: int) -> RetentionRule:
    """The rule with an operator-chosen active period; only rules marked configurable.

    Invoices cannot go below the 10 legal years.
    """
    rule = retention_rule(rule_id)
    if not rule.configurable:
        raise ValueError(f"retention rule {rule_id!r} is fixed by the policy")
    if rule_id == "invoices" and active_months < 120:
        raise ValueError("invoices must be kept at least 10 years (Code de commerce, art. L123-22)")
    if active_months < 1:
        raise ValueError("active_months must be positive")
    return replace(rule, active_months=active_months)


def _rule(rule: str | RetentionRule) -> RetentionRule:
    return rule if isinstance(rule, RetentionRule) else retention_rule(rule)


def clock_start(*moments: D | None) -> D:
    """The clock starts at the latest known moment (e.g. transaction date vs dispute close)."""
    known = [m for m in moments if m is not None]
    if not known:
        raise ValueError("no clock start given")
    return max(known)


def archive_at(rule: str | RetentionRule, start: D) -> D:
    """End of the active period: the data moves to restricted archive (or ends, without archive)."""
    r = _rule(rule)
    if r.active_months is None:
        raise ValueError(f"retention rule {r.id!r} lasts as long as the contract: no fixed date")
    return add_months(start, r.active_months) + dt.timedelta(days=r.active_days)


def expires_at(rule: str | RetentionRule, start: D) -> D:
    """End of active + archive periods, when the final action happens.

    Computed from the clock start in one step (not archive_at + archive), so a
    month-end clamp in the active period does not shorten the total.
    """
    r = _rule(rule)
    if r.total_months is None:
        raise ValueError(f"retention rule {r.id!r} lasts as long as the contract: no fixed date")
    return add_months(start, r.total_months) + dt.timedelta(days=r.active_days)


def warning_dates(rule: str | RetentionRule, start: D) -> tuple[D, ...]:
    """When to warn the user before the end (inactive accounts: 30 and 7 days before)."""
    r = _rule(rule)
    end = expires_at(r, start)
    return tuple(end - dt.timedelta(days=d) for d in r.warning_days_before)


# --- 6. Recipients -------------------------------------------------------------------------


@dataclass(frozen=True)
class Subprocessor:
    id: str
    name: str
    service: Text
    location: Text
    compliance: tuple[str, ...]
    in_eu: bool = True


INTERNAL_ACCESS = Text(
    "Only authorized QR Communication staff have access to personal data, within the limits of their duties.",
    "Seul le personnel habilité de QR Communication a accès aux données personnelles, dans la limite de ses attributions.",
)

SUBPROCESSORS: tuple[Subprocessor, ...] = (
    Subprocessor(
        "scaleway",
        "Scaleway SAS",
        Text("Hosting (servers, DB, S3)", "Hébergement (serveurs, bases de données, S3)"),
        Text("France", "France"),
        ("ISO 27001", "HDS"),
    ),
    Subprocessor(
        "stripe",
        "Stripe, Inc.",
        Text("Online payments", "Paiements en ligne"),
        Text("Ireland (EU)", "Irlande (UE)"),
        ("PCI-DSS", "GDPR"),
    ),
    Subprocessor(
        "superpdp",
        "SuperPDP",
        Text("Transmission of electronic invoices (Factur-X)", "Transmission des factures électroniques (Factur-X)"),
        Text("EU", "UE"),
        ("GDPR",),
    ),
    Subprocessor(
        "resend",
        "Resend",
        Text("Transactional emails", "E-mails transactionnels"),
        Text("European Union", "Union européenne"),
        ("GDPR",),
    ),
)

AUTHORITIES: tuple[Text, ...] = (
    Text("Tax administration", "Administration fiscale"),
    Text("Courts", "Juridictions"),
)
AUTHORITIES_STATEMENT = Text(
    "We may be required to disclose data to the competent authorities (tax administration, courts) upon legal request.",
    "Nous pouvons être tenus de communiquer des données aux autorités compétentes (administration fiscale, juridictions) sur réquisition légale.",
)

NO_TRANSFER_OUTSIDE_EU = Text(
    "No data transfer outside the European Union takes place.",
    "Aucun transfert de données hors de l'Union européenne n'a lieu.",
)
# Enforced at start-up by shared.platform.config (the regions are defined there, once).
HOSTING_REGIONS = EU_REGIONS


# --- 8. Rights, 9. exercising them -----------------------------------------------------------


@dataclass(frozen=True)
class Right:
    id: str  # matches the request kinds of shared.records.registry where a request exists
    section: str
    label: Text
    gdpr_article: str
    description: Text
    article_in_policy: bool = True  # 8.7 and 8.8 name no article; ours is the GDPR's


RIGHTS: tuple[Right, ...] = (
    Right(
        "access",
        "8.1",
        Text("Right of access", "Droit d'accès"),
        "Art. 15",
        Text(
            "You may obtain confirmation that data concerning you is being processed and obtain a copy of it.",
            "Vous pouvez obtenir la confirmation que des données vous concernant sont traitées et en obtenir une copie.",
        ),
    ),
    Right(
        "rectification",
        "8.2",
        Text("Right to rectification", "Droit de rectification"),
        "Art. 16",
        Text(
            "You may request the correction of inaccurate or incomplete data.",
            "Vous pouvez demander la correction de données inexactes ou incomplètes.",
        ),
    ),
    Right(
        "erasure",
        "8.3",
        Text("Right to erasure", "Droit à l'effacement"),
        "Art. 17",
        Text(
            "You may request the deletion of your data, subject to legal retention obligations.",
            "Vous pouvez demander la suppression de vos données, sous réserve des obligations légales de conservation.",
        ),
    ),
    Right(
        "restriction",
        "8.4",
        Text("Right to restriction", "Droit à la limitation"),
        "Art. 18",
        Text(
            "You may request the restriction of processing in certain cases (contesting accuracy, unlawful processing, etc.).",
            "Vous pouvez demander la limitation du traitement dans certains cas (contestation de l'exactitude, traitement illicite, etc.).",
        ),
    ),
    Right(
        "portability",
        "8.5",
        Text("Right to portability", "Droit à la portabilité"),
        "Art. 20",
        Text(
            "You may receive your data in a structured, machine-readable format and transmit it to another data controller.",
            "Vous pouvez recevoir vos données dans un format structuré et lisible par machine et les transmettre à un autre responsable de traitement.",
        ),
    ),
    Right(
        "objection",
        "8.6",
        Text("Right to object", "Droit d'opposition"),
        "Art. 21",
        Text(
            "You may object to the processing of your data based on legitimate interest or for direct marketing purposes.",
            "Vous pouvez vous opposer au traitement de vos données fondé sur l'intérêt légitime ou à des fins de prospection.",
        ),
    ),
    Right(
        "consent_withdrawal",
        "8.7",
        Text("Right to withdraw consent", "Droit de retirer votre consentement"),
        "Art. 7.3",
        Text(
            "Where processing is based on consent, you may withdraw it at any time without affecting the lawfulness of prior processing.",
            "Lorsque le traitement repose sur votre consentement, vous pouvez le retirer à tout moment, sans remettre en cause la licéité du traitement antérieur.",
        ),
        article_in_policy=False,
    ),
    Right(
        "complaint",
        "8.8",
        Text("Right to lodge a complaint", "Droit d'introduire une réclamation"),
        "Art. 77",
        Text("You may lodge a complaint with the CNIL.", "Vous pouvez introduire une réclamation auprès de la CNIL."),
        article_in_policy=False,
    ),
)


@dataclass(frozen=True)
class LegitimateInterestObjection:
    """How an objection (Art. 21(1); policy 8.6) to a purpose of 3.3 is handled.

    `decided_by_dpo`: the objection is a request the DPO decides (compelling legitimate grounds,
    Art. 21(1), or accepted); otherwise it takes effect at once. `note` is part of the answer.
    """

    purpose: str
    decided_by_dpo: bool
    note: Text


_LOGS_STAY = (
    "Connection and access logs are kept 1 year whatever the outcome (LCEN), then deleted.",
    "Les journaux de connexion et d'accès sont conservés 1 an quelle que soit l'issue (LCEN), puis supprimés.",
)
LEGITIMATE_INTEREST_OBJECTIONS: tuple[LegitimateInterestObjection, ...] = (
    LegitimateInterestObjection(
        "service_improvement",
        False,
        Text(
            "Your usage events are no longer collected to improve our services, and those we held were deleted.",
            "Vos événements d'utilisation ne sont plus collectés pour améliorer nos services, et ceux que nous détenions ont été supprimés.",
        ),
    ),
    LegitimateInterestObjection(
        "usage_statistics",
        False,
        Text(
            "Your usage events are no longer collected for statistics, and those we held were deleted. Statistics already "
            "anonymised (aggregated without any identifier) no longer relate to you: they cannot be traced back to you.",
            "Vos événements d'utilisation ne sont plus collectés à des fins statistiques, et ceux que nous détenions ont été "
            "supprimés. Les statistiques déjà anonymisées (agrégées sans aucun identifiant) ne se rapportent plus à vous : "
            "elles ne permettent pas de remonter jusqu'à vous.",
        ),
    ),
    LegitimateInterestObjection(
        "platform_security",
        True,
        Text(
            "The DPO examines your objection: it is accepted unless there are compelling legitimate grounds for the "
            "processing; you are told the outcome within one month. " + _LOGS_STAY[0],
            "Le DPO examine votre opposition : elle est acceptée sauf motifs légitimes et impérieux justifiant le "
            "traitement ; l'issue vous est communiquée sous un mois. " + _LOGS_STAY[1],
        ),
    ),
    LegitimateInterestObjection(
        "fraud_prevention",
        True,
        Text(
            "The DPO examines your objection: it is accepted unless there are compelling legitimate grounds for the "
            "processing; you are told the outcome within one month. " + _LOGS_STAY[0],
            "Le DPO examine votre opposition : elle est acceptée sauf motifs légitimes et impérieux justifiant le "
            "traitement ; l'issue vous est communiquée sous un mois. " + _LOGS_STAY[1],
        ),
    ),
)


@dataclass(frozen=True)
class SupervisoryAuthority:
    name: str
    website: str
    address: str


CNIL = SupervisoryAuthority(
    name="CNIL",
    website="https://www.cnil.fr",
    address="3 Place de Fontenoy, TSA 80715, 75334 Paris Cedex 07",
)

# 9.2: one calendar month from receipt, extendable by two months for complex requests.
RESPONSE_MONTHS = 1
EXTENSION_MAX_MONTHS = 2

EXERCISE_CHANNELS: dict[str, Text] = {
    "email": Text(f"By email: {CONTROLLER.dpo_email}", f"Par e-mail : {CONTROLLER.dpo_email}"),
    "post": Text(f"By post: {CONTROLLER.rights_postal_address}", f"Par courrier : {CONTROLLER.rights_postal_address}"),
    "client_area": Text(
        "Via your client area: some actions (data export, account deletion) are available directly in your account settings.",
        "Depuis votre espace client : certaines actions (export des données, suppression du compte) sont disponibles directement dans les paramètres de votre compte.",
    ),
}
# Channels a DPO receives requests by (9.1), and the identity checks a DPO may record (9.3).
# Why a request may be refused or closed unanswered (GDPR Art. 12(4) and 12(5)), as the person is told.
REFUSAL_REASONS: dict[str, Text] = {
    "manifestly_unfounded": Text(
        "The request is manifestly unfounded (GDPR Article 12(5)).",
        "La demande est manifestement infondée (article 12, paragraphe 5, du RGPD).",
    ),
    "excessive": Text(
        "The request is excessive, in particular because of its repetitive character (GDPR Article 12(5)).",
        "La demande est excessive, notamment en raison de son caractère répétitif (article 12, paragraphe 5, du RGPD).",
    ),
    "identity_not_established": Text(
        "We could not establish your identity (GDPR Article 12(6)); you may write again with the information asked.",
        "Nous n'avons pas pu établir votre identité (article 12, paragraphe 6, du RGPD) ; vous pouvez nous écrire de nouveau avec les éléments demandés.",
    ),
    "legal_obligation_to_retain": Text(
        "We are bound by law to keep these data for the period the law sets (GDPR Article 17(3)(b)).",
        "Nous sommes tenus par la loi de conserver ces données pendant la durée qu'elle fixe (article 17, paragraphe 3, b, du RGPD).",
    ),
    "not_the_controller": Text(
        "We are not the controller of these data: the company that issued the documents naming you is, and we have told it of your request.",
        "Nous ne sommes pas responsables de ce traitement : l'entreprise qui a émis les documents vous mentionnant l'est, et nous lui avons transmis votre demande.",
    ),
}
DPO_CHANNELS: tuple[str, ...] = ("email", "post")
IDENTITY_VERIFICATION_METHODS: tuple[str, ...] = (
    "account_email_confirmed",
    "identity_document",
    "postal_address_confirmed",
    "signed_letter",
)
RESPONSE_TIME = Text(
    "We undertake to respond to your request within one month of receipt. This period may be extended by two months for complex requests, in which case you will be informed.",
    "Nous nous engageons à répondre à votre demande dans un délai d'un mois à compter de sa réception. Ce délai peut être prolongé de deux mois pour les demandes complexes ; vous en êtes alors informé.",
)
IDENTITY_VERIFICATION = Text(
    "For security reasons, we may ask you to prove your identity before processing your request.",
    "Pour des raisons de sécurité, nous pouvons vous demander de justifier de votre identité avant de traiter votre demande.",
)


# --- 11. Amendment of the policy -------------------------------------------------------------


@dataclass(frozen=True)
class PolicyVersion:
    """One version of the policy: when it took effect, what changed, and whether the change is
    substantial (policy 11: then every account is told by email and in the client area)."""

    number: str
    effective_date: dt.date
    summary: Text
    substantial: bool


# Every version, oldest first; the last one whose date has come is in force. A new version is
# appended here (with POLICY_VERSION and POLICY_EFFECTIVE_DATE moved to it) and, when substantial,
# announced to every account by `privacy-functions policy announce` or the announce-policy-changes CRON.
POLICY_VERSIONS: tuple[PolicyVersion, ...] = (
    PolicyVersion(
        "1.1",
        dt.date(2026, 6, 14),
        Text(
            "The version in force when this service started: no change to announce.",
            "La version en vigueur au lancement de ce service : aucun changement à annoncer.",
        ),
        substantial=False,
    ),
)


def policy_version(number: str) -> PolicyVersion:
    for v in POLICY_VERSIONS:
        if v.number == number:
            return v
    raise KeyError(f"unknown policy version {number!r}")


def version_in_force(on: dt.date | None = None) -> PolicyVersion:
    """The latest declared version whose effective date is `on` or before (today, UTC, by default)."""
    on = on or dt.datetime.now(dt.UTC).date()
    in_force = [v for v in POLICY_VERSIONS if v.effective_date <= on]
    return in_force[-1] if in_force else POLICY_VERSIONS[0]


# --- Lookups -----------------------------------------------------------------------------------


def category(category_id: str) -> DataCategory:
    try:
        return _CATEGORIES_BY_ID[category_id]
    except KeyError:
        raise KeyError(f"unknown data category {category_id!r}") from None


def categories_in_section(section: str) -> tuple[DataCategory, ...]:
    return tuple(c for c in CATEGORIES if c.section == section)


def purpose(purpose_id: str) -> Purpose:
    for p in PURPOSES:
        if p.id == purpose_id:
            return p
    raise KeyError(f"unknown purpose {purpose_id!r}")


def subprocessor(subprocessor_id: str) -> Subprocessor:
    for s in SUBPROCESSORS:
        if s.id == subprocessor_id:
            return s
    raise KeyError(f"unknown subprocessor {subprocessor_id!r}")


def right(right_id: str) -> Right:
    for r in RIGHTS:
        if r.id == right_id:
            return r
    raise KeyError(f"unknown right {right_id!r}")


# --- Art. 15(1) information, embedded in every export ------------------------------------------


def _basis(basis_id: str, language: str) -> dict[str, str]:
    b = LEGAL_BASES[basis_id]
    return {"id": b.id, "label": b.label.get(language), "gdpr_article": b.gdpr_article}


def _rule_json(r: RetentionRule, language: str) -> dict[str, Any]:
    return {
        "id": r.id,
        "data_type": r.data_type.get(language),
        "period": r.period.get(language),
        "starts": r.clock,
        "active_months": r.active_months,
        "archive_months": r.archive_months,
        "active_days": r.active_days,
        "at_the_end": r.final_action.value,
        "legal_basis": _basis(r.legal_basis, language),
        "legal_reference": r.legal_reference,
        "from_policy": r.from_policy,
    }


def art15_information(language: str = "en") -> dict[str, Any]:
    """What Art. 15(1) GDPR says an access answer must tell: purposes, categories,
    recipients, retention, rights, complaint. JSON-ready; raises ValueError on an
    unsupported language."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {LANGUAGES}")
    return {
        "policy": {
            "version": POLICY_VERSION,
            "effective_date": POLICY_EFFECTIVE_DATE.isoformat(),
            "language": language,
        },
        "controller": {
            "name": CONTROLLER.name,
            "registered_office": CONTROLLER.registered_office,
            "registration": CONTROLLER.registration,
            "vat_number": CONTROLLER.vat_number,
            "dpo_email": CONTROLLER.dpo_email,
        },
        "purposes": [
            {
                "id": p.id,
                "section": p.section,
                "label": p.label.get(language),
                "legal_basis": _basis(p.legal_basis, language),
            }
            for p in PURPOSES
        ],
        "processings": [
            {"id": p.id, "label": p.label.get(language), "legal_basis": _basis(p.legal_basis, language)}
            for p in PROCESSINGS
        ],
        "categories": [
            {
                "id": c.id,
                "section": c.section,
                "label": c.label.get(language),
                "purpose": c.purpose.get(language),
                "legal_basis": _basis(c.legal_basis, language),
                "retention": list(c.retention),
                "note": c.note.get(language) if c.note else None,
            }
            for c in CATEGORIES
        ],
        "retention": [_rule_json(r, language) for r in RETENTION_RULES],
        "recipients": {
            "internal": INTERNAL_ACCESS.get(language),
            "subprocessors": [
                {
                    "id": s.id,
                    "name": s.name,
                    "service": s.service.get(language),
                    "location": s.location.get(language),
                    "compliance": list(s.compliance),
                }
                for s in SUBPROCESSORS
            ],
            "authorities": AUTHORITIES_STATEMENT.get(language),
        },
        "transfers_outside_eu": NO_TRANSFER_OUTSIDE_EU.get(language),
        "hosting_regions": list(HOSTING_REGIONS),
        "rights": [
            {
                "id": r.id,
                "section": r.section,
                "label": r.label.get(language),
                "gdpr_article": r.gdpr_article,
                "description": r.description.get(language),
            }
            for r in RIGHTS
        ],
        "how_to_exercise": {
            "channels": {name: text.get(language) for name, text in EXERCISE_CHANNELS.items()},
            "email": CONTROLLER.dpo_email,
            "postal_address": CONTROLLER.rights_postal_address,
            "response_time": RESPONSE_TIME.get(language),
            "response_months": RESPONSE_MONTHS,
            "extension_max_months": EXTENSION_MAX_MONTHS,
            "identity_verification": IDENTITY_VERIFICATION.get(language),
        },
        "complaint": {"authority": CNIL.name, "website": CNIL.website, "address": CNIL.address},
    }


# --- 7. Data security, and what Art. 13-15 add for people without an account ----------------


@dataclass(frozen=True)
class SecurityMeasure:
    section: str  # 7.1 technical, 7.2 organisational, 7.3 certifications
    label: Text


SECURITY_MEASURES: tuple[SecurityMeasure, ...] = (
    SecurityMeasure(
        "7.1", Text("Encryption of data in transit (TLS 1.3)", "Chiffrement des données en transit (TLS 1.3)")
    ),
    SecurityMeasure("7.1", Text("Encryption of data at rest (AES-256)", "Chiffrement des données au repos (AES-256)")),
    SecurityMeasure(
        "7.1", Text("Two-factor authentication (2FA) available", "Authentification à deux facteurs (2FA) disponible")
    ),
    SecurityMeasure("7.1", Text("Secure password hashing (bcrypt)", "Hachage sécurisé des mots de passe (bcrypt)")),
    SecurityMeasure(
        "7.1",
        Text(
            "Secrets and credentials hashed (not stored in clear text)",
            "Secrets et identifiants hachés (jamais stockés en clair)",
        ),
    ),
    SecurityMeasure("7.1", Text("Web application firewall (WAF)", "Pare-feu applicatif (WAF)")),
    SecurityMeasure("7.1", Text("Intrusion detection", "Détection d'intrusion")),
    SecurityMeasure(
        "7.2",
        Text(
            "Restricted access based on the principle of least privilege",
            "Accès restreint selon le principe du moindre privilège",
        ),
    ),
    SecurityMeasure("7.2", Text("Staff security training", "Formation du personnel à la sécurité")),
    SecurityMeasure("7.2", Text("Incident management policy", "Politique de gestion des incidents")),
    SecurityMeasure("7.2", Text("Regular security audits", "Audits de sécurité réguliers")),
    SecurityMeasure(
        "7.3",
        Text(
            "Infrastructure hosted on ISO 27001-certified servers",
            "Infrastructure hébergée sur des serveurs certifiés ISO 27001",
        ),
    ),
    SecurityMeasure("7.3", Text("Compliance with ANSSI recommendations", "Conformité aux recommandations de l'ANSSI")),
)

# Art. 15(1)(h), 13(2)(f): no decision based solely on automated processing is made about anyone.
NO_AUTOMATED_DECISION = Text(
    "No decision based solely on automated processing, including profiling, is made about you (GDPR Art. 22).",
    "Aucune décision fondée exclusivement sur un traitement automatisé, y compris le profilage, n'est prise à votre égard (RGPD art. 22).",
)
