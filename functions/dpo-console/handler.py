"""dpo-console: the DPO's pages, server-rendered from the notice templates (French, English).

Browser routes (no script; every form carries a CSRF token):
    GET  /            the sign-in form (or 303 to requests when the session is alive)
    POST /sign-in     credential=dpo_...&csrf=...: 303 to requests with the session cookie;
                      401 page when refused, 429 page past the failure limit
    GET  /requests    open requests, the closest deadline first, overdue / due-soon marked;
                      filters ?kind=&marker=
    POST /sign-out    csrf=...: ends the session, 303 to the sign-in form

The session cookie is HttpOnly, SameSite=Strict, Secure outside local runs, 30 minutes idle
(shared/identity/console.py). A client token or a DPO bearer credential opens none of these
pages, and the cookie opens no other route. Thin: sessions are shared/identity/console.py, the
list is shared/records/request_list.py, the pages templates pages/dpo_console_*.
"""

from __future__ import annotations

from shared import notices
from shared.identity import console
from shared.identity.console import SignInRequired
from shared.identity.guards import console_form, console_session, form_fields
from shared.platform.errors import AppError, ValidationFailed
from shared.platform.guards import principal, public
from shared.platform.http import html_page
from shared.platform.runtime import HttpFunction, Response, StrictModel, current_request
from shared.ports.db import get_engine
from shared.records import request_list
from shared.records.registry import KINDS

app = HttpFunction("dpo-console")

SIGN_IN_FORM = public("sign-in form of the DPO console: it shows nothing, the DPO credential posted is checked")


class NoFields(StrictModel):
    """Sign-out carries only its CSRF token."""


def _language() -> str:
    request = current_request()
    wanted = request.query.get("lang")
    if wanted in notices.LANGUAGES:
        return wanted
    accept = (request.header("Accept-Language") or "").lower()
    return "en" if accept.startswith("en") else notices.DEFAULT_LANGUAGE


def _page(name: str, *, status: int = 200, cookie: str | None = None, **context) -> Response:
    language = _language()
    response = html_page(notices.page(f"dpo_console_{name}", language=language,
                                      other_language="en" if language == "fr" else "fr", **context), status=status)
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


app.exception_handler(SignInRequired)(_signed_out)


@app.get("/", middlewares=[SIGN_IN_FORM])
def sign_in_form() -> Response:
    try:
        console.open_session(get_engine(), current_request().headers)
    except SignInRequired:
        return _sign_in_page()
    return _see_other(f"requests?lang={_language()}", console.cleared_cookie(console.SIGN_IN_CSRF_COOKIE))


@app.post("/sign-in", middlewares=[SIGN_IN_FORM])
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


@app.get("/requests", middlewares=[console_session])
def open_requests() -> Response:
    session = principal(app, "console")
    query = current_request().query
    kind, marker = query.get("kind") or None, query.get("marker") or None
    if kind not in (None, *KINDS) or marker not in (None, *request_list.MARKERS):
        raise ValidationFailed("unknown filter", code="invalid_filter")
    with get_engine().connect() as conn:
        rows = request_list.open_requests(conn, kind=kind, marker=marker)
    counts = {m: sum(1 for r in rows if r.marker == m) for m in request_list.MARKERS}
    return _page("requests", session={"label": session.label, "csrf_token": session.csrf_token},
                 rows=[row.to_page() for row in rows], counts=counts, kinds=KINDS, markers=request_list.MARKERS,
                 kind=kind or "", marker=marker or "")


@app.post("/sign-out", middlewares=[console_session, console_form(NoFields)])
def sign_out() -> Response:
    console.sign_out(get_engine(), principal(app, "console"))
    return _see_other(f"./?lang={_language()}", console.cleared_cookie())


handle = app.handle
