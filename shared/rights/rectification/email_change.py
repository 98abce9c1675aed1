"""A change of email address: it takes effect only once the new address confirms a mailed code.

The step-up codes of shared.identity go to the account's current address and open sensitive
actions; this code goes to the new address and proves only that the person receives mail there,
so it lives apart (`email_changes`) and can never serve as a step-up. It follows the same rules:
6 digits, stored as a keyed hash bound to its row, valid VERIFICATION_CODE_TTL_SECONDS, at most
VERIFICATION_MAX_ATTEMPTS wrong tries, single use, one mail a minute at most. A failed attempt
is committed before the refusal is raised, so it counts while nothing else changes.

Once confirmed, the address is a rectification like the others (registry, audit, propagation);
the row keeps the previous address only until Resend's contact has moved, then goes.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
import secrets
import uuid
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from shared import notices
from shared.platform.clock import iso, moment
from shared.platform.config import get_settings
from shared.platform.errors import AppError, Conflict, NotFound, TooManyRequests, Unauthorized
from shared.platform.pseudonym import pseudonymise
from shared.ports.backends import get_mailer
from shared.ports.tables import accounts, email_changes
from shared.records import audit
from shared.rights.rectification.applying import Changes, dispatch, register_and_apply, request_view

RESEND_SECONDS = 60
_SIX_DIGITS = re.compile(r"^[0-9]{6}\Z")


def _code_hash(change_id: str, code: str) -> str:
    return pseudonymise(f"{change_id}:{code}", purpose="email-change-code")


def _taken(conn: Connection, account_id: str, email: str) -> bool:
    return (
        conn.execute(
            select(accounts.c.id).where(func.lower(accounts.c.email) == email.lower(), accounts.c.id != account_id)
        ).first()
        is not None
    )


def pending_change(conn: Connection, account_id: str) -> Any:
    """The account's change of address awaiting its code, if any."""
    return conn.execute(
        select(email_changes)
        .where(email_changes.c.account_id == account_id, email_changes.c.confirmed_at.is_(None))
        .order_by(email_changes.c.created_at.desc())
        .limit(1)
    ).first()


def pending_view(row: Any) -> dict[str, Any]:
    return {"state": "awaiting_confirmation", "new_email": row.new_email, "expires_at": iso(row.expires_at)}


def request_email_change(
    conn: Connection, account: Any, new_email: str, *, now: dt.datetime
) -> tuple[dict[str, Any], Any]:
    """Register the change and the code; returns (answer, mail or None). The caller sends the mail after commit."""
    if new_email.lower() == account.email.lower():
        return {"state": "unchanged"}, None
    if _taken(conn, account.id, new_email):
        raise Conflict("this email address cannot be used for this account", code="email_unavailable")
    current = pending_change(conn, account.id)
    if (
        current is not None
        and current.new_email == new_email
        and current.created_at > now - dt.timedelta(seconds=RESEND_SECONDS)
    ):
        return pending_view(current), None  # one mail a minute at most: the code sent is still the one
    # Only changes awaiting their code go; a confirmed one keeps its row until Resend is told.
    conn.execute(
        delete(email_changes).where(email_changes.c.account_id == account.id, email_changes.c.confirmed_at.is_(None))
    )
    settings = get_settings()
    change_id, code = str(uuid.uuid4()), f"{secrets.randbelow(10**6):06d}"
    expires = now + dt.timedelta(seconds=settings.verification_code_ttl_seconds)
    conn.execute(
        insert(email_changes).values(
            id=change_id,
            account_id=account.id,
            new_email=new_email,
            code_hash=_code_hash(change_id, code),
            created_at=now,
            expires_at=expires,
            attempts=0,
        )
    )
    audit.record(
        conn,
        actor="client",
        action="rectification.email_change_requested",
        outcome="code_sent",
        subject=account.id,
        details={"change_id": change_id},
    )
    mail = notices.mail(
        "email_change_code",
        to=new_email,
        idempotency_key=f"email-change:{change_id}",
        code=code,
        minutes=settings.verification_code_ttl_seconds // 60,
    )
    row = conn.execute(select(email_changes).where(email_changes.c.id == change_id)).one()
    return pending_view(row), mail


def send(mail: Any) -> None:
    if mail is not None:
        get_mailer().send(mail)


def _check_code(conn: Connection, row: Any, code: str, now: dt.datetime) -> AppError | None:
    settings = get_settings()
    if row.attempts >= settings.verification_max_attempts:
        return TooManyRequests("too many wrong codes; ask for a new one", code="too_many_attempts")
    if now >= row.expires_at:
        return Unauthorized("the code has expired; ask for a new one", code="code_expired")
    if not _SIX_DIGITS.match(code) or not hmac.compare_digest(_code_hash(row.id, code), row.code_hash):
        conn.execute(
            update(email_changes).where(email_changes.c.id == row.id).values(attempts=email_changes.c.attempts + 1)
        )
        return Unauthorized("the confirmation code is not valid", code="invalid_code")
    return None


def confirm_email_change(
    engine: Engine, account_id: str, code: str, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Apply the pending change once its code is right: a rectification of `email`, propagated like the others."""
    now = moment(now)
    failure: AppError | None = None
    with engine.begin() as conn:
        account = conn.execute(
            select(accounts).where(accounts.c.id == account_id).with_for_update(key_share=True)
        ).first()
        row = pending_change(conn, account_id) if account is not None else None
        if row is None:
            raise NotFound("no change of email address is awaiting confirmation", code="no_pending_email_change")
        failure = _check_code(conn, row, code, now)
        audit.record(
            conn,
            actor="client",
            action="rectification.email_change_confirmation",
            outcome=failure.code if failure else "succeeded",
            subject=account_id,
            details={"change_id": row.id},
        )
    if failure is not None:
        raise failure
    try:
        record = _apply_confirmed(engine, account_id, row, now)
    except IntegrityError:
        # Another account took the address between the check and the write (accounts.email is unique).
        raise Conflict("this email address cannot be used for this account", code="email_unavailable") from None
    dispatch([record.id])
    return {"email_change": {"state": "confirmed"}, "request": request_view(record)}


def _apply_confirmed(engine: Engine, account_id: str, row: Any, now: dt.datetime) -> Any:
    with engine.begin() as conn:
        account = conn.execute(
            select(accounts).where(accounts.c.id == account_id).with_for_update(key_share=True)
        ).one()
        # Single use: a concurrent confirmation of the same row finds it confirmed and stops here.
        consumed = conn.execute(
            update(email_changes)
            .where(email_changes.c.id == row.id, email_changes.c.confirmed_at.is_(None))
            .values(confirmed_at=now, previous_email=account.email)
        )
        if consumed.rowcount != 1:
            raise Unauthorized("this code has already been used", code="code_already_used")
        if _taken(conn, account_id, row.new_email):
            raise Conflict("this email address cannot be used for this account", code="email_unavailable")
        changes = Changes(account={"email": row.new_email}, fields=["email"])
        record = register_and_apply(
            conn,
            account_id,
            changes,
            stripe_customer=bool(account.stripe_customer_id),
            verified_by="new_address_code",
            now=now,
        )
        conn.execute(update(email_changes).where(email_changes.c.id == row.id).values(request_id=record.id))
    return record


def delete_expired_changes(engine: Engine, *, now: dt.datetime | None = None) -> int:
    """Unconfirmed changes whose code has expired: the new address goes (data minimisation; the hourly sweep)."""
    with engine.begin() as conn:
        return conn.execute(
            delete(email_changes).where(
                email_changes.c.confirmed_at.is_(None), email_changes.c.expires_at <= moment(now)
            )
        ).rowcount
