"""The reference privacy center's server side (the browser tests in tests/browser drive its script)."""

from __future__ import annotations

import html

import pytest

from shared.local import privacy_center
from shared.local.demo import DEMO_ACCOUNTS, create_account, seed_demo
from shared.local.server import build_app, load_manifest
from shared.ports.backends import get_storage

MARKUP = next(a for a in DEMO_ACCOUNTS if "<script>" in a["first_name"])


@pytest.fixture
def client(env, engine):
    seed_demo(engine, get_storage())
    return build_app(load_manifest()).test_client()


def _account_id(email: str) -> str:
    return next(a["id"] for a in privacy_center.demo_accounts() if a["email"] == email)


def test_the_sign_in_page_lists_the_demo_accounts_escaped_under_a_strict_policy(client):
    answer = client.get("/privacy-center/?lang=fr")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    for spec in DEMO_ACCOUNTS:
        assert html.escape(spec["email"]) in page
    assert "<script>alert" not in page and html.escape(MARKUP["first_name"]) in page
    csp = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["Cache-Control"] == "no-store"
    # Every radio button has its label.
    assert page.count('type="radio"') == page.count('<label for="account-') == len(DEMO_ACCOUNTS)


def test_sign_in_sets_a_strict_http_only_cookie_and_the_page_hands_the_token_to_its_script(client):
    answer = client.post("/privacy-center/sign-in?lang=en", data={"account_id": _account_id(MARKUP["email"])})
    assert answer.status_code == 303
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/privacy-center" in cookie
    page = client.get("/privacy-center/?lang=en").get_data(as_text=True)
    token = client.get_cookie(privacy_center.COOKIE, path="/privacy-center").value
    assert f'<meta name="pc-token" content="{token}">' in page
    assert "<script>alert" not in page and html.escape(MARKUP["first_name"]) in page
    assert '<script src="/privacy-center/static/privacy-center.js" defer></script>' in page
    # The token is a client token the functions accept.
    whoami = client.get("/whoami/", headers={"Authorization": f"Bearer {token}"})
    assert whoami.status_code == 200 and whoami.json["account_id"] == _account_id(MARKUP["email"])
    assert client.get("/privacy-center/static/privacy-center.js").status_code == 200


@pytest.mark.parametrize("account_id", ["", "not-an-account", "x" * 500])
def test_sign_in_refuses_anything_but_a_demo_account(client, engine, account_id):
    answer = client.post("/privacy-center/sign-in", data={"account_id": account_id})
    assert answer.status_code == 400 and "Set-Cookie" not in answer.headers


def test_sign_in_refuses_an_account_that_is_not_a_demo_account(client, engine):
    other = create_account(engine, email="someone.else@example.com")
    answer = client.post("/privacy-center/sign-in", data={"account_id": other["id"]})
    assert answer.status_code == 400 and "Set-Cookie" not in answer.headers


def test_a_forged_cookie_shows_the_sign_in_page(client):
    client.set_cookie(privacy_center.COOKIE, "eyJhbGciOiJIUzI1NiJ9.e30.forged", path="/privacy-center")
    page = client.get("/privacy-center/?lang=fr").get_data(as_text=True)
    assert 'name="account_id"' in page and "pc-token" not in page


def test_sign_out_forgets_the_cookie(client):
    client.post("/privacy-center/sign-in", data={"account_id": _account_id("julien.moreau@example.com")})
    answer = client.post("/privacy-center/sign-out")
    assert answer.status_code == 303
    assert client.get_cookie(privacy_center.COOKIE, path="/privacy-center") is None
