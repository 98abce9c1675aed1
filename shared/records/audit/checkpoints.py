"""Signed checkpoints of the chain's head, kept outside the database under Object Lock COMPLIANCE; `verify_chain`.

A checkpoint is {seq, head_hash, at, key_id, signature}: HMAC-SHA256 over the other
fields under a key derived from the audit key `key_id` (purpose "checkpoint"), stored
as `<AUDIT_CHECKPOINT_PREFIX><seq, 12 digits>-<at>-<random>.json` in the checkpoint bucket
(default the archive bucket) and locked for the request-records period. Someone who can
write the database can neither change nor delete one, so entries cut after a
checkpoint, or a rewritten past, show against it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from shared.platform.clock import UTC, add_months, iso, parse_iso
from shared.platform.config import get_settings
from shared.ports.backends import get_storage
from shared.ports.storage import ObjectStore
from shared.ports.tables import audit_log
from shared.records.audit import chain
from shared.records.audit.chain import GENESIS_HASH, Break


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head_hash: str
    at: dt.datetime
    key_id: str
    signature: str

    def document(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "head_hash": self.head_hash,
            "at": iso(self.at, timespec="microseconds"),
            "key_id": self.key_id,
            "signature": self.signature,
        }


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # entries found intact (all of them when ok)
    first_broken_seq: int | None
    reason: str | None
    # gap | link | hash | unknown_key | unkeyed (the chain), checkpoint_mismatch | truncated | emptied (against
    # a checkpoint), checkpoint_forged (a checkpoint whose signature does not verify)
    problem: str | None = None
    checkpoints: int = 0  # checkpoints checked against

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
            "problem": self.problem,
            "checkpoints": self.checkpoints,
        }


def _signing_key(key: bytes) -> bytes:
    return hmac.new(key, b"purpose:checkpoint", hashlib.sha256).digest()


def _signature(key: bytes, seq: int, head_hash: str, at: dt.datetime, key_id: str) -> str:
    message = chain._canonical(
        {"seq": seq, "head_hash": head_hash, "at": iso(at, timespec="microseconds"), "key_id": key_id}
    )
    return hmac.new(_signing_key(key), message.encode(), hashlib.sha256).hexdigest()


def _where() -> tuple[str, str]:
    settings = get_settings()
    return settings.effective_audit_checkpoint_bucket, settings.audit_checkpoint_prefix


def checkpoint(engine: Engine, *, storage: ObjectStore | None = None) -> Checkpoint:
    """Sign the committed head (seq 0 and the genesis hash for an empty trail) and store it locked."""
    with engine.connect() as conn:
        tail = conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq, head = (tail.seq, tail.hash) if tail else (0, GENESIS_HASH)
    at = chain.clock().astimezone(UTC)
    key_id, key = chain.current_key()
    point = Checkpoint(seq, head, at, key_id, _signature(key, seq, head, at, key_id))
    bucket, prefix = _where()
    retain_until = dt.datetime.combine(
        add_months(at.date(), get_settings().request_records_retention_months) + dt.timedelta(days=1),
        dt.time.min,
        tzinfo=UTC,
    )
    (storage or get_storage()).put_retained(
        # The random tail keeps two runs checkpointing the same head at the same instant apart.
        bucket,
        f"{prefix}{seq:012d}-{at.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.json",
        json.dumps(point.document(), sort_keys=True).encode(),
        retain_until=retain_until,
        content_type="application/json",
    )
    return point


def load_checkpoints(storage: ObjectStore | None = None) -> Iterator[tuple[str, Checkpoint | None]]:
    """Each stored checkpoint (object key, checkpoint), in seq order; None when its signature does not verify."""
    storage = storage or get_storage()
    bucket, prefix = _where()
    keys = chain.known_keys()
    for info in storage.list(bucket, prefix):
        try:
            doc = json.loads(storage.get_bytes(bucket, info.key))
            point = Checkpoint(
                int(doc["seq"]), str(doc["head_hash"]), parse_iso(doc["at"]), str(doc["key_id"]), str(doc["signature"])
            )
        except (ValueError, KeyError, TypeError):
            yield info.key, None
            continue
        key = keys.get(point.key_id)
        valid = key is not None and hmac.compare_digest(
            _signature(key, point.seq, point.head_hash, point.at, point.key_id), point.signature
        )
        yield info.key, point if valid else None


def verify_chain(conn: Connection, *, storage: ObjectStore | None = None) -> VerifyResult:
    """Walk the trail, then hold it against every checkpoint; report the first problem found.

    Rewrite or forged entry: the first entry whose link or HMAC fails. Rewrite before a
    checkpoint: the entry at the checkpoint's seq whose hash differs. Truncation: a checkpoint
    beyond the last entry (every entry gone: `emptied`).
    """
    points: dict[int, list[tuple[str, Checkpoint]]] = {}
    count = 0
    for object_key, point in load_checkpoints(storage):
        if point is None:
            return VerifyResult(
                False, 0, None, f"checkpoint {object_key} has an invalid signature", "checkpoint_forged"
            )
        points.setdefault(point.seq, []).append((object_key, point))
        count += 1
    checked, last_seq = 0, 0
    for item in chain.walk(conn):
        if isinstance(item, Break):
            return VerifyResult(False, checked, item.seq, item.reason, item.problem, count)
        for object_key, point in points.get(item.seq, ()):
            if point.head_hash != item.hash:
                return VerifyResult(
                    False,
                    checked,
                    item.seq,
                    f"hash differs from checkpoint {object_key}: the trail was rewritten up to here",
                    "checkpoint_mismatch",
                    count,
                )
        checked, last_seq = checked + 1, item.seq
    beyond = [p for seq, listed in points.items() if seq > last_seq for p in listed]
    if beyond:
        object_key, point = max(beyond, key=lambda p: p[1].seq)
        if last_seq == 0:
            return VerifyResult(
                False, 0, 1, f"the trail is empty but checkpoint {object_key} covers seq {point.seq}", "emptied", count
            )
        return VerifyResult(
            False,
            checked,
            last_seq + 1,
            f"entries {last_seq + 1}..{point.seq} missing: checkpoint {object_key} covers them",
            "truncated",
            count,
        )
    for object_key, point in points.get(0, ()):
        if point.head_hash != GENESIS_HASH:
            return VerifyResult(
                False, checked, None, f"checkpoint {object_key} at seq 0 is not the genesis", "checkpoint_forged", count
            )
    return VerifyResult(True, checked, None, None, None, count)
