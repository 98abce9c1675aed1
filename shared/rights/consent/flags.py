"""Objection (Art. 21) and restriction (Art. 18): flags in `processing_restrictions`.

A flag is in force until lifted and is never deleted. An objection withdraws the
purpose's consent and blocks it until a new explicit consent; a restriction is set and
lifted by the DPO, and lifting it tells the account holder first (Art. 18(3)).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, select, update

from shared import notices
from shared.platform.clock import UTC, moment
from shared.platform.config import get_settings
from shared.platform.errors import (
    AppError,
    ExternalServiceError,
    NotFound,
    ValidationFailed,
)
from shared.policy.facts import CONTROLLER
from shared.ports.backends import get_mailer
from shared.ports.tables import accounts, processing_restrictions
from shared.records.processing import (
    OBJECTION_FOR_PURPOSE,
    RESTRICTION,
    RESTRICTION_REASONS,
    Flag,
    flags_in_force,
)
from shared.rights.consent.ledger import withdraw
from shared.rights.consent.writes import (
    DPO,
    LIFT_REASONS,
    MAX_NOTE_LENGTH,
    Change,
    attach_request,
    flag_family,
    lift_in,
    load_flag,
    lock_account,
    register,
    set_flag_in,
)


def object_to(
    engine: Engine,
    account_id: str,
    kind: str,
    *,
    channel: str,
    actor: str,
    reason_code: str = "data_subject_request",
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> Change:
    """Art. 21 objection: withdraws the purpose's consent and blocks it until a new explicit consent."""
    purposes = [p for p, k in OBJECTION_FOR_PURPOSE.items() if k == kind]
    if not purposes:
        raise ValidationFailed(f"kind must be one of {', '.join(OBJECTION_FOR_PURPOSE.values())}", code="invalid_kind")
    return withdraw(
        engine,
        account_id,
        purposes[0],
        channel=channel,
        actor=actor,
        objection=True,
        reason_code=reason_code,
        ip=ip,
        user_agent=user_agent,
        now=now,
    )


def restrict(
    engine: Engine,
    account_id: str,
    *,
    reason_code: str,
    actor: str,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[Flag, bool]:
    """Put a restriction in force (DPO); (flag, created). Setting it twice returns the one in force."""
    if reason_code not in RESTRICTION_REASONS:
        raise ValidationFailed(f"reason_code must be one of {', '.join(RESTRICTION_REASONS)}", code="invalid_reason")
    note = _clean_note(note)
    now = moment(now)
    with engine.begin() as conn:
        lock_account(conn, account_id)
        flag = set_flag_in(
            conn,
            account_id=account_id,
            kind=RESTRICTION,
            reason_code=reason_code,
            note=note,
            channel=DPO,
            actor=actor,
            now=now,
        )
        if flag is None:
            return flags_in_force(conn, account_id)[RESTRICTION], False
        request_id = register(
            conn,
            account_id=account_id,
            kind="restriction",
            channel=DPO,
            actor=actor,
            now=now,
            details={"action": "set", "flag_id": flag.id, "reason_code": reason_code},
        )
        attach_request(conn, request_id, [flag.id])
        attached = load_flag(conn, flag.id)
        if attached is None:  # set in this very transaction
            raise RuntimeError("the flag just set is gone")
        return attached, True


def _clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise ValidationFailed(f"note must be a string of at most {MAX_NOTE_LENGTH} characters", code="invalid_note")
    return note.strip() or None


def get_flag(conn: Connection, flag_id: str) -> Flag:
    flag = load_flag(conn, flag_id) if isinstance(flag_id, str) and len(flag_id) <= 36 else None
    if flag is None:
        raise NotFound("no such restriction or objection", code="flag_not_found")
    return flag


def lift(
    engine: Engine,
    flag_id: str,
    *,
    reason_code: str,
    actor: str,
    now: dt.datetime | None = None,
) -> Flag:
    """Lift a flag (DPO). A restriction is lifted only after its holder has been told (Art. 18(3)).

    The notice is mailed first with an idempotency key bound to the flag, so a retry after a
    failure between the mail and the lift sends no second mail. Lifting twice is a no-op.
    """
    if reason_code not in LIFT_REASONS:
        raise ValidationFailed(f"reason_code must be one of {', '.join(LIFT_REASONS)}", code="invalid_reason")
    now = moment(now)
    with engine.connect() as conn:
        flag = get_flag(conn, flag_id)
        email, _locale = conn.execute(
            select(accounts.c.email, accounts.c.locale).where(accounts.c.id == flag.account_id)
        ).one()
    if not flag.in_force:
        return flag
    notified_at = None
    if flag.kind == RESTRICTION:
        try:
            _send_lift_notice(flag, email)
        except ExternalServiceError:
            raise AppError(
                503,
                "notification_failed",
                "the account holder could not be told; the restriction stays in force, retry later",
            ) from None
        notified_at = now
    with engine.begin() as conn:
        lock_account(conn, flag.account_id)
        flag = get_flag(conn, flag_id)
        if not flag.in_force:
            return flag
        lift_in(conn, flag, actor=actor, reason_code=reason_code, now=now, notified_at=notified_at)
        request_id = register(
            conn,
            account_id=flag.account_id,
            kind=flag_family(flag.kind),
            channel=DPO,
            actor=actor,
            now=now,
            details={"action": "lift", "flag_id": flag.id, "reason_code": reason_code},
        )
        conn.execute(
            update(processing_restrictions)
            .where(processing_restrictions.c.id == flag.id)
            .values(lift_request_id=request_id)
        )
        return get_flag(conn, flag_id)


def _send_lift_notice(flag: Flag, email: str) -> None:
    """The Art. 18(3) notice (template `restriction_lifted`), once per flag whatever the retries."""
    get_mailer().send(
        notices.mail(
            "restriction_lifted",
            to=email,
            idempotency_key=f"restriction-lift-notice:{flag.id}",
            since=flag.set_at.astimezone(UTC).strftime("%d/%m/%Y"),
            client_area_url=get_settings().client_area_url,
            dpo_email=CONTROLLER.dpo_email,
        )
    )
