"""The register of processing activities (GDPR Art. 30), generated from the policy as data.

    register_of_processing(language="en") -> dict
        controller and DPO; one activity per purpose of the policy (3.1 to 3.4) and one for the
        handling of requests (9): its legal basis, categories of data subjects and of personal data,
        recipients (internal staff, subprocessors, authorities), transfers outside the EU (none),
        retention and security measures; then the processing the platform does as processor for its
        users (Art. 30(2), policy 2.4) and the security measures (7).
    render(register, fmt) -> str        fmt: "md" | "json" | "csv"
    to_markdown(register), to_json(register), to_csv(register) -> str
        csv: one line per activity (and the processor's), lists joined with "; ".

Everything comes from shared.policy.facts (purposes, categories, retention rules, subprocessors,
security measures); this module adds only which categories, data subjects and recipients each
purpose involves (ACTIVITY_DATA), and tests check that every purpose and every category appears.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from shared.policy import facts as policy

FORMATS = ("md", "json", "csv")

DATA_SUBJECTS: dict[str, policy.Text] = {
    "users": policy.Text(
        "Users of the platform (account holders and their staff)",
        "Utilisateurs de la plateforme (titulaires de compte et leurs collaborateurs)",
    ),
    "third_parties": policy.Text(
        "Third parties named in users' documents (their clients and contacts)",
        "Tiers figurant dans les documents des utilisateurs (leurs clients et contacts)",
    ),
    "prospects": policy.Text("Prospects (non-clients)", "Prospects (non-clients)"),
}

REQUESTS_ACTIVITY = "data_protection_requests"
REQUESTS_LABEL = policy.Text(
    "Handling data protection requests and proving compliance (9, GDPR Art. 5.2, 12)",
    "Traitement des demandes d'exercice des droits et preuve de la conformité (9, RGPD art. 5.2, 12)",
)
AUTHORITIES = "authorities"


@dataclass(frozen=True)
class ActivityData:
    categories: tuple[str, ...]
    subjects: tuple[str, ...]
    recipients: tuple[str, ...]  # subprocessor ids, and "authorities"


_IDENTIFICATION = tuple(c.id for c in policy.categories_in_section("2.1"))
_BUSINESS = (
    "identification.company_name",
    "identification.siret_siren",
    "identification.vat_number",
    "identification.business_address",
)
_TECHNICAL = tuple(c.id for c in policy.categories_in_section("2.2"))

ACTIVITY_DATA: dict[str, ActivityData] = {
    "invoicing_services": ActivityData(
        (*_BUSINESS, "identification.name", "identification.email", "documents.invoices", "documents.third_parties"),
        ("users", "third_parties"),
        ("scaleway", "superpdp", "resend"),
    ),
    "account_management": ActivityData(
        (
            "identification.name",
            "identification.email",
            "identification.phone",
            "account.credentials",
            "technical.action_timestamps",
        ),
        ("users",),
        ("scaleway", "resend"),
    ),
    "payments": ActivityData(
        ("identification.name", "identification.email", "payment.card", "payment.transactions"),
        ("users",),
        ("scaleway", "stripe"),
    ),
    "customer_support": ActivityData(
        ("identification.name", "identification.email", "identification.phone", "technical.user_agent"),
        ("users",),
        ("scaleway", "resend"),
    ),
    "invoice_retention": ActivityData(
        (*_BUSINESS, "documents.invoices", "documents.third_parties"),
        ("users", "third_parties"),
        ("scaleway", AUTHORITIES),
    ),
    "authority_requests": ActivityData(
        (
            *_IDENTIFICATION,
            "documents.invoices",
            "documents.third_parties",
            "technical.ip_address",
            "technical.access_logs",
            "payment.transactions",
        ),
        ("users", "third_parties"),
        ("scaleway", AUTHORITIES),
    ),
    "tax_fraud": ActivityData(
        ("identification.siret_siren", "identification.vat_number", "documents.invoices", "payment.transactions"),
        ("users", "third_parties"),
        ("scaleway", AUTHORITIES),
    ),
    "service_improvement": ActivityData(
        ("technical.user_agent", "technical.action_timestamps", "usage.events"), ("users",), ("scaleway",)
    ),
    "platform_security": ActivityData((*_TECHNICAL, "account.credentials"), ("users",), ("scaleway",)),
    "fraud_prevention": ActivityData(
        ("identification.siret_siren", "technical.ip_address", "payment.transactions"),
        ("users",),
        ("scaleway", "stripe"),
    ),
    "usage_statistics": ActivityData(("technical.action_timestamps", "usage.events"), ("users",), ("scaleway",)),
    "newsletter": ActivityData(
        ("identification.name", "identification.email", "consent.records", "prospects.contact"),
        ("users", "prospects"),
        ("scaleway", "resend"),
    ),
    "analytics": ActivityData(
        ("analytics.events", "consent.records", "technical.user_agent"), ("users",), ("scaleway",)
    ),
    REQUESTS_ACTIVITY: ActivityData(
        (
            "suite.request_records",
            "suite.audit_trail",
            "suite.verification",
            "suite.exports",
            "rights.restrictions",
            "suite.policy_notices",
            "identification.email",
            "identification.name",
        ),
        ("users", "third_parties", "prospects"),
        ("scaleway", "resend"),
    ),
}

# Art. 30(2): what the platform does as its users' processor (policy 2.4).
PROCESSOR_CATEGORIES = ("documents.invoices", "documents.third_parties")
PROCESSOR_SUBPROCESSORS = ("scaleway", "superpdp", "resend")
PROCESSOR_LABEL = policy.Text(
    "Invoicing services on behalf of users: the data of third parties in their documents",
    "Services de facturation pour le compte des utilisateurs : les données des tiers figurant dans leurs documents",
)
PROCESSOR_CONTROLLERS = policy.Text(
    "Each user (account holder) is the controller of their clients' data",
    "Chaque utilisateur (titulaire de compte) est responsable du traitement des données de ses clients",
)


def _basis(basis_id: str, language: str) -> dict[str, str]:
    b = policy.LEGAL_BASES[basis_id]
    return {"id": b.id, "label": b.label.get(language), "gdpr_article": b.gdpr_article}


def _recipients(ids: tuple[str, ...], language: str) -> dict[str, Any]:
    subprocessors = []
    for sub_id in ids:
        if sub_id == AUTHORITIES:
            continue
        s = policy.subprocessor(sub_id)
        subprocessors.append(
            {
                "id": s.id,
                "name": s.name,
                "service": s.service.get(language),
                "location": s.location.get(language),
                "in_eu": s.in_eu,
            }
        )
    return {
        "internal": policy.INTERNAL_ACCESS.get(language),
        "subprocessors": subprocessors,
        "authorities": policy.AUTHORITIES_STATEMENT.get(language) if AUTHORITIES in ids else None,
    }


def _transfers(ids: tuple[str, ...], language: str) -> dict[str, Any]:
    outside = [s for s in ids if s != AUTHORITIES and not policy.subprocessor(s).in_eu]
    return {"outside_eu": outside, "statement": policy.NO_TRANSFER_OUTSIDE_EU.get(language)}


def _retention(categories: tuple[str, ...], language: str) -> list[dict[str, Any]]:
    rules = dict.fromkeys(r for c in categories for r in policy.category(c).retention)
    out = []
    for rule_id in rules:
        r = policy.retention_rule(rule_id)
        out.append(
            {
                "id": r.id,
                "data_type": r.data_type.get(language),
                "period": r.period.get(language),
                "at_the_end": r.final_action.value,
                "legal_reference": r.legal_reference,
            }
        )
    return out


def _categories(categories: tuple[str, ...], language: str) -> list[dict[str, str]]:
    return [{"id": c, "label": policy.category(c).label.get(language)} for c in categories]


def _activity(
    activity_id: str, label: policy.Text, section: str, basis: str, from_policy: bool, language: str
) -> dict[str, Any]:
    data = ACTIVITY_DATA[activity_id]
    return {
        "id": activity_id,
        "name": label.get(language),
        "section": section,
        "from_policy": from_policy,
        "legal_basis": _basis(basis, language),
        "data_subjects": [{"id": s, "label": DATA_SUBJECTS[s].get(language)} for s in data.subjects],
        "data_categories": _categories(data.categories, language),
        "recipients": _recipients(data.recipients, language),
        "transfers": _transfers(data.recipients, language),
        "retention": _retention(data.categories, language),
        "security_measures": "security_measures",
    }


def register_of_processing(language: str = "en") -> dict[str, Any]:
    if language not in policy.LANGUAGES:
        raise ValueError(f"unsupported language {language!r}; expected one of {policy.LANGUAGES}")
    c = policy.CONTROLLER
    activities = [_activity(p.id, p.label, p.section, p.legal_basis, True, language) for p in policy.PURPOSES]
    activities.append(_activity(REQUESTS_ACTIVITY, REQUESTS_LABEL, "9", "legal_obligation", False, language))
    return {
        "title": {
            "en": "Register of processing activities (GDPR Art. 30)",
            "fr": "Registre des activités de traitement (RGPD art. 30)",
        }[language],
        "language": language,
        "policy": {"version": policy.POLICY_VERSION, "effective_date": policy.POLICY_EFFECTIVE_DATE.isoformat()},
        "controller": {
            "name": c.name,
            "legal_form": c.legal_form.get(language),
            "registration": c.registration,
            "registered_office": c.registered_office,
            "representative": c.representative,
            "dpo_email": c.dpo_email,
            "contact_email": c.contact_email,
        },
        "activities": activities,
        "as_processor": {
            "name": PROCESSOR_LABEL.get(language),
            "controllers": PROCESSOR_CONTROLLERS.get(language),
            "data_subjects": [{"id": "third_parties", "label": DATA_SUBJECTS["third_parties"].get(language)}],
            "data_categories": _categories(PROCESSOR_CATEGORIES, language),
            "recipients": _recipients(PROCESSOR_SUBPROCESSORS, language),
            "transfers": _transfers(PROCESSOR_SUBPROCESSORS, language),
            "retention": _retention(PROCESSOR_CATEGORIES, language),
        },
        "transfers_outside_eu": {
            "statement": policy.NO_TRANSFER_OUTSIDE_EU.get(language),
            "hosting_regions": list(policy.HOSTING_REGIONS),
        },
        "security_measures": [{"section": m.section, "label": m.label.get(language)} for m in policy.SECURITY_MEASURES],
    }


# --- Renderers ------------------------------------------------------------------------------------------


def to_json(register: dict[str, Any]) -> str:
    return json.dumps(register, ensure_ascii=False, indent=2) + "\n"


def _recipient_names(recipients: dict[str, Any]) -> list[str]:
    names = [f"{s['name']} ({s['service']}, {s['location']})" for s in recipients["subprocessors"]]
    if recipients["authorities"]:
        names.append(recipients["authorities"])
    return names


def _retention_text(retention: list[dict[str, Any]]) -> list[str]:
    return [f"{r['data_type']}: {r['period']}" for r in retention]


def _rows(register: dict[str, Any]) -> list[dict[str, str]]:
    security = "; ".join(m["label"] for m in register["security_measures"])
    rows = []
    for a in [
        *register["activities"],
        {
            **register["as_processor"],
            "id": "as_processor",
            "section": "2.4",
            "legal_basis": {"label": register["as_processor"]["controllers"], "gdpr_article": "Art. 28"},
        },
    ]:
        rows.append(
            {
                "id": a["id"],
                "activity": a["name"],
                "section": a["section"],
                "legal_basis": f"{a['legal_basis']['label']} ({a['legal_basis']['gdpr_article']})",
                "data_subjects": "; ".join(s["label"] for s in a["data_subjects"]),
                "data_categories": "; ".join(c["label"] for c in a["data_categories"]),
                "recipients": "; ".join(_recipient_names(a["recipients"])),
                "transfers_outside_eu": "; ".join(a["transfers"]["outside_eu"]) or a["transfers"]["statement"],
                "retention": "; ".join(_retention_text(a["retention"])),
                "security_measures": security,
            }
        )
    return rows


CSV_COLUMNS = (
    "id",
    "activity",
    "section",
    "legal_basis",
    "data_subjects",
    "data_categories",
    "recipients",
    "transfers_outside_eu",
    "retention",
    "security_measures",
)


def to_csv(register: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_rows(register))
    return out.getvalue()


_MD_LABELS = {
    "en": {
        "legal_basis": "Legal basis",
        "data_subjects": "Data subjects",
        "data_categories": "Categories of data",
        "recipients": "Recipients",
        "transfers_outside_eu": "Transfers outside the EU",
        "retention": "Retention",
        "policy": "Privacy policy",
        "section": "section",
        "regions": "Hosting regions",
        "security_measures": "Security measures",
    },
    "fr": {
        "legal_basis": "Base légale",
        "data_subjects": "Personnes concernées",
        "data_categories": "Catégories de données",
        "recipients": "Destinataires",
        "transfers_outside_eu": "Transferts hors de l'UE",
        "retention": "Conservation",
        "policy": "Politique de confidentialité",
        "section": "section",
        "regions": "Régions d'hébergement",
        "security_measures": "Mesures de sécurité",
    },
}


def to_markdown(register: dict[str, Any]) -> str:
    c = register["controller"]
    label = _MD_LABELS[register["language"]]
    lines = [
        f"# {register['title']}",
        "",
        f"{c['name']} — {c['registered_office']} — {c['registration']}  ",
        f"{c['representative']} — DPO: {c['dpo_email']}  ",
        f"{label['policy']} {register['policy']['version']} ({register['policy']['effective_date']})",
        "",
    ]
    for row in _rows(register):
        lines += [f"## {row['activity']}", "", f"- id: `{row['id']}` ({label['section']} {row['section']})"]
        for key in CSV_COLUMNS[3:-1]:
            lines.append(f"- {label[key]}: {row[key]}")
        lines.append("")
    lines += [
        f"## {label['transfers_outside_eu']}",
        "",
        register["transfers_outside_eu"]["statement"],
        f"{label['regions']}: {', '.join(register['transfers_outside_eu']['hosting_regions'])}",
        "",
        f"## {label['security_measures']}",
        "",
    ]
    lines += [f"- {m['label']} ({m['section']})" for m in register["security_measures"]]
    return "\n".join(lines) + "\n"


def render(register: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return to_json(register)
    if fmt == "csv":
        return to_csv(register)
    if fmt == "md":
        return to_markdown(register)
    raise ValueError(f"format is one of {FORMATS}")
