"""Answers read over real HTTP from Scaleway's own local emulator: the headers and bodies we set survive."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator

import pytest
from scaleway_functions_python.local.serving import LocalFunctionServer
from werkzeug.serving import make_server

from shared.platform import config as config_module
from tests.fakes import sample_function as sample
from tests.fakes.http_fake import serving
from tests.fakes.sample_function import configure_env

ORIGIN = "https://app.jefacturebien.test"


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[str, int]]:
    local = LocalFunctionServer()
    local.add_handler(sample.handle, relative_url="/")  # mounted at the root: paths reach routes unprefixed
    server = make_server("127.0.0.1", 0, local.app, threaded=True)
    with serving(server):
        yield "127.0.0.1", server.server_port


@pytest.fixture
def settings(monkeypatch, tmp_path):
    yield configure_env(monkeypatch, tmp_path, CORS_ALLOW_ORIGIN=ORIGIN, MAX_BODY_BYTES="2048")
    config_module.reset_settings()


def request(address: tuple[str, int], method: str, path: str, body: str | None = None, headers=None):
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def assert_common_headers(headers) -> None:
    assert headers["Access-Control-Allow-Origin"] == ORIGIN  # ours, not the emulator's "*"
    assert headers["Cache-Control"] == "no-store"
    assert "X-Verification-Code" in headers["Access-Control-Allow-Headers"]
    uuid.UUID(headers["X-Request-Id"])  # the platform's request id (the emulator sets it on ingress)


def test_success_headers_survive(emulator, settings):
    status, headers, raw = request(emulator, "GET", "/", headers={"Origin": ORIGIN})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert_common_headers(headers)
    body = json.loads(raw)
    assert body["hello"] == "world"
    assert body["request_id"] == headers["X-Request-Id"]


def test_json_post_and_status_survive(emulator, settings):
    status, headers, raw = request(
        emulator, "POST", "/greetings", json.dumps({"name": "team", "count": 2}), {"Content-Type": "application/json"}
    )
    assert status == 201
    assert json.loads(raw) == {"greeting": "hello team", "count": 2}
    assert_common_headers(headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/nowhere", None, 404, "not_found"),
        ("DELETE", "/items/1", None, 405, "method_not_allowed"),
        ("POST", "/greetings", '{"name": "team", "count": 2, "x": 1}', 400, "invalid_request"),
        ("POST", "/greetings", '{"name": ', 400, "invalid_request"),
        ("POST", "/greetings", json.dumps({"name": "x" * 3000, "count": 1}), 413, "payload_too_large"),
        ("GET", "/conflict", None, 409, "conflict"),
    ],
)
def test_error_statuses_and_bodies_survive(emulator, settings, method, path, body, status, code):
    got_status, headers, raw = request(emulator, method, path, body, {"Content-Type": "application/json"})
    assert got_status == status
    assert headers["Content-Type"] == "application/json"
    assert_common_headers(headers)
    assert json.loads(raw)["error"]["code"] == code


def test_internal_error_survives_with_its_error_id(emulator, settings):
    status, headers, raw = request(emulator, "GET", "/boom")
    assert status == 500
    error = json.loads(raw)["error"]
    assert error["code"] == "internal_error"
    uuid.UUID(error["error_id"])
    assert_common_headers(headers)


def test_preflight_survives(emulator, settings):
    status, headers, raw = request(
        emulator, "OPTIONS", "/greetings", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert status == 204
    assert raw == b""
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert_common_headers(headers)
