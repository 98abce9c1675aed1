"""What the client area sees: the identification data held (policy 2.1) and who else holds each field."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from shared.policy import facts as policy
from shared.records.registry import find_open_request
from shared.rights.rectification.applying import (
    FIELD_CATEGORIES,
    KIND,
    account_companies,
    held_by,
    load_account,
    request_view,
)
from shared.rights.rectification.email_change import pending_change, pending_view

ISSUED_INVOICES = {
    "fr": "Les factures déjà émises gardent les mentions imprimées (Code de commerce) ; "
    "une correction s'applique aux factures émises ensuite.",
    "en": "Invoices already issued keep what was printed on them (Code de commerce); "
    "a correction applies to invoices issued afterwards.",
}


def _field(name: str, value: Any, *, stripe_customer: bool, rectifiable: bool = True, **extra: Any) -> dict[str, Any]:
    holders = [h for h in held_by(name) if h != "stripe" or stripe_customer] if name in FIELD_CATEGORIES else []
    category = policy.category(FIELD_CATEGORIES.get(name, "identification.siret_siren"))
    return {
        "value": value,
        "category": category.id,
        "label": {"fr": category.label.fr, "en": category.label.en},
        "also_held_by": [{"id": h, "name": policy.subprocessor(h).name} for h in holders],
        "rectifiable": rectifiable,
        **extra,
    }


def held_data(conn: Connection, account_id: str) -> dict[str, Any]:
    """The identification data of the account, each field with the processors that also hold it."""
    account = load_account(conn, account_id)
    stripe = bool(account.stripe_customer_id)
    held = account_companies(conn, account_id)
    pending = pending_change(conn, account_id)
    open_request = find_open_request(conn, account_id=account_id, kind=KIND)
    return {
        "account_id": account_id,
        "fields": {
            "first_name": _field("first_name", account.first_name, stripe_customer=stripe),
            "last_name": _field("last_name", account.last_name, stripe_customer=stripe),
            "email": _field(
                "email", account.email, stripe_customer=stripe, confirmation="code mailed to the new address"
            ),
            "phone": _field("phone", account.phone, stripe_customer=stripe),
        },
        "companies": [
            {
                "company_id": company.id,
                "billing": index == 0,  # the address Stripe's customer carries
                "fields": {
                    "company_name": _field("company_name", company.name, stripe_customer=stripe),
                    "business_address": _field(
                        "business_address",
                        {
                            "line1": company.address_line1,
                            "line2": company.address_line2,
                            "postal_code": company.postal_code,
                            "city": company.city,
                            "country": company.country,
                        },
                        stripe_customer=stripe and index == 0,
                    ),
                    "vat_number": _field("vat_number", company.vat_number, stripe_customer=stripe),
                    # From business verification (KYB): corrected through the DPO, not here.
                    "siren": _field("siren", company.siren, stripe_customer=False, rectifiable=False),
                    "siret": _field("siret", company.siret, stripe_customer=False, rectifiable=False),
                },
            }
            for index, company in enumerate(held)
        ],
        "pending_email_change": pending_view(pending) if pending is not None else None,
        "open_request": request_view(open_request) if open_request is not None else None,
        "issued_invoices": ISSUED_INVOICES,
        "right": {"article": "16", "policy_section": "8.2"},
    }
