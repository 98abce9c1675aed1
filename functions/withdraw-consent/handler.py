"""withdraw-consent: consent, objection and restriction (policy 3.4, 8.4, 8.6, 8.7).

Client area (bearer token; `Sec-GPC: 1` is honoured by authentication itself):
    GET  /                 current consents, restriction and objection flags, consent ledger
    POST /                 {"purpose": "newsletter"|"analytics"|"all", "object": false} withdraws at once
    POST /objections       {"purpose": "service_improvement"|"usage_statistics"|"platform_security"|
                           "fraud_prevention"} objects to a legitimate-interest purpose (Art. 21(1)):
                           200 in force at once, or 202 awaiting the DPO's decision (security, fraud)
Mail links, without login (signed, expiring token in `t`):
    GET  /unsubscribe?t=   a small confirmation page that POSTs (link scanners must not unsubscribe)
    POST /unsubscribe?t=   RFC 8058 one-click, body `List-Unsubscribe=One-Click`
DPO (DPO credential, never a client token):
    GET  /dpo/restrictions?account_id=     consents, ledger and every flag of an account
    POST /dpo/restrictions                 {"account_id", "kind", "reason_code", "note"?} sets a flag
    POST /dpo/restrictions/<id>/lift       {"reason_code"} lifts it (the user is told first)

Thin: every rule is in shared/rights/consent/; the pages are notices (templates pages/unsubscribe_*).
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from pydantic import Field

from shared import notices
from shared.identity.guards import client_token, dpo_credential
from shared.platform.errors import AppError, ValidationFailed
from shared.platform.guards import Middlewares, body, principal, query, signed_link
from shared.platform.http import html_page
from shared.platform.openapi import ERROR_PAGE_OR_BODY, PAGE, Answers, link
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request, json_dumps
from shared.ports.db import get_engine
from shared.rights import consent
from shared.rights.signals import gpc_signal

app = HttpFunction("withdraw-consent")


class Withdrawal(StrictModel):
    purpose: str = Field(max_length=32)
    object: bool = False  # also object (Art. 21): blocks the purpose until a new explicit consent


class LegitimateInterestObjection(StrictModel):
    purpose: Literal[consent.LI_PURPOSES]  # type: ignore[valid-type]


class FlagRequest(StrictModel):
    account_id: str = Field(min_length=1, max_length=36)
    kind: Literal["restriction", "objection_direct_marketing", "objection_analytics"] = "restriction"
    reason_code: str = Field(max_length=40)
    note: str | None = Field(None, max_length=consent.MAX_NOTE_LENGTH)


class LiftRequest(StrictModel):
    reason_code: str = Field(max_length=40)


class AccountQuery(StrictModel):
    account_id: str = Field(min_length=1, max_length=36)


def _proof() -> dict[str, Any]:
    request = current_request()
    return {"ip": request.client_ip, "user_agent": request.header("User-Agent")}


CLIENT: Middlewares = [client_token(), gpc_signal]
UNSUBSCRIBE_LINK = signed_link(
    "UnsubscribeLink", "t", "unsubscribe link from a mail: its signed, expiring token is the credential"
)


@app.get("/", middlewares=CLIENT)
def current_state() -> dict:
    identity = principal(app, "client")
    with get_engine().connect() as conn:
        return consent.status(conn, identity.account_id)


@app.post("/", middlewares=[*CLIENT, body(Withdrawal)])
def withdraw() -> dict:
    identity = principal(app, "client")
    request: Withdrawal = principal(app, "body")
    engine = get_engine()
    change = consent.withdraw(
        engine,
        identity.account_id,
        request.purpose,
        channel=consent.CLIENT_AREA,
        actor="client",
        objection=request.object,
        **_proof(),
    )
    with engine.connect() as conn:
        return {**change.to_json(), **consent.status(conn, identity.account_id)}


@app.post("/objections", middlewares=[*CLIENT, body(LegitimateInterestObjection)])
def object_to_legitimate_interest() -> Response:
    identity = principal(app, "client")
    objection = consent.object_to_processing(
        get_engine(), identity.account_id, principal(app, "body").purpose, channel=consent.CLIENT_AREA, actor="client"
    )
    status = 202 if objection.state == "pending_dpo_decision" else 200
    return Response(status_code=status, content_type="application/json", body=json_dumps(objection.to_json()))


# --- Unsubscribe links -------------------------------------------------------------------------

# The pages are notices (templates pages/unsubscribe_*), French first then English.
PAGE_LANGUAGE = "fr"


def _page(status: int, name: str, **context: str) -> Response:
    return html_page(notices.page(name, language=PAGE_LANGUAGE, **context), status=status)


def _error_page(exc: AppError) -> Response:
    return _page(exc.status, "unsubscribe_invalid")


UNSUBSCRIBE_PAGE: Answers = {200: PAGE, "default": ERROR_PAGE_OR_BODY}


@app.get("/unsubscribe", middlewares=[UNSUBSCRIBE_LINK], responses=UNSUBSCRIBE_PAGE)
def unsubscribe_page() -> Response:
    token = current_request().query.get("t")
    try:
        consent.read_unsubscribe_token(token)
    except AppError as exc:
        return _error_page(exc)
    return _page(200, "unsubscribe_confirm", action=f"?t={quote(token or '')}")


def _one_click_requested() -> bool:
    """RFC 8058: the POST body carries List-Unsubscribe=One-Click, url-encoded or multipart."""
    request = current_request()
    content_type = request.header("Content-Type") or ""
    if content_type.lower().startswith("multipart/form-data"):
        parsed = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
        fields = (
            {
                part.get_param("name", header="content-disposition"): part.get_content().strip()
                for part in parsed.iter_parts()
            }
            if parsed.is_multipart()
            else {}
        )
        return fields.get("List-Unsubscribe") == "One-Click"
    values = parse_qs(request.body.decode("utf-8", errors="replace"))
    return values.get("List-Unsubscribe") == ["One-Click"]


UNSUBSCRIBED: Answers = {
    200: {
        "description": "Unsubscribed: JSON, or a page when the caller accepts text/html",
        "content": {"application/json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}}},
    },
    "default": ERROR_PAGE_OR_BODY,
}


@app.post("/unsubscribe", middlewares=[UNSUBSCRIBE_LINK], responses=UNSUBSCRIBED)
def unsubscribe() -> Response | dict:
    request = current_request()
    wants_page = "text/html" in (request.header("Accept") or "")
    try:
        if not _one_click_requested():
            raise ValidationFailed("the body must be List-Unsubscribe=One-Click (RFC 8058)", code="not_one_click")
        change = consent.unsubscribe(get_engine(), request.query.get("t"))
    except AppError as exc:
        if wants_page:
            return _error_page(exc)
        raise
    if wants_page:
        return _page(200, "unsubscribe_done")
    return {"status": "unsubscribed", "changed": change.changed}


# --- DPO ---------------------------------------------------------------------------------------


@app.get("/dpo/restrictions", middlewares=[dpo_credential, query(AccountQuery)])
def dpo_account_flags() -> dict:
    account_id = principal(app, "query").account_id
    with get_engine().connect() as conn:
        section = consent.export_section(conn, account_id)
        section["restrictions_and_objections"] = [
            flag.to_json(include_note=True) for flag in consent.all_flags(conn, account_id)
        ]
    return section


@app.post(
    "/dpo/restrictions",
    middlewares=[dpo_credential, body(FlagRequest)],
    responses={
        201: {"description": "The flag, set", "links": {"lift": link("dpo_lift_flag", flag_id="/flag/id")}},
        200: {"description": "The flag already in force", "links": {"lift": link("dpo_lift_flag", flag_id="/flag/id")}},
    },
)
def dpo_set_flag() -> Response:
    dpo = principal(app, "dpo")
    flag_request: FlagRequest = principal(app, "body")
    engine = get_engine()
    if flag_request.kind == consent.RESTRICTION:
        flag, created = consent.restrict(
            engine,
            flag_request.account_id,
            reason_code=flag_request.reason_code,
            note=flag_request.note,
            actor=dpo.actor,
        )
    else:
        if flag_request.note:
            raise ValidationFailed("a note is kept only for restrictions", code="invalid_note")
        change = consent.object_to(
            engine,
            flag_request.account_id,
            flag_request.kind,
            channel=consent.DPO,
            actor=dpo.actor,
            reason_code=flag_request.reason_code,
        )
        created = bool(change.flags_set)
        with engine.connect() as conn:
            flag = consent.flags_in_force(conn, flag_request.account_id)[flag_request.kind]
    return Response(
        status_code=201 if created else 200,
        content_type="application/json",
        body={"flag": flag.to_json(include_note=True), "created": created},
    )


@app.post("/dpo/restrictions/<flag_id>/lift", middlewares=[dpo_credential, body(LiftRequest)])
def dpo_lift_flag(flag_id: str) -> dict:
    dpo = principal(app, "dpo")
    lift: LiftRequest = principal(app, "body")
    flag = consent.lift(get_engine(), flag_id, reason_code=lift.reason_code, actor=dpo.actor)
    return {"flag": flag.to_json(include_note=True)}


handle = app.handle
