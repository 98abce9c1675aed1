"""expire-inactive-accounts: an account unused for 3 years is erased (policy 5), after two warnings.

Activity is a login or an API call by the account (never a mail opened): the platform
keeps it in `accounts.last_activity_at` (`record_activity`). The erasure day is
`policy.expires_at("inactive_account", <day of last activity>)`. Before it the account
is warned by mail at each offset of INACTIVITY_WARNING_DAYS (default: the policy's 30
and 7 days before); each warning is persisted in `inactivity_notices` (erase_after,
warned_at, which offset, next_action_on), so:

- a run selects by `<=` (never an exact day): a missed day or week of CRON runs catches
  up, sending the most urgent warning due, once (mail idempotency key
  `inactivity-warning:<account>:<erase_after>:<offset>`);
- nothing is erased unless the last warning was sent: an account that reaches its day
  without it (runs missed, first run over an old base) is warned now and erased that
  many days later (erase_after moves, and is persisted);
- activity after a warning resets the clock and the warning (the notice is dropped);
- an account under restriction (Art. 18) is neither warned nor erased;
- the erasure is the erase-account saga itself, registered with channel `retention`
  (`shared.rights.erasure.register_erasure`), which runs once its cooling-off is over
  (ERASURE_COOLING_OFF_DAYS; the deployed function sets 0: the warnings were the notice).

Scale: `schedule` (the CRON) walks the index (last_activity_at, id) from the oldest
activity, one bounded SELECT per chunk of RETENTION_CHUNK_SIZE accounts, and queues one
message per chunk on `retention-chunks`; `process_chunk` (the worker) does the per-account
work. No invocation does work proportional to the number of accounts due.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, delete, func, select, update

from shared import notices
from shared.platform.clock import UTC, moment
from shared.platform.config import get_settings
from shared.platform.errors import ExternalServiceError, NotFound
from shared.platform.messages import MAX_IDS_PER_MESSAGE, InactivityChunk
from shared.policy import facts as policy
from shared.policy.rules import ONE_DAY, last_expired_day, start_of_day
from shared.ports import tables as schema
from shared.ports.backends import get_mailer, get_queue
from shared.ports.db import dialect_insert
from shared.ports.mail import Message
from shared.ports.queues import SEND_BATCH_SIZE
from shared.records import audit
from shared.records.processing import restricted_accounts
from shared.records.registry import CANCELLED, REJECTED
from shared.retention.toolkit import (
    ACTOR,
    Progress,
    no_progress,
    record_run,
    rule_json,
)
from shared.rights import erasure

RULE_ID = "inactive_account"
QUEUE_NAME = InactivityChunk.QUEUE
CHUNK_MESSAGE = InactivityChunk.TYPE
MAX_CHUNK = MAX_IDS_PER_MESSAGE

WAIT = "wait"
WARN = "warn"
ERASE = "erase"
ERASURE_PENDING = "erasure_pending"


# --- Rules -------------------------------------------------------------------------------------


def warning_offsets() -> tuple[int, ...]:
    """Days before the erasure when the account is warned, largest first."""
    configured = get_settings().inactivity_warning_offsets
    return configured or tuple(sorted(policy.retention_rule(RULE_ID).warning_days_before, reverse=True))


def erasure_day(last_activity_at: dt.datetime) -> dt.date:
    """The day the policy's 3 years after the last activity end."""
    return policy.expires_at(RULE_ID, last_activity_at.astimezone(UTC).date())


def selection_bound(today: dt.date, offsets: tuple[int, ...]) -> dt.datetime:
    """Exclusive bound on last_activity_at: accounts before it are at least at their first warning."""
    rule = policy.retention_rule(RULE_ID)
    horizon = today + dt.timedelta(days=max(offsets))
    if rule.total_months is None:
        raise ValueError(f"{RULE_ID}: the rule has no end")
    return start_of_day(last_expired_day(rule.total_months, rule.active_days, horizon) + ONE_DAY)


@dataclass(frozen=True)
class Notice:
    last_activity_at: dt.datetime
    erase_after: dt.date
    warned_offset_days: int
    erasure_request_id: str | None


