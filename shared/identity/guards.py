"""The identity layer's route guards: client token, step-up for a named action, DPO credential.

    @app.post("/", middlewares=[client_token(), gpc_signal, body(NoFields), step_up("export")])
    def start():
        identity = principal(app, "client")

A client token never passes `dpo_credential` and a DPO credential never passes `client_token`.
`console_session` (the DPO console's pages) reads only its session cookie, which no other guard reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel

from shared.identity.client import ClientIdentity, authenticate_client, require_step_up
from shared.identity.console import ConsoleSession, check_csrf, open_session
from shared.identity.dpo import DpoIdentity, authenticate_dpo
from shared.platform.errors import ValidationFailed
from shared.platform.guards import Credential, Guard
from shared.platform.http import HttpRequest, validated
from shared.ports.db import get_engine

CLIENT_TOKEN = Credential(
    "ClientToken", "The client area's signed token for the account (never a DPO credential)", bearer=True
)
STEP_UP_CODE = Credential(
    "StepUpCode",
    "A fresh verification code (TOTP, or the code just mailed) for a sensitive action, after the client token",
    name="X-Verification-Code",
)
DPO_CREDENTIAL = Credential("DpoCredential", "A DPO credential (never a client token)", bearer=True)

_TOKEN_REFUSALS = ((401, "missing_token"), (401, "invalid_token"), (401, "token_expired"), (401, "wrong_token_type"))


def client_token(*, allow_deactivated: bool = False) -> Guard:
    """A signed client-area token for an active account (or, with `allow_deactivated`, one pending erasure)."""

    def check(request: HttpRequest, _context: dict[str, Any]) -> ClientIdentity:
        return authenticate_client(request.headers, allow_deactivated=allow_deactivated)

    label = "client token" + (" (account may be pending erasure)" if allow_deactivated else "")
    answers = _TOKEN_REFUSALS + ((403, "account_inactive"),)
    return Guard("client_token", label, check, stores="client", credential=CLIENT_TOKEN, answers=answers)


def step_up(action: str, *, unless: Callable[[str], bool] | None = None) -> Guard:
    """A step-up code (X-Verification-Code) for `action`, after the client token.

    `unless(account_id)` true lets the request through without one (e.g. the erasure already pending
    is answered as is); the route reads the method used under "step_up" (None when skipped).
    """

    def check(request: HttpRequest, context: dict[str, Any]) -> str | None:
        identity = context.get("client")
        if not isinstance(identity, ClientIdentity):
            raise RuntimeError("step_up must follow client_token on the route")
        if unless is not None and unless(identity.account_id):
            return None
        return require_step_up(get_engine(), identity.account_id, request.headers, action=action)

    answers = (
        (401, "verification_required"),
        (401, "invalid_code"),
        (401, "code_already_used"),
        (401, "code_expired"),
        (403, "account_inactive"),
        (429, "too_many_attempts"),
        (429, "rate_limited"),
    )
    return Guard(
        "step_up",
        f"step-up for {action}",
        check,
        stores="step_up",
        credential=STEP_UP_CODE,
        answers=answers,
        optional=unless is not None,  # the contract: the client token alone may do
    )


def _dpo(request: HttpRequest, _context: dict[str, Any]) -> DpoIdentity:
    return authenticate_dpo(request.headers)


dpo_credential = Guard(
    "dpo_credential",
    "DPO credential",
    _dpo,
    stores="dpo",
    credential=DPO_CREDENTIAL,
    answers=(*_TOKEN_REFUSALS, (401, "token_revoked")),
)


def _console(request: HttpRequest, _context: dict[str, Any]) -> ConsoleSession:
    return open_session(get_engine(), request.headers)


console_session = Guard("console_session", "DPO console session cookie", _console, stores="console")


def form_fields(body: bytes) -> dict[str, str]:
    """An application/x-www-form-urlencoded body as single values (a repeated field is refused)."""
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise ValidationFailed("the form is not valid") from None
    if any(len(values) != 1 for values in parsed.values()):
        raise ValidationFailed("a form field is repeated")
    return {key: values[0] for key, values in parsed.items()}


def console_form(model: type[BaseModel]) -> Guard:
    """A console form after `console_session`: its `csrf` field must match the session, the rest is `model`."""

    def check(request: HttpRequest, context: dict[str, Any]) -> BaseModel:
        session = context.get("console")
        if not isinstance(session, ConsoleSession):
            raise RuntimeError("console_form must follow console_session on the route")
        fields = form_fields(request.body)
        check_csrf(session, fields.pop("csrf", None))
        return validated(model, fields)

    return Guard("csrf", f"CSRF token and {model.__name__}", check, stores="form")
