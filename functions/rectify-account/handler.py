"""rectify-account: the right to rectification (Art. 16, 19; policy 8.2).

Client area (bearer token):
    GET   /                      the identification data held (policy 2.1), each field with the
                                 processors that also hold it (Stripe, Resend)
    PATCH /                      after step-up (X-Verification-Code): a JSON object of the fields to correct
                                 (first_name, last_name, phone, company_name, business_address, vat_number,
                                 email, company_id); 202 with the request, or the code mailed to a new address
    POST  /email/confirm         {"code": "123456"}: the code mailed to the new address; the change applies
    GET   /requests/<request_id> a rectification request: its fields and which recipients were told (Art. 19)

Thin: every rule is in shared/rights/rectification/; worker.py tells Stripe and Resend from the queue.
The DPO path is `shared.rights.rectification.apply_rectification`, wired by the DPO desk.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.identity.guards import client_token, step_up
from shared.platform.guards import Middlewares, body, principal
from shared.platform.runtime import HttpFunction, Response, StrictModel, json_dumps
from shared.ports.db import get_engine
from shared.rights import rectification
from shared.rights.signals import gpc_signal

app = HttpFunction("rectify-account")


class EmailConfirmation(StrictModel):
    code: str = Field(pattern=r"^[0-9]{6}$")


CLIENT: Middlewares = [client_token(), gpc_signal]


def _json(status: int, answer: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=json_dumps(answer))


@app.get("/", middlewares=CLIENT)
def held() -> dict[str, Any]:
    with get_engine().connect() as conn:
        return rectification.held_data(conn, principal(app, "client").account_id)


@app.patch("/", middlewares=[*CLIENT, body(rectification.Rectification), step_up("rectification")])
def correct() -> Response:
    status, answer = rectification.start_client_rectification(
        get_engine(),
        principal(app, "client").account_id,
        principal(app, "body"),
        verified_by=principal(app, "step_up"),
    )
    return _json(status, answer)


@app.post("/email/confirm", middlewares=[*CLIENT, body(EmailConfirmation)])
def confirm_email() -> Response:
    answer = rectification.confirm_email_change(
        get_engine(), principal(app, "client").account_id, principal(app, "body").code
    )
    return _json(202, answer)


@app.get("/requests/<request_id>", middlewares=CLIENT)
def view(request_id: str) -> dict[str, Any]:
    return rectification.get_view(get_engine(), request_id, account_id=principal(app, "client").account_id)


handle = app.handle
