"""Where each category of personal data comes from, and automated decisions (GDPR Art. 15(1)(g) and (h)).

Art. 15(1)(g): when data was not collected from the person, any available information on its
source. Art. 15(1)(h): the existence of automated decision-making, including profiling (Art. 22).
The access answer (the export's data.json and README.html) states both for every category of
`facts.CATEGORIES`; a test keeps this table complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.policy.facts import CATEGORIES, LANGUAGES, Text


@dataclass(frozen=True)
class Source:
    id: str
    label: Text


SOURCES: tuple[Source, ...] = (
    Source(
        "user",
        Text(
            "From you: what you entered when creating or using your account",
            "De vous : ce que vous avez saisi à la création ou lors de l'utilisation de votre compte",
        ),
    ),
    Source(
        "usage",
        Text(
            "Recorded by our systems when you use the Platform (connections, requests, cookies you accepted)",
            "Enregistré par nos systèmes lorsque vous utilisez la Plateforme (connexions, requêtes, cookies acceptés)",
        ),
    ),
    Source(
        "stripe",
        Text(
            "From our payment provider Stripe (payments, their status and references)",
            "De notre prestataire de paiement Stripe (paiements, leur statut et leurs références)",
        ),
    ),
    Source(
        "documents",
        Text(
            "From the documents users submit (invoices and their lines, clients named in them)",
            "Des documents déposés par les utilisateurs (factures et leurs lignes, clients qui y figurent)",
        ),
    ),
    Source(
        "suite",
        Text(
            "Produced by us when handling your privacy requests",
            "Produit par nous lors du traitement de vos demandes relatives à vos données",
        ),
    ),
)
_SOURCES_BY_ID = {s.id: s for s in SOURCES}

CATEGORY_SOURCES: dict[str, tuple[str, ...]] = {
    "identification.name": ("user",),
    "identification.email": ("user",),
    "identification.phone": ("user",),
    "identification.siret_siren": ("user",),
    "identification.company_name": ("user",),
    "identification.business_address": ("user",),
    "identification.vat_number": ("user",),
    "technical.ip_address": ("usage",),
    "technical.user_agent": ("usage",),
    "technical.access_logs": ("usage",),
    "technical.action_timestamps": ("usage",),
    "payment.card": ("stripe",),
    "payment.transactions": ("stripe",),
    "documents.invoices": ("documents",),
    "documents.third_parties": ("documents",),
    "account.credentials": ("user",),
    "consent.records": ("user", "usage"),
    "analytics.events": ("usage",),
    "usage.events": ("usage",),
    "prospects.contact": ("user",),
    "rights.restrictions": ("user",),
    "suite.request_records": ("suite",),
    "suite.audit_trail": ("suite",),
    "suite.verification": ("suite",),
    "suite.exports": ("suite",),
    "suite.policy_notices": ("suite",),
}

NO_AUTOMATED_DECISIONS = Text(
    "No decision based solely on automated processing, including profiling, that produces legal effects "
    "concerning you or similarly significantly affects you is taken (GDPR Art. 22); we do not profile you.",
    "Aucune décision fondée exclusivement sur un traitement automatisé, y compris le profilage, produisant des "
    "effets juridiques vous concernant ou vous affectant de manière significative de façon similaire n'est prise "
    "(RGPD art. 22) ; nous ne réalisons aucun profilage.",
)


def source(source_id: str) -> Source:
    return _SOURCES_BY_ID[source_id]


def category_sources(category_id: str) -> tuple[Source, ...]:
    """The sources of a category (KeyError for a category this table does not know)."""
    return tuple(_SOURCES_BY_ID[s] for s in CATEGORY_SOURCES[category_id])


def sources_json() -> dict[str, Any]:
    """JSON-ready: the source ids of every category and each source's label in every language."""
    return {
        "categories": {c.id: list(CATEGORY_SOURCES[c.id]) for c in CATEGORIES},
        "labels": {s.id: {language: s.label.get(language) for language in LANGUAGES} for s in SOURCES},
    }


def automated_decisions_json() -> dict[str, Any]:
    return {
        "automated_decision_making": False,
        "profiling": False,
        "statement": {language: NO_AUTOMATED_DECISIONS.get(language) for language in LANGUAGES},
    }