@dataclass(frozen=True)
class Decision:
    action: str  # wait | warn | erase | erasure_pending
    erase_after: dt.date | None = None
    offset: int | None = None  # the warning to send
    reset: bool = False  # the stored notice is stale: drop it

    def next_action_on(self, offsets: tuple[int, ...]) -> dt.date:
        """After this warning: the day of the next (smaller) offset, else the erasure day."""
        assert self.erase_after is not None and self.offset is not None
        smaller = [o for o in offsets if o < self.offset]
        return self.erase_after - dt.timedelta(days=max(smaller)) if smaller else self.erase_after


def decide(
    last_activity_at: dt.datetime,
    notice: Notice | None,
    today: dt.date,
    offsets: tuple[int, ...],
    *,
    request_state: str | None = None,
) -> Decision:
    """What one account needs today. Pure: the rules of the module docstring, nothing else."""
    final = min(offsets)
    reset = False
    if notice is not None and (
        last_activity_at > notice.last_activity_at
        or (notice.erasure_request_id is not None and request_state in (CANCELLED, REJECTED))
    ):
        # Active again, or its erasure was cancelled or refused: the clock starts over.
        notice, reset = None, True
    if notice is not None and notice.erasure_request_id is not None:
        return Decision(ERASURE_PENDING)
    if notice is None:
        due = erasure_day(last_activity_at)
        if due - dt.timedelta(days=max(offsets)) > today:
            return Decision(WAIT, reset=reset)
        erase_after, warned = max(due, today + dt.timedelta(days=final)), None
    else:
        erase_after, warned = notice.erase_after, notice.warned_offset_days
    if erase_after <= today:
        if warned == final:
            return Decision(ERASE, erase_after, reset=reset)
        erase_after = today + dt.timedelta(days=final)  # the last warning was never sent: send it first
    due_offsets = [o for o in offsets if erase_after - dt.timedelta(days=o) <= today]
    if not due_offsets or (warned is not None and min(due_offsets) >= warned):
        return Decision(WAIT, reset=reset)
    return Decision(WARN, erase_after, offset=min(due_offsets), reset=reset)


def record_activity(conn: Connection, account_id: str, at: dt.datetime | None = None) -> None:
    """A login or an API call by the account (what the platform records); never moves the clock back."""
    at = moment(at)
    a = schema.accounts
    conn.execute(update(a).where(a.c.id == account_id, a.c.last_activity_at < at).values(last_activity_at=at))


# --- The daily selection (CRON) ------------------------------------------------------------------


def _candidates(today: dt.date, offsets: tuple[int, ...]) -> sa.Select:
    """Active, unrestricted accounts at or past their first warning, with something due today."""
    a, n = schema.accounts, schema.inactivity_notices
    return (
        select(a.c.last_activity_at, a.c.id)
        .select_from(a.outerjoin(n, n.c.account_id == a.c.id))
        .where(
            a.c.status == "active",
            a.c.last_activity_at < selection_bound(today, offsets),
            sa.or_(n.c.account_id.is_(None), n.c.next_action_on <= today),
            a.c.id.not_in(restricted_accounts()),
        )
    )


def _reset_stale_notices(conn: Connection) -> int:
    a, n = schema.accounts, schema.inactivity_notices
    active_again = sa.exists().where(a.c.id == n.c.account_id, a.c.last_activity_at > n.c.last_activity_at)
    return max(conn.execute(delete(n).where(n.c.erasure_request_id.is_(None), active_again)).rowcount, 0)


def schedule(
    engine: Engine, *, now: dt.datetime | None = None, progress: Progress | None = None, chunk_size: int | None = None
) -> dict[str, Any]:
    """The CRON job: drop stale notices, then queue the accounts with something due, one message per chunk."""
    now = moment(now)
    today, offsets = now.date(), warning_offsets()
    chunk_size = min(chunk_size or get_settings().retention_chunk_size, MAX_CHUNK)
    progress = progress or no_progress
    with engine.begin() as conn:
        reset = _reset_stale_notices(conn)
    queue = get_queue(QUEUE_NAME)
    query = _candidates(today, offsets)
    a = schema.accounts
    chunks = accounts = 0
    messages: list[dict[str, Any]] = []
    last: tuple[dt.datetime, str] | None = None
    while True:
        page = query.order_by(a.c.last_activity_at, a.c.id).limit(chunk_size)
        if last is not None:
            page = page.where(sa.tuple_(a.c.last_activity_at, a.c.id) > sa.tuple_(*last))
        with engine.connect() as conn:
            rows = conn.execute(page).all()
        if rows:
            ids = [row.id for row in rows]
            key = f"inactivity:{today.isoformat()}:{ids[0]}:{ids[-1]}"
            messages.append(InactivityChunk(account_ids=list(ids)).envelope(key))
            chunks, accounts = chunks + 1, accounts + len(ids)
            last = (rows[-1].last_activity_at, rows[-1].id)
        if len(messages) == SEND_BATCH_SIZE or (messages and len(rows) < chunk_size):
            queue.send_many(messages)
            messages = []
            progress("inactive_accounts", accounts)
        if len(rows) < chunk_size:
            break
    counts = {"notices_reset": reset, "chunks_queued": chunks, "accounts_queued": accounts}
    record_run(engine, "inactive_accounts", policy.retention_rule(RULE_ID), counts, now)
    return {"ran_at": now.isoformat(), **counts}


