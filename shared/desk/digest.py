"""The DPO's daily digest: open requests due within 7 days, due tomorrow, overdue (Art. 12(3)).

Each request is listed at each threshold once. A threshold is recorded in `dsr_notices` as
`digest:<threshold>:<deadline day>`, so an extension (a new deadline) starts the thresholds
again. After missed days a request that crossed several thresholds at once is listed under the
most urgent one and every threshold it crossed is recorded: none is announced later out of order.

The thresholds are recorded and the mail sent in one transaction: a failed send records nothing;
a crash after the send and before the commit sends the same digest again under the same
idempotency key, which the mail port does not deliver twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, insert, select

from shared import notices
from shared.desk import notify
from shared.platform.clock import iso, moment
from shared.policy.facts import CONTROLLER
from shared.ports.backends import get_mailer
from shared.ports.tables import dsr_notices, dsr_requests
from shared.records import audit, registry
from shared.records.registry import RequestRecord

ACTOR = "system:desk-digest"


@dataclass(frozen=True)
class Threshold:
    id: str
    label_en: str
    label_fr: str
    # Reached when the deadline is at most this far ahead (negative: passed).
    ahead: dt.timedelta
    strictly_passed: bool = False


# Most urgent first.
THRESHOLDS = (
    Threshold("overdue", "Overdue", "En retard", dt.timedelta(0), strictly_passed=True),
    Threshold("due_tomorrow", "Due tomorrow", "Échéance demain", dt.timedelta(days=1)),
    Threshold("due_within_7_days", "Due within 7 days", "Échéance sous 7 jours", dt.timedelta(days=7)),
)


def _reached(record: RequestRecord, now: dt.datetime) -> list[Threshold]:
    due = record.effective_due_at
    return [t for t in THRESHOLDS if (due < now if t.strictly_passed else due <= now + t.ahead)]


def _key(threshold: Threshold, record: RequestRecord) -> str:
    return f"digest:{threshold.id}:{record.effective_due_at.date().isoformat()}"


def _line(record: RequestRecord) -> dict[str, Any]:
    return {
        "request_id": record.id,
        "kind": record.kind,
        "channel": record.channel,
        "state": record.state,
        "received_on": record.received_at.strftime("%d/%m/%Y"),
        "due_on": record.effective_due_at.strftime("%d/%m/%Y"),
    }


def send_digest(engine: Engine, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Mail the DPO what newly crossed a threshold; nothing when nothing did. Returns the counts."""
    now = moment(now)
    horizon = now + max(t.ahead for t in THRESHOLDS)
    with engine.begin() as conn:
        rows = conn.execute(
            select(dsr_requests)
            .where(
                dsr_requests.c.state.in_(sorted(registry.OPEN_STATES)),
                registry.effective_due_column() <= horizon,
            )
            .order_by(registry.effective_due_column(), dsr_requests.c.id)
        ).all()
        records = [RequestRecord.from_row(row) for row in rows]
        recorded = {
            (row.request_id, row.notice)
            for row in conn.execute(
                select(dsr_notices.c.request_id, dsr_notices.c.notice).where(
                    dsr_notices.c.request_id.in_([r.id for r in records] or [""]),
                    dsr_notices.c.notice.like("digest:%"),
                )
            )
        }
        sections: dict[str, list[dict[str, Any]]] = {t.id: [] for t in THRESHOLDS}
        new_rows: list[dict[str, Any]] = []
        for record in records:
            fresh = [t for t in _reached(record, now) if (record.id, _key(t, record)) not in recorded]
            if not fresh:
                continue
            sections[fresh[0].id].append(_line(record))
            new_rows += [
                {"request_id": record.id, "notice": _key(t, record), "sent_at": now, "delivery": "mail"} for t in fresh
            ]
        counts = {t.id: len(sections[t.id]) for t in THRESHOLDS}
        if not new_rows:
            return {"mailed": False, **counts}
        conn.execute(insert(dsr_notices), new_rows)
        audit.record(
            conn,
            actor=ACTOR,
            action="desk.digest_sent",
            outcome="mailed",
            details={**counts, "as_of": iso(now)},
        )
        digest_id = hashlib.sha256(
            "\n".join(sorted(f"{row['request_id']}:{row['notice']}" for row in new_rows)).encode()
        ).hexdigest()[:32]
        get_mailer().send(
            notices.mail(
                "dpo_digest",
                to=CONTROLLER.dpo_email,
                idempotency_key=f"dpo-digest:{digest_id}",
                total=sum(counts.values()),
                sections=[
                    {"label_fr": t.label_fr, "label_en": t.label_en, "requests": sections[t.id]}
                    for t in THRESHOLDS
                    if sections[t.id]
                ],
            )
        )
    return {"mailed": True, **counts}


def daily(engine: Engine, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The CRON's work: notices owed to people (by mail; letters wait for the DPO), then the digest."""
    delivered = notify.deliver_pending(engine, letters=False, now=now)
    return {"notices_sent": len(delivered), "digest": send_digest(engine, now=now)}
