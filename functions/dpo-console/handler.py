"""dpo-console: the DPO's pages, server-rendered from the notice templates (French, English).

Browser routes (no script; every form carries a CSRF token):
    GET  /            the sign-in form (or 303 to requests when the session is alive)
    POST /sign-in     credential=dpo_...&csrf=...: 303 to requests with the session cookie;
                      401 page when refused, 429 page past the failure limit
    GET  /requests    open requests, the closest deadline first, overdue / due-soon marked;
                      filters ?state=&kind=&channel=&due_within_days=&overdue=true; the form to
                      register a request received by email or post
    POST /requests    kind, channel, received_on, account_id | email, name, ...: registered, its page
    GET  /requests/<id>                   the request: facts, timeline, notices, its actions' forms
    POST /requests/<id>/verify-identity   method
    POST /requests/<id>/extend            months (1|2), reason: the person is told
    POST /requests/<id>/reject            reason_code, note: the person is told
    POST /requests/<id>/complete          note
    GET  /activity                        requests per month by kind, time taken to answer (inline SVG)
    GET  /search, POST /search            where a person appears (the identifiers are never shown back)
    GET  /holds, POST /holds, POST /holds/<id>/release   legal holds: the list, place, release
    GET  /retention                       what the next retention runs would do, per category
    GET  /audit                           the audit chain's verification state
    GET  /register, GET /register-of-processing?format=md|json|csv&language=fr|en   the register, to download
    POST /sign-out    csrf=...: ends the session, 303 to the sign-in form

Each action answers with the request's page and what the action changed (the letters to print
for the post included); a refusal shows the desk's error message on the page, with its 4xx.
The session cookie is HttpOnly, SameSite=Strict, Secure outside local runs, 30 minutes idle
(shared/identity/console.py). A client token or a DPO bearer credential opens none of these
pages, and the cookie opens no other route. Thin: sessions are shared/identity/console.py, the
desk's operations shared/desk/operations.py, the view models shared/console/, the pages
templates pages/dpo_console_*.
"""

from __future__ import annotations

from pydantic import Field

from shared import notices
from shared.console import chart, tools
from shared.console import requests as console_requests
from shared.desk import operations
from shared.identity import console
from shared.identity.console import SignInRequired
from shared.identity.guards import console_form, console_session, form_fields
from shared.platform.errors import AppError, ExternalServiceError, ValidationFailed, service_unavailable
from shared.platform.guards import principal, public
from shared.platform.http import html_page
from shared.platform.openapi import PAGE_ANSWERS
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request
from shared.ports.db import get_engine

app = HttpFunction("dpo-console")

SIGN_IN_FORM = public("sign-in form of the DPO console: it shows nothing, the DPO credential posted is checked")


class NoFields(StrictModel):
    """Sign-out carries only its CSRF token."""


class Registration(StrictModel):
    kind: str = Field(max_length=24)
    channel: str = Field(max_length=16)
    received_on: str = Field(default="", max_length=10)
    account_id: str = Field(default="", max_length=36)
    email: str = Field(default="", max_length=320)
    name: str = Field(default="", max_length=200)
    postal_address: str = Field(default="", max_length=320)
    phone: str = Field(default="", max_length=32)
    siret: str = Field(default="", max_length=20)


class IdentityCheck(StrictModel):
    method: str = Field(max_length=40)


class Extension(StrictModel):
    months: str = Field(pattern=r"^[12]$")
    reason: str = Field(min_length=1, max_length=1000)


class Refusal(StrictModel):
    reason_code: str = Field(max_length=40)
    note: str = Field(default="", max_length=1000)


class Completion(StrictModel):
    note: str = Field(min_length=1, max_length=1000)


class Search(StrictModel):
    email: str = Field(default="", max_length=320)
    phone: str = Field(default="", max_length=32)
    siret: str = Field(default="", max_length=20)
    name: str = Field(default="", max_length=200)
    postal_address: str = Field(default="", max_length=320)


class HoldRelease(StrictModel):
    reason: str = Field(min_length=1, max_length=1000)


def _language() -> str:
    request = current_request()
    wanted = request.query.get("lang")
    if wanted in notices.LANGUAGES:
        return wanted
    accept = (request.header("Accept-Language") or "").lower()
    return "en" if accept.startswith("en") else notices.DEFAULT_LANGUAGE


def _page(name: str, *, status: int = 200, cookie: str | None = None, **context) -> Response:
    language = _language()
    depth = len([part for part in current_request().path.split("/") if part])
    context["base"] = "../" * (depth - 1) if depth > 1 else "./"  # the links are relative to the function's root
    response = html_page(
        notices.page(
            f"dpo_console_{name}", language=language, other_language="en" if language == "fr" else "fr", **context
        ),
        status=status,
    )
    if cookie:
        response.headers["Set-Cookie"] = cookie
    return response


