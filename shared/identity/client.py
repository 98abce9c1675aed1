"""Client authentication (bearer JWT) and step-up verification before sensitive actions.

Step-up (export, erasure): an account with 2FA answers with a TOTP code, each time
step usable once; an account without 2FA gets a 6-digit code by mail, stored only
as a keyed hash, valid a few minutes, with few attempts and single use. Attempts
are rate-limited per account. A verification's bookkeeping (attempt counters,
used steps, audit entry) is committed in its own transaction before the outcome
is raised, so a failed attempt still counts while nothing else changes.
"""

from __future__ import annotations

import datetime as dt
import hmac
import math
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from shared import notices
from shared.platform.clock import moment
from shared.platform.config import ConfigurationError, Settings, get_settings
from shared.platform.errors import (
    AppError,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    VerificationRequired,
)
from shared.platform.pseudonym import pseudonymise
from shared.platform.sealing import column_context, seal, unseal
from shared.ports.backends import get_mailer
from shared.ports.db import dialect_insert, get_engine
from shared.ports.mail import Message
from shared.ports.sealed_columns import reseal_column
from shared.ports.tables import (
    accounts,
    totp_used_steps,
    verification_attempts,
    verification_codes,
)
from shared.records import audit

VERIFICATION_HEADER = "X-Verification-Code"
DPO_TOKEN_PREFIX = "dpo_"
# Tolerated clock difference between the token issuer and us.
CLOCK_SKEW_SECONDS = 30
# At most one mailed code per minute per account.
CODE_RESEND_SECONDS = 60
TOTP_VALID_WINDOW = 1

StepUpMethod = Literal["totp", "mail_code"]

_ACTION = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")
_SIX_DIGITS = re.compile(r"^[0-9]{6}\Z")  # ASCII digits only: "١٢٣٤٥٦" is no code


@dataclass(frozen=True)
class ClientIdentity:
    account_id: str


