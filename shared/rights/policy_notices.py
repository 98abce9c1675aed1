"""Policy-change notices (policy 11): every account is told once of each substantial change.

The versions are data (`shared.policy.facts.POLICY_VERSIONS`). The version to announce is the
latest substantial version in force; every active account that was not told of it yet gets the
`policy_changed` notice, a service notice (mail category `transactional`: sent whatever the
marketing consent, never through `send_marketing`). `policy_notices` records, per account and
version, when the notice went out and when the account acknowledged it in the client area.

- `announce` (the CRON and `privacy-functions policy announce`) walks the accounts not yet told,
  by id, one bounded SELECT per chunk, and queues one `PolicyNoticeChunk` per chunk on
  `policy-notices`. Its key is the version, the day and a hash of the chunk's ids, so a run
  repeated after a crash queues the same key for the same accounts (a duplicate) and new keys only
  for accounts still waiting.
- `process_chunk` (the worker) mails each account of the chunk not yet told, under the key
  `policy-notice:<version>:<account id>`, then records `told_at`. A crash between the mail and
  the record sends the same key again on the retry: the mail service sends it once. A failing
  mail service leaves its accounts for the retry and fails the chunk at its end (503: retried).
- `notice_view` and `acknowledge` are what the privacy-notice function answers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, Row, select

from shared import notices
from shared.platform.clock import UTC, iso_or_none, moment
from shared.platform.config import get_settings
from shared.platform.errors import Conflict, ExternalServiceError, NotFound
from shared.platform.messages import MAX_IDS_PER_MESSAGE, PolicyNoticeChunk
from shared.policy import facts as policy
from shared.ports import tables as schema
from shared.ports.backends import get_mailer, get_queue
from shared.ports.db import dialect_insert
from shared.ports.mail import Message
from shared.ports.queues import SEND_BATCH_SIZE
from shared.records import audit

QUEUE_NAME = PolicyNoticeChunk.QUEUE
ACTOR = "system:policy-notices"
DEFAULT_CHUNK_SIZE = 200

Progress = Callable[[int], None]


def _today(now: dt.datetime) -> dt.date:
    return now.astimezone(UTC).date()


def version_to_announce(on: dt.date) -> policy.PolicyVersion | None:
    """The latest substantial version in force on `on`: the one every account must have been told of."""
    due = [v for v in policy.POLICY_VERSIONS if v.substantial and v.effective_date <= on]
    return due[-1] if due else None


def _chosen_version(number: str | None, today: dt.date) -> policy.PolicyVersion | None:
    if number is None:
        return version_to_announce(today)
    try:
        version = policy.policy_version(number)
    except KeyError:
        raise NotFound(f"no policy version {number!r} is declared", code="unknown_version") from None
    if not version.substantial:
        raise Conflict(f"version {number} is not a substantial change: nothing to announce", code="not_substantial")
    return version


# --- The run: queue the accounts not told yet, chunk by chunk ----------------------------------------


def _untold(version: str) -> sa.Select:
    a, n = schema.accounts, schema.policy_notices
    told = sa.exists().where(n.c.account_id == a.c.id, n.c.version == version, n.c.told_at.is_not(None))
    return select(a.c.id).where(a.c.status == "active", ~told)


def chunk_key(version: str, day: dt.date, account_ids: list[str]) -> str:
    """The same accounts on the same day: the same key (a run repeated after a crash is a duplicate).
    The day is in it so that an account skipped while inactive is queued again by a later run."""
    digest = hashlib.sha256("\n".join(account_ids).encode()).hexdigest()[:20]
    return f"policy-notice:{version}:{day.isoformat()}:{digest}"


def announce(
    engine: Engine,
    *,
    version: str | None = None,
    now: dt.datetime | None = None,
    chunk_size: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Queue the notice of `version` (default: the latest substantial version in force) for every
    active account not told of it yet, one message per chunk. Idempotent; changes no account."""
    now = moment(now)
    chosen = _chosen_version(version, _today(now))
    if chosen is None:
        return {"version": None, "chunks_queued": 0, "accounts_queued": 0}
    chunk_size = max(1, min(chunk_size or DEFAULT_CHUNK_SIZE, MAX_IDS_PER_MESSAGE))
    queue = get_queue(QUEUE_NAME)
    query = _untold(chosen.number).order_by(schema.accounts.c.id).limit(chunk_size)
    chunks = queued = 0
    messages: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = query if after is None else query.where(schema.accounts.c.id > after)
        with engine.connect() as conn:
            ids = list(conn.execute(page).scalars())
        if ids:
            messages.append(
                PolicyNoticeChunk(version=chosen.number, account_ids=ids).envelope(
                    chunk_key(chosen.number, _today(now), ids)
                )
            )
            chunks, queued, after = chunks + 1, queued + len(ids), ids[-1]
        if messages and (len(messages) == SEND_BATCH_SIZE or len(ids) < chunk_size):
            queue.send_many(messages)
            messages = []
            if progress is not None:
                progress(queued)
        if len(ids) < chunk_size:
            break
    if queued:
        with engine.begin() as conn:
            audit.record(
                conn,
                actor=ACTOR,
                action="policy.notices_queued",
                outcome="queued",
                details={"version": chosen.number, "chunks": chunks, "accounts": queued},
            )
    return {"version": chosen.number, "chunks_queued": chunks, "accounts_queued": queued}


