"""What the person is told about their request: an extension (Art. 12(3)), a refusal (Art. 12(4)).

Notices are derived from the request's state, like an outbox: a request extended to N months
owes the notice `extension:N`, a rejected one owes `refusal`. `deliver_pending` sends what is
owed and records it in `dsr_notices`, so a crash between the decision and the mail is mended by
the next call (the digest CRON calls it every day), and a notice already sent is never sent again
(recorded once; the mail's idempotency key covers a crash between the mail and the record).

A person known only by a postal address gets no mail: the notice is rendered as a letter
(French, then English) that the DPO prints and posts; it is recorded with delivery `post`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select
from sqlalchemy.exc import IntegrityError

from shared import notices
from shared.platform.clock import moment
from shared.policy.facts import CNIL, CONTROLLER, REFUSAL_REASONS, RIGHTS
from shared.ports.backends import get_mailer
from shared.ports.tables import accounts, dsr_notices, dsr_requests
from shared.records import audit, registry
from shared.records.registry import RequestRecord

ACTOR = "system:desk"
_RIGHT_LABELS = {right.id: right.label for right in RIGHTS}


@dataclass(frozen=True)
class Owed:
    notice: str  # the dsr_notices key: extension:<months> | refusal
    template: str
    context: dict[str, Any]


def _day(moment_: dt.datetime) -> str:
    return moment_.strftime("%d/%m/%Y")


def owed_notices(record: RequestRecord) -> list[Owed]:
    """The notices this request's state calls for (sent or not)."""
    kind = _RIGHT_LABELS.get(record.kind)
    common = {
        "received_on": _day(record.received_at),
        "kind_fr": kind.fr if kind else record.kind,
        "kind_en": kind.en if kind else record.kind,
        "request_id": record.id,
        "dpo_email": CONTROLLER.dpo_email,
    }
    owed: list[Owed] = []
    if record.extended_due_at is not None:
        owed.append(
            Owed(
                f"extension:{record.extension_months}",
                "request_extended",
                {
                    **common,
                    "months": record.extension_months,
                    "new_due_on": _day(record.extended_due_at),
                    "reason": record.extension_reason or "",
                },
            )
        )
    code = record.details.get("reason_code")
    if record.state == registry.REJECTED and code in REFUSAL_REASONS:
        note = record.reason if record.reason and record.reason != code else None
        owed.append(
            Owed(
                "refusal",
                "request_refused",
                {
                    **common,
                    "reason_fr": REFUSAL_REASONS[code].fr,
                    "reason_en": REFUSAL_REASONS[code].en,
                    "note": note,
                    "authority_name": CNIL.name,
                    "authority_website": CNIL.website,
                    "authority_address": CNIL.address,
                },
            )
        )
    return owed


def contact_email(conn: Connection, record: RequestRecord) -> str | None:
    """Where the person is written to: the account's address, else the email they gave, else none (post)."""
    if record.account_id:
        email = conn.execute(
            select(accounts.c.email).where(accounts.c.id == record.account_id, accounts.c.status != "erased")
        ).scalar()
        if email:
            return email
    return record.identifiers().get("email")


def _sent(conn: Connection, request_ids: Sequence[str]) -> set[tuple[str, str]]:
    if not request_ids:
        return set()
    rows = conn.execute(
        select(dsr_notices.c.request_id, dsr_notices.c.notice).where(dsr_notices.c.request_id.in_(list(request_ids)))
    )
    return {(row.request_id, row.notice) for row in rows}


def _candidates(conn: Connection, request_id: str | None) -> list[RequestRecord]:
    query = select(dsr_requests).where(
        or_(dsr_requests.c.extended_due_at.is_not(None), dsr_requests.c.state == registry.REJECTED)
    )
    if request_id is not None:
        query = query.where(dsr_requests.c.id == request_id)
    else:
        # Only requests that may still owe a notice: refusals without a `refusal` row, and open
        # extended requests (an extension is told when decided; few requests are extended).
        extended_open = and_(
            dsr_requests.c.extended_due_at.is_not(None), dsr_requests.c.state.in_(sorted(registry.OPEN_STATES))
        )
        refused_unsent = and_(
            dsr_requests.c.state == registry.REJECTED,
            ~select(dsr_notices.c.request_id)
            .where(dsr_notices.c.request_id == dsr_requests.c.id, dsr_notices.c.notice == "refusal")
            .exists(),
        )
        query = query.where(or_(extended_open, refused_unsent))
    return [RequestRecord.from_row(row) for row in conn.execute(query)]