def plan(engine: Engine, *, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """What expire-inactive-accounts would do at `at`; changes nothing."""
    at = moment(at)
    today, offsets = at.date(), warning_offsets()
    a, n = schema.accounts, schema.inactivity_notices
    final = min(offsets)
    with engine.connect() as conn:
        candidates = _candidates(today, offsets).subquery()
        total = conn.execute(select(func.count()).select_from(candidates)).scalar_one()
        erasures = conn.execute(
            select(func.count())
            .select_from(candidates.join(n, n.c.account_id == candidates.c.id))
            .where(n.c.erasure_request_id.is_(None), n.c.erase_after <= today, n.c.warned_offset_days == final)
        ).scalar_one()
        held = conn.execute(
            select(func.count()).where(
                a.c.status == "active",
                a.c.last_activity_at < selection_bound(today, offsets),
                a.c.id.in_(restricted_accounts()),
            )
        ).scalar_one()
    return [
        {
            "category": "inactive_accounts",
            "action": "warn_then_erase",
            "scope": f"accounts inactive for 3 years; warned {', '.join(str(o) for o in offsets)} days before",
            "rule": rule_json(policy.retention_rule(RULE_ID)),
            "due": {"accounts": total, "warnings": total - erasures, "erasures": erasures, "restricted_held": held},
        }
    ]


# --- One chunk (queue worker) ---------------------------------------------------------------------


def _load(conn: Connection, account_ids: list[str]) -> tuple[list[sa.Row], set[str], dict[str, str]]:
    a, n, r = schema.accounts, schema.inactivity_notices, schema.dsr_requests
    rows = conn.execute(
        select(
            a.c.id,
            a.c.email,
            a.c.status,
            a.c.last_activity_at,
            n.c.account_id.label("notice"),
            n.c.last_activity_at.label("notice_activity"),
            n.c.erase_after,
            n.c.warned_offset_days,
            n.c.erasure_request_id,
        )
        .select_from(a.outerjoin(n, n.c.account_id == a.c.id))
        .where(a.c.id.in_(account_ids))
        .order_by(a.c.id)
    ).all()
    in_chunk = schema.processing_restrictions.c.account_id.in_(account_ids)
    restricted = set(conn.execute(restricted_accounts().where(in_chunk)).scalars())
    request_ids = [row.erasure_request_id for row in rows if row.erasure_request_id]
    states = dict(conn.execute(select(r.c.id, r.c.state).where(r.c.id.in_(request_ids))).all()) if request_ids else {}
    return list(rows), restricted, states


def _notice(row: sa.Row) -> Notice | None:
    if row.notice is None:
        return None
    return Notice(row.notice_activity, row.erase_after, row.warned_offset_days, row.erasure_request_id)


def _save_notice(conn: Connection, values: dict[str, Any]) -> None:
    n = schema.inactivity_notices
    insert = dialect_insert(conn, n).values(**values)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[n.c.account_id], set_={k: v for k, v in values.items() if k != "account_id"}
        )
    )


