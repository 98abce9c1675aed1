"""The DPO console: sign-in with a DPO credential, session cookie, CSRF, rate limit, the open requests list."""

from __future__ import annotations

import datetime as dt
import html
import http.client
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from shared.identity import console
from shared.identity.client import issue_dev_token
from shared.identity.dpo import create_dpo_credential, revoke_dpo_credential
from shared.local.demo import DEMO_ACCOUNTS, create_account
from shared.local.server import access_log_handler, build_app, load_manifest
from shared.platform.clock import utcnow
from shared.platform.errors import AppError
from shared.ports.tables import audit_log, console_sessions, console_sign_in_failures
from shared.records import registry
from tests.fakes.http_fake import serving

MARKUP = next(a for a in DEMO_ACCOUNTS if "<script>" in a["first_name"])
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def credential(engine) -> str:
    with engine.begin() as conn:
        return create_dpo_credential(conn, "dpo")


@pytest.fixture
def client(env):
    return build_app(load_manifest()).test_client()


def _form_csrf(page: str) -> str:
    return CSRF_FIELD.search(page).group(1)


def sign_in(client, credential: str, *, lang: str = "fr"):
    form = client.get(f"/dpo-console/?lang={lang}")
    assert form.status_code == 200
    return client.post(
        f"/dpo-console/sign-in?lang={lang}",
        data={"credential": credential, "csrf": _form_csrf(form.get_data(as_text=True))},
    )


def session_secret(client) -> str:
    return client.get_cookie(console.SESSION_COOKIE, path="/dpo-console").value


def audit_actions(engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.outcome)
                .where(audit_log.c.action.like("console.%"))
                .order_by(audit_log.c.seq)
            )
        ]


def test_sign_in_gives_a_strict_http_only_cookie_and_the_list(client, engine, credential):
    answer = sign_in(client, credential)
    assert answer.status_code == 303 and answer.headers["Location"] == "requests?lang=fr"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"{console.SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # a local run: plain http
    assert "Path=" not in cookie  # scoped by the browser to the function's base URL
    page = client.get("/dpo-console/requests")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "Aucune demande ouverte." in page.get_data(as_text=True)
    credential_id = credential.split("_")[1]
    assert audit_actions(engine) == [(f"dpo:{credential_id}", "console.sign_in", "succeeded")]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(console_sessions.c.token_hash)).scalars().all()
    assert stored and session_secret(client) not in stored  # only its hash is kept


def test_the_cookie_is_secure_outside_local_runs(monkeypatch, env):
    class Production:
        environment = "production"

    monkeypatch.setattr(console, "get_settings", lambda: Production())
    assert "; Secure" in console.session_cookie("x") and "; Secure" in console.cleared_cookie()


