"""Logs are JSON lines on stdout and never hold personal data or secrets: checked on the real output."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from shared.platform import config as config_module
from shared.platform.logs import QUIET_LIBRARY_LOGGERS, REDACTED, ScalewayContext, get_logger, redact, redact_text
from tests.fakes import sample_function as sample
from tests.fakes.sample_function import configure_env

EMAIL = "canary.leak@example.test"
PHONE_INTL = "+33 6 12 34 56 78"
PHONE_FR = "06.12.34.56.78"
IPV4 = "203.0.113.77"
IPV6 = "2001:db8::77"
NAME = "Zoé Canari"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlLWNhbmFyeQ"
STRIPE_KEY = "sk_test_canary123"
WEBHOOK_SECRET = "whsec_canary"
RESEND_KEY = "re_canary_0123456789"
TOTP_SECRET = "JBSWY3DPEHPK3PXPCANARY"
CODE = "918273"

# Fragments that must not survive either (a half-redacted value is still a leak).
FRAGMENTS = ["canar", "12 34 56 78", "12.34.56", "0612", "203.0.113", "db8::", "eyJ", "918273", "zoé"]


def emitted(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def assert_no_canary(out: str) -> None:
    lowered = out.lower()
    leaks = [fragment for fragment in FRAGMENTS if fragment.lower() in lowered]
    assert leaks == [], f"personal data leaked into the logs: {leaks}"


def test_personal_values_never_reach_the_output(capsys):
    log = get_logger()
    log.info(
        f"export step finished for {EMAIL}, phones {PHONE_INTL} / {PHONE_FR}, from {IPV4} and {IPV6}, "
        f"name={NAME}, token {JWT}, keys {STRIPE_KEY} {WEBHOOK_SECRET} {RESEND_KEY}, code={CODE}"
    )
    log.info("mail sent to %s from %s", EMAIL, IPV4)
    log.warning(
        "verification requested",
        extra={
            "email": EMAIL,
            "phone": PHONE_INTL,
            "ip_address": IPV4,
            "first_name": "Zoé",
            "last_name": "Canari",
            "contact_name": NAME,
            "authorization": f"Bearer {JWT}",
            "totp_secret": TOTP_SECRET,
            "code": CODE,
            "details": {"contacts": [{"email": EMAIL}, f"call {PHONE_FR}", {"Name": NAME}], "ips": [IPV6]},
            "step": "collect",
            "rows": 3,
        },
    )
    log.info({"event": "dict message", "recipient_email": EMAIL, "note": f"from {IPV6}"})
    try:
        raise ValueError(f"no account for {EMAIL} at {IPV4}")
    except ValueError:
        log.exception("account lookup failed")
    log.append_keys(client_ip=IPV4)
    try:
        log.info("with an appended key")
    finally:
        log.remove_keys(["client_ip"])
    logging.getLogger("privacy-functions.child").warning("child logger saw %s", EMAIL)

    out = capsys.readouterr().out
    assert_no_canary(out)
    records = emitted(out)
    # The non-personal parts survive, structured.
    first = records[0]["message"]
    assert first.startswith("export step finished for ") and "phones " in first and "name=" in first
    assert records[1]["message"].startswith("mail sent to ")
    warning = records[2]
    assert warning["level"] == "WARNING" and warning["step"] == "collect" and warning["rows"] == 3
    assert warning["email"] == warning["first_name"] == warning["code"] == REDACTED
    assert records[3]["message"]["event"] == "dict message"
    failure = records[4]
    assert failure["message"] == "account lookup failed"
    assert failure["exception_name"] == "ValueError"
    assert "Traceback" in failure["exception"] and "ValueError: no account for" in failure["exception"]
    assert records[5]["client_ip"] == REDACTED
    assert records[6]["message"].startswith("child logger saw ")


def test_logs_through_a_function_carry_service_and_correlation_id(monkeypatch, tmp_path, capsys):
    configure_env(monkeypatch, tmp_path)
    try:
        event = {
            "path": "/",
            "httpMethod": "GET",
            "headers": {"X-Request-Id": "req-0123456789abcdef", "X-Forwarded-For": IPV4},
            "multiValueHeaders": None,
            "queryStringParameters": None,
            "body": "",
            "isBase64Encoded": True,
        }
        sample.handle(event, {"memoryLimitInMb": 256, "functionName": "sample-fn", "functionVersion": "7"})
    finally:
        config_module.reset_settings()
    out = capsys.readouterr().out
    assert_no_canary(out)
    access = [r for r in emitted(out) if r["message"] == "request handled"][-1]
    assert access["service"] == "sample"
    assert access["correlation_id"] == access["function_request_id"] == "req-0123456789abcdef"
    assert access["function_name"] == "sample-fn" and access["function_memory_size"] == 256
    assert access["status"] == 200 and access["path"] == "/"


def test_library_warnings_without_a_handler_are_scrubbed_too(capsys):
    get_logger()
    record = logging.LogRecord("some.library", logging.WARNING, __file__, 1, "retrying %s", (EMAIL,), None)
    logging.lastResort.handle(record)
    err = capsys.readouterr().err
    assert "retrying" in err
    assert_no_canary(err)


def test_sdk_loggers_stay_quiet_even_when_everything_else_is_debug(capsys):
    # The Stripe SDK logs response bodies and urllib3 the URLs (an email in a Resend path) at DEBUG.
    root, previous = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.DEBUG)
    try:
        get_logger()
        for name in QUIET_LIBRARY_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        logging.getLogger("stripe").info("message='Stripe API response' body=canary.sdk@example.org")
        logging.getLogger("urllib3.connectionpool").debug("GET /contacts/canary.sdk@example.org")
        captured = capsys.readouterr()
        assert "canary.sdk" not in captured.out + captured.err
    finally:
        root.setLevel(previous)


def test_scaleway_context_adapter():
    ctx = ScalewayContext.from_scaleway(
        {"memoryLimitInMb": 128, "functionName": "whoami", "functionVersion": "2"}, "r-1"
    )
    assert (ctx.function_name, ctx.memory_limit_in_mb, ctx.function_version, ctx.aws_request_id) == (
        "whoami",
        128,
        "2",
        "r-1",
    )
    assert "whoami" in ctx.invoked_function_arn
    bare = ScalewayContext.from_scaleway(None, "r-2")
    assert bare.aws_request_id == "r-2" and bare.function_name


@pytest.mark.parametrize(
    "value",
    [
        "+33612345678",
        "0033 6 12 34 56 78",
        "06 12 34 56 78",
        "06-12-34-56-78",
        "0612345678",
        "+44 20 7946 0958",
        "+1 (555) 123-4567",
        "::1",
        "fe80::1%eth0",
        "2001:0db8:0000:0000:0000:ff00:0042:8329",
        "first.last+tag@sub.example.fr",
        "Bearer abc.def-ghi",
        "sk_live_0123456789",
        "0123456789abcdef0123456789abcdef",
        "Zm9vYmFyQmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdo",
    ],
)
def test_value_shapes_are_redacted(value):
    assert value.split()[-1] not in redact_text(f"before {value} after")
    assert redact_text(f"before {value} after").startswith("before ")


@pytest.mark.parametrize(
    "text",
    [
        "error_id 3f2a0012-4567-8901-2345-678901234567",
        "at 2026-06-12T10:20:19.650+00:00 took 12.5 ms",
        "status_code=404 idempotency_key=export:r-1 attempt 3 of 5",
        "version 1.2.3, 1234567 rows",
        "/work/main/.venv/lib/python3.11/site-packages/aws_lambda_powertools/event_handler/api_gateway.py",
    ],
)
def test_non_personal_text_is_kept(text):
    assert redact_text(text) == text


def test_redact_walks_structures_and_keys_case_insensitively():
    value = {"Email": EMAIL, "X-Forwarded-For": IPV4, "items": [{"owner_email": EMAIL}, ("ok", IPV6)], "n": 1}
    assert redact(value) == {
        "Email": REDACTED,
        "X-Forwarded-For": REDACTED,
        "items": [{"owner_email": REDACTED}, ["ok", "[redacted:ip]"]],
        "n": 1,
    }