def _see_other(location: str, cookie: str) -> Response:
    return Response(status_code=303, content_type=None, body="", headers={"Location": location, "Set-Cookie": cookie})


def _sign_in_page(*, status: int = 200, problem: str | None = None) -> Response:
    csrf = console.new_sign_in_csrf()
    return _page("sign_in", status=status, cookie=console.sign_in_csrf_cookie(csrf), csrf=csrf, problem=problem)


def _signed_out(exc: SignInRequired) -> Response:
    return _sign_in_page(status=401, problem=exc.code)


def _refused(exc: AppError) -> Response:
    """A refusal the route did not answer itself (a form that is not valid, a CSRF mismatch): a page, its 4xx."""
    return _page("error", status=exc.status, error=exc.to_body()["error"])


def _unavailable(exc: ExternalServiceError) -> Response:
    """A provider down (mail, storage): what was recorded stays; the page says to try again (503)."""
    return _refused(service_unavailable(exc))


app.exception_handler(SignInRequired)(_signed_out)
app.exception_handler(AppError)(_refused)
app.exception_handler(ExternalServiceError)(_unavailable)


@app.get("/", middlewares=[SIGN_IN_FORM], responses=PAGE_ANSWERS)
def sign_in_form() -> Response:
    try:
        console.open_session(get_engine(), current_request().headers)
    except SignInRequired:
        return _sign_in_page()
    return _see_other(f"requests?lang={_language()}", console.cleared_cookie(console.SIGN_IN_CSRF_COOKIE))


@app.post("/sign-in", middlewares=[SIGN_IN_FORM], responses=PAGE_ANSWERS)
def sign_in() -> Response:
    request = current_request()
    try:
        fields = form_fields(request.body)
        console.check_sign_in_csrf(request.header("Cookie"), fields.get("csrf"))
        _session, secret = console.sign_in(get_engine(), fields.get("credential"), client_ip=request.client_ip)
    except AppError as refused:
        response = _sign_in_page(status=refused.status, problem=refused.code)
        response.headers.update({k: v for k, v in refused.headers.items() if k == "Retry-After"})
        return response
    return _see_other(f"requests?lang={_language()}", console.session_cookie(secret))


def _session() -> dict:
    session = principal(app, "console")
    return {"label": session.label, "csrf_token": session.csrf_token}


def _actor() -> str:
    return principal(app, "console").actor


@app.get("/requests", middlewares=[console_session], responses=PAGE_ANSWERS)
def open_requests() -> Response:
    return _page("requests", session=_session(), **console_requests.list_page(current_request().query))


@app.post("/requests", middlewares=[console_session, console_form(Registration)], responses=PAGE_ANSWERS)
def register() -> Response:
    form = principal(app, "form")
    try:
        created = operations.register(actor=_actor(), **console_requests.registration(form.model_dump()))
    except AppError as refused:
        return _page(
            "requests",
            status=refused.status,
            session=_session(),
            error=refused.to_body()["error"],
            **console_requests.list_page({}),
        )
    page = console_requests.request_page(created["request_id"])
    return _page("request", session=_session(), done="registered", changes=[], delivered=[], **page)


@app.get("/requests/<request_id>", middlewares=[console_session], responses=PAGE_ANSWERS)
def request_page(request_id: str) -> Response:
    return _page("request", session=_session(), **console_requests.request_page(request_id))


def _act(request_id: str, done: str, action) -> Response:
    """Run one desk operation; answer the request's page with what changed, or with the refusal and its 4xx."""
    before = console_requests.request_page(request_id)
    try:
        result = action(operations.checked_request_id(request_id))
    except AppError as refused:
        return _page("request", status=refused.status, session=_session(), error=refused.to_body()["error"], **before)
    except ExternalServiceError as down:  # recorded, the notice still owed: the page shows where it stands
        return _page(
            "request",
            status=503,
            session=_session(),
            error=service_unavailable(down).to_body()["error"],
            **console_requests.request_page(request_id),
        )
    after = console_requests.request_page(request_id)
    delivered = [
        {"notice": n.get("notice", ""), "delivery": n.get("delivery", ""), "letter": n.get("letter", "")}
        for n in result.get("notices_delivered", [])
    ]
    return _page(
        "request",
        session=_session(),
        done=done,
        changes=console_requests.changed(before, after),
        delivered=delivered,
        work=console_requests.work_started(result),
        **after,
    )


@app.post(
    "/requests/<request_id>/verify-identity",
    middlewares=[console_session, console_form(IdentityCheck)],
    responses=PAGE_ANSWERS,
)
def verify_identity(request_id: str) -> Response:
    form = principal(app, "form")
    return _act(request_id, "verified", lambda rid: operations.verify_identity(rid, method=form.method, actor=_actor()))