def pending_count(engine: Engine, version: str) -> int:
    """Active accounts not told of `version` yet."""
    with engine.connect() as conn:
        return conn.execute(select(sa.func.count()).select_from(_untold(version).subquery())).scalar_one()


# --- One chunk (the worker) -----------------------------------------------------------------------


def notice_message(*, to: str, account_id: str, version: policy.PolicyVersion) -> Message:
    """The `policy_changed` notice; its key makes a retried notice the same mail."""
    return notices.mail(
        "policy_changed",
        to=to,
        idempotency_key=f"policy-notice:{version.number}:{account_id}",
        version=version.number,
        effective_on_fr=f"{version.effective_date:%d/%m/%Y}",
        effective_on_iso=version.effective_date.isoformat(),
        summary_fr=version.summary.fr,
        summary_en=version.summary.en,
        client_area_url=get_settings().client_area_url,
        dpo_email=policy.CONTROLLER.dpo_email,
    )


def _record_told(engine: Engine, account_id: str, version: str, message_id: str | None, now: dt.datetime) -> None:
    n = schema.policy_notices
    with engine.begin() as conn:
        insert = dialect_insert(conn, n).values(
            account_id=account_id, version=version, told_at=now, message_id=(message_id or None) and message_id[:100]
        )
        # Told once: a row already told keeps its first told_at; an earlier acknowledgement stays.
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[n.c.account_id, n.c.version],
                set_={"told_at": insert.excluded.told_at, "message_id": insert.excluded.message_id},
                where=n.c.told_at.is_(None),
            )
        )


