"""Unsubscribe links (RFC 8058 one-click): signed, expiring tokens that withdraw the newsletter without login."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from urllib.parse import quote

from sqlalchemy import Engine

from shared.platform.clock import utcnow
from shared.platform.config import get_settings
from shared.platform.errors import AppError, NotFound, ValidationFailed
from shared.rights.consent.ledger import withdraw
from shared.rights.consent.writes import EMAIL_LINK, Change

_TOKEN_VERSION = "v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _signature(payload: str) -> str:
    key = hmac.new(get_settings().effective_pseudonym_key, b"purpose:unsubscribe-token", hashlib.sha256).digest()
    return _b64(hmac.new(key, f"{_TOKEN_VERSION}.{payload}".encode(), hashlib.sha256).digest())


def unsubscribe_token(account_id: str, *, now: dt.datetime | None = None) -> str:
    """A signed, expiring token that withdraws the newsletter consent of one account, without login."""
    now = now or utcnow()
    expires = now + dt.timedelta(days=get_settings().unsubscribe_token_ttl_days)
    payload = _b64(
        json.dumps({"a": account_id, "p": "newsletter", "e": int(expires.timestamp())}, separators=(",", ":")).encode()
    )
    return f"{_TOKEN_VERSION}.{payload}.{_signature(payload)}"


def read_unsubscribe_token(token: str | None, *, now: dt.datetime | None = None) -> str:
    """The account id a valid token stands for; 400 when malformed or tampered, 410 when expired."""
    invalid = ValidationFailed("the unsubscribe link is not valid", code="invalid_unsubscribe_token")
    if not isinstance(token, str) or len(token) > 512 or token.count(".") != 2:
        raise invalid
    version, payload, signature = token.split(".")
    if version != _TOKEN_VERSION or not hmac.compare_digest(signature, _signature(payload)):
        raise invalid
    try:
        claims = json.loads(_unb64(payload))
        account_id, purpose, expires = claims["a"], claims["p"], int(claims["e"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid from None
    if purpose != "newsletter" or not isinstance(account_id, str):
        raise invalid
    if (now or utcnow()).timestamp() > expires:
        raise AppError(410, "unsubscribe_token_expired", "the unsubscribe link has expired; use your client area")
    return account_id


def unsubscribe_url(account_id: str, *, now: dt.datetime | None = None) -> str:
    base = get_settings().effective_withdraw_consent_url.rstrip("/")
    return f"{base}/unsubscribe?t={quote(unsubscribe_token(account_id, now=now))}"


def list_unsubscribe_headers(account_id: str, *, now: dt.datetime | None = None) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers of a marketing mail."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(account_id, now=now)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe(engine: Engine, token: str | None, *, now: dt.datetime | None = None) -> Change:
    """One-click unsubscribe: withdraws the newsletter consent of the token's account (idempotent)."""
    account_id = read_unsubscribe_token(token, now=now)
    try:
        return withdraw(engine, account_id, "newsletter", channel=EMAIL_LINK, actor="email_link", now=now)
    except NotFound:
        return Change()  # the account is gone: nothing can be sent to it any more
