"""What every part of the erasure shares: its constants and errors, small helpers, the data map's walk to an account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select

from shared.platform.clock import parse_iso
from shared.platform.config import get_settings
from shared.platform.errors import Conflict
from shared.platform.messages import MAX_IDS_PER_MESSAGE, ErasureRun
from shared.policy import data_map, rules
from shared.policy import facts as policy
from shared.ports import tables as schema
from shared.records.registry import RequestRecord

KIND = "erasure"
QUEUE_NAME = ErasureRun.QUEUE
RUN_MESSAGE = ErasureRun.TYPE
# Request ids per queue message: the worker runs them as batches and re-queues what its time budget leaves.
RUN_MESSAGE_MAX = MAX_IDS_PER_MESSAGE
SYSTEM_ACTOR = "system:erasure"
# Channels through which an erasure is registered (shared.records.registry.CHANNELS).
CLIENT_CHANNEL = "client_area"
RETENTION_CHANNEL = "retention"

STEPS = ("plan", "stripe", "resend", "receipt_mail", "database", "objects", "receipt")
# Identifiers shorter than this would match unrelated text in the self-check.
_MIN_IDENTIFIER_LENGTH = 3
# Ids per IN (...) list when looking rows up by id.
_ID_BATCH = 1000


class ErasureVerificationFailed(RuntimeError):
    """The database step found the subject's identifiers outside the retained set: nothing is committed.

    The message names tables and columns only, never a value.
    """


class ProcessingRestricted(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "processing of this account is restricted (GDPR Art. 18): it cannot be erased for inactivity",
            code="processing_restricted",
        )


def _day(value: dt.date | dt.datetime) -> str:
    return (value.date() if isinstance(value, dt.datetime) else value).isoformat()


def erase_after(record: RequestRecord) -> dt.datetime:
    """When the cooling-off of a registered erasure ends."""
    return parse_iso(record.details["erase_after"])


def _expiry(rule_id: str, start: dt.date | dt.datetime) -> dt.date | dt.datetime:
    """When retained data ends, under the rules as configured for the retention schedule (which deletes it)."""
    if rule_id == "invoices":
        return rules.invoice_expiry(start.date() if isinstance(start, dt.datetime) else start)
    if rule_id == "request_records":
        return policy.expires_at(rules.request_records_rule(), start)
    return policy.expires_at(rule_id, start)


def _table(name: str) -> sa.Table:
    return schema.metadata.tables[name]


def _bucket(setting: str) -> str:
    return getattr(get_settings(), setting)


def _linked_tables() -> list[data_map.TableMap]:
    """Tables whose rows reach an account directly or through a parent (not by pseudonym)."""
    return [t for t in data_map.TABLES if t.link.column is not None and not t.link.pseudonym]


def _personal(tm: data_map.TableMap) -> list[data_map.ColumnMap]:
    return [c for c in tm.columns if c.personal]


def _owner(tm: data_map.TableMap) -> tuple[sa.FromClause, sa.ColumnElement[str]]:
    """A table's rows joined up to the column that holds their account id (through parents)."""
    table = _table(tm.name)
    if tm.link.parent is None:
        return table, table.c[tm.link.key]
    parent_tm = data_map.table_map(tm.link.parent)
    parent_from, owner = _owner(parent_tm)
    joined = table.join(parent_from, table.c[tm.link.key] == _table(parent_tm.name).c[tm.link.parent_key])
    return joined, owner


def _subject_filter(tm: data_map.TableMap, account_ids: Sequence[str]) -> sa.ColumnElement[bool]:
    """WHERE clause of the given accounts' rows of a table (through parents when needed); index-friendly."""
    table = _table(tm.name)
    if tm.link.parent is None:
        return table.c[tm.link.key].in_(account_ids)
    parent_tm = data_map.table_map(tm.link.parent)
    parent_keys = select(_table(parent_tm.name).c[tm.link.parent_key]).where(_subject_filter(parent_tm, account_ids))
    return table.c[tm.link.key].in_(parent_keys)


@dataclass
class _Saga:
    """One erasure in progress: its request, the results of its completed steps, what external steps need."""

    record: RequestRecord
    results: dict[str, Any] = field(default_factory=dict)
    contact: Any = None  # email, locale, Stripe customer id: in memory only, while the account exists
    error: Exception | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def account_id(self) -> str:
        return self.record.account