def test_open_requests_come_closest_deadline_first_with_markers_and_escaped_names(client, engine, credential):
    now = utcnow()
    markup = create_account(engine, email=MARKUP["email"], first_name=MARKUP["first_name"], last_name="Dupont")
    others = [create_account(engine) for _ in range(3)]
    with engine.begin() as conn:
        tomorrow = registry.create_request(
            conn,
            account_id=markup["id"],
            kind="access",
            channel="email",
            now=registry.add_months(now + dt.timedelta(days=1), -1),
        )
        late = registry.create_request(
            conn, account_id=others[0]["id"], kind="erasure", channel="post", now=now - dt.timedelta(days=40)
        )
        later = registry.create_request(
            conn, account_id=others[1]["id"], kind="rectification", channel="email", now=now - dt.timedelta(days=2)
        )
        closed = registry.create_request(conn, account_id=others[2]["id"], kind="access", channel="email", now=now)
        registry.transition(conn, closed.id, registry.CANCELLED, actor="dpo", reason="withdrawn by the subject")
    sign_in(client, credential, lang="en")
    page = client.get("/dpo-console/requests?lang=en").get_data(as_text=True)
    order = [m.group(1) for m in re.finditer(r'<tr id="request-([0-9a-f-]+)" data-marker="(\w+)"', page)]
    assert order == [late.id, tomorrow.id, later.id]
    markers = dict(re.findall(r'<tr id="request-([0-9a-f-]+)" data-marker="(\w+)"', page))
    assert markers == {late.id: "overdue", tomorrow.id: "due_soon", later.id: "on_time"}
    assert "Overdue" in page and "Due soon" in page
    assert "<script>alert" not in page and html.escape(MARKUP["first_name"]) in page
    assert "1 overdue and 1 due within 7 days" in re.sub(r"\s+", " ", page.replace("overdue and", "overdue and"))

    def listed(query: str) -> list[str]:
        page = client.get(f"/dpo-console/requests?{query}").get_data(as_text=True)
        return re.findall(r'<tr id="request-([0-9a-f-]+)"', page)

    # The desk's filters (operations.list_requests): overdue, due within N days, kind, channel, state.
    assert listed("overdue=true&lang=en") == [late.id]
    assert listed("due_within_days=7") == [late.id, tomorrow.id]
    assert listed("kind=access") == [tomorrow.id]
    assert listed("channel=post") == [late.id]
    assert listed("state=received&channel=email") == [tomorrow.id, later.id]
    assert listed("kind=&state=&channel=&due_within_days=") == [late.id, tomorrow.id, later.id]
    for query in (
        "kind=<script>",
        "overdue=yes",
        "due_within_days=-1",
        "due_within_days=999",
        "state=completed",
        "marker=overdue",
    ):
        bad = client.get(f"/dpo-console/requests?{query}")
        assert bad.status_code == 400, query
        assert 'role="alert"' in bad.get_data(as_text=True) and "<script>" not in bad.get_data(as_text=True)


