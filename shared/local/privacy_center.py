"""The reference privacy center at `/privacy-center/` of `make run`: local runs only, never deployed.

It is what a signed-in user of the platform sees in the client area, built the way the
platform's own buttons must be: the page's script calls the suite's function routes
(`/withdraw-consent/`, `/export-on-request/`, `/erase-account/`, `/whoami/`) with the
user's bearer token and `X-Verification-Code` for step-up, and shows what they answer.
Nothing here decides anything: every rule is in the functions.

- A demo sign-in picks one of the demo accounts of `seed-demo` and gets a development
  token (`issue_dev_token`), kept in an HttpOnly, SameSite=Strict cookie scoped to
  `/privacy-center/` and handed to the page's script in a `<meta>` element, as the
  platform's client area hands its session token to its own scripts.
- Pages are notices (templates pages/privacy_center*.fr|en.html, autoescaped); the one
  script is served from this origin (`/privacy-center/static/privacy-center.js`) and the
  Content-Security-Policy allows nothing else.
- Rectification (`/rectify-account/`) and the policy notice (`/privacy-notice/`) are
  functions built separately: their sections call them and say "not available" on a 404.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import sqlalchemy as sa
from flask import Blueprint, Response, redirect, request, send_file
from werkzeug.wrappers import Response as BaseResponse

from shared import notices
from shared.identity.client import issue_dev_token
from shared.local.demo import DEMO_ACCOUNTS
from shared.platform.config import get_settings
from shared.policy.facts import CONSENT_PURPOSES, POLICY_VERSION
from shared.ports.db import get_engine
from shared.ports.tables import accounts

PREFIX = "/privacy-center"
COOKIE = "pc_token"
TOKEN_TTL_SECONDS = 3600
STATIC = Path(__file__).parent / "static"
SCRIPT = "privacy-center.js"

# The routes the page calls, relative to this origin (the platform's client area uses the functions' URLs).
ENDPOINTS = {
    "whoami": "/whoami/",
    "consent": "/withdraw-consent/",
    "export": "/export-on-request/",
    "erasure": "/erase-account/",
    # Built in parallel by others; the page degrades to "not available yet" while they answer 404.
    "rectify": "/rectify-account/",
    "notice": "/privacy-notice/",
}

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Cache-Control": "no-store",
}


def _language() -> str:
    wanted = request.args.get("lang")
    if wanted in notices.LANGUAGES:
        return wanted
    best = request.accept_languages.best_match(notices.LANGUAGES)
    return best or notices.DEFAULT_LANGUAGE


def _page(name: str, *, status: int = 200, **context: Any) -> Response:
    language = _language()
    body = notices.page(name, language=language, other_language="en" if language == "fr" else "fr", **context)
    response = Response(body, status=status, mimetype="text/html")
    response.headers.update(PAGE_HEADERS)
    return response


def demo_accounts() -> list[dict]:
    """The demo accounts that exist in the database, in the order of DEMO_ACCOUNTS."""
    emails = [spec["email"] for spec in DEMO_ACCOUNTS]
    with get_engine().connect() as conn:
        rows = conn.execute(
            sa.select(
                accounts.c.id,
                accounts.c.email,
                accounts.c.first_name,
                accounts.c.last_name,
                accounts.c.status,
                accounts.c.totp_secret.is_not(None).label("two_factor"),
            ).where(accounts.c.email.in_(emails))
        ).all()
    by_email = {row.email: row for row in rows}
    return [
        {
            "id": row.id,
            "email": row.email,
            "name": f"{row.first_name or ''} {row.last_name or ''}".strip(),
            "status": row.status,
            "two_factor": bool(row.two_factor),
        }
        for row in (by_email.get(email) for email in emails)
        if row is not None
    ]


def _signed_in() -> tuple[str, dict] | None:
    """(token, account) of the cookie, when it still names a demo account."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    settings = get_settings()
    try:
        claims = jwt.decode(
            token,
            settings.dev_token_key or "",
            algorithms=["HS256"],
            audience=settings.token_audience,
            issuer=settings.token_issuer,
        )
    except jwt.PyJWTError:  # forged, expired, or no development key to check it with
        return None
    account = next((a for a in demo_accounts() if a["id"] == claims.get("sub")), None)
    return (token, account) if account else None


def blueprint() -> Blueprint:
    pages = Blueprint("privacy_center", __name__)

    @pages.get(f"{PREFIX}/")
    def home() -> Response:
        session = _signed_in()
        if session is None:
            return _page("privacy_center_sign_in", accounts=demo_accounts(), action=f"{PREFIX}/sign-in")
        token, account = session
        return _page(
            "privacy_center",
            account=account,
            token=token,
            endpoints=ENDPOINTS,
            purposes=list(CONSENT_PURPOSES),
            policy_version=POLICY_VERSION,
            script=f"{PREFIX}/static/{SCRIPT}",
            sign_out=f"{PREFIX}/sign-out",
        )

    @pages.post(f"{PREFIX}/sign-in")
    def sign_in() -> Response | BaseResponse:
        wanted = request.form.get("account_id", "")
        account = next((a for a in demo_accounts() if a["id"] == wanted), None)
        if account is None:
            return _page(
                "privacy_center_sign_in", status=400, accounts=demo_accounts(), action=f"{PREFIX}/sign-in", error=True
            )
        response = redirect(f"{PREFIX}/?lang={_language()}", code=303)
        response.set_cookie(
            COOKIE,
            issue_dev_token(account["id"], ttl_seconds=TOKEN_TTL_SECONDS),
            max_age=TOKEN_TTL_SECONDS,
            path=PREFIX,
            httponly=True,
            samesite="Strict",
            secure=get_settings().environment == "production",
        )
        return response

    @pages.post(f"{PREFIX}/sign-out")
    def sign_out() -> BaseResponse:
        response = redirect(f"{PREFIX}/?lang={_language()}", code=303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="Strict")
        return response

    @pages.get(f"{PREFIX}/static/{SCRIPT}")
    def script() -> Response:
        response = send_file(STATIC / SCRIPT, mimetype="text/javascript", max_age=0)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return pages
