"""Append-only audit trail that holds no personal data and resists someone who can write the database.

    chain        record / record_many: each entry's HMAC-SHA256 (key id stored in the entry) chains the previous
    checkpoints  checkpoint: the signed head written to object storage under Object Lock; verify_chain
    guard        the personal-data guard (details that look like personal data are refused)

Keys: AUDIT_KEYS ("kid:base64key,..."; local and test runs a fixed development key) are held
outside the database. The first signs; every listed one verifies the entries and checkpoints
signed with its id, so a key rotates by putting the new one first and keeping the old.

Legacy entries (written before migration 0008_audit_keyed, key_id NULL, plain SHA-256) cannot be
re-chained: that would mean trusting them. They are verified as before, and the first append
after them writes a keyed `audit.chain_rekeyed` entry whose HMAC covers the legacy head's hash:
from then on they cannot be rewritten without breaking that keyed link. An unkeyed entry after a
keyed one is a forgery.

Anchoring: `checkpoint` runs at the end of every erasure run and daily after enforce-retention.
Entries appended after the latest checkpoint and then deleted cannot be told from never
written: the window is at most a day (or an erasure run).

Timestamps are the server's clock (`chain.clock`, replaced only by tests), never a caller's value.

Retention (decided, see the data map's audit_log note): the retention schedule never deletes
entries. The trail is kept whole for the life of the service, then the request-records period
after its last entry: cutting a chain would lose its verifiability, and it holds no personal
data (subjects as keyed pseudonyms, details refused when they look personal). A backup restore
rolls the trail back with the database: `audit verify` then reports it against the checkpoints
written since (truncated or checkpoint_mismatch), which is the honest answer.
"""

from shared.records.audit.chain import (
    GENESIS_HASH,
    REKEY_ACTION,
    AuditEntry,
    entry_hash,
    entry_mac,
    record,
    record_many,
)
from shared.records.audit.checkpoints import Checkpoint, VerifyResult, checkpoint, load_checkpoints, verify_chain
from shared.records.audit.guard import PersonalDataRefused, ensure_no_personal_data, personal_data_reason

__all__ = [
    "GENESIS_HASH",
    "REKEY_ACTION",
    "AuditEntry",
    "Checkpoint",
    "PersonalDataRefused",
    "VerifyResult",
    "checkpoint",
    "ensure_no_personal_data",
    "entry_hash",
    "entry_mac",
    "load_checkpoints",
    "personal_data_reason",
    "record",
    "record_many",
    "verify_chain",
]