def test_a_form_without_its_csrf_token_changes_nothing(client, engine, credential):
    client.get("/dpo-console/")
    refused = client.post("/dpo-console/sign-in", data={"credential": credential, "csrf": "forged"})
    assert refused.status_code == 403 and "Le formulaire a expiré" in refused.get_data(as_text=True)
    repeated = client.post(
        "/dpo-console/sign-in",
        data="credential=a&credential=b&csrf=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert repeated.status_code == 400
    assert client.get_cookie(console.SESSION_COOKIE, path="/dpo-console") is None
    assert sign_in(client, credential).status_code == 303
    for data in ({}, {"csrf": "forged"}):
        answer = client.post("/dpo-console/sign-out", data=data)
        assert answer.status_code in (400, 403) and 'role="alert"' in answer.get_data(as_text=True)
    assert client.get("/dpo-console/requests").status_code == 200  # still signed in


def test_sign_out_ends_the_session(client, engine, credential):
    sign_in(client, credential)
    secret = session_secret(client)
    page = client.get("/dpo-console/requests").get_data(as_text=True)
    answer = client.post("/dpo-console/sign-out", data={"csrf": _form_csrf(page)})
    assert answer.status_code == 303 and "Max-Age=0" in answer.headers["Set-Cookie"]
    # The old cookie, replayed, opens nothing.
    client.set_cookie(console.SESSION_COOKIE, secret, path="/dpo-console")
    again = client.get("/dpo-console/requests")
    assert again.status_code == 401 and 'name="credential"' in again.get_data(as_text=True)
    assert [a[1:] for a in audit_actions(engine)] == [
        ("console.sign_in", "succeeded"),
        ("console.sign_out", "succeeded"),
    ]


def test_a_session_ends_after_thirty_idle_minutes_and_each_request_restarts_the_clock(engine, credential):
    t0 = utcnow()
    session, secret = console.sign_in(engine, credential, client_ip=None, now=t0)
    headers = {"Cookie": f"other=1; {console.SESSION_COOKIE}={secret}"}
    assert console.open_session(engine, headers, now=t0 + dt.timedelta(minutes=20)).session_id == session.session_id
    assert console.open_session(engine, headers, now=t0 + dt.timedelta(minutes=49)).csrf_token == session.csrf_token
    with pytest.raises(console.SignInRequired) as expired:
        console.open_session(engine, headers, now=t0 + dt.timedelta(minutes=79))
    assert expired.value.code == "session_expired"
    with pytest.raises(console.SignInRequired) as ended:
        console.open_session(engine, headers, now=t0 + dt.timedelta(minutes=80))
    assert ended.value.code == "session_ended"
    assert ("console.session_ended", "idle_timeout") in [a[1:] for a in audit_actions(engine)]


def test_revoking_the_credential_ends_its_sessions(engine, credential):
    _session, secret = console.sign_in(engine, credential, client_ip=None)
    with engine.begin() as conn:
        revoke_dpo_credential(conn, credential.split("_")[1])
    with pytest.raises(console.SignInRequired):
        console.open_session(engine, {"Cookie": f"{console.SESSION_COOKIE}={secret}"})


def test_repeated_failures_are_rate_limited_and_audited(client, engine, credential):
    for attempt in range(console.MAX_FAILURES_PER_SOURCE):
        answer = sign_in(client, credential[:-2] + "xx")
        assert answer.status_code == 401, attempt
        assert "Cet identifiant n&#39;est pas valide." in answer.get_data(as_text=True)
    limited = sign_in(client, credential)  # even the right credential waits
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert client.get_cookie(console.SESSION_COOKIE, path="/dpo-console") is None
    outcomes = [a for a in audit_actions(engine)]
    assert outcomes.count(("anonymous", "console.sign_in", "invalid_token")) == console.MAX_FAILURES_PER_SOURCE
    assert outcomes[-1] == ("anonymous", "console.sign_in", "rate_limited")
    # Another address is not blocked by this one's failures; the failures past the window are forgotten.
    session, _secret = console.sign_in(engine, credential, client_ip="198.51.100.7")
    assert session.credential_id == credential.split("_")[1]
    later = utcnow() + console.FAILURE_WINDOW + dt.timedelta(seconds=1)
    console.sign_in(engine, credential, client_ip=None, now=later)
    with engine.connect() as conn:
        sources = conn.execute(sa.select(console_sign_in_failures.c.source)).scalars().all()
    assert sources == [] and "198.51.100.7" not in repr(audit_actions(engine))


def test_concurrent_guesses_get_no_more_checks_than_the_limit(engine, credential, monkeypatch):
    """A burst of wrong credentials sent at once: each attempt counts before its credential is checked, so no
    more than the limit are checked, however they interleave; the right credential afterwards is refused too."""
    checked = []
    real_check = console.authenticate_dpo

    def slow_check(headers):
        checked.append(1)
        time.sleep(0.2)  # a check that takes a while: without the count first, every guess is in flight at once
        return real_check(headers)

    monkeypatch.setattr(console, "authenticate_dpo", slow_check)
    guesses = console.MAX_FAILURES_PER_SOURCE * 2

    def guess(_index):
        try:
            console.sign_in(engine, credential[:-2] + "xx", client_ip="203.0.113.9")
        except AppError as refused:
            return refused.status
        return 200

    with ThreadPoolExecutor(max_workers=guesses) as pool:
        statuses = sorted(pool.map(guess, range(guesses)))
    assert len(checked) == console.MAX_FAILURES_PER_SOURCE
    assert statuses == [401] * console.MAX_FAILURES_PER_SOURCE + [429] * (guesses - console.MAX_FAILURES_PER_SOURCE)
    with pytest.raises(AppError) as limited:
        console.sign_in(engine, credential, client_ip="203.0.113.9")
    assert limited.value.status == 429
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(console_sign_in_failures)).scalar()
            == console.MAX_FAILURES_PER_SOURCE
        )


def test_a_good_sign_in_leaves_no_failure_counted(engine, credential):
    for _ in range(console.MAX_FAILURES_PER_SOURCE + 1):
        console.sign_in(engine, credential, client_ip="203.0.113.10")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(console_sign_in_failures)).scalar() == 0


def test_a_client_token_never_opens_the_console(client, engine, credential):
    account = create_account(engine)
    token = issue_dev_token(account["id"])
    for headers in ({"Authorization": f"Bearer {token}"}, {"Authorization": f"Bearer {credential}"}):
        answer = client.get("/dpo-console/requests", headers=headers)
        assert answer.status_code == 401 and 'name="credential"' in answer.get_data(as_text=True)
    assert sign_in(client, token).status_code == 401
    assert ("anonymous", "console.sign_in", "wrong_token_type") in audit_actions(engine)


