"""The steps outside our database: Stripe, Resend, and the receipt mailed while the address exists."""

from __future__ import annotations

import datetime as dt
import html as html_lib
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from shared.policy import facts as policy
from shared.ports.backends import get_mailer, get_payments
from shared.ports.mail import Message
from shared.ports.tables import accounts
from shared.records.saga import step_key
from shared.rights.erasure.common import _Saga
from shared.rights.erasure.receipt import _build_receipt


def _contacts(conn: Connection, account_ids: Sequence[str]) -> dict[str, Any]:
    """What the external steps need while the accounts still exist (read once per batch, kept in memory only)."""
    rows = conn.execute(
        select(accounts.c.id, accounts.c.email, accounts.c.locale, accounts.c.stripe_customer_id).where(
            accounts.c.id.in_(account_ids)
        )
    )
    return {row.id: row for row in rows}


def _stripe_effect(saga: _Saga) -> dict[str, Any]:
    if saga.contact is None or not saga.contact.stripe_customer_id:
        return {"customer": "none"}
    payments = get_payments()
    key = step_key(saga.id, "stripe")
    customer = saga.contact.stripe_customer_id
    cancelled = payments.delete_customer(customer, idempotency_key=f"{key}:customer")
    return {"customer": "deleted", "subscriptions_cancelled": len(cancelled)}


def _resend_effect(saga: _Saga) -> dict[str, Any]:
    if saga.contact is None:
        return {"contacts_removed": 0}
    return {"contacts_removed": len(get_mailer().remove_contact(saga.contact.email))}


_OUTCOME_TEXT = {
    "erased": ("effacé", "erased"),
    "pseudonymised": ("pseudonymisé", "pseudonymised"),
}


def _outcome_line(entry: Mapping[str, Any], language: str) -> str:
    label = entry["label"][language]
    if entry["outcome"] == "retained_until":
        basis = entry["legal_basis"][language]
        reference = f", {entry['legal_reference']}" if entry.get("legal_reference") else ""
        if language == "fr":
            return f"- {label} : conservé en archive restreinte jusqu'au {entry['retained_until']} ({basis}{reference}), puis supprimé"
        return f"- {label}: kept in restricted archive until {entry['retained_until']} ({basis}{reference}), then deleted"
    fr, en = _OUTCOME_TEXT.get(entry["outcome"], (entry["outcome"], entry["outcome"]))
    return f"- {label} : {fr}" if language == "fr" else f"- {label}: {en}"


def _receipt_lines(receipt: Mapping[str, Any], language: str) -> list[str]:
    lines, seen = [], set()
    for entry in receipt["categories"]:
        line = _outcome_line(entry, language)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    lines.append("")
    for sub in receipt["subprocessors"]:
        lines.append(f"- {policy.subprocessor(sub['subprocessor']).name}: {sub['note'][language]}")
    return lines


def _receipt_mail(receipt: Mapping[str, Any], *, to: str, request_id: str):
    fr = [
        "Bonjour,",
        "",
        "Votre demande d'effacement de compte jefacturebien.fr est exécutée. Voici ce qu'il advient de chaque catégorie de données :",
        "",
        *_receipt_lines(receipt, "fr"),
        "",
        f"Référence de la demande : {request_id}",
        f"Une question ? {policy.CONTROLLER.dpo_email}. Vous pouvez aussi saisir la CNIL ({policy.CNIL.website}).",
    ]
    en = [
        "Hello,",
        "",
        "Your request to erase your jefacturebien.fr account is being carried out. This is what happens to each category of data:",
        "",
        *_receipt_lines(receipt, "en"),
        "",
        f"Request reference: {request_id}",
        f"Questions? {policy.CONTROLLER.dpo_email}. You may also complain to the CNIL ({policy.CNIL.website}).",
    ]
    text = "\n".join(fr) + "\n\n-- English --\n\n" + "\n".join(en) + "\n"
    html = "".join(
        f"<p>{html_lib.escape(line)}</p>" if line else "<br>" for line in [*fr, "— English —", *en]
    )
    return Message(
        to=to,
        subject="Effacement de votre compte / Erasure of your account — jefacturebien.fr",
        text=text,
        html=f"<html><body>{html}</body></html>",
        idempotency_key=step_key(request_id, "receipt_mail"),
    )


def _receipt_mail_effect(saga: _Saga, now: dt.datetime) -> dict[str, Any]:
    if saga.contact is None:
        return {"sent": False}
    draft = _build_receipt(saga.record, saga.results, now)
    get_mailer().send(_receipt_mail(draft, to=saga.contact.email, request_id=saga.id))
    return {"sent": True}
