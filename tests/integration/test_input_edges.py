"""Input edges (issue 14, section 4): each answered 400 (or 401), never 500, and logs that name no secret.

What must hold:
- a date at the calendar's edge, before the policy, or in the future answers 400 (received_at),
  and an operator's --at/--since at the calendar's edge is a clear ValueError;
- a string or a number where a boolean is expected is refused, on every request model;
- a step-up code in non-ASCII digits answers 401 invalid_code;
- base32 secrets of either case are redacted; the access log names the route's template,
  never the raw path (ids) nor the query string (link tokens), here and in the local server;
- the local `/_objects/` route answers 400 on a key with `..`.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import time
import typing
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote

import pytest
from pydantic import BaseModel
from werkzeug.serving import make_server

from shared.identity.client import issue_dev_token
from shared.identity.dpo import create_dpo_credential
from shared.local import server as local_server
from shared.local.demo import create_account
from shared.local.server import build_app, http_event, invoke, load_manifest
from shared.platform.clock import parse_date_argument
from shared.platform.config import get_settings
from shared.platform.errors import ValidationFailed
from shared.platform.http import StrictModel, validated
from shared.platform.logs import redact_text
from shared.ports.db import get_engine, utcnow
from shared.ports.storage.folder import _sign, local_signing_key
from tests.fakes.http_fake import serving

MANIFEST = load_manifest()
ROOT = Path(__file__).resolve().parents[2]
EDGE = "0001-01-01T00:00:00+14:00"
TOKEN_CANARY = "canaryLinkTok3n9"


def call(
    function: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: str = "",
    headers: dict | None = None,
    query: dict | None = None,
) -> dict:
    extra = dict(headers or {})
    if token:
        extra["Authorization"] = f"Bearer {token}"
    return invoke(MANIFEST.functions[function], http_event(method, path, body=body, headers=extra, query=query))


# --- Dates ------------------------------------------------------------------------------------------------


def test_received_at_is_bounded(env):
    engine = get_engine()
    account = create_account(engine)
    with engine.begin() as conn:
        dpo = create_dpo_credential(conn, "dpo")
    body = {"account_id": account["id"], "channel": "post", "identity_verification": "identity_document"}
    for moment in (
        EDGE,
        "9999-12-31T23:59:59-14:00",
        "2020-01-01T00:00:00Z",
        (utcnow() + dt.timedelta(days=2)).isoformat(),
        "2026-13-01T00:00:00Z",
        "2026-12-01",
    ):
        response = call(
            "export-on-request", "POST", "/dpo/requests", token=dpo, body=json.dumps({**body, "received_at": moment})
        )
        assert response["statusCode"] == 400, (moment, response["body"])
        assert json.loads(response["body"])["error"]["code"] == "invalid_request"
    fine = (utcnow() - dt.timedelta(days=1)).isoformat()
    response = call(
        "export-on-request", "POST", "/dpo/requests", token=dpo, body=json.dumps({**body, "received_at": fine})
    )
    assert response["statusCode"] == 202, response["body"]


def test_operator_dates_at_the_calendar_edge_are_clear_errors():
    with pytest.raises(ValueError, match="--at"):
        parse_date_argument(EDGE, name="--at")
    assert parse_date_argument("2026-12-01", name="--since").isoformat() == "2026-12-01T00:00:00+00:00"


# --- Strict booleans -----------------------------------------------------------------------------------


def _request_models() -> list[type[StrictModel]]:
    models = []
    for spec in MANIFEST.functions.values():
        if not spec.is_http:
            continue
        module_path = ROOT / (spec.handler.rpartition(".")[0] + ".py")  # functions/<name>/handler.py
        module_spec = importlib.util.spec_from_file_location(f"edges_{spec.name.replace('-', '_')}", module_path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        models += [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, StrictModel) and v is not StrictModel
        ]
    return models


def test_every_boolean_field_refuses_strings_and_numbers():
    fields = [
        (model, name)
        for model in _request_models()
        for name, info in model.model_fields.items()
        if bool in (info.annotation, *typing.get_args(info.annotation))
    ]
    assert fields, "no boolean field found: the probe is broken"
    for model, name in fields:
        for wrong in ("yes", "true", 1, 0, "1"):
            with pytest.raises(ValidationFailed):
                validated(model, {**_minimal(model), name: wrong})
        validated(model, {**_minimal(model), name: True})


def _minimal(model: type[BaseModel]) -> dict:
    samples = {"purpose": "newsletter", "reason_code": "dpo_request", "account_id": "a" * 8}
    return {name: samples[name] for name, info in model.model_fields.items() if info.is_required()}


def test_object_yes_is_refused_by_withdraw_consent(env):
    account = create_account(get_engine())
    token = issue_dev_token(account["id"])
    for wrong in ("yes", 1):
        response = call(
            "withdraw-consent", "POST", "/", token=token, body=json.dumps({"purpose": "newsletter", "object": wrong})
        )
        assert response["statusCode"] == 400, response["body"]


# --- Step-up codes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["١٢٣٤٥٦", "１２３４５６", "۱۲۳۴۵۶", "123456\n"])
def test_non_ascii_digits_are_an_invalid_code(env, code):
    account = create_account(get_engine(), with_2fa=True)
    response = call(
        "export-on-request", "POST", "/", token=issue_dev_token(account["id"]), headers={"X-Verification-Code": code}
    )
    assert response["statusCode"] == 401, response["body"]
    assert json.loads(response["body"])["error"]["code"] == "invalid_code"


# --- Logs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "JBSWY3DPEHPK3PXPCANARY2345",
        "jbswy3dpehpk3pxpcanary2345",
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        "KRSXG5BAMJQXGZJTGIQGS4ZAMRXW4ZI=",
    ],
)
def test_base32_secrets_of_any_case_are_redacted(secret):
    text = redact_text(f"seeding authenticator with {secret} now")
    assert secret not in text and secret.rstrip("=") not in text


@pytest.mark.parametrize(
    "kept", ["export-requests", "enforce-retention", "payment_records.archive", "ERASURE_BATCH_SIZE"]
)
def test_identifiers_are_not_taken_for_base32(kept):
    assert redact_text(kept) == kept


def test_access_log_names_the_route_template(env, capsys):
    request_id = "3f2b8c1e-9d4a-4f6b-8e2a-1c5d7e9f0a2b"
    call("export-on-request", "GET", f"/{request_id}/download", query={"token": TOKEN_CANARY})
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [r for r in lines if r.get("message") == "request handled"][-1]
    assert access["path"] == "/<request_id>/download"
    assert request_id not in out and TOKEN_CANARY not in out


def test_local_server_access_log_has_no_path_nor_query(env):
    app = build_app(MANIFEST, ROOT)
    lines: list[str] = []
    server = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=local_server.access_log_handler(app, lines.append)
    )
    with serving(server):
        request_id = "6a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
        for path in (
            f"/export-on-request/{request_id}/download?token={TOKEN_CANARY}",
            f"/_objects/exports-bucket/exports/{request_id}.zip?expires=1&signature={TOKEN_CANARY}",
            f"/nowhere/{request_id}?token={TOKEN_CANARY}",
        ):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{path}", timeout=10)  # noqa: S310
            except urllib.error.HTTPError:
                pass
    text = "\n".join(lines)
    assert len(lines) >= 3, lines
    assert TOKEN_CANARY not in text and request_id not in text
    assert "GET /_objects/<bucket>/<path:key> 403" in text


@pytest.mark.parametrize("key", ["a/../b.zip", "..", "a/%2E%2E/b", "a\\b", "a//b"])
def test_local_objects_route_refuses_dot_dot_with_400(env, key):
    """Even under a valid signature (a link for that very key): 400, not 500."""
    bucket = get_settings().exports_bucket
    expires = int(time.time()) + 60
    signature = _sign(local_signing_key(get_settings()), bucket, unquote(key), expires)
    client = build_app(MANIFEST, ROOT).test_client()
    response = client.get(f"/_objects/{bucket}/{key}?expires={expires}&signature={signature}")
    assert response.status_code == 400, response.status_code