@app.post(
    "/requests/<request_id>/extend", middlewares=[console_session, console_form(Extension)], responses=PAGE_ANSWERS
)
def extend(request_id: str) -> Response:
    form = principal(app, "form")
    return _act(
        request_id,
        "extended",
        lambda rid: operations.extend(rid, months=int(form.months), reason=form.reason, actor=_actor()),
    )


@app.post("/requests/<request_id>/reject", middlewares=[console_session, console_form(Refusal)], responses=PAGE_ANSWERS)
def reject(request_id: str) -> Response:
    form = principal(app, "form")
    return _act(
        request_id,
        "rejected",
        lambda rid: operations.reject(rid, reason_code=form.reason_code, note=form.note or None, actor=_actor()),
    )


@app.post(
    "/requests/<request_id>/complete", middlewares=[console_session, console_form(Completion)], responses=PAGE_ANSWERS
)
def complete(request_id: str) -> Response:
    form = principal(app, "form")
    return _act(request_id, "completed", lambda rid: operations.complete(rid, note=form.note, actor=_actor()))


@app.get("/activity", middlewares=[console_session], responses=PAGE_ANSWERS)
def activity() -> Response:
    return _page("activity", session=_session(), **chart.activity_page())


@app.get("/search", middlewares=[console_session], responses=PAGE_ANSWERS)
def search_form() -> Response:
    return _page("search", session=_session(), **tools.search_page(None, actor=_actor()))


@app.post("/search", middlewares=[console_session, console_form(Search)], responses=PAGE_ANSWERS)
def search() -> Response:
    form = principal(app, "form")
    try:
        found = tools.search_page(form.model_dump(), actor=_actor())
    except AppError as refused:
        return _page(
            "search",
            status=refused.status,
            session=_session(),
            error=refused.to_body()["error"],
            **tools.search_page(None, actor=_actor()),
        )
    return _page("search", session=_session(), **found)


@app.get("/holds", middlewares=[console_session], responses=PAGE_ANSWERS)
def legal_holds() -> Response:
    return _page("holds", session=_session(), **tools.holds_page())


def _hold_answer(done: str, action) -> Response:
    try:
        hold = action()
    except AppError as refused:
        return _page(
            "holds", status=refused.status, session=_session(), error=refused.to_body()["error"], **tools.holds_page()
        )
    return _page("holds", session=_session(), done=done, hold=hold, **tools.holds_page())


@app.post("/holds", middlewares=[console_session, console_form(tools.HoldForm)], responses=PAGE_ANSWERS)
def place_hold() -> Response:
    form = principal(app, "form")
    return _hold_answer("placed", lambda: tools.place_hold(form, actor=_actor()))


@app.post("/holds/<hold_id>/release", middlewares=[console_session, console_form(HoldRelease)], responses=PAGE_ANSWERS)
def release_hold(hold_id: str) -> Response:
    form = principal(app, "form")
    return _hold_answer("released", lambda: tools.release_hold(hold_id, reason=form.reason, actor=_actor()))


@app.get("/retention", middlewares=[console_session], responses=PAGE_ANSWERS)
def retention_plan() -> Response:
    return _page("retention", session=_session(), **tools.retention_page())


@app.get("/audit", middlewares=[console_session], responses=PAGE_ANSWERS)
def audit_state() -> Response:
    return _page("audit", session=_session(), **tools.audit_page())


@app.get("/register", middlewares=[console_session], responses=PAGE_ANSWERS)
def register_page() -> Response:
    return _page("register", session=_session(), formats=operations.REGISTER_FORMATS, languages=notices.LANGUAGES)


@app.get("/register-of-processing", middlewares=[console_session], responses=PAGE_ANSWERS)
def register_download() -> Response:
    query = current_request().query
    fmt, language = query.get("format", "md"), query.get("language", "fr")
    if (
        fmt not in operations.REGISTER_FORMATS
        or language not in notices.LANGUAGES
        or set(query) - {"format", "language", "lang"}
    ):
        raise ValidationFailed("format is json, md or csv; language fr or en", code="invalid_format")
    content_type, text = operations.register_of_processing(fmt=fmt, language=language)
    return Response(
        status_code=200,
        content_type=content_type,
        body=text,
        headers={"Content-Disposition": f'attachment; filename="register-of-processing.{language}.{fmt}"'},
    )


@app.post("/sign-out", middlewares=[console_session, console_form(NoFields)], responses=PAGE_ANSWERS)
def sign_out() -> Response:
    console.sign_out(get_engine(), principal(app, "console"))
    return _see_other(f"./?lang={_language()}", console.cleared_cookie())


handle = app.handle
