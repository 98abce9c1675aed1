"""The DPO console's list of open data-subject requests: one view-model function, easy to swap.

`open_requests` reads the registry (`dsr_requests`) with the subject's account, sorted by the
deadline in force (the extended one when extended), and marks each request overdue or due soon.
The DPO desk (shared/desk/) is meant to provide the proper list; the console only needs rows of
this shape.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from shared.platform.clock import iso, moment
from shared.ports.tables import accounts, dsr_requests
from shared.records.registry import KINDS, OPEN_STATES

DUE_SOON = dt.timedelta(days=7)
OVERDUE, DUE_SOON_MARK, ON_TIME = "overdue", "due_soon", "on_time"
MARKERS = (OVERDUE, DUE_SOON_MARK, ON_TIME)
LIMIT = 500


@dataclass(frozen=True)
class OpenRequest:
    id: str
    kind: str
    channel: str
    state: str
    received_at: dt.datetime
    due_at: dt.datetime  # the deadline in force
    extended: bool
    marker: str
    days_left: int
    account_id: str | None
    subject_name: str | None  # shown escaped, like every value of a page
    subject_email: str | None


    def to_page(self) -> dict:
        """What a page shows: strings and numbers only."""
        return {
            "id": self.id, "kind": self.kind, "channel": self.channel, "state": self.state,
            "received_iso": iso(self.received_at), "received_day": self.received_at.strftime("%Y-%m-%d"),
            "due_iso": iso(self.due_at), "due_text": self.due_at.strftime("%Y-%m-%d %H:%M UTC"),
            "extended": self.extended, "marker": self.marker, "days_left": self.days_left,
            "account_id": self.account_id, "subject_name": self.subject_name, "subject_email": self.subject_email,
        }


def _whole_days(delta: dt.timedelta) -> int:
    """Days left (negative: days late), any part of a day counting as a day: due in 23 hours is 1 day left."""
    days = math.ceil(abs(delta) / dt.timedelta(days=1))
    return days if delta >= dt.timedelta(0) else -days


def marker_for(due_at: dt.datetime, now: dt.datetime) -> str:
    if due_at <= now:
        return OVERDUE
    if due_at - now <= DUE_SOON:
        return DUE_SOON_MARK
    return ON_TIME


def open_requests(
    conn: Connection, *, now: dt.datetime | None = None, kind: str | None = None, marker: str | None = None
) -> list[OpenRequest]:
    """Open requests, the closest deadline first; `kind` and `marker` filter (unknown values: ValueError)."""
    now = moment(now)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind is one of {KINDS}")
    if marker is not None and marker not in MARKERS:
        raise ValueError(f"marker is one of {MARKERS}")
    due = func.coalesce(dsr_requests.c.extended_due_at, dsr_requests.c.due_at)
    query = (
        select(dsr_requests.c.id, dsr_requests.c.kind, dsr_requests.c.channel, dsr_requests.c.state,
               dsr_requests.c.received_at, dsr_requests.c.due_at, dsr_requests.c.extended_due_at,
               dsr_requests.c.account_id, accounts.c.first_name, accounts.c.last_name, accounts.c.email)
        .select_from(dsr_requests.outerjoin(accounts, accounts.c.id == dsr_requests.c.account_id))
        .where(dsr_requests.c.state.in_(sorted(OPEN_STATES)))
        .order_by(due, dsr_requests.c.received_at, dsr_requests.c.id)
        .limit(LIMIT)
    )
    if kind is not None:
        query = query.where(dsr_requests.c.kind == kind)
    rows = []
    for row in conn.execute(query):
        due_at = row.extended_due_at or row.due_at
        name = " ".join(part for part in (row.first_name, row.last_name) if part) or None
        rows.append(OpenRequest(
            id=row.id, kind=row.kind, channel=row.channel, state=row.state, received_at=row.received_at,
            due_at=due_at, extended=row.extended_due_at is not None, marker=marker_for(due_at, now),
            days_left=_whole_days(due_at - now), account_id=row.account_id, subject_name=name, subject_email=row.email,
        ))
    return [r for r in rows if marker is None or r.marker == marker]
