"""Giving and withdrawing consent: the append-only ledger `consent_events` (Art. 7).

The current state of a purpose is its latest event, derived on every read and never
stored apart. Withdrawal takes effect at once; an analytics withdrawal deletes the
events collected under the consent in the same transaction, so no window exists where
they remain; a newsletter withdrawal is then propagated to Resend (propagation.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, delete

from shared.platform.clock import moment
from shared.platform.errors import Conflict, ExternalServiceError, ValidationFailed
from shared.platform.logs import get_logger
from shared.ports.tables import analytics_events
from shared.records import audit
from shared.records.processing import (
    ALL,
    GIVEN,
    OBJECTION_FOR_PURPOSE,
    WITHDRAWN,
    Flag,
    flags_in_force,
    latest_event,
)
from shared.rights.consent.propagation import PROPAGATION_QUEUE, dispatch_propagations
from shared.rights.consent.writes import (
    CLIENT_AREA,
    OBJECTION_REASONS,
    Change,
    append_event,
    attach_request,
    check_channel,
    check_purposes,
    lift_in,
    lock_account,
    register,
    set_flag_in,
)


def _withdraw_in(
    conn: Connection,
    account_id: str,
    purpose: str,
    *,
    channel: str,
    actor: str,
    now: dt.datetime,
    ip: str | None,
    user_agent: str | None,
) -> str | None:
    """Append a withdrawal if the consent is currently given; the new event id, or None (nothing to do)."""
    previous = latest_event(conn, account_id, purpose)
    if previous is None or previous.action != GIVEN:
        return None
    event_id, occurred_at = append_event(
        conn,
        account_id=account_id,
        purpose=purpose,
        action=WITHDRAWN,
        channel=channel,
        now=now,
        ip=ip,
        user_agent=user_agent,
        previous=previous,
    )
    details: dict[str, Any] = {"purpose": purpose, "channel": channel, "consent_event_id": event_id}
    if purpose == "analytics":
        # Under the account lock, every analytics event of the account was collected under
        # the consent now withdrawn (or under none): all of them go, atomically with it. Events
        # of the legitimate-interest purposes follow their own objections (legitimate_interest.py).
        details["analytics_events_deleted"] = conn.execute(
            delete(analytics_events).where(
                analytics_events.c.account_id == account_id, analytics_events.c.purpose == "analytics"
            )
        ).rowcount
    audit.record(conn, actor=actor, action="consent.withdrawn", outcome="recorded", subject=account_id, details=details)
    return event_id


def withdraw(
    engine: Engine,
    account_id: str,
    purpose: str,
    *,
    channel: str,
    actor: str,
    objection: bool = False,
    reason_code: str = "data_subject_request",
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> Change:
    """Withdraw consent for `purpose` (or "all") at once; with `objection`, also object (Art. 21).

    Idempotent: what is already withdrawn (or objected to) writes nothing, and a call that
    changes nothing creates no request. Newsletter withdrawals are then propagated to Resend.
    """
    purposes = check_purposes(purpose)
    check_channel(channel)
    if reason_code not in OBJECTION_REASONS:
        raise ValidationFailed(f"reason_code must be one of {', '.join(OBJECTION_REASONS)}", code="invalid_reason")
    now = moment(now)
    withdrawn: list[str] = []
    flags: list[Flag] = []
    with engine.begin() as conn:
        lock_account(conn, account_id)
        for item in purposes:
            event_id = _withdraw_in(
                conn, account_id, item, channel=channel, actor=actor, now=now, ip=ip, user_agent=user_agent
            )
            if event_id is not None:
                withdrawn.append(item)
            if objection:
                flag = set_flag_in(
                    conn,
                    account_id=account_id,
                    kind=OBJECTION_FOR_PURPOSE[item],
                    reason_code=reason_code,
                    note=None,
                    channel=channel,
                    actor=actor,
                    now=now,
                )
                if flag is not None:
                    flags.append(flag)
        request_id = None
        if withdrawn or flags:
            request_id = register(
                conn,
                account_id=account_id,
                kind="objection" if flags else "consent_withdrawal",
                channel=channel,
                actor=actor,
                now=now,
                details={"purposes": withdrawn, "objections": [f.kind for f in flags], "consent_channel": channel},
            )
            attach_request(conn, request_id, [f.id for f in flags])
    try:
        dispatch_propagations(engine, account_id=account_id)
    except ExternalServiceError:
        # The withdrawal holds (send_marketing reads the ledger); the propagation stays
        # pending and is queued again by the account's next call or the hourly sweep.
        get_logger().warning("consent propagation not queued", extra={"queue": PROPAGATION_QUEUE})
    return Change(withdrawn=tuple(withdrawn), flags_set=tuple(f.kind for f in flags), request_id=request_id)


def give_consent(
    engine: Engine,
    account_id: str,
    purpose: str,
    *,
    channel: str,
    actor: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> Change:
    """Record consent for one purpose (idempotent).

    An objection in force blocks it (409 `objection_in_force`) unless the consent is a new
    explicit act of the user in the client area, which lifts the objection (Art. 21).
    """
    if purpose == ALL:
        raise ValidationFailed("consent is given one purpose at a time", code="unknown_purpose")
    (purpose,) = check_purposes(purpose)
    check_channel(channel)
    now = moment(now)
    lifted: list[str] = []
    with engine.begin() as conn:
        lock_account(conn, account_id)
        objection = flags_in_force(conn, account_id).get(OBJECTION_FOR_PURPOSE[purpose])
        if objection is not None:
            if channel != CLIENT_AREA:
                raise Conflict(
                    "an objection is in force: only a new explicit consent in the client area lifts it",
                    code="objection_in_force",
                )
            lift_in(conn, objection, actor=actor, reason_code="new_explicit_consent", now=now)
            lifted.append(objection.kind)
        previous = latest_event(conn, account_id, purpose)
        if previous is not None and previous.action == GIVEN and not lifted:
            return Change()
        _, occurred_at = append_event(
            conn,
            account_id=account_id,
            purpose=purpose,
            action=GIVEN,
            channel=channel,
            now=now,
            ip=ip,
            user_agent=user_agent,
            previous=previous,
        )
        audit.record(
            conn,
            actor=actor,
            action="consent.given",
            outcome="recorded",
            subject=account_id,
            details={"purpose": purpose, "channel": channel},
        )
    return Change(given=(purpose,), flags_lifted=tuple(lifted))
