"""The chain: each entry's HMAC-SHA256 (under a key held outside the database) covers its content and the previous hash.

Writers are serialised before reading the tail so two transactions can never fork
the chain: PostgreSQL takes a transaction-level advisory lock, SQLite takes its
database write lock with a no-op write first. `walk` checks each link and each
entry's HMAC under the key id stored in the entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from shared.platform.clock import UTC, iso, utcnow
from shared.platform.config import get_settings
from shared.platform.pseudonym import subject_pseudonym
from shared.ports.db import serialise_writers
from shared.ports.tables import audit_log
from shared.records.audit.guard import ensure_no_personal_data

GENESIS_HASH = "0" * 64
# Arbitrary constant naming "the audit chain tail" among PostgreSQL advisory locks.
_AUDIT_LOCK_KEY = 0x6A66625F61756474  # "jfb_audt"
REKEY_ACTION = "audit.chain_rekeyed"
AUDIT_ACTOR = "system:audit"

_LABEL = re.compile(r"^[a-z][a-z0-9_.:\-]*$")

# The audit clock: always the server's. Tests replace it (monkeypatch) to fix the time;
# no caller can hand a time in.
clock = utcnow


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    entry_id: str
    occurred_at: dt.datetime
    actor: str
    action: str
    request_id: str | None
    subject_pseudonym: str | None
    outcome: str
    details: Any
    prev_hash: str
    hash: str
    key_id: str | None  # None: a legacy entry (plain SHA-256, written before 0008_audit_keyed)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _iso(moment: dt.datetime) -> str:
    # Fixed microseconds: this text is hashed into the chain, so its format never varies.
    return iso(moment, timespec="microseconds")


def current_key() -> tuple[str, bytes]:
    return get_settings().effective_audit_keys[0]


def known_keys() -> dict[str, bytes]:
    return dict(get_settings().effective_audit_keys)


def _payload(
    *,
    seq: int,
    entry_id: str,
    occurred_at: dt.datetime,
    actor: str,
    action: str,
    request_id: str | None,
    subject_pseudonym: str | None,
    outcome: str,
    details: Any,
    prev_hash: str,
) -> dict[str, Any]:
    return {
        "seq": seq,
        "entry_id": entry_id,
        "occurred_at": _iso(occurred_at),
        "actor": actor,
        "action": action,
        "request_id": request_id,
        "subject_pseudonym": subject_pseudonym,
        "outcome": outcome,
        "details": details,
        "prev_hash": prev_hash,
    }


def entry_hash(**fields: Any) -> str:
    """The legacy, unkeyed digest (plain SHA-256): what anyone can recompute; kept to verify pre-0008 entries."""
    return hashlib.sha256(_canonical(_payload(**fields)).encode()).hexdigest()


def entry_mac(key_id: str, key: bytes, **fields: Any) -> str:
    """HMAC-SHA256 of the entry's canonical content, its key id included (a key id cannot be swapped)."""
    payload = dict(_payload(**fields), key_id=key_id)
    return hmac.new(key, _canonical(payload).encode(), hashlib.sha256).hexdigest()


def _check_label(name: str, value: str, max_length: int) -> None:
    if not isinstance(value, str) or not _LABEL.match(value) or len(value) > max_length:
        raise ValueError(f"audit {name} must match {_LABEL.pattern} and be at most {max_length} characters")


