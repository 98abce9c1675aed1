"""erase-account: the right to erasure (GDPR Art. 17; policy 8.3), with a cooling-off period.

Client area (bearer token; the account may already be deactivated by its pending erasure):
    POST   /              step-up (X-Verification-Code) then registers the erasure: 202; the pending one: 200
    GET    /              the caller's pending erasure (404 when none)
    GET    /<request_id>  state, erase_after, and the receipt once completed
    DELETE /<request_id>  cancels during the cooling-off and gives the account back
DPO (DPO credential, never a client token), for requests received by email or post:
    POST   /dpo/requests          {"account_id", "channel": "email" | "post"}
    GET    /dpo/requests/<id>     any erasure request

Thin: every rule is in shared/rights/erasure/.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from shared.rights import erasure
from shared.identity.client import authenticate_client, require_step_up
from shared.ports.db import get_engine
from shared.identity.dpo import authenticate_dpo
from shared.platform.errors import NotFound
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request, json_body

app = HttpFunction("erase-account")


class NoFields(StrictModel):
    """The client's POST carries no parameters: an empty body or `{}`."""


class DpoErasureRequest(StrictModel):
    account_id: str = Field(min_length=1, max_length=36)
    channel: Literal["email", "post"]


def _answer(record, *, created: bool) -> Response:
    return Response(
        status_code=202 if created else 200, content_type="application/json", body=erasure.erasure_view(record)
    )


@app.post("/")
def request_erasure() -> Response:
    request = current_request()
    identity = authenticate_client(request.headers, allow_deactivated=True)
    if request.body.strip():
        json_body(NoFields)
    engine = get_engine()
    with engine.connect() as conn:
        pending = erasure.find_pending_erasure(conn, identity.account_id)
    if pending is not None:
        return _answer(pending, created=False)
    require_step_up(engine, identity.account_id, request.headers, action="erasure")
    record, created = erasure.request_erasure(
        engine, identity.account_id, channel=erasure.CLIENT_CHANNEL, actor="client"
    )
    return _answer(record, created=created)


@app.get("/")
def pending_erasure() -> dict:
    identity = authenticate_client(current_request().headers, allow_deactivated=True)
    with get_engine().connect() as conn:
        pending = erasure.find_pending_erasure(conn, identity.account_id)
    if pending is None:
        raise NotFound("no pending erasure for this account", code="no_pending_erasure")
    return erasure.erasure_view(pending)


@app.get("/<request_id>")
def erasure_state(request_id: str) -> dict:
    identity = authenticate_client(current_request().headers, allow_deactivated=True)
    with get_engine().connect() as conn:
        return erasure.erasure_view(erasure.get_erasure(conn, request_id, account_id=identity.account_id))


@app.delete("/<request_id>")
def cancel(request_id: str) -> dict:
    identity = authenticate_client(current_request().headers, allow_deactivated=True)
    with get_engine().begin() as conn:
        record = erasure.cancel_erasure(conn, request_id, account_id=identity.account_id, actor="client")
    return erasure.erasure_view(record)


@app.post("/dpo/requests")
def dpo_request() -> Response:
    dpo = authenticate_dpo(current_request().headers)
    body = json_body(DpoErasureRequest)
    record, created = erasure.request_erasure(get_engine(), body.account_id, channel=body.channel, actor=dpo.actor)
    return _answer(record, created=created)


@app.get("/dpo/requests/<request_id>")
def dpo_state(request_id: str) -> dict:
    authenticate_dpo(current_request().headers)
    with get_engine().connect() as conn:
        return erasure.erasure_view(erasure.get_erasure(conn, request_id))


handle = app.handle