def header_value(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value, whatever the case of its name."""
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if key.lower() == wanted:
            return value
    return None


def bearer_token(headers: Mapping[str, str] | None) -> str:
    value = (header_value(headers, "Authorization") or "").strip()
    if not value:
        raise Unauthorized("a bearer token is required", code="missing_token", headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'", code="invalid_token")
    return token.strip()


def authenticate_client(headers: Mapping[str, str] | None, *, allow_deactivated: bool = False) -> ClientIdentity:
    """The account a client-area call acts for.

    `allow_deactivated` admits an account whose erasure is pending (it may still
    cancel it during the cooling-off); everything else requires an active account.
    """
    token = bearer_token(headers)
    if token.startswith(DPO_TOKEN_PREFIX):
        raise Unauthorized("a DPO credential is not accepted on client routes", code="wrong_token_type")
    import jwt  # deferred for cold start: PyJWT (and cryptography behind it) only for routes that authenticate

    settings = get_settings()
    key = settings.effective_token_verify_key
    if not key:
        raise ConfigurationError("no token verification key: set TOKEN_VERIFY_KEY (or DEV_TOKEN_KEY locally)")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[settings.token_algorithm],
            audience=settings.token_audience,
            issuer=settings.token_issuer,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired", code="token_expired") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("the token is not valid", code="invalid_token") from None
    account_id = claims["sub"]
    if not isinstance(account_id, str) or not 0 < len(account_id) <= 36:
        raise Unauthorized("the token is not valid", code="invalid_token")
    with get_engine().connect() as conn:
        status = conn.execute(select(accounts.c.status).where(accounts.c.id == account_id)).scalar()
    if status != "active" and not (allow_deactivated and status == "deactivated"):
        raise Forbidden("this account is not active", code="account_inactive")
    return ClientIdentity(account_id=account_id)


def issue_dev_token(account_id: str, *, ttl_seconds: int = 3600) -> str:
    """A client token signed with DEV_TOKEN_KEY (HS256), for local runs and tests only."""
    settings = get_settings()
    if not settings.dev_token_key:
        raise ConfigurationError("DEV_TOKEN_KEY is not set: development tokens cannot be issued")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    import jwt  # deferred for cold start: PyJWT only where a token is issued

    issued = int(time.time())
    claims = {
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": account_id,
        "iat": issued,
        "exp": issued + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.dev_token_key, algorithm="HS256")


# --- Step-up verification ---------------------------------------------------------------


def _code_hash(code_id: str, code: str) -> str:
    # Keyed and bound to the code's id: the table alone reveals nothing, even for a 6-digit space.
    return pseudonymise(f"{code_id}:{code}", purpose="verification-code")


def _code_mail(code: str, settings: Settings, *, code_id: str, to: str) -> Message:
    return notices.mail(
        "verification_code",
        to=to,
        idempotency_key=f"verification-code:{code_id}",
        code=code,
        minutes=settings.verification_code_ttl_seconds // 60,
    )


def _retry_after(conn: Connection, account_id: str, now: dt.datetime, settings: Settings) -> int | None:
    """Seconds until the account may try again, or None when under the limit."""
    window_start = now - dt.timedelta(seconds=settings.verification_rate_window_seconds)
    count, oldest = conn.execute(
        select(func.count(), func.min(verification_attempts.c.attempted_at)).where(
            verification_attempts.c.account_id == account_id, verification_attempts.c.attempted_at > window_start
        )
    ).one()
    if count < settings.verification_rate_limit:
        return None
    return max(1, math.ceil((oldest - window_start).total_seconds()))


def _ask_for_code(conn: Connection, account: Any, now: dt.datetime, settings: Settings) -> tuple[AppError, str]:
    """Mail a fresh code unless one went out less than a minute ago; older codes die."""
    if account.totp_secret:
        return (
            VerificationRequired(
                f"send the code of your authenticator app in the {VERIFICATION_HEADER} header",
                code="verification_required",
            ),
            "code_requested",
        )
    # The same answer whether or not this call mailed the code: one mail a minute at most.
    required = VerificationRequired(
        f"a verification code was sent by email; send it in the {VERIFICATION_HEADER} header",
        code="verification_required",
    )
    recent = conn.execute(
        select(verification_codes.c.id).where(
            verification_codes.c.account_id == account.id,
            verification_codes.c.consumed_at.is_(None),
            verification_codes.c.created_at > now - dt.timedelta(seconds=CODE_RESEND_SECONDS),
        )
    ).first()
    if recent is not None:
        return required, "code_recently_sent"
    conn.execute(delete(verification_codes).where(verification_codes.c.account_id == account.id))
    code_id, code = str(uuid.uuid4()), f"{secrets.randbelow(10**6):06d}"
    conn.execute(
        insert(verification_codes).values(
            id=code_id,
            account_id=account.id,
            code_hash=_code_hash(code_id, code),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=settings.verification_code_ttl_seconds),
            attempts=0,
        )
    )

    get_mailer().send(_code_mail(code, settings, code_id=code_id, to=account.email))
    return required, "code_sent"


def seal_totp_secret(account_id: str, secret: str) -> str:
    """What `accounts.totp_secret` stores: the base32 seed sealed for this account alone (policy 7.1)."""
    return seal(secret, context=column_context("accounts", "totp_secret", account_id))


def open_totp_secret(account_id: str, stored: str) -> str:
    """The base32 seed of a stored value; SealingError when it was sealed for another account."""
    return unseal(stored, context=column_context("accounts", "totp_secret", account_id))


def reseal_totp_secrets(engine: Engine, *, batch_size: int = 200) -> dict[str, int | str]:
    """Move every TOTP secret under the current sealing key (after a key rotation); idempotent."""
    return reseal_column(engine, accounts, "totp_secret", batch_size=batch_size)


def _check_totp(conn: Connection, account: Any, code: str, now: dt.datetime) -> AppError | None:
    import pyotp  # deferred for cold start: only accounts with 2FA need it

    totp = pyotp.TOTP(open_totp_secret(account.id, account.totp_secret))
    current = totp.timecode(now)
    for step in range(current - TOTP_VALID_WINDOW, current + TOTP_VALID_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            # The primary key (account, step) lets exactly one use of a step through, even concurrently.
            used = conn.execute(
                dialect_insert(conn, totp_used_steps)
                .values(account_id=account.id, time_step=step, used_at=now)
                .on_conflict_do_nothing(index_elements=[totp_used_steps.c.account_id, totp_used_steps.c.time_step])
                .returning(totp_used_steps.c.time_step)
            ).first()
            if used is None:
                return Unauthorized("this code has already been used; wait for the next one", code="code_already_used")
            conn.execute(
                delete(totp_used_steps).where(
                    totp_used_steps.c.account_id == account.id,
                    totp_used_steps.c.time_step < current - 2 * TOTP_VALID_WINDOW,
                )
            )
            return None
    return Unauthorized("the verification code is not valid", code="invalid_code")


def _check_mail_code(
    conn: Connection, account: Any, code: str, now: dt.datetime, settings: Settings
) -> AppError | None:
    row = conn.execute(
        select(verification_codes)
        .where(verification_codes.c.account_id == account.id)
        .order_by(verification_codes.c.created_at.desc())
        .limit(1)
    ).first()
    invalid = Unauthorized("the verification code is not valid", code="invalid_code")
    if row is None:
        return invalid
    if row.consumed_at is not None:
        return Unauthorized("this code has already been used; ask for a new one", code="code_already_used")
    if row.attempts >= settings.verification_max_attempts:
        return TooManyRequests("too many wrong codes; ask for a new one", code="too_many_attempts")
    if now >= row.expires_at:
        return Unauthorized("the code has expired; ask for a new one", code="code_expired")
    if not hmac.compare_digest(_code_hash(row.id, code), row.code_hash):
        conn.execute(
            update(verification_codes)
            .where(verification_codes.c.id == row.id)
            .values(attempts=verification_codes.c.attempts + 1)
        )
        return invalid
    # Single use: the WHERE makes a concurrent second use of the same code find nothing to consume.
    consumed = conn.execute(
        update(verification_codes)
        .where(verification_codes.c.id == row.id, verification_codes.c.consumed_at.is_(None))
        .values(consumed_at=now)
    )
    if consumed.rowcount != 1:
        return Unauthorized("this code has already been used; ask for a new one", code="code_already_used")
    return None


def require_step_up(
    engine: Engine,
    account_id: str,
    headers: Mapping[str, str] | None,
    *,
    action: str,
    now: dt.datetime | None = None,
) -> StepUpMethod:
    """Pass only with a valid step-up code in the X-Verification-Code header; returns the method used.

    Raises VerificationRequired (401, mailing a code to accounts without 2FA),
    Unauthorized (401: invalid_code, code_expired, code_already_used) or
    TooManyRequests (429: too_many_attempts, rate_limited with Retry-After).
    Takes an Engine: the attempt is committed in its own transaction even when it fails.
    """
    if not _ACTION.match(action):
        raise ValueError(f"action must match {_ACTION.pattern}")
    now = moment(now)
    settings = get_settings()
    code = (header_value(headers, VERIFICATION_HEADER) or "").strip()
    failure: AppError | None
    with engine.begin() as conn:
        account = conn.execute(
            select(accounts.c.id, accounts.c.email, accounts.c.totp_secret)
            .where(accounts.c.id == account_id)
            # PostgreSQL: one verification at a time per account; NO KEY UPDATE leaves inserts
            # of rows referencing the account (logs, attempts) unblocked.
            .with_for_update(key_share=True)
        ).first()
        if account is None:
            raise Forbidden("this account is not active", code="account_inactive")
        # A write first: on SQLite it takes the write lock, serialising verifications there too.
        window_start = now - dt.timedelta(seconds=settings.verification_rate_window_seconds)
        conn.execute(
            delete(verification_attempts).where(
                verification_attempts.c.account_id == account_id, verification_attempts.c.attempted_at <= window_start
            )
        )
        method: StepUpMethod = "totp" if account.totp_secret else "mail_code"
        retry_after = _retry_after(conn, account_id, now, settings)
        if retry_after is not None:
            failure = TooManyRequests(
                "too many verification attempts; try again later",
                code="rate_limited",
                headers={"Retry-After": str(retry_after)},
            )
            outcome = failure.code
        elif not code:
            failure, outcome = _ask_for_code(conn, account, now, settings)
        else:
            if not _SIX_DIGITS.match(code):
                failure = Unauthorized("the verification code is not valid", code="invalid_code")
            elif method == "totp":
                failure = _check_totp(conn, account, code, now)
            else:
                failure = _check_mail_code(conn, account, code, now, settings)
            conn.execute(
                insert(verification_attempts).values(account_id=account_id, attempted_at=now, succeeded=failure is None)
            )
            outcome = failure.code if failure else "succeeded"
        audit.record(
            conn,
            actor="client",
            action="step_up",
            outcome=outcome,
            subject=account_id,
            details={"for": action, "method": method},
        )
    if failure is not None:
        raise failure
    return method
