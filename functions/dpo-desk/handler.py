"""dpo-desk: the DPO's requests, received by email, post or the client area, for anyone (policy 9).

Every route takes a DPO credential (never a client token):
    POST /requests                          register {"kind", "channel", "received_at"?, "account_id" | "identifiers"}
    GET  /requests?state=&kind=&channel=&due_within_days=&overdue=true   open requests, soonest due first
    GET  /requests/<id>                     the request, its notices and its timeline
    POST /requests/<id>/verify-identity     {"method"}: identity established; the work starts
    POST /requests/<id>/extend              {"months": 1|2, "reason"}: the person is told (Art. 12(3))
    POST /requests/<id>/reject              {"reason_code", "note"?}: the person is told (Art. 12(4))
    POST /requests/<id>/rectify             {"fields": {...}}: the corrections of a verified rectification
    POST /requests/<id>/decide-objection    {"outcome": "accepted"|"overridden", "grounds"?}: security, fraud (Art. 21(1))
    POST /requests/<id>/complete            {"note"}: a request the DPO answered by hand
    POST /requests/<id>/notices             deliver the notices still owed (letters for the post)
    POST /requests/<id>/resume              run again the work of a request left unfinished (nothing repeated)
    GET  /requests/<id>/archive-link        an export's download link, for a person without email (audited)
    POST /search                            {"email"?, "phone"?, "siret"?, "name"?, "postal_address"?}: where the person appears
    GET  /register-of-processing?format=json|md|csv&language=en|fr   the register of processing activities (Art. 30)

Thin: every rule is in shared/desk/; `privacy-functions dpo ...` calls the same code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.desk import operations
from shared.identity.guards import dpo_credential
from shared.platform.guards import Middlewares, body, principal
from shared.platform.http import validated
from shared.platform.moments import past_moment
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request, json_dumps
from shared.policy.facts import IDENTITY_VERIFICATION_METHODS, POLICY_EFFECTIVE_DATE
from shared.records.registry import KINDS, MAX_EXTENSION_MONTHS, MAX_REASON_LENGTH, REJECTION_REASON_CODES

app = HttpFunction("dpo-desk")

_UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DPO: Middlewares = [dpo_credential]


class Identifiers(StrictModel):
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    siret: str | None = Field(default=None, max_length=20)
    name: str | None = Field(default=None, max_length=200)
    postal_address: str | None = Field(default=None, max_length=320)


class Registration(StrictModel):
    kind: Literal[KINDS]  # type: ignore[valid-type]
    channel: Literal[operations.INTAKE_CHANNELS]  # type: ignore[valid-type]
    # The day the letter or mail arrived: not before the policy existed, not in the future.
    received_at: past_moment(POLICY_EFFECTIVE_DATE) | None = None  # type: ignore[valid-type]
    account_id: str | None = Field(default=None, pattern=_UUID)
    identifiers: Identifiers | None = None


class Listing(StrictModel):
    """The query string: text values, checked as strictly as a body."""

    state: str | None = Field(default=None, max_length=16)
    kind: str | None = Field(default=None, max_length=24)
    channel: str | None = Field(default=None, max_length=16)
    due_within_days: str | None = Field(default=None, pattern=r"^\d{1,3}$")
    overdue: Literal["true", "false"] | None = None


class IdentityCheck(StrictModel):
    method: Literal[IDENTITY_VERIFICATION_METHODS]  # type: ignore[valid-type]


class Extension(StrictModel):
    months: int = Field(ge=1, le=MAX_EXTENSION_MONTHS)
    reason: str = Field(min_length=1, max_length=MAX_REASON_LENGTH)


class Refusal(StrictModel):
    reason_code: Literal[REJECTION_REASON_CODES]  # type: ignore[valid-type]
    note: str | None = Field(default=None, min_length=1, max_length=MAX_REASON_LENGTH)


class Completion(StrictModel):
    note: str = Field(min_length=1, max_length=MAX_REASON_LENGTH)


class Corrections(StrictModel):
    # Checked field by field by the rectification rules (the client area's PATCH body).
    fields: dict[str, Any]


class ObjectionDecision(StrictModel):
    outcome: Literal["accepted", "overridden"]
    grounds: str | None = Field(default=None, min_length=1, max_length=MAX_REASON_LENGTH)


class RegisterQuery(StrictModel):
    format: Literal[operations.REGISTER_FORMATS] = "json"  # type: ignore[valid-type]
    language: Literal["en", "fr"] = "en"


class NoFields(StrictModel):
    pass


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type="application/json", body=json_dumps(payload))


def _actor() -> str:
    return principal(app, "dpo").actor


def _id(request_id: str) -> str:
    return operations.checked_request_id(request_id)


@app.post("/requests", middlewares=[*DPO, body(Registration)])
def register() -> Response:
    request = principal(app, "body")
    identifiers = request.identifiers.model_dump(exclude_none=True) if request.identifiers else None
    result = operations.register(
        actor=_actor(),
        kind=request.kind,
        channel=request.channel,
        received_at=request.received_at,
        account_id=request.account_id,
        identifiers=identifiers,
    )
    return _json(201, result)


@app.get("/requests", middlewares=DPO)
def listing() -> dict[str, Any]:
    query = validated(Listing, dict(current_request().query))
    return operations.list_requests(
        state=query.state,
        kind=query.kind,
        channel=query.channel,
        due_within_days=int(query.due_within_days) if query.due_within_days is not None else None,
        overdue=query.overdue == "true",
    )


@app.get("/requests/<request_id>", middlewares=DPO)
def view(request_id: str) -> dict[str, Any]:
    return operations.view(_id(request_id))


@app.post("/requests/<request_id>/verify-identity", middlewares=[*DPO, body(IdentityCheck)])
def verify_identity(request_id: str) -> dict[str, Any]:
    return operations.verify_identity(_id(request_id), method=principal(app, "body").method, actor=_actor())


@app.post("/requests/<request_id>/extend", middlewares=[*DPO, body(Extension)])
def extend(request_id: str) -> dict[str, Any]:
    request = principal(app, "body")
    return operations.extend(_id(request_id), months=request.months, reason=request.reason, actor=_actor())


@app.post("/requests/<request_id>/reject", middlewares=[*DPO, body(Refusal)])
def reject(request_id: str) -> dict[str, Any]:
    request = principal(app, "body")
    return operations.reject(_id(request_id), reason_code=request.reason_code, note=request.note, actor=_actor())


@app.post("/requests/<request_id>/complete", middlewares=[*DPO, body(Completion)])
def complete(request_id: str) -> dict[str, Any]:
    return operations.complete(_id(request_id), note=principal(app, "body").note, actor=_actor())


@app.post("/requests/<request_id>/rectify", middlewares=[*DPO, body(Corrections)])
def rectify(request_id: str) -> dict[str, Any]:
    return operations.rectify(_id(request_id), fields=principal(app, "body").fields, actor=_actor())


@app.post("/requests/<request_id>/decide-objection", middlewares=[*DPO, body(ObjectionDecision)])
def decide_objection(request_id: str) -> dict[str, Any]:
    request = principal(app, "body")
    return operations.decide_objection(
        _id(request_id), outcome=request.outcome, grounds=request.grounds, actor=_actor()
    )


@app.post("/requests/<request_id>/notices", middlewares=[*DPO, body(NoFields, optional=True)])
def deliver_notices(request_id: str) -> dict[str, Any]:
    return operations.deliver_notices(_id(request_id))


@app.get("/requests/<request_id>/archive-link", middlewares=DPO)
def archive_link(request_id: str) -> dict[str, Any]:
    return operations.archive_link(_id(request_id), actor=_actor())


@app.post("/requests/<request_id>/resume", middlewares=[*DPO, body(NoFields, optional=True)])
def resume(request_id: str) -> dict[str, Any]:
    return operations.resume(_id(request_id), actor=_actor())


@app.post("/search", middlewares=[*DPO, body(Identifiers)])
def search() -> dict[str, Any]:
    return operations.search(principal(app, "body").model_dump(exclude_none=True), actor=_actor())


@app.get("/register-of-processing", middlewares=DPO)
def register_of_processing() -> Response:
    query = validated(RegisterQuery, dict(current_request().query))
    content_type, text = operations.register_of_processing(fmt=query.format, language=query.language)
    return Response(status_code=200, content_type=content_type, body=text)


handle = app.handle
