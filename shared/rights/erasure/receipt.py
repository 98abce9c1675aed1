"""The receipt (no personal data), stored as proof with the ledger's mirror; the erasure ledger."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from shared.platform.clock import UTC, iso, parse_iso
from shared.platform.pseudonym import subject_pseudonym
from shared.policy import data_map
from shared.policy import facts as policy
from shared.ports.backends import get_storage
from shared.ports.db import dialect_insert
from shared.ports.storage import ObjectRetained, ObjectStore
from shared.ports.tables import erasure_ledger
from shared.records.registry import RequestRecord
from shared.rights.erasure.common import _bucket, _expiry


def receipt_key(request_id: str) -> str:
    prefix = next(p for p in data_map.OBJECT_PREFIXES if p.id == "erasure_receipts")
    return prefix.key(request_id=request_id)


def load_receipt(request_id: str) -> dict[str, Any] | None:
    """The receipt kept as proof in the archive bucket (no personal data); None if there is none."""
    storage, bucket = get_storage(), _bucket("archive_bucket")
    if not storage.exists(bucket, receipt_key(request_id)):
        return None
    return json.loads(storage.get_bytes(bucket, receipt_key(request_id)))


def _ledger_prefix() -> data_map.ObjectPrefix:
    return next(p for p in data_map.OBJECT_PREFIXES if p.id == "erasure_ledger_mirror")


def _ledger_key(request_id: str) -> str:
    return _ledger_prefix().key(request_id=request_id)


def _subprocessors(
    plan: Mapping[str, Any], stripe: Mapping[str, Any], resend: Mapping[str, Any]
) -> list[dict[str, Any]]:
    transmitted = plan["invoices_transmitted"]
    return [
        {
            "subprocessor": "stripe",
            "outcome": "customer_deleted" if stripe.get("customer") == "deleted" else "no_customer",
            "subscriptions_cancelled": stripe.get("subscriptions_cancelled", 0),
            "note": {
                "en": "Stripe keeps what its own legal obligations require, as an independent controller.",
                "fr": "Stripe conserve ce que ses propres obligations légales exigent, en tant que responsable indépendant.",
            },
        },
        {
            "subprocessor": "resend",
            "outcome": "contact_removed" if resend.get("contacts_removed") else "no_contact",
            "note": {
                "en": "Your contact was removed from every mailing audience; this receipt is the last mail sent to you.",
                "fr": "Votre contact a été supprimé de toutes les listes d'envoi ; ce reçu est le dernier e-mail qui vous est adressé.",
            },
        },
        {
            "subprocessor": "superpdp",
            "outcome": "cannot_recall" if transmitted else "nothing_transmitted",
            "invoices_transmitted": transmitted,
            "note": {
                "en": "Invoices already transmitted through SuperPDP (Factur-X) cannot be recalled: they are held by the "
                "e-invoicing network and their recipients under the same legal retention.",
                "fr": "Les factures déjà transmises via SuperPDP (Factur-X) ne peuvent pas être rappelées : elles sont "
                "détenues par le réseau de facturation électronique et leurs destinataires, sous la même obligation de conservation.",
            },
        },
        {
            "subprocessor": "scaleway",
            "outcome": "erased_from_database_and_storage",
            "note": {
                "en": "Database backups expire on their own schedule; if one is ever restored, this erasure is applied again.",
                "fr": "Les sauvegardes de la base expirent selon leur propre calendrier ; si l'une d'elles est restaurée, cet effacement est appliqué à nouveau.",
            },
        },
    ]


def _build_receipt(
    record: RequestRecord, steps: Mapping[str, Mapping[str, Any] | None], now: dt.datetime
) -> dict[str, Any]:
    plan = steps["plan"] or {}
    return {
        "request_id": record.id,
        "subject_pseudonym": record.subject_pseudonym,
        "channel": record.channel,
        "received_at": iso(record.received_at, timespec="seconds"),
        "executed_at": iso(now, timespec="seconds"),
        "policy_version": plan.get("policy_version", policy.POLICY_VERSION),
        "categories": plan.get("categories", []),
        "legal_holds": plan.get("legal_holds", []),
        "subprocessors": _subprocessors(plan, steps.get("stripe") or {}, steps.get("resend") or {}),
        "receipt_mailed": bool((steps.get("receipt_mail") or {}).get("sent")),
        "database": steps.get("database") or {},
        "objects": steps.get("objects") or {},
    }


def _put_proof(
    storage: ObjectStore, bucket: str, key: str, document: Mapping[str, Any], retain_until: dt.datetime
) -> None:
    if storage.exists(bucket, key):
        return
    try:
        storage.put_retained(
            bucket,
            key,
            json.dumps(document, sort_keys=True).encode(),
            retain_until=retain_until,
            content_type="application/json",
        )
    except ObjectRetained:
        pass  # an interrupted run wrote it already


def _receipt_step(record: RequestRecord, receipt: Mapping[str, Any], erased_at: dt.datetime) -> dict[str, Any]:
    """Store the receipt and the ledger mirror, locked as proof; the result keeps the exact receipt stored."""
    storage = get_storage()
    bucket = _bucket("archive_bucket")
    keep_until = dt.datetime.combine(_expiry("request_records", erased_at.date()), dt.time.min, tzinfo=UTC)
    if storage.exists(bucket, receipt_key(record.id)):
        receipt = json.loads(storage.get_bytes(bucket, receipt_key(record.id)))  # an interrupted run stored it
    else:
        _put_proof(storage, bucket, receipt_key(record.id), receipt, keep_until)
    # The ledger's mirror outside the database: a restored backup cannot roll it back.
    _put_proof(storage, bucket, _ledger_key(record.id), _ledger_entry(record.id, record.account, erased_at), keep_until)
    return {"summary": _receipt_summary(receipt), "erased_at": receipt["executed_at"]}


def _receipt_summary(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """What the request record keeps of the receipt (the receipt itself is in the archive)."""
    outcomes = [entry["outcome"] for entry in receipt["categories"]]
    until = [entry["retained_until"] for entry in receipt["categories"] if entry["outcome"] == "retained_until"]
    return {
        "categories": len(outcomes),
        "erased": outcomes.count("erased"),
        "pseudonymised": outcomes.count("pseudonymised"),
        "retained": len(until),
        "retained_until_latest": max(until) if until else None,
        "held": outcomes.count("held"),
    }


def _ledger_entry(request_id: str, account_id: str, erased_at: dt.datetime) -> dict[str, str]:
    return {
        "request_id": request_id,
        "account_id": account_id,
        "subject_pseudonym": subject_pseudonym(account_id),
        "erased_at": iso(erased_at, timespec="seconds"),
    }


def _record_ledger(conn: Connection, entries: Sequence[Mapping[str, str]]) -> None:
    if not entries:
        return
    rows = [
        {
            "request_id": e["request_id"],
            "account_id": e["account_id"],
            "subject_pseudonym": e["subject_pseudonym"],
            "erased_at": parse_iso(e["erased_at"]),
        }
        for e in entries
    ]
    conn.execute(
        dialect_insert(conn, erasure_ledger).on_conflict_do_nothing(index_elements=[erasure_ledger.c.request_id]), rows
    )
