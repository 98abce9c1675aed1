"""Append-only, hash-chained audit trail that holds no personal data.

Each entry carries the hash of the previous one, so editing, deleting or
reordering any entry breaks the chain at that point and `verify_chain` names it.
Subjects appear only as keyed pseudonyms; `details` is refused when it looks like
personal data (keys such as email/phone/ip/name, values shaped like an email,
a phone number or an IP address).

Writers are serialised before reading the tail so two transactions can never
fork the chain: PostgreSQL takes a transaction-level advisory lock, SQLite takes
its database write lock with a no-op write first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, text

from shared.platform.clock import iso
from shared.platform.logs import find_personal_data
from shared.platform.pseudonym import subject_pseudonym
from shared.ports.db import UTC, utcnow
from shared.ports.tables import audit_log

GENESIS_HASH = "0" * 64
# Arbitrary constant naming "the audit chain tail" among PostgreSQL advisory locks.
_AUDIT_LOCK_KEY = 0x6A66625F61756474  # "jfb_audt"

_LABEL = re.compile(r"^[a-z][a-z0-9_.:\-]*$")


class PersonalDataRefused(ValueError):
    """Audit details that look like personal data: a programming error, never stored."""


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


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # entries found intact (all of them when ok)
    first_broken_seq: int | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_broken_seq": self.first_broken_seq,
            "reason": self.reason,
        }


# --- Personal-data guard ---------------------------------------------------------------

# A key is refused when one of its words (split on "_") is one of these...
_PERSONAL_KEY_WORDS = frozenset(
    {
        "email", "phone", "telephone", "tel", "mobile", "ip", "ipv4", "ipv6", "name", "firstname",
        "lastname", "fullname", "surname", "address", "password", "passwd", "token", "secret", "otp",
        "totp", "iban", "birthdate", "birthday",
    }
)
# ...or when it is one of these as a whole.
_PERSONAL_KEYS = frozenset({"mail", "e_mail", "user_agent", "useragent", "verification_code"})

def _personal_key(key: str) -> bool:
    normalised = key.strip().lower().replace("-", "_").replace(" ", "_")
    return normalised in _PERSONAL_KEYS or any(word in _PERSONAL_KEY_WORDS for word in normalised.split("_"))


def personal_data_reason(value: str) -> str | None:
    """Why a string looks like personal data, or None (the same detectors as the log filter)."""
    return find_personal_data(value)


def ensure_no_personal_data(value: Any, *, path: str = "details") -> None:
    """Raise PersonalDataRefused when `value` (any JSON value) looks like personal data."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PersonalDataRefused(f"{path}: keys must be strings")
            if _personal_key(key):
                raise PersonalDataRefused(f"{path}.{key}: key names personal data")
            ensure_no_personal_data(item, path=f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            ensure_no_personal_data(item, path=f"{path}[{index}]")
    elif isinstance(value, str):
        reason = personal_data_reason(value)
        if reason:
            raise PersonalDataRefused(f"{path}: value looks like {reason}")


# --- Chain ---------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _iso(moment: dt.datetime) -> str:
    # Fixed microseconds: this text is hashed into the chain, so its format never varies.
    return iso(moment, timespec="microseconds")


def entry_hash(
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
) -> str:
    payload = {
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
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def _check_label(name: str, value: str, max_length: int) -> None:
    if not isinstance(value, str) or not _LABEL.match(value) or len(value) > max_length:
        raise ValueError(f"audit {name} must match {_LABEL.pattern} and be at most {max_length} characters")


def _lock_tail(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK_KEY})
    else:
        # SQLite: a write statement (touching nothing) takes the database write lock
        # for the rest of the transaction, so the tail read below cannot be stale.
        conn.execute(text("DELETE FROM audit_log WHERE 1 = 0"))


def _prepare(
    *,
    actor: str,
    action: str,
    outcome: str,
    request_id: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
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
        occurred_at=(now or utcnow()).astimezone(UTC),
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
    now: dt.datetime | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction. `subject` is an account id, stored as its pseudonym."""
    entry = dict(
        actor=actor, action=action, outcome=outcome, request_id=request_id, subject=subject, details=details, now=now
    )
    return record_many(conn, [entry])[0]


def record_many(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> list[AuditEntry]:
    """Append several entries, chained in the given order, in the caller's transaction.

    Each entry takes the keyword arguments of `record`. All are validated before anything
    is written; the tail is locked and read once and the entries go in one INSERT.
    """
    prepared = [_prepare(**entry) for entry in entries]
    if not prepared:
        return []
    _lock_tail(conn)
    tail = conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq, prev_hash = (tail.seq + 1, tail.hash) if tail else (1, GENESIS_HASH)
    written: list[AuditEntry] = []
    for fields in prepared:
        fields = dict(fields, seq=seq, prev_hash=prev_hash)
        digest = entry_hash(**fields)
        written.append(AuditEntry(**fields, hash=digest))
        seq, prev_hash = seq + 1, digest
    conn.execute(insert(audit_log), [{**entry.__dict__} for entry in written])
    return written


def verify_chain(conn: Connection) -> VerifyResult:
    """Walk the trail in seq order and report the first entry whose link or content is broken."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    rows = conn.execution_options(yield_per=1000).execute(select(audit_log).order_by(audit_log.c.seq))
    for row in rows:
        if row.seq != expected_seq:
            reason = f"entries missing before this one (expected seq {expected_seq})"
        elif row.prev_hash != prev_hash:
            reason = "prev_hash does not match the previous entry's hash"
        elif (
            entry_hash(
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
            != row.hash
        ):
            reason = "hash does not match the entry's content"
        else:
            expected_seq, prev_hash, checked = row.seq + 1, row.hash, checked + 1
            continue
        rows.close()
        return VerifyResult(ok=False, checked=checked, first_broken_seq=row.seq, reason=reason)
    return VerifyResult(ok=True, checked=checked, first_broken_seq=None, reason=None)