def process_chunk(
    engine: Engine, version: str, account_ids: list[str], *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Tell each active account of the chunk not told yet; idempotent (see the module docstring)."""
    now = moment(now)
    try:
        chosen = policy.policy_version(version)
    except KeyError:
        raise NotFound(f"no policy version {version!r} is declared", code="unknown_version") from None
    a, n = schema.accounts, schema.policy_notices
    with engine.connect() as conn:
        rows = conn.execute(
            select(a.c.id, a.c.email, a.c.status, n.c.told_at)
            .select_from(a.outerjoin(n, sa.and_(n.c.account_id == a.c.id, n.c.version == version)))
            .where(a.c.id.in_(account_ids))
            .order_by(a.c.id)
        ).all()
    counts: Counter[str] = Counter()
    failure: ExternalServiceError | None = None
    counts["gone"] = len(set(account_ids)) - len(rows)
    for row in rows:
        if row.told_at is not None:
            counts["already_told"] += 1
            continue
        if row.status != "active":
            counts["not_active"] += 1
            continue
        try:
            message_id = get_mailer().send(notice_message(to=row.email, account_id=row.id, version=chosen))
        except ExternalServiceError as exc:
            failure = exc
            counts["failed"] += 1
            continue
        _record_told(engine, row.id, version, message_id, now)
        counts["told"] += 1
    with engine.begin() as conn:
        audit.record(
            conn,
            actor=ACTOR,
            action="policy.notices_sent",
            outcome="failed" if failure else "sent",
            details={"version": version, **{k: v for k, v in counts.items() if v}},
        )
    if failure is not None:
        raise failure
    return {k: v for k, v in counts.items() if v}


# --- What the account sees, and its acknowledgement ------------------------------------------------


def _row(conn: Connection, account_id: str, version: str) -> Row[Any] | None:
    n = schema.policy_notices
    return conn.execute(select(n).where(n.c.account_id == account_id, n.c.version == version)).first()


def version_json(version: policy.PolicyVersion) -> dict[str, Any]:
    return {
        "version": version.number,
        "effective_date": version.effective_date.isoformat(),
        "substantial": version.substantial,
        "summary": {"fr": version.summary.fr, "en": version.summary.en},
    }


def notice_view(conn: Connection, account_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The version in force, its date and summary; whether the account was told of it and acknowledged it."""
    today = _today(moment(now))
    version = policy.version_in_force(today)
    row = _row(conn, account_id, version.number)
    told_at = row.told_at if row is not None else None
    acknowledged_at = row.acknowledged_at if row is not None else None
    # A minor version after a substantial one: the substantial change is what the account was mailed.
    announced = version_to_announce(today)
    announced_row = _row(conn, account_id, announced.number) if announced is not None else None
    return {
        **version_json(version),
        "told": told_at is not None,
        "told_at": iso_or_none(told_at),
        "acknowledged": acknowledged_at is not None,
        "acknowledged_at": iso_or_none(acknowledged_at),
        "last_substantial_change": None
        if announced is None
        else {
            "version": announced.number,
            "effective_date": announced.effective_date.isoformat(),
            "told_at": iso_or_none(announced_row.told_at if announced_row is not None else None),
        },
    }


def acknowledge(engine: Engine, account_id: str, version: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Record that the account read the version in force (once: a repeat keeps the first moment).

    `version` is the one the client area showed: acknowledging another version is a 409 and
    changes nothing, so an acknowledgement never covers a text the person did not see.
    """
    now = moment(now)
    in_force = policy.version_in_force(_today(now))
    if version != in_force.number:
        raise Conflict(
            f"version {version} is not the version in force ({in_force.number})", code="not_version_in_force"
        )
    n = schema.policy_notices
    with engine.begin() as conn:
        found = conn.execute(select(schema.accounts.c.id).where(schema.accounts.c.id == account_id)).first()
        if found is None:
            raise NotFound("no such account", code="account_not_found")
        insert = dialect_insert(conn, n).values(account_id=account_id, version=version, acknowledged_at=now)
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[n.c.account_id, n.c.version],
                set_={"acknowledged_at": insert.excluded.acknowledged_at},
                where=n.c.acknowledged_at.is_(None),
            )
        )
        row = _row(conn, account_id, version)
        assert row is not None  # upserted just above
        if row.acknowledged_at == now:  # this call wrote it (not an earlier one)
            audit.record(
                conn,
                actor="client",
                action="policy.acknowledged",
                outcome="recorded",
                subject=account_id,
                details={"version": version},
            )
        return notice_view(conn, account_id, now=now)


def export_section(conn: Connection, account_id: str) -> list[dict[str, Any]]:
    """Every notice of the account, for its access export."""
    n = schema.policy_notices
    rows = conn.execute(select(n).where(n.c.account_id == account_id).order_by(n.c.version))
    return [
        {"version": r.version, "told_at": iso_or_none(r.told_at), "acknowledged_at": iso_or_none(r.acknowledged_at)}
        for r in rows
    ]
