"""Erasures a legal hold suspended: what the hold kept is erased once the hold ends.

An erasure that meets a hold in force erases everything else and leaves the held rows linked
to the account, whose row stays as their anchor (status `erased`, emptied but for the held
categories: `scrub._shell_values`). Each run of enforce-retention (its first category, so that
what was retained and has expired goes in the same run) passes these shells through the same
erasure again: the files first (objects step, hold-aware), then the database step, which now
erases whatever no hold keeps any more and deletes the account row once nothing is held.
Both steps are idempotent: a crash between them is resumed by the next run.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from shared.platform.clock import moment
from shared.ports.tables import accounts
from shared.records import audit
from shared.rights.erasure.common import SYSTEM_ACTOR, ErasureVerificationFailed
from shared.rights.erasure.objects import _objects_step
from shared.rights.erasure.scrub import erase_accounts_data

BATCH = 200


def _shells(conn: Connection, after: str, limit: int) -> list[str]:
    return list(
        conn.execute(
            select(accounts.c.id)
            .where(accounts.c.status == "erased", accounts.c.id > after)
            .order_by(accounts.c.id)
            .limit(limit)
        ).scalars()
    )


def count_suspended(conn: Connection, now: dt.datetime) -> dict[str, int]:
    """Erased accounts whose held data is still in the database."""
    return {"accounts": conn.execute(select(func.count()).where(accounts.c.status == "erased")).scalar_one()}


def _finish(engine: Engine, account_ids: list[str], now: dt.datetime) -> list[str]:
    """One transaction: erase what is no longer held; returns the accounts whose row went (nothing held any more)."""
    with engine.begin() as conn:
        present = list(
            conn.execute(
                select(accounts.c.id)
                .where(accounts.c.id.in_(account_ids), accounts.c.status == "erased")
                .with_for_update()
            ).scalars()
        )
        if not present:
            return []
        erase_accounts_data(conn, present, now=now)
        still = set(conn.execute(select(accounts.c.id).where(accounts.c.id.in_(present))).scalars())
        finished = [a for a in present if a not in still]
        for account_id in finished:
            audit.record(conn, actor=SYSTEM_ACTOR, action="erasure.hold_ended", outcome="erased", subject=account_id)
    return finished


def finish_suspended(engine: Engine, *, now: dt.datetime | None = None, progress: Any = None) -> dict[str, int]:
    """Erase the data of erased accounts that no hold keeps any more (all of it once no hold is left)."""
    now = moment(now)
    counts = {"accounts": 0, "finished": 0, "failed": 0}
    after = ""
    while True:
        with engine.connect() as conn:
            ids = _shells(conn, after, BATCH)
        if not ids:
            break
        for account_id in ids:
            _objects_step(engine, account_id, now)  # files first: the database step may remove the last anchor
        try:
            finished = _finish(engine, ids, now)
        except ErasureVerificationFailed:
            finished = []
            for account_id in ids:  # isolate the account at fault; the others go through
                try:
                    finished += _finish(engine, [account_id], now)
                except ErasureVerificationFailed:
                    counts["failed"] += 1
        counts["accounts"] += len(ids)
        counts["finished"] += len(finished)
        if progress is not None:
            progress("suspended_erasures", counts["accounts"])
        after = ids[-1]
        if len(ids) < BATCH:
            break
    return counts
