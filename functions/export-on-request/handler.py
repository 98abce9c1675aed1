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

from pydantic import AwareDatetime, Field

from shared.rights import export
from shared.identity.client import authenticate_client
from shared.ports.db import get_engine
from shared.identity.dpo import authenticate_dpo
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request, json_body, json_dumps

app = HttpFunction("export-on-request")

_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class ExportRequest(StrictModel):
    """The client area sends no body or `{}`: an export always holds everything."""


class DpoExportRequest(StrictModel):
    account_id: str = Field(pattern=_UUID)
    channel: Literal["email", "post"]
    kind: Literal["access", "portability"] = "access"
    identity_verification: Literal[export.DPO_VERIFICATION_METHODS]  # type: ignore[valid-type]
    received_at: AwareDatetime | None = None


def _accepted(body: dict[str, Any]) -> Response:
    return Response(status_code=202, content_type="application/json", body=json_dumps(body))


@app.post("/")
def start() -> Response:
    request = current_request()
    identity = authenticate_client(request.headers)
    if request.body.strip():
        json_body(ExportRequest)
    record, _created = export.start_client_export(get_engine(), identity.account_id, request.headers)
    return _accepted(export.request_view(record))


@app.get("/<request_id>")
def view(request_id: str) -> dict[str, Any]:
    identity = authenticate_client(current_request().headers)
    return export.export_view(get_engine(), request_id, account_id=identity.account_id)


@app.get("/<request_id>/download")
def download(request_id: str) -> Response:
    location = export.download_location(get_engine(), request_id, current_request().query.get("token"))
    return Response(status_code=302, content_type=None, body="", headers={"Location": location})


@app.post("/dpo/requests")
def dpo_register() -> Response:
    dpo = authenticate_dpo(current_request().headers)
    body = json_body(DpoExportRequest)
    record, _created = export.register_dpo_export(
        get_engine(),
        actor=dpo.actor,
        account_id=body.account_id,
        channel=body.channel,
        kind=body.kind,
        verification_method=body.identity_verification,
        received_at=body.received_at,
    )
    return _accepted(export.request_view(record))


@app.get("/dpo/requests/<request_id>")
def dpo_view(request_id: str) -> dict[str, Any]:
    authenticate_dpo(current_request().headers)
    return export.export_view(get_engine(), request_id, account_id=None, with_link=False)


handle = app.handle
