"""DPO console sessions: a DPO credential exchanged for a session cookie (function dpo-console).

- Sign-in takes a DPO credential (shared/identity/dpo.py) once and answers a cookie holding a
  fresh 256-bit secret; the database keeps only its SHA-256 (`console_sessions`). The cookie is
  HttpOnly, SameSite=Strict, Secure outside local runs, and has no Path (the browser scopes it
  to the function's base URL). A session ends after 30 minutes without a request, at sign-out,
  or when its credential is revoked.
- Every form carries a CSRF token: for a session, an HMAC of the session's secret (nothing
  stored, useless without the cookie); for the sign-in form, a random value that must equal the
  one in its own cookie (double submit).
- Failed sign-ins are counted per keyed pseudonym of the caller's address and in total, over
  15 minutes: past the limit the answer is 429 with Retry-After, without even checking the
  credential. Each attempt is recorded as a failure before its credential is checked (sign-ins count
  one at a time) and forgotten once it proves good, so a failed attempt always counts, and a burst of
  guesses sent at once gets no more checks than the limit.
- Every sign-in (succeeded, refused, rate limited), sign-out and expiry is audited under the
  credential's id or `anonymous`; neither the credential, the cookie nor the address is.

A console session is not a bearer token: client routes and DPO API routes never read cookies,
and the console reads nothing but its cookie (an `Authorization` header opens nothing here).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update

from shared.identity.dpo import authenticate_dpo
from shared.platform.clock import moment
from shared.platform.config import get_settings
from shared.platform.errors import AppError, Forbidden, TooManyRequests, Unauthorized
from shared.platform.pseudonym import pseudonymise
from shared.ports.db import serialise_writers
from shared.ports.tables import console_sessions, console_sign_in_failures, dpo_credentials
from shared.records import audit

SESSION_COOKIE = "dpo_console_token"  # "token" in the name: the log scrubber redacts `..._token=<value>` too
SIGN_IN_CSRF_COOKIE = "dpo_console_csrf_token"
IDLE_TIMEOUT = dt.timedelta(minutes=30)
FAILURE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_SOURCE = 5
MAX_FAILURES_TOTAL = 50
MAX_CREDENTIAL_LENGTH = 1000
# Arbitrary constant naming "console sign-in counting" among PostgreSQL advisory locks.
_SIGN_IN_LOCK_KEY = 0x6A66625F7369676E  # "jfb_sign"
_CSRF_CONTEXT = b"dpo-console-csrf"


class SignInRequired(Unauthorized):
    """No usable console session: the console answers with its sign-in page."""


@dataclass(frozen=True)
class ConsoleSession:
    session_id: str
    credential_id: str
    label: str
    csrf_token: str

    @property
    def actor(self) -> str:
        return f"dpo:{self.credential_id}"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def cookie_attributes() -> str:
    """The attributes every console cookie carries (no Path: the function's base URL scopes it)."""
    secure = get_settings().environment not in ("local", "test")
    return "HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")


def session_cookie(secret: str) -> str:
    return f"{SESSION_COOKIE}={secret}; {cookie_attributes()}"


def cleared_cookie(name: str = SESSION_COOKIE) -> str:
    return f"{name}=; Max-Age=0; {cookie_attributes()}"


def sign_in_csrf_cookie(value: str) -> str:
    return f"{SIGN_IN_CSRF_COOKIE}={value}; Max-Age=3600; {cookie_attributes()}"


def new_sign_in_csrf() -> str:
    return secrets.token_urlsafe(32)


def read_cookie(header: str | None, name: str) -> str | None:
    """One cookie's value from a Cookie header (the last one wins when repeated)."""
    found = None
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            found = value
    return found


def check_sign_in_csrf(cookie_header: str | None, submitted: str | None) -> None:
    expected = read_cookie(cookie_header, SIGN_IN_CSRF_COOKIE)
    if not expected or not submitted or not hmac.compare_digest(expected.encode(), submitted.encode()):
        raise Forbidden("the form has expired: reload the page and try again", code="csrf_mismatch")


def check_csrf(session: ConsoleSession, submitted: str | None) -> None:
    if not submitted or not hmac.compare_digest(session.csrf_token.encode(), submitted.encode()):
        raise Forbidden("the form has expired: reload the page and try again", code="csrf_mismatch")


def _source(client_ip: str | None) -> str:
    return pseudonymise(client_ip or "unknown", purpose="console-sign-in")


def _retry_after(conn: Connection, source: str, now: dt.datetime) -> int | None:
    window_start = now - FAILURE_WINDOW
    conn.execute(delete(console_sign_in_failures).where(console_sign_in_failures.c.attempted_at <= window_start))
    limits = (
        (console_sign_in_failures.c.source == source, MAX_FAILURES_PER_SOURCE),
        (console_sign_in_failures.c.source.is_not(None), MAX_FAILURES_TOTAL),
    )
    waits = []
    for condition, limit in limits:
        count, oldest = conn.execute(
            select(func.count(), func.min(console_sign_in_failures.c.attempted_at)).where(
                condition, console_sign_in_failures.c.attempted_at > window_start
            )
        ).one()
        if count >= limit:
            waits.append(max(1, math.ceil((oldest - window_start).total_seconds())))
    return max(waits) if waits else None


