"""Re-applying erasures after a backup restore (`replay-erasures`)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared.platform.clock import UTC, moment, parse_date_argument, parse_iso
from shared.platform.errors import ValidationFailed
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.ports.tables import accounts, erasure_ledger
from shared.records import audit, registry
from shared.rights.erasure.common import SYSTEM_ACTOR, _bucket
from shared.rights.erasure.objects import _key_regex, _objects_step
from shared.rights.erasure.receipt import (
    _ledger_entry,
    _ledger_prefix,
    _receipt_summary,
    _record_ledger,
    load_receipt,
    receipt_key,
)
from shared.rights.erasure.scrub import erase_account_data


@dataclass(frozen=True)
class ReplayReport:
    checked: int
    reapplied: int
    already_erased: int

    def to_json(self) -> dict[str, int]:
        return {"checked": self.checked, "reapplied": self.reapplied, "already_erased": self.already_erased}


def _ledger_entries(engine: Engine, since: dt.datetime) -> dict[str, dict[str, str]]:
    """Ledger entries erased since `since`: the database table and its mirror in object storage."""
    entries: dict[str, dict[str, str]] = {}
    with engine.connect() as conn:
        for row in conn.execute(select(erasure_ledger).where(erasure_ledger.c.erased_at >= since)):
            entries[row.request_id] = _ledger_entry(row.request_id, row.account_id, row.erased_at)
    storage = get_storage()
    bucket = _bucket("archive_bucket")
    mirror = _ledger_prefix()
    pattern = _key_regex(mirror)
    for info in storage.list(bucket, mirror.prefix()):
        match = pattern.match(info.key)
        if match is None or match["request_id"] in entries:
            continue
        entry = json.loads(storage.get_bytes(bucket, info.key))
        if parse_iso(entry["erased_at"]) >= since:
            entries[match["request_id"]] = entry
    return entries


def _close_restored_request(conn: Connection, request_id: str, now: dt.datetime) -> None:
    """A backup taken mid-erasure restores the request open: close it as the erasure did, with its receipt."""
    record = conn.execute(select(schema.dsr_requests.c.state).where(schema.dsr_requests.c.id == request_id)).scalar()
    if record in (registry.WAITING, registry.RECEIVED, registry.VERIFIED):
        if record != registry.WAITING:
            registry.transition(conn, request_id, registry.WAITING, actor=SYSTEM_ACTOR, now=now)
        registry.transition(conn, request_id, registry.IN_PROGRESS, actor=SYSTEM_ACTOR, now=now)
        record = registry.IN_PROGRESS
    if record == registry.IN_PROGRESS:
        details: dict[str, Any] = {"receipt_object": receipt_key(request_id), "replayed": True}
        receipt = load_receipt(request_id)
        if receipt is not None:
            details["receipt_summary"] = _receipt_summary(receipt)
        registry.transition(conn, request_id, registry.COMPLETED, actor=SYSTEM_ACTOR, now=now, details=details)


def replay_erasures(engine: Engine, *, since: dt.datetime | dt.date, now: dt.datetime | None = None) -> ReplayReport:
    """Re-apply every erasure of the ledger since `since` to accounts that a restore brought back.

    Idempotent: an account still absent is skipped; a restored one gets the database
    and object steps again (no Stripe or Resend call: they live outside the backup,
    and their erasure was done once). Restores missing ledger rows from the mirror.
    """
    now = moment(now)
    if not isinstance(since, dt.datetime):
        since = dt.datetime.combine(since, dt.time.min, tzinfo=UTC)
    entries = _ledger_entries(engine, since.astimezone(UTC))
    reapplied = already = 0
    for entry in sorted(entries.values(), key=lambda e: e["erased_at"]):
        account_id = entry["account_id"]
        with engine.begin() as conn:
            _record_ledger(conn, [entry])
            present = conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update()).first()
            if present is None:
                already += 1
                continue
            result = erase_account_data(conn, account_id, now=now)
            _close_restored_request(conn, entry["request_id"], now)
            audit.record(
                conn,
                actor=SYSTEM_ACTOR,
                action="erasure.replayed",
                outcome="reapplied",
                request_id=entry["request_id"],
                subject=account_id,
                details={"rows_deleted": result["rows_deleted"], "rows_updated": result["rows_updated"]},
            )
        _objects_step(engine, account_id, now)
        reapplied += 1
    return ReplayReport(checked=len(entries), reapplied=reapplied, already_erased=already)


def parse_since(value: str) -> dt.datetime:
    """`--since` of the CLI: a date (YYYY-MM-DD) or an ISO 8601 timestamp; naive means UTC."""
    try:
        return parse_date_argument(value, name="since")
    except ValueError as exc:
        raise ValidationFailed(str(exc), code="invalid_since") from None