def _prepare(
    *,
    actor: str,
    action: str,
    outcome: str,
    request_id: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate one entry's content (everything but its place in the chain)."""
    _check_label("actor", actor, 64)
    _check_label("action", action, 64)
    _check_label("outcome", outcome, 32)
    if details is not None:
        if not isinstance(details, dict):
            raise TypeError("audit details must be a dict")
        # Round-trip through canonical JSON: what is stored is exactly what is hashed.
        details = json.loads(_canonical(details))
        ensure_no_personal_data(details)
    return dict(
        entry_id=str(uuid.uuid4()),
        occurred_at=clock().astimezone(UTC),
        actor=actor,
        action=action,
        request_id=request_id,
        subject_pseudonym=subject_pseudonym(subject) if subject is not None else None,
        outcome=outcome,
        details=details,
    )


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    outcome: str,
    request_id: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction. `subject` is an account id, stored as its pseudonym.

    `occurred_at` is always the server's clock (`clock`, which only tests replace): no caller gives a time.
    """
    entry = dict(actor=actor, action=action, outcome=outcome, request_id=request_id, subject=subject, details=details)
    return record_many(conn, [entry])[-1]


def record_many(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> list[AuditEntry]:
    """Append several entries, chained in the given order, in the caller's transaction.

    Each entry takes the keyword arguments of `record`. All are validated before anything
    is written; the tail is locked and read once and the entries go in one INSERT. When the
    tail is a legacy (unkeyed) entry, a keyed `audit.chain_rekeyed` entry goes first: from it
    on, the legacy entries are pinned by a keyed link.
    """
    prepared = [_prepare(**entry) for entry in entries]
    if not prepared:
        return []
    key_id, key = current_key()
    serialise_writers(conn, _AUDIT_LOCK_KEY, audit_log)
    tail = conn.execute(
        select(audit_log.c.seq, audit_log.c.hash, audit_log.c.key_id).order_by(audit_log.c.seq.desc()).limit(1)
    ).first()
    seq, prev_hash = (tail.seq + 1, tail.hash) if tail else (1, GENESIS_HASH)
    if tail is not None and tail.key_id is None:
        rekey = _prepare(
            actor=AUDIT_ACTOR,
            action=REKEY_ACTION,
            outcome="succeeded",
            details={"legacy_head_seq": tail.seq, "legacy_head_hash": tail.hash, "key_id": key_id},
        )
        prepared.insert(0, rekey)
    written: list[AuditEntry] = []
    for fields in prepared:
        fields = dict(fields, seq=seq, prev_hash=prev_hash)
        digest = entry_mac(key_id, key, **fields)
        written.append(AuditEntry(**fields, hash=digest, key_id=key_id))
        seq, prev_hash = seq + 1, digest
    conn.execute(insert(audit_log), [{**entry.__dict__} for entry in written])
    return written[len(written) - len(entries) :]


@dataclass(frozen=True)
class Break:
    seq: int
    problem: str  # gap | link | hash | unknown_key | unkeyed
    reason: str


def _row_fields(row: Any) -> dict[str, Any]:
    return dict(
        seq=row.seq,
        entry_id=row.entry_id,
        occurred_at=row.occurred_at,
        actor=row.actor,
        action=row.action,
        request_id=row.request_id,
        subject_pseudonym=row.subject_pseudonym,
        outcome=row.outcome,
        details=row.details,
        prev_hash=row.prev_hash,
    )


def walk(conn: Connection) -> Iterator[AuditEntry | Break]:
    """Yield each intact entry in seq order, then a Break at the first broken one (and stop)."""
    keys = known_keys()
    expected_seq, prev_hash, keyed = 1, GENESIS_HASH, False
    rows = conn.execution_options(yield_per=1000).execute(select(audit_log).order_by(audit_log.c.seq))
    for row in rows:
        fields = _row_fields(row)
        if row.seq != expected_seq:
            found = Break(row.seq, "gap", f"entries missing before this one (expected seq {expected_seq})")
        elif row.prev_hash != prev_hash:
            found = Break(row.seq, "link", "prev_hash does not match the previous entry's hash")
        elif row.key_id is None:
            if keyed:
                found = Break(row.seq, "unkeyed", "an unkeyed entry after the chain was keyed (forged)")
            elif entry_hash(**fields) != row.hash:
                found = Break(row.seq, "hash", "legacy hash does not match the entry's content")
            else:
                found = None
        elif row.key_id not in keys:
            found = Break(row.seq, "unknown_key", f"entry signed with unknown key id {row.key_id!r} (forged)")
        elif not hmac.compare_digest(entry_mac(row.key_id, keys[row.key_id], **fields), row.hash):
            found = Break(row.seq, "hash", f"hash does not verify under key {row.key_id!r} (rewritten or forged)")
        else:
            keyed, found = True, None
        if found is not None:
            rows.close()
            yield found
            return
        expected_seq, prev_hash = row.seq + 1, row.hash
        yield AuditEntry(**fields, hash=row.hash, key_id=row.key_id)
