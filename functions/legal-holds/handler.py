"""legal-holds: legal holds and the register of authority requests (policy 6.4). DPO only.

Every route needs a DPO credential (`Authorization: Bearer dpo_...`); a client token is refused.
    POST /holds                                   {"account_id" | "prospect_id", "categories", "reason", "ends_on"?,
                                                   "authority_request_id"?} places a hold
    GET  /holds?account_id=&in_force=true         the holds (of an account; in force only)
    GET  /holds/<id>                              one hold
    POST /holds/<id>/release                      {"reason"} releases it (its data is back under its rules at the next run)
    POST /authority-requests                      {"authority_kind", "authority_name", "reference", "legal_basis",
                                                   "received_on"} registers a request
    GET  /authority-requests                      the register, with each request's disclosures
    POST /authority-requests/<id>/disclosures     {"categories", "disclosed_at", "method", "account_id"? | "prospect_id"?}

Thin: the rules are in shared/records/holds.py and shared/records/disclosures.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from shared.identity.guards import dpo_credential
from shared.platform.errors import ValidationFailed
from shared.platform.guards import body, principal
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request
from shared.ports.db import get_engine
from shared.records import disclosures, holds

app = HttpFunction("legal-holds")

Categories = Field(min_length=1, max_length=holds.MAX_CATEGORIES)


def _day(value: object) -> dt.date:
    """A calendar day written YYYY-MM-DD: a number or a moment is not a day."""
    if not isinstance(value, str) or len(value) != 10:
        raise ValueError("a day is written YYYY-MM-DD")
    return dt.date.fromisoformat(value)


def _moment(value: object) -> dt.datetime:
    """An ISO 8601 moment with its time zone: a number is not a moment."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("a moment is an ISO 8601 string with a time zone")
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("the moment needs a time zone")
    return moment


Day = Annotated[dt.date, BeforeValidator(_day)]
Moment = Annotated[dt.datetime, BeforeValidator(_moment)]


class HoldRequest(StrictModel):
    account_id: str | None = Field(None, min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")
    prospect_id: str | None = Field(None, min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")
    categories: list[str] = Categories
    reason: str = Field(min_length=holds.MIN_REASON_LENGTH, max_length=holds.MAX_REASON_LENGTH)
    ends_on: Day | None = None
    authority_request_id: str | None = Field(None, min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")


class ReleaseRequest(StrictModel):
    reason: str = Field(min_length=holds.MIN_REASON_LENGTH, max_length=holds.MAX_REASON_LENGTH)


class AuthorityRequestBody(StrictModel):
    authority_kind: Literal["tax_administration", "court", "police", "other"]
    authority_name: str = Field(min_length=3, max_length=200)
    reference: str = Field(min_length=3, max_length=120)
    legal_basis: str = Field(min_length=3, max_length=300)
    received_on: Day


class DisclosureBody(StrictModel):
    categories: list[str] = Categories
    disclosed_at: Moment
    method: Literal["secure_transfer", "registered_mail", "in_person", "authority_portal"]
    account_id: str | None = Field(None, min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")
    prospect_id: str | None = Field(None, min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")


def _flag(name: str) -> bool:
    value = current_request().query.get(name)
    if value in (None, "", "false"):
        return False
    if value == "true":
        return True
    raise ValidationFailed(f"{name} is true or false", code=f"invalid_{name}")


def _id(value: str, code: str) -> str:
    if len(value) != 36:
        raise ValidationFailed("not an id", code=code)
    return value


# --- Holds ---------------------------------------------------------------------------------------


@app.post("/holds", middlewares=[dpo_credential, body(HoldRequest)])
def place_hold() -> Response:
    dpo = principal(app, "dpo")
    request = principal(app, "body")
    with get_engine().begin() as conn:
        hold = holds.place_hold(
            conn,
            account_id=request.account_id,
            prospect_id=request.prospect_id,
            categories=request.categories,
            reason=request.reason,
            ends_on=request.ends_on,
            authority_request_id=request.authority_request_id,
            actor=dpo.actor,
        )
    return Response(status_code=201, content_type="application/json", body={"hold": hold.to_json()})


@app.get("/holds", middlewares=[dpo_credential])
def list_holds() -> dict:
    account_id = current_request().query.get("account_id") or None
    if account_id is not None:
        _id(account_id, "invalid_account")
    in_force = _flag("in_force")
    with get_engine().connect() as conn:
        found = holds.list_holds(conn, account_id=account_id, in_force_only=in_force)
    return {"holds": [hold.to_json() for hold in found]}


@app.get("/holds/<hold_id>", middlewares=[dpo_credential])
def get_hold(hold_id: str) -> dict:
    with get_engine().connect() as conn:
        return {"hold": holds.get_hold(conn, _id(hold_id, "invalid_hold_id")).to_json()}


@app.post("/holds/<hold_id>/release", middlewares=[dpo_credential, body(ReleaseRequest)])
def release_hold(hold_id: str) -> dict:
    dpo = principal(app, "dpo")
    request = principal(app, "body")
    with get_engine().begin() as conn:
        hold = holds.release_hold(conn, _id(hold_id, "invalid_hold_id"), reason=request.reason, actor=dpo.actor)
    return {"hold": hold.to_json()}


# --- The register of authority requests --------------------------------------------------------------


@app.post("/authority-requests", middlewares=[dpo_credential, body(AuthorityRequestBody)])
def register_request() -> Response:
    dpo = principal(app, "dpo")
    request = principal(app, "body")
    with get_engine().begin() as conn:
        registered = disclosures.register_request(
            conn,
            authority_kind=request.authority_kind,
            authority_name=request.authority_name,
            reference=request.reference,
            legal_basis=request.legal_basis,
            received_on=request.received_on,
            actor=dpo.actor,
        )
    return Response(status_code=201, content_type="application/json", body={"authority_request": registered.to_json()})


@app.get("/authority-requests", middlewares=[dpo_credential])
def list_requests() -> dict:
    with get_engine().connect() as conn:
        return {"authority_requests": [r.to_json() for r in disclosures.list_requests(conn)]}


@app.post("/authority-requests/<request_id>/disclosures", middlewares=[dpo_credential, body(DisclosureBody)])
def record_disclosure(request_id: str) -> Response:
    dpo = principal(app, "dpo")
    request = principal(app, "body")
    with get_engine().begin() as conn:
        disclosure = disclosures.record_disclosure(
            conn,
            _id(request_id, "invalid_authority_request_id"),
            categories=request.categories,
            disclosed_at=request.disclosed_at,
            method=request.method,
            account_id=request.account_id,
            prospect_id=request.prospect_id,
            actor=dpo.actor,
        )
    return Response(status_code=201, content_type="application/json", body={"disclosure": disclosure.to_json()})


handle = app.handle