def _warn(engine: Engine, row: sa.Row, decision: Decision, offsets: tuple[int, ...], now: dt.datetime) -> None:
    erase_after, offset = decision.erase_after, decision.offset
    if erase_after is None or offset is None:
        raise ValueError("a warning decision names its offset and its erasure day")
    # The mail first: if saving the notice fails, the retry sends the same key (no second mail).
    get_mailer().send(
        warning_message(
            to=row.email,
            account_id=row.id,
            last_activity_at=row.last_activity_at,
            erase_after=erase_after,
            offset=offset,
        )
    )
    with engine.begin() as conn:
        _save_notice(
            conn,
            {
                "account_id": row.id,
                "last_activity_at": row.last_activity_at,
                "erase_after": decision.erase_after,
                "warned_at": now,
                "warned_offset_days": decision.offset,
                "next_action_on": decision.next_action_on(offsets),
                "erasure_request_id": None,
            },
        )
        audit.record(
            conn,
            actor=ACTOR,
            action="inactivity.warned",
            outcome="sent",
            subject=row.id,
            details={"offset_days": offset, "erase_after": erase_after.isoformat()},
        )


def _erase(engine: Engine, row: sa.Row, decision: Decision, now: dt.datetime) -> tuple[str, str | None]:
    """Register the erasure (channel `retention`) with the notice, in one transaction.

    Returns the outcome and, when the erasure is due now, its request id (to queue with the chunk's).
    """
    n = schema.inactivity_notices
    try:
        with engine.begin() as conn:
            record = erasure.register_erasure(conn, row.id, channel=erasure.RETENTION_CHANNEL, actor=ACTOR, now=now)
            conn.execute(update(n).where(n.c.account_id == row.id).values(erasure_request_id=record.id))
    except erasure.ProcessingRestricted:
        return "restricted", None
    except NotFound:
        return "gone", None
    return "erasure_registered", record.id if erasure.erase_after(record) <= now else None


def process_chunk(engine: Engine, account_ids: list[str], *, now: dt.datetime | None = None) -> dict[str, int]:
    """Warn or erase each account of one chunk, as `decide` says; idempotent.

    A mail that fails (Resend down) leaves its account for the retry and raises at the
    end of the chunk, so the queue delivers it again; the other accounts are done once.
    """
    now = moment(now)
    today, offsets = now.date(), warning_offsets()
    counts: Counter[str] = Counter()
    failure: ExternalServiceError | None = None
    due_erasures: list[str] = []
    with engine.connect() as conn:
        rows, restricted, states = _load(conn, account_ids)
    for row in rows:
        if row.status != "active":
            counts["not_active"] += 1
            continue
        if row.id in restricted:
            counts["restricted"] += 1
            continue
        decision = decide(
            row.last_activity_at, _notice(row), today, offsets, request_state=states.get(row.erasure_request_id)
        )
        if decision.reset:
            with engine.begin() as conn:
                conn.execute(delete(schema.inactivity_notices).where(schema.inactivity_notices.c.account_id == row.id))
            counts["notices_reset"] += 1
        if decision.action == WARN:
            try:
                _warn(engine, row, decision, offsets, now)
            except ExternalServiceError as exc:
                failure = exc
                counts["warnings_failed"] += 1
                continue
            counts[f"warned_{decision.offset}_days"] += 1
        elif decision.action == ERASE:
            outcome, due = _erase(engine, row, decision, now)
            counts[outcome] += 1
            if due:
                due_erasures.append(due)
        else:
            counts[decision.action] += 1
    if due_erasures:
        # One message for the chunk: the erasure worker runs them as batches sharing every statement.
        erasure.enqueue_runs(due_erasures, reason="registered")
    if failure is not None:
        raise failure
    return dict(counts)


# --- The warning mail (French and English) ---------------------------------------------------------


def warning_message(
    *, to: str, account_id: str, last_activity_at: dt.datetime, erase_after: dt.date, offset: int
) -> Message:
    """The `inactivity_warning` notice; its key makes a retried warning the same mail."""
    last_day = last_activity_at.astimezone(UTC).date()
    return notices.mail(
        "inactivity_warning",
        to=to,
        idempotency_key=f"inactivity-warning:{account_id}:{erase_after.isoformat()}:{offset}",
        last_active_fr=f"{last_day:%d/%m/%Y}",
        last_active_iso=last_day.isoformat(),
        erase_on_fr=f"{erase_after:%d/%m/%Y}",
        erase_on_iso=erase_after.isoformat(),
        days=offset,
        client_area_url=get_settings().client_area_url,
        dpo_email=policy.CONTROLLER.dpo_email,
    )
