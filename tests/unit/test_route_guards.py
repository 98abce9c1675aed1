"""Every route of every deployed function declares who may call it.

A route whose guards do not identify the caller (client token, DPO credential, a private function's
trigger) must be on the explicit list below, with what protects it instead; a route marked public that
is not on the list fails too, so opening a route is always a visible change of this file.
"""

from __future__ import annotations

import sys

import pytest

from shared.local.server import load_handler, load_manifest
from shared.platform.guards import declared_routes
from shared.platform.http import HttpFunction
from shared.platform.openapi import CONTRACT_REASON, OPENAPI_PATH

# (function, method, path): why it needs no caller identity.
PUBLIC_ROUTES = {
    ("export-on-request", "GET", "/<request_id>/download"): "signed download link",
    ("withdraw-consent", "GET", "/unsubscribe"): "signed unsubscribe link",
    ("withdraw-consent", "POST", "/unsubscribe"): "signed unsubscribe link (RFC 8058 one-click)",
    ("stripe-webhook", "POST", "/"): "Stripe-Signature checked on every event",
    ("dpo-console", "GET", "/"): "the console's sign-in form: shows nothing",
    (
        "dpo-console",
        "POST",
        "/sign-in",
    ): "the console's sign-in: the DPO credential posted is checked, failures rate-limited",
    # Every HTTP function's health route (shared.platform.health): the version and "database": "ok", nothing else.
    ("whoami", "GET", "/healthz"): "health check, nothing personal",
    ("stripe-webhook", "GET", "/healthz"): "health check, nothing personal",
    ("withdraw-consent", "GET", "/healthz"): "health check, nothing personal",
    ("erase-account", "GET", "/healthz"): "health check, nothing personal",
    ("export-on-request", "GET", "/healthz"): "health check, nothing personal",
    ("dpo-desk", "GET", "/healthz"): "health check, nothing personal",
    ("legal-holds", "GET", "/healthz"): "health check, nothing personal",
    ("rectify-account", "GET", "/healthz"): "health check, nothing personal",
    ("privacy-notice", "GET", "/healthz"): "health check, nothing personal",
    ("dpo-console", "GET", "/healthz"): "health check, nothing personal",
}
MANIFEST = load_manifest()


def _apps(spec) -> list[HttpFunction]:
    load_handler(spec)
    module_name = "pf_" + spec.handler.rpartition(".")[0].replace("/", "_").replace("-", "_")
    module = sys.modules[module_name]
    apps = [value for value in vars(module).values() if isinstance(value, HttpFunction)]
    assert apps, f"{spec.handler} defines no function"
    return apps


def _all_routes():
    routes = []
    for spec in MANIFEST.functions.values():
        for app in _apps(spec):
            routes.extend(declared_routes(app))
    return routes


ROUTES = _all_routes()


def test_every_function_of_serverless_yml_was_read():
    assert len(MANIFEST.functions) >= 13
    names = {route.function for route in ROUTES}
    assert {
        "export-on-request",
        "erase-account",
        "withdraw-consent",
        "whoami",
        "stripe-webhook",
        "rectify-account",
        "privacy-notice",
    } <= names
    assert len(ROUTES) >= 25


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.function} {r.method} {r.path}")
def test_each_route_declares_who_may_call_it(route):
    guard = route.authenticated_by
    key = (route.function, route.method, route.path)
    assert guard is not None, f"{key} has no guard: declare one, or list it in PUBLIC_ROUTES with its reason"
    if guard.kind == "public" and route.path == OPENAPI_PATH and guard.label == CONTRACT_REASON:
        return  # every HTTP function serves its contract (shared.platform.openapi): routes and models only
    if guard.kind == "public":
        assert key in PUBLIC_ROUTES, f"{key} is public but not on the list of routes public on purpose"
    else:
        assert key not in PUBLIC_ROUTES, f"{key} is listed public but declares {guard.kind}"


def test_the_public_list_names_only_routes_that_exist():
    keys = {(r.function, r.method, r.path) for r in ROUTES}
    assert set(PUBLIC_ROUTES) <= keys


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.function} {r.method} {r.path}")
def test_guards_stand_in_a_meaningful_order(route):
    kinds = [guard.kind for guard in route.guards]
    if "step_up" in kinds or "gpc" in kinds:
        assert "client_token" in kinds, "step-up and GPC need the client token first"
        assert kinds.index("client_token") < min(kinds.index(k) for k in ("step_up", "gpc") if k in kinds)
    if "client_token" in kinds:
        assert "gpc" in kinds, "every client-area route honours the Global Privacy Control signal"
    if "body" in kinds and "step_up" in kinds:
        assert kinds.index("body") < kinds.index("step_up"), "a bad body must not cost a step-up code"


def test_a_route_without_a_guard_is_seen():
    app = HttpFunction("unguarded")

    @app.get("/open")
    def open_route() -> dict:
        return {}

    (route,) = declared_routes(app)
    assert route.authenticated_by is None and route.guards == ()


def test_the_console_session_opens_the_console_only_and_the_console_takes_nothing_else():
    for route in ROUTES:
        kinds = [guard.kind for guard in route.guards]
        if route.function == "dpo-console":
            assert "client_token" not in kinds and "dpo_credential" not in kinds, route
            if (route.function, route.method, route.path) not in PUBLIC_ROUTES and route.path != OPENAPI_PATH:
                assert kinds[0] == "console_session", route
            if route.method == "POST" and "console_session" in kinds:
                assert "csrf" in kinds, f"{route}: every console form carries its CSRF token"
        else:
            assert "console_session" not in kinds, f"{route}: a console session never opens another function"