def sign_in(
    engine: Engine, credential: str | None, *, client_ip: str | None, now: dt.datetime | None = None
) -> tuple[ConsoleSession, str]:
    """A new session for a valid DPO credential: (session, cookie secret). 401 or 429 otherwise."""
    now = moment(now)
    source = _source(client_ip)
    with engine.begin() as conn:
        # One sign-in at a time counts and records: the attempt counts as a failure from here on, until its
        # credential proves good, so a burst of guesses sent at once gets no more checks than the limit.
        serialise_writers(conn, _SIGN_IN_LOCK_KEY, console_sign_in_failures)
        retry_after = _retry_after(conn, source, now)
        if retry_after is not None:
            audit.record(conn, actor="anonymous", action="console.sign_in", outcome="rate_limited")
        else:
            attempt = conn.execute(
                insert(console_sign_in_failures)
                .values(source=source, attempted_at=now)
                .returning(console_sign_in_failures.c.id)
            ).scalar_one()
    if retry_after is not None:
        raise TooManyRequests(
            "too many failed sign-ins; try again later", code="rate_limited", headers={"Retry-After": str(retry_after)}
        )
    credential = (credential or "").strip()
    try:
        if not credential or len(credential) > MAX_CREDENTIAL_LENGTH:
            raise Unauthorized("the DPO credential is not valid", code="invalid_token")
        identity = authenticate_dpo({"Authorization": f"Bearer {credential}"})
    except AppError as refused:
        with engine.begin() as conn:
            audit.record(conn, actor="anonymous", action="console.sign_in", outcome=refused.code)
        raise Unauthorized("the DPO credential is not valid", code="invalid_credential") from None
    secret = secrets.token_urlsafe(32)
    session_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(delete(console_sign_in_failures).where(console_sign_in_failures.c.id == attempt))
        # Sessions idle for longer than the timeout are dead: forget them as new ones open.
        conn.execute(
            delete(console_sessions).where(
                or_(console_sessions.c.last_seen_at <= now - IDLE_TIMEOUT, console_sessions.c.ended_at.is_not(None))
            )
        )
        conn.execute(
            insert(console_sessions).values(
                id=session_id,
                token_hash=_hash(secret),
                credential_id=identity.credential_id,
                created_at=now,
                last_seen_at=now,
            )
        )
        audit.record(
            conn,
            actor=identity.actor,
            action="console.sign_in",
            outcome="succeeded",
            details={"session_id": session_id},
        )
    session = ConsoleSession(session_id, identity.credential_id, identity.label, _csrf_for(secret))
    return session, secret


def open_session(
    engine: Engine, headers: Mapping[str, str] | None, *, now: dt.datetime | None = None
) -> ConsoleSession:
    """The session of the request's cookie, its idle clock restarted; SignInRequired otherwise."""
    now = moment(now)
    cookie_header = None
    for key, value in (headers or {}).items():
        if key.lower() == "cookie":
            cookie_header = value
    secret = read_cookie(cookie_header, SESSION_COOKIE)
    if not secret or len(secret) > 100:
        raise SignInRequired("sign in with a DPO credential", code="sign_in_required")
    with engine.begin() as conn:
        row = conn.execute(
            select(
                console_sessions.c.id,
                console_sessions.c.credential_id,
                console_sessions.c.last_seen_at,
                console_sessions.c.ended_at,
                dpo_credentials.c.label,
                dpo_credentials.c.revoked_at,
            )
            .join(dpo_credentials, dpo_credentials.c.id == console_sessions.c.credential_id)
            .where(console_sessions.c.token_hash == _hash(secret))
        ).first()
        if row is None or row.ended_at is not None:
            raise SignInRequired("the session has ended: sign in again", code="session_ended")
        if row.revoked_at is not None or now - row.last_seen_at >= IDLE_TIMEOUT:
            outcome = "credential_revoked" if row.revoked_at is not None else "idle_timeout"
            conn.execute(update(console_sessions).where(console_sessions.c.id == row.id).values(ended_at=now))
            audit.record(
                conn,
                actor=f"dpo:{row.credential_id}",
                action="console.session_ended",
                outcome=outcome,
                details={"session_id": row.id},
            )
            failure = SignInRequired("the session has expired: sign in again", code="session_expired")
        else:
            conn.execute(update(console_sessions).where(console_sessions.c.id == row.id).values(last_seen_at=now))
            failure = None
    if failure is not None:
        raise failure
    return ConsoleSession(row.id, row.credential_id, row.label, _csrf_for(secret))


def sign_out(engine: Engine, session: ConsoleSession, *, now: dt.datetime | None = None) -> None:
    now = moment(now)
    with engine.begin() as conn:
        conn.execute(
            update(console_sessions)
            .where(console_sessions.c.id == session.session_id, console_sessions.c.ended_at.is_(None))
            .values(ended_at=now)
        )
        audit.record(
            conn,
            actor=session.actor,
            action="console.sign_out",
            outcome="succeeded",
            details={"session_id": session.session_id},
        )
