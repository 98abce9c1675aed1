"""The runtime adapter, driven with hand-built Scaleway events (the shape the platform sends)."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from shared.platform import config as config_module
from shared.platform.runtime import QueueMessage, make_message, parse_message
from shared.ports.tables import processed_messages
from tests.fakes import sample_function as sample
from tests.fakes.sample_function import configure_env

ORIGIN = "https://app.jefacturebien.test"
CONTEXT = {"memoryLimitInMb": 128, "functionName": "sample-fn", "functionVersion": "3"}


def scaleway_event(
    method: str,
    path: str,
    body: str = "",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event as Scaleway builds it: isBase64Encoded is true for any body that decodes as base64."""
    try:
        base64.b64decode(body, validate=True).decode("utf-8")
        flagged = True
    except (binascii.Error, UnicodeDecodeError, ValueError):
        flagged = False
    return {
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": None,
        "queryStringParameters": query or {},
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariable": {},
        "requestContext": {"httpMethod": method, "requestId": "", "stage": ""},
        "body": body,
        "isBase64Encoded": flagged,
    }


def call(handler, event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Invoke and check what every answer must carry; returns (answer, decoded JSON body or None)."""
    answer = handler(event, CONTEXT)
    assert set(answer) == {"statusCode", "headers", "body", "isBase64Encoded"}
    headers = answer["headers"]
    assert all(isinstance(v, str) for v in headers.values())
    assert headers["Cache-Control"] == "no-store"
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Verification-Code" in headers["Access-Control-Allow-Headers"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert headers["X-Request-Id"]
    body = json.loads(answer["body"]) if answer["body"] else None
    if body is not None:
        assert headers["Content-Type"] == "application/json"
    return answer, body


def assert_error(answer: dict[str, Any], body: Any, status: int, code: str) -> None:
    assert answer["statusCode"] == status
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.fixture
def settings(monkeypatch, tmp_path):
    yield configure_env(monkeypatch, tmp_path, CORS_ALLOW_ORIGIN=ORIGIN, MAX_BODY_BYTES="2048")
    config_module.reset_settings()


# Routing ------------------------------------------------------------------------------------


def test_get_root_with_empty_body_flagged_base64(settings):
    event = scaleway_event("GET", "/")
    assert event["isBase64Encoded"] is True  # Scaleway's heuristic for an empty body
    answer, body = call(sample.handle, event)
    assert answer["statusCode"] == 200
    assert answer["isBase64Encoded"] is False
    assert body["hello"] == "world"


def test_path_parameters_query_and_trailing_slash(settings):
    answer, body = call(sample.handle, scaleway_event("GET", "/items/42/", query={"page": "2"}))
    assert answer["statusCode"] == 200
    assert body == {"item_id": "42", "query": {"page": "2"}}


def test_unknown_route_is_404_json(settings):
    answer, body = call(sample.handle, scaleway_event("GET", "/nowhere"))
    assert_error(answer, body, 404, "not_found")


def test_wrong_method_is_405_json_with_allow(settings):
    answer, body = call(sample.handle, scaleway_event("DELETE", "/items/42"))
    assert_error(answer, body, 405, "method_not_allowed")
    assert answer["headers"]["Allow"] == "GET"


def test_not_an_http_event_is_400(settings):
    answer, body = call(sample.handle, {"some": "thing"})
    assert_error(answer, body, 400, "bad_event")


# Bodies ---------------------------------------------------------------------------------------


def test_json_body_is_parsed(settings):
    event = scaleway_event("POST", "/greetings", json.dumps({"name": "team", "count": 2}))
    assert event["isBase64Encoded"] is False
    answer, body = call(sample.handle, event)
    assert answer["statusCode"] == 201
    assert body == {"greeting": "hello team", "count": 2}


def test_real_base64_body_is_decoded(settings):
    encoded = base64.b64encode(json.dumps({"name": "team", "count": 3}).encode()).decode()
    event = scaleway_event("POST", "/greetings", encoded)
    assert event["isBase64Encoded"] is True
    answer, body = call(sample.handle, event)
    assert answer["statusCode"] == 201
    assert body["count"] == 3


def test_wrongly_flagged_plain_body_is_read_as_is(settings):
    event = scaleway_event("POST", "/greetings", json.dumps({"name": "team", "count": 4}))
    event["isBase64Encoded"] = True  # the flag is a guess: a JSON object is never valid base64
    answer, body = call(sample.handle, event)
    assert answer["statusCode"] == 201
    assert body["count"] == 4


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"name": "team", "count": 2, "secret_value": "s3cr3t-canary"}', "secret_value"),
        ('{"name": "team", "count": "s3cr3t-canary"}', "count"),
        ('{"count": 2}', "name"),
    ],
)
def test_invalid_body_names_the_field_and_never_echoes_values(settings, raw, field):
    answer, body = call(sample.handle, scaleway_event("POST", "/greetings", raw))
    assert_error(answer, body, 400, "invalid_request")
    assert field in body["error"]["message"]
    assert "s3cr3t-canary" not in answer["body"]


@pytest.mark.parametrize("raw", ['{"name": "team", ', "[1, 2]", "", "null", '"text"'])
def test_malformed_or_non_object_body_is_400(settings, raw):
    answer, body = call(sample.handle, scaleway_event("POST", "/greetings", raw))
    assert_error(answer, body, 400, "invalid_request")


def test_body_over_the_limit_is_413_and_not_routed(settings):
    raw = json.dumps({"name": "x" * 3000, "count": 1})
    answer, body = call(sample.handle, scaleway_event("POST", "/greetings", raw))
    assert_error(answer, body, 413, "payload_too_large")


def test_decoded_size_counts_not_the_base64_text(settings):
    # 1600 bytes of JSON are 2136 characters of base64: under the 2048-byte limit once decoded.
    raw = json.dumps({"name": "team", "count": 1, "pad": ""})
    raw = raw.replace('""', '"' + "p" * (1600 - len(raw)) + '"')
    encoded = base64.b64encode(raw.encode()).decode()
    assert len(encoded) > settings.max_body_bytes >= len(raw)
    answer, body = call(sample.handle, scaleway_event("POST", "/greetings", encoded))
    assert_error(answer, body, 400, "invalid_request")  # reached the model: `pad` is unknown
    assert "pad" in body["error"]["message"]


# Errors -------------------------------------------------------------------------------------


def test_app_error_keeps_status_code_and_headers(settings):
    answer, body = call(sample.handle, scaleway_event("GET", "/conflict"))
    assert_error(answer, body, 409, "conflict")
    answer, body = call(sample.handle, scaleway_event("GET", "/slow-down"))
    assert_error(answer, body, 429, "too_many_requests")
    assert answer["headers"]["Retry-After"] == "60"


def test_unhandled_error_is_500_with_an_error_id_found_in_the_logs(settings, capsys):
    answer, body = call(sample.handle, scaleway_event("GET", "/boom"))
    assert answer["statusCode"] == 500
    error = body["error"]
    assert error["code"] == "internal_error"
    assert str(uuid.UUID(error["error_id"])) == error["error_id"]
    assert "canary" not in answer["body"] and "RuntimeError" not in answer["body"]
    out = capsys.readouterr().out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    logged = [r for r in records if r.get("error_id") == error["error_id"]]
    assert len(logged) == 1
    assert "RuntimeError: lookup failed for" in logged[0]["exception"]
    assert "canary.boom@example.test" not in out


def test_unreadable_configuration_is_500_not_a_crash(settings, monkeypatch):
    monkeypatch.setenv("S3_REGION", "us-east-1")
    config_module.reset_settings()
    answer = sample.handle(scaleway_event("GET", "/"), CONTEXT)
    assert answer["statusCode"] == 500
    assert json.loads(answer["body"])["error"]["code"] == "internal_error"
    assert answer["headers"]["Cache-Control"] == "no-store"


# Headers --------------------------------------------------------------------------------------


def test_cors_preflight(settings):
    event = scaleway_event(
        "OPTIONS",
        "/greetings",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    answer, body = call(sample.handle, event)
    assert answer["statusCode"] == 204
    assert body is None
    assert set(answer["headers"]["Access-Control-Allow-Methods"].split(", ")) == {"POST", "OPTIONS"}


def test_preflight_of_an_unknown_route_is_404(settings):
    answer, body = call(sample.handle, scaleway_event("OPTIONS", "/nowhere"))
    assert_error(answer, body, 404, "not_found")


def test_headers_are_case_insensitive(settings):
    headers = {"x-forwarded-for": "203.0.113.9, 10.0.0.1", "X-VERIFICATION-CODE": "123456"}
    answer, body = call(sample.handle, scaleway_event("GET", "/caller", headers=headers))
    assert body == {"client_ip": "203.0.113.9", "verification_code_sent": True}


def test_request_id_is_echoed_or_generated(settings):
    given = "req-0123456789abcdef"
    answer, body = call(sample.handle, scaleway_event("GET", "/", headers={"x-request-id": given}))
    assert answer["headers"]["X-Request-Id"] == given == body["request_id"]
    # Not an identifier (here an e-mail address): replaced, never echoed.
    answer, body = call(sample.handle, scaleway_event("GET", "/", headers={"X-Request-Id": "a@b.example"}))
    assert answer["headers"]["X-Request-Id"] == body["request_id"]
    uuid.UUID(answer["headers"]["X-Request-Id"])


# CRON -----------------------------------------------------------------------------------------


def test_cron_invocation_runs_the_job_with_its_input(settings, capsys):
    sample.CRON_CALLS.clear()
    job_input = {"job": "sample-cron", "older_than_days": 30}
    answer, body = call(sample.cron.handle, scaleway_event("POST", "/", json.dumps(job_input)))
    assert answer["statusCode"] == 200
    assert body == {"rotated": 30}
    payload, ctx = sample.CRON_CALLS[0]
    assert payload == job_input
    assert ctx.function_name == "sample-fn" and ctx.aws_request_id == answer["headers"]["X-Request-Id"]
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(r["message"] == "cron job started" and r["job"] == "sample-cron" for r in records)


@pytest.mark.parametrize("body", ["", json.dumps({"job": "another-job"}), json.dumps({"older_than_days": 1})])
def test_cron_input_naming_no_or_another_job_runs_nothing(settings, body):
    sample.CRON_CALLS.clear()
    answer, payload = call(sample.cron.handle, scaleway_event("POST", "/", body))
    assert_error(answer, payload, 400, "unknown_job")
    assert sample.CRON_CALLS == []


def test_cron_input_must_be_an_object(settings):
    answer, body = call(sample.cron.handle, scaleway_event("POST", "/", "[1]"))
    assert_error(answer, body, 400, "invalid_request")


# Queues ---------------------------------------------------------------------------------------


@pytest.fixture
def queue_env(env, monkeypatch):
    monkeypatch.setenv("CORS_ALLOW_ORIGIN", ORIGIN)
    config_module.reset_settings()
    sample.WORKER_RUNS.clear()
    yield config_module.get_settings()
    sample.WORKER_RUNS.clear()


def deliver(message: dict[str, Any] | str) -> tuple[dict[str, Any], Any]:
    raw = message if isinstance(message, str) else json.dumps(message)
    return call(sample.worker.handle, scaleway_event("POST", "/", raw))


def processed_keys(engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(processed_messages.c.idempotency_key, processed_messages.c.function))
        return {row.idempotency_key: row.function for row in rows}


def test_queue_message_runs_once_and_duplicates_are_suppressed(queue_env, engine):
    message = make_message("sample.run", "sample:job-1", {"a": 1})
    answer, body = deliver(message)
    assert answer["statusCode"] == 200
    assert body == {"status": "processed", "result": {"items": 1}}
    assert processed_keys(engine) == {"sample:job-1": "sample-worker"}

    answer, body = deliver(message)
    assert answer["statusCode"] == 200
    assert body == {"status": "duplicate"}
    assert len(sample.WORKER_RUNS) == 1


def test_failed_worker_is_retried_and_not_recorded(queue_env, engine):
    failing = make_message("sample.run", "sample:job-2", {"fail": True})
    answer, body = deliver(failing)
    assert answer["statusCode"] == 500  # >= 300: Scaleway delivers it again
    assert body["error"]["code"] == "internal_error"
    assert processed_keys(engine) == {}
    answer, body = deliver(make_message("sample.run", "sample:job-2", {"fail": False}))
    assert body["status"] == "processed"
    assert len(sample.WORKER_RUNS) == 2


def test_concurrent_delivery_recording_the_key_first_is_not_an_error(queue_env, engine):
    answer, body = deliver(make_message("sample.race", "sample:job-3"))
    assert answer["statusCode"] == 200
    assert body["status"] == "processed"
    assert processed_keys(engine) == {"sample:job-3": "sample-worker"}
    with engine.connect() as conn:
        stored = conn.execute(sa.select(processed_messages.c.result)).scalar_one()
    assert stored == {"by": "the other delivery"}  # the first record stays


@pytest.mark.parametrize(
    "raw",
    [
        "not json at all",
        json.dumps({"type": "sample.run", "payload": {}}),  # no key
        json.dumps({"type": "sample.run", "idempotency_key": "k-4", "payload": {}, "extra": 1}),
        json.dumps({"type": "Sample Run", "idempotency_key": "k-5", "payload": {}}),
        json.dumps({"type": "sample.run", "idempotency_key": "k-6", "payload": "not an object"}),
    ],
)
def test_malformed_queue_message_is_400_and_not_run(queue_env, engine, raw):
    answer, body = deliver(raw)
    assert_error(answer, body, 400, "invalid_request")
    assert sample.WORKER_RUNS == []
    assert processed_keys(engine) == {}


def test_malformed_message_is_logged_with_its_key_only(queue_env, capsys):
    raw = json.dumps({"type": "sample.run", "idempotency_key": "k-7", "payload": {}, "email": "canary.q@example.test"})
    deliver(raw)
    out = capsys.readouterr().out
    warnings = [json.loads(line) for line in out.splitlines() if '"malformed queue message"' in line]
    assert warnings and warnings[0]["idempotency_key"] == "k-7"
    assert "canary.q" not in out


def test_message_of_an_unhandled_type_is_400(queue_env, engine):
    answer, body = deliver(make_message("other.type", "k-8"))
    assert_error(answer, body, 400, "unknown_message_type")
    assert processed_keys(engine) == {}


def test_make_message_and_parse_message_round_trip():
    message = make_message("export.run", "export:r-1", {"request_id": "r-1"})
    assert message == {"type": "export.run", "idempotency_key": "export:r-1", "payload": {"request_id": "r-1"}}
    assert parse_message(json.dumps(message).encode()) == QueueMessage(**message)
    with pytest.raises(ValidationError):
        make_message("export.run", "", {})
    with pytest.raises(ValidationError):
        make_message("export.run", "key with spaces", {})


# Text no database column holds (found by the contract fuzzing: PostgreSQL refuses NUL in text) ----------


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "a\\u0000b", "count": 1}',
        '{"name": "\\ud800", "count": 1}',
        '{"name": "team", "count": 1, "x\\u0000": 1}',
    ],
)
def test_a_body_holding_nul_or_an_unpaired_surrogate_is_400_before_any_route(settings, raw):
    answer, body = call(sample.handle, scaleway_event("POST", "/greetings", raw))
    assert_error(answer, body, 400, "invalid_request")
    assert "NUL" in body["error"]["message"]


def test_a_query_holding_nul_is_400(settings):
    answer, body = call(sample.handle, scaleway_event("GET", "/items/42", query={"page": "2\x00"}))
    assert_error(answer, body, 400, "invalid_request")


def test_paired_surrogates_are_ordinary_text(settings):
    answer, body = call(sample.handle, scaleway_event("POST", "/greetings", '{"name": "\\ud83d\\ude00", "count": 1}'))
    assert answer["statusCode"] < 400, body
