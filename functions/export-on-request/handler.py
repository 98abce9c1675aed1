"""export-on-request: the right of access (Art. 15) and to portability (Art. 20).

Client area (bearer token):
    POST /                          starts an export after step-up (X-Verification-Code); 202 with the request
    GET  /<request_id>              the request; once completed, a download_url re-issued on each call
Download link (no login: the signed token is the credential, valid at most 24 hours):
    GET  /<request_id>/download?token=   302 to the archive; 401 invalid_download_token, 410 export_expired
DPO (DPO credential, never a client token):
    POST /dpo/requests              {"account_id", "channel": "email"|"post", "identity_verification", ...}
    GET  /dpo/requests/<request_id> the request (no download link: the archive is the subject's)

Thin: every rule is in shared/rights/export/; the archive is built by worker.py from the queue.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.identity.guards import client_token, dpo_credential, step_up
from shared.platform.guards import Middlewares, body, principal, signed_link
from shared.platform.moments import past_moment
from shared.platform.openapi import answer, link
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request, json_dumps
from shared.policy.facts import DPO_CHANNELS, POLICY_EFFECTIVE_DATE
from shared.ports.db import get_engine
from shared.records.answers import RequestAnswer
from shared.rights import export
from shared.rights.signals import gpc_signal

app = HttpFunction("export-on-request")

_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class ExportRequest(StrictModel):
    """The client area sends no body or `{}`: an export always holds everything."""


class DpoExportRequest(StrictModel):
    account_id: str = Field(pattern=_UUID)
    channel: Literal[DPO_CHANNELS]  # type: ignore[valid-type]
    kind: Literal["access", "portability"] = "access"
    identity_verification: Literal[export.DPO_VERIFICATION_METHODS]  # type: ignore[valid-type]
    # The day the letter or mail arrived: not before the policy existed, not in the future.
    received_at: past_moment(POLICY_EFFECTIVE_DATE) | None = None  # type: ignore[valid-type]


def _accepted(body: dict[str, Any]) -> Response:
    return Response(status_code=202, content_type="application/json", body=json_dumps(body))


CLIENT: Middlewares = [client_token(), gpc_signal]


ACCEPTED = "The export request, registered (or the one already open)"


@app.post(
    "/",
    middlewares=[*CLIENT, body(ExportRequest, optional=True), step_up("export", unless=export.has_open_export)],
    responses={202: answer(ACCEPTED, RequestAnswer, view=link("view", request_id="/request_id"))},
)
def start() -> Response:
    record, _created = export.start_client_export(
        get_engine(), principal(app, "client").account_id, verified_by=principal(app, "step_up")
    )
    return _accepted(export.request_view(record))


@app.get(
    "/<request_id>",
    middlewares=CLIENT,
    responses={200: answer("The request; once completed, a download_url", RequestAnswer)},
)
def view(request_id: str) -> dict[str, Any]:
    return export.export_view(get_engine(), request_id, account_id=principal(app, "client").account_id)


@app.get(
    "/<request_id>/download",
    middlewares=[signed_link("DownloadLink", "token", "signed download link: its token is the credential")],
    responses={302: {"description": "To the archive", "headers": {"Location": {"schema": {"type": "string"}}}}},
)
def download(request_id: str) -> Response:
    location = export.download_location(get_engine(), request_id, current_request().query.get("token"))
    return Response(status_code=302, content_type=None, body="", headers={"Location": location})


@app.post(
    "/dpo/requests",
    middlewares=[dpo_credential, body(DpoExportRequest)],
    responses={202: answer(ACCEPTED, RequestAnswer, view=link("dpo_view", request_id="/request_id"))},
)
def dpo_register() -> Response:
    request = principal(app, "body")
    record, _created = export.register_dpo_export(
        get_engine(),
        actor=principal(app, "dpo").actor,
        account_id=request.account_id,
        channel=request.channel,
        kind=request.kind,
        verification_method=request.identity_verification,
        received_at=request.received_at,
    )
    return _accepted(export.request_view(record))


@app.get(
    "/dpo/requests/<request_id>", middlewares=[dpo_credential], responses={200: answer("The request", RequestAnswer)}
)
def dpo_view(request_id: str) -> dict[str, Any]:
    return export.export_view(get_engine(), request_id, account_id=None, with_link=False)


handle = app.handle
