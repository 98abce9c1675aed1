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

from shared.identity.guards import client_token, dpo_credential, step_up
from shared.platform.errors import NotFound
from shared.platform.guards import Middlewares, body, principal
from shared.platform.openapi import Answers, answer, link
from shared.platform.runtime import HttpFunction, Response, StrictModel
from shared.policy.facts import DPO_CHANNELS, IDENTITY_VERIFICATION_METHODS
from shared.ports.db import get_engine
from shared.records.answers import RequestAnswer
from shared.rights import erasure
from shared.rights.signals import gpc_signal

app = HttpFunction("erase-account")


class NoFields(StrictModel):
    """The client's POST carries no parameters: an empty body or `{}`."""


class DpoErasureRequest(StrictModel):
    account_id: str = Field(min_length=1, max_length=36)
    channel: Literal[DPO_CHANNELS]  # type: ignore[valid-type]
    # How the DPO checked who wrote (policy 9.3): recorded on the request, never the evidence.
    identity_verification: Literal[IDENTITY_VERIFICATION_METHODS]  # type: ignore[valid-type]


# The account may already be deactivated by its own pending erasure: it may still read or cancel it.
CLIENT: Middlewares = [client_token(allow_deactivated=True), gpc_signal]


def _pending(account_id: str):
    with get_engine().connect() as conn:
        return erasure.find_pending_erasure(conn, account_id)


def _answer(record, *, created: bool) -> Response:
    return Response(
        status_code=202 if created else 200, content_type="application/json", body=erasure.erasure_view(record)
    )


def _registered(*targets: str) -> Answers:
    links = {target: link(target, request_id="/request_id") for target in targets}
    return {
        202: answer("The erasure, registered", RequestAnswer, **links),
        200: answer("The erasure already registered, as it stands", RequestAnswer, **links),
    }


ERASURE: Answers = {200: answer("The erasure request: state, erase_after, the receipt once completed", RequestAnswer)}


@app.post(
    "/",
    middlewares=[*CLIENT, body(NoFields, optional=True), step_up("erasure", unless=_pending)],
    responses=_registered("erasure_state", "cancel"),
)
def request_erasure() -> Response:
    identity = principal(app, "client")
    pending = _pending(identity.account_id)
    if pending is not None:  # answered as is: the step-up guard let it through without a code
        return _answer(pending, created=False)
    record, created = erasure.request_erasure(
        get_engine(), identity.account_id, channel=erasure.CLIENT_CHANNEL, actor="client"
    )
    return _answer(record, created=created)


@app.get("/", middlewares=CLIENT, responses=ERASURE)
def pending_erasure() -> dict:
    pending = _pending(principal(app, "client").account_id)
    if pending is None:
        raise NotFound("no pending erasure for this account", code="no_pending_erasure")
    return erasure.erasure_view(pending)


@app.get("/<request_id>", middlewares=CLIENT, responses=ERASURE)
def erasure_state(request_id: str) -> dict:
    identity = principal(app, "client")
    with get_engine().connect() as conn:
        return erasure.erasure_view(erasure.get_erasure(conn, request_id, account_id=identity.account_id))


@app.delete("/<request_id>", middlewares=CLIENT, responses=ERASURE)
def cancel(request_id: str) -> dict:
    identity = principal(app, "client")
    with get_engine().begin() as conn:
        record = erasure.cancel_erasure(conn, request_id, account_id=identity.account_id, actor="client")
    return erasure.erasure_view(record)


@app.post("/dpo/requests", middlewares=[dpo_credential, body(DpoErasureRequest)], responses=_registered("dpo_state"))
def dpo_request() -> Response:
    request = principal(app, "body")
    record, created = erasure.request_erasure(
        get_engine(),
        request.account_id,
        channel=request.channel,
        actor=principal(app, "dpo").actor,
        verified_by=request.identity_verification,
    )
    return _answer(record, created=created)


@app.get("/dpo/requests/<request_id>", middlewares=[dpo_credential], responses=ERASURE)
def dpo_state(request_id: str) -> dict:
    with get_engine().connect() as conn:
        return erasure.erasure_view(erasure.get_erasure(conn, request_id))


handle = app.handle