def deliver_pending(
    engine: Engine, request_id: str | None = None, *, letters: bool = True, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Send every owed notice not yet recorded (of one request, or all); returns what was delivered.

    Each item: {"request_id", "notice", "delivery": "mail"|"post"} and, for post, the "letter" text.
    With `letters=False` (the CRON: nobody would read the letter) notices by post stay owed until a
    DPO call delivers them.
    """
    now = moment(now)
    with engine.connect() as conn:
        records = _candidates(conn, request_id)
        sent = _sent(conn, [record.id for record in records])
    delivered: list[dict[str, Any]] = []
    for record in records:
        for owed in owed_notices(record):
            if (record.id, owed.notice) in sent:
                continue
            with engine.connect() as conn:
                to = contact_email(conn, record)
            if not to and not letters:
                continue
            item: dict[str, Any] = {"request_id": record.id, "notice": owed.notice}
            if to:
                get_mailer().send(
                    notices.mail(
                        owed.template, to=to, idempotency_key=f"desk:{owed.notice}:{record.id}", **owed.context
                    )
                )
                item["delivery"] = "mail"
            else:
                item["delivery"] = "post"
                item["letter"] = notices.render_mail(owed.template, **owed.context).text
            try:
                with engine.begin() as conn:
                    conn.execute(
                        insert(dsr_notices).values(
                            request_id=record.id, notice=owed.notice, sent_at=now, delivery=item["delivery"]
                        )
                    )
                    audit.record(
                        conn,
                        actor=ACTOR,
                        action="request.notice_sent",
                        outcome=item["delivery"],
                        request_id=record.id,
                        subject=record.account_id,
                        details={"notice": owed.notice, "kind": record.kind},
                    )
            except IntegrityError:  # a concurrent call recorded it first: its mail had the same key
                continue
            delivered.append(item)
    return delivered


ANSWER_OUTCOMES = ("nothing_held", "archive", "erased", "objection_recorded")


def tell_answer(
    engine: Engine,
    record: RequestRecord,
    *,
    outcome: str,
    download_url: str | None = None,
    link_until: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any] | None:
    """Tell a person without an account what the platform, as controller, did (once; by mail only).

    None when there is no address to write to (the DPO answers the letter) or it was told already.
    """
    if outcome not in ANSWER_OUTCOMES:
        raise ValueError(f"outcome is one of {ANSWER_OUTCOMES}")
    now = moment(now)
    with engine.connect() as conn:
        if (record.id, "answer") in _sent(conn, [record.id]):
            return None
        to = contact_email(conn, record)
    if not to:
        return None
    kind = _RIGHT_LABELS.get(record.kind)
    get_mailer().send(
        notices.mail(
            "request_answered",
            to=to,
            idempotency_key=f"desk:answer:{record.id}",
            kind_fr=kind.fr if kind else record.kind,
            kind_en=kind.en if kind else record.kind,
            received_on=_day(record.received_at),
            outcome=outcome,
            download_url=download_url,
            link_until=link_until.strftime("%Y-%m-%d %H:%M UTC") if link_until else "",
            authority_name=CNIL.name,
            authority_website=CNIL.website,
            request_id=record.id,
            dpo_email=CONTROLLER.dpo_email,
        )
    )
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(dsr_notices).values(request_id=record.id, notice="answer", sent_at=now, delivery="mail")
            )
            audit.record(
                conn,
                actor=ACTOR,
                action="request.notice_sent",
                outcome="mail",
                request_id=record.id,
                subject=record.account_id,
                details={"notice": "answer", "kind": record.kind, "outcome": outcome},
            )
    except IntegrityError:
        return None
    return {"request_id": record.id, "notice": "answer", "delivery": "mail", "outcome": outcome}


def notices_of(engine: Engine, request_id: str) -> list[dict[str, Any]]:
    """The notices recorded for a request, oldest first (for its timeline)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(dsr_notices).where(dsr_notices.c.request_id == request_id).order_by(dsr_notices.c.sent_at)
        )
        return [{"notice": row.notice, "delivery": row.delivery, "sent_at": row.sent_at} for row in rows]