def test_a_console_session_never_works_on_a_client_or_dpo_api_route(client, engine, credential):
    sign_in(client, credential)
    secret = session_secret(client)
    cookie = {"Cookie": f"{console.SESSION_COOKIE}={secret}"}
    for path in (
        "/whoami/",
        "/withdraw-consent/",
        "/export-on-request/dpo/requests/" + "0" * 36,
        "/withdraw-consent/dpo/restrictions?account_id=x",
    ):
        for headers in (cookie, {**cookie, "Authorization": f"Bearer {secret}"}):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 401, (path, headers.keys())


def test_cookies_never_reach_a_log_line(env, engine, credential, capsys, caplog):
    app = build_app(load_manifest())
    access_log: list[str] = []
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=access_log_handler(app, access_log.append))

    def call(method, path, body=None, headers=None):
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read().decode()
        connection.close()
        return response, data

    with serving(server):
        form, page = call("GET", "/dpo-console/")
        csrf = _form_csrf(page)
        pre = form.getheader("Set-Cookie").split(";")[0]
        signed, _ = call(
            "POST",
            "/dpo-console/sign-in",
            body=f"credential={credential}&csrf={csrf}",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": pre},
        )
        session_cookie = signed.getheader("Set-Cookie").split(";")[0]
        listed, page = call("GET", "/dpo-console/requests?overdue=true", headers={"Cookie": session_cookie})
        assert listed.status == 200
        call("GET", "/whoami/", headers={"Cookie": session_cookie})
        call(
            "POST",
            "/dpo-console/sign-out",
            body="csrf=forged",
            headers={"Cookie": session_cookie, "Content-Type": "application/x-www-form-urlencoded"},
        )
    secret = session_cookie.split("=", 1)[1]
    logged = "\n".join(access_log) + capsys.readouterr().out + capsys.readouterr().err + caplog.text
    assert access_log and all(line.split()[1].startswith(("/dpo-console", "/whoami")) for line in access_log)
    for value in (secret, csrf, pre.split("=", 1)[1], credential, credential.split("_", 2)[2], _form_csrf(page)):
        assert value not in logged


def test_the_log_scrubber_redacts_cookie_headers():
    from shared.platform.logs import redact_text

    text = redact_text("Cookie: dpo_console_token=abc; other=1\nSet-Cookie: sid=xyz; HttpOnly")
    assert "abc" not in text and "xyz" not in text and "other=1" not in text


@pytest.mark.parametrize(
    "delta, days",
    [
        (dt.timedelta(hours=23), 1),
        (dt.timedelta(days=1, minutes=1), 2),
        (dt.timedelta(hours=-1), -1),
        (dt.timedelta(days=-3), -3),
    ],
)
def test_days_left_count_any_part_of_a_day(delta, days):
    from shared.console.requests import whole_days

    assert whole_days(delta) == days


def test_the_sample_events_invoke_the_console(env, engine):
    import json

    from shared.local.server import PROJECT_ROOT, invoke

    spec = load_manifest().functions["dpo-console"]
    events = PROJECT_ROOT / "events" / "dpo-console"
    form = invoke(spec, json.loads((events / "sign-in-form.json").read_text()))
    assert form["statusCode"] == 200 and 'name="credential"' in form["body"]
    assert form["headers"]["Set-Cookie"].startswith(console.SIGN_IN_CSRF_COOKIE)
    # The samples carry placeholders: the credential is refused, the list asks to sign in.
    refused = invoke(spec, json.loads((events / "sign-in.json").read_text()))
    assert refused["statusCode"] == 401 and "Cet identifiant n&#39;est pas valide." in refused["body"]
    assert invoke(spec, json.loads((events / "requests.json").read_text()))["statusCode"] == 401
    assert invoke(spec, json.loads((events / "request.json").read_text()))["statusCode"] == 401


def test_the_audit_trail_of_the_console_holds_no_address_nor_secret(client, engine, credential):
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
    sign_in(client, credential[:-2] + "xx")
    sign_in(client, credential)
    secret = session_secret(client)
    with engine.connect() as conn:
        trail = repr(conn.execute(sa.select(audit_log).where(audit_log.c.action.like("console.%"))).all())
    for value in ("203.0.113.9", secret, credential, credential.split("_", 2)[2]):
        assert value not in trail
