"""The objects step: exports deleted, invoice PDFs moved to the retention archive (Object Lock)."""

from __future__ import annotations

import datetime as dt
import re
import string
from typing import Any

from sqlalchemy import Engine, select

from shared.platform.clock import UTC
from shared.policy import data_map
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.ports.storage import ObjectRetained, ObjectStore
from shared.records import holds
from shared.rights.erasure.common import _ID_BATCH, _bucket, _expiry
from shared.rights.erasure.strategies import object_strategy


def _pdf_source() -> data_map.ObjectPrefix | None:
    """The object prefix whose files move to the retention archive on erasure (invoice PDFs)."""
    return next((p for p in data_map.OBJECT_PREFIXES if p.archive_bucket_setting), None)


def _archive_prefix(source: data_map.ObjectPrefix) -> data_map.ObjectPrefix:
    return next(
        p
        for p in data_map.OBJECT_PREFIXES
        if p.bucket_setting == source.archive_bucket_setting and p.category == source.category and p.linked_by is None
    )


def _key_regex(prefix: data_map.ObjectPrefix) -> re.Pattern[str]:
    pattern = ""
    for literal, name, _spec, _conv in string.Formatter().parse(prefix.key_pattern):
        pattern += re.escape(literal)
        if name is not None:
            pattern += f"(?P<{name}>[^/]+)"
    return re.compile(f"^{pattern}$")


def _invoice_expiry(engine: Engine, invoice_ids: list[str]) -> dict[str, dt.datetime]:
    invoices = schema.invoices
    until: dict[str, dt.datetime] = {}
    with engine.connect() as conn:
        for start in range(0, len(invoice_ids), _ID_BATCH):
            batch = invoice_ids[start : start + _ID_BATCH]
            for row in conn.execute(select(invoices.c.id, invoices.c.issue_date).where(invoices.c.id.in_(batch))):
                end = _expiry("invoices", row.issue_date)
                until[row.id] = dt.datetime.combine(end, dt.time.min, tzinfo=UTC)
    return until


def _move_to_archive(
    engine: Engine, storage: ObjectStore, source: data_map.ObjectPrefix, account_id: str, now: dt.datetime
) -> dict[str, int]:
    if source.archive_bucket_setting is None:
        raise ValueError(f"{source.id}: no archive bucket to move the objects to")
    bucket, archive = _bucket(source.bucket_setting), _bucket(source.archive_bucket_setting)
    target = _archive_prefix(source)
    regex = _key_regex(source)
    keys = [info.key for info in storage.list(bucket, source.prefix(account_id=account_id))]
    matched = {key: m.groupdict() for key in keys if (m := regex.match(key))}
    until = _invoice_expiry(engine, sorted({m["invoice_id"] for m in matched.values() if "invoice_id" in m}))
    moved = orphans = 0
    for key in keys:
        invoice_id = matched.get(key, {}).get("invoice_id")
        if invoice_id not in until or until[invoice_id] <= now:
            orphans += 1  # no invoice to keep it for (or its 10 years are over): it goes
            continue
        target_key = target.key(invoice_id=invoice_id)
        if not storage.exists(archive, target_key):
            try:
                storage.put_retained(
                    archive,
                    target_key,
                    storage.get_bytes(bucket, key),
                    retain_until=until[invoice_id],
                    content_type="application/pdf",
                )
            except ObjectRetained:
                pass  # written by an interrupted run: the archive copy is already locked in place
        moved += 1
    # Every version: a versioned bucket must not keep the originals as noncurrent versions.
    storage.delete_prefix(bucket, source.prefix(account_id=account_id), versions=True)
    return {"archived": moved, "deleted": orphans}


def _objects_step(engine: Engine, account_id: str, now: dt.datetime) -> dict[str, Any]:
    storage = get_storage()
    result: dict[str, Any] = {}
    with engine.connect() as conn:
        kept = holds.held_prefixes(holds.held_categories(conn, account_id, now))
    for prefix in data_map.OBJECT_PREFIXES:
        if prefix.linked_by != "account_id":
            continue
        if prefix.id in kept:
            result[prefix.id] = {"held": True}  # a legal hold keeps these files where they are
            continue
        erased = object_strategy(prefix).erase(
            storage, account_id, lambda source: _move_to_archive(engine, storage, source, account_id, now)
        )
        if erased is not None:
            result[prefix.id] = erased
    return result
