"""Structured logging that never writes personal data.

One Powertools Logger per process (JSON lines on stdout). Its handler carries
`PiiFilter`, which rewrites every record before it is formatted: the message,
structured extras (recursively) and the exception traceback are scrubbed of
e-mail addresses, phone numbers, IP addresses, tokens and secrets, and values
under personal keys (email, name, ip, token, code, ...) become "[redacted]".
The formatter scrubs the final document once more, so keys appended with
`append_keys` are covered too.

Free text cannot be scanned for people's names: log names only under a key
(they are redacted), never inside a sentence.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

REDACTED = "[redacted]"
LOGGER_NAME = "privacy-functions"

# Keys whose value is personal or secret whatever it looks like (compared lower-case, "-" as "_").
SENSITIVE_KEYS = frozenset(
    {
        "email",
        "e_mail",
        "email_address",
        "mail",
        "phone",
        "phone_number",
        "mobile",
        "telephone",
        "tel",
        "ip",
        "ip_address",
        "client_ip",
        "remote_addr",
        "remote_ip",
        "source_ip",
        "x_forwarded_for",
        "forwarded",
        "x_envoy_external_address",
        "name",
        "first_name",
        "last_name",
        "full_name",
        "contact_name",
        "display_name",
        "given_name",
        "family_name",
        "surname",
        "username",
        "user_name",
        "address",
        "postal_address",
        "street",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "bearer",
        "jwt",
        "authorization",
        "cookie",
        "set_cookie",
        "password",
        "passwd",
        "pwd",
        "code",
        "verification_code",
        "otp",
        "totp",
        "totp_code",
        "secret",
        "totp_secret",
        "client_secret",
        "webhook_secret",
        "api_key",
        "apikey",
        "secret_key",
        "private_key",
        "signing_key",
        "signature",
        "stripe_signature",
        "iban",
    }
)
SENSITIVE_SUFFIXES = ("_email", "_phone", "_token", "_secret", "_password", "_ip")

_SENSITIVE_TEXT_KEYS = (
    r"[\w-]*(?:secret|token|passw(?:or)?d|api[_-]?key|authorization)[\w-]*"
    r"|e[_-]?mail(?:_address)?|phone(?:_number)?|mobile|ip(?:_address)?|client_ip"
    r"|verification_code|totp_code|otp_code|totp|otp|code"
)
_NAME_TEXT_KEYS = r"(?:first|last|full|contact|display)_?name|name"

# `key=value`, `key: value`, `"key": "value"` in free text; values already redacted are left alone.
_KEY_VALUE = re.compile(
    rf"""(?ix)(?<![\w-])(?P<key>{_SENSITIVE_TEXT_KEYS})(?P<sep>["']?\s*[:=]\s*)
    (?!\[redacted)(?:(?P<q>["'])(?:(?!(?P=q)).)*(?P=q)|[^\s,;&}}\]"']+)"""
)
# Names contain spaces: an unquoted value runs to the next delimiter.
_NAME_VALUE = re.compile(
    rf"""(?ix)(?<![\w-])(?P<key>{_NAME_TEXT_KEYS})(?P<sep>["']?\s*[:=]\s*)
    (?!\[redacted)(?:(?P<q>["'])(?:(?!(?P=q)).)*(?P=q)|[^,;&}}\]"'\n]+)"""
)
# A Cookie or Set-Cookie header quoted in text: every cookie of the line goes (session cookies are credentials).
_COOKIE_HEADER = re.compile(r"(?im)(?<![\w-])(?P<name>(?:set-)?cookie)(?P<sep>\s*[:=]\s*)(?!\[redacted)[^\r\n]+")
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+(?:\.[\w-]*)?")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/-]+=*")
_API_KEY = re.compile(r"\b(?:(?:sk|rk|pk)_(?:live|test)_\w+|(?:sk|rk)_\w{6,}|whsec_\w+|re_\w{8,})")
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
_PHONE_INTL = re.compile(r"(?<![\w+])(?:\+|00)\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,6}(?!\w)")
_PHONE_FR = re.compile(r"(?<![\w+])0[1-9](?P<sep>[\s.-]?)\d{2}(?:(?P=sep)\d{2}){3}(?!\w)")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:|:)(?:[0-9A-Fa-f]{0,4}:){1,7}[0-9A-Fa-f]{0,4}(?:%[\w.]+)?(?![\w:])")
_LONG_HEX = re.compile(r"\b[0-9A-Fa-f]{32,}\b")
_LONG_B64 = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{32,}={0,2}")
# Base32 (TOTP secrets), either case: 16+ characters of one case mixing letters and digits 2-7.
_BASE32 = re.compile(r"(?<![\w+/=-])(?:[A-Z2-7]{16,}|[a-z2-7]{16,})={0,6}(?![\w+/-])")
# Record ids (and the error ids quoted to support) are UUIDs: kept intact, never read as phone digits.
_UUID = re.compile(r"(\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b)")


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    return "[redacted:phone]" if 8 <= digits <= 17 else match.group(0)


def _mixed_secret(match: re.Match[str]) -> str:
    # A random secret mixes cases and digits; identifiers and paths usually do not.
    text = match.group(0)
    mixed = any(c.isupper() for c in text) and any(c.islower() for c in text) and any(c.isdigit() for c in text)
    return "[redacted:secret]" if mixed else text


def _base32_secret(match: re.Match[str]) -> str:
    # Base32 has one case: a run of letters mixed with digits 2-7 is a secret (a TOTP seed), any case.
    text = match.group(0).rstrip("=")
    mixed = sum(c.isalpha() for c in text) >= 4 and any(c.isdigit() for c in text)
    return "[redacted:secret]" if mixed else match.group(0)


_TEXT_RULES: tuple[tuple[re.Pattern[str], Any], ...] = (
    (_COOKIE_HEADER, r"\g<name>\g<sep>[redacted:cookie]"),
    (_JWT, "[redacted:token]"),
    (_AUTH_SCHEME, r"\1 [redacted:token]"),
    (_API_KEY, "[redacted:secret]"),
    (_EMAIL, "[redacted:email]"),
    (_IPV4, lambda m: "[redacted:ip]" if _valid_ip(m.group(0)) else m.group(0)),
    (_IPV6, lambda m: "[redacted:ip]" if _valid_ip(m.group(0)) else m.group(0)),
    (_PHONE_INTL, _phone),
    (_PHONE_FR, "[redacted:phone]"),
    (_LONG_HEX, "[redacted:secret]"),
    (_LONG_B64, _mixed_secret),
    (_BASE32, _base32_secret),
)


def find_personal_data(text: str) -> str | None:
    """What personal data `text` visibly holds ("an email address", ...), or None. Secrets are not looked for."""
    text = _UUID.sub(" ", text)
    if _EMAIL.search(text):
        return "an email address"
    if any(_valid_ip(m.group(0)) for pattern in (_IPV4, _IPV6) for m in pattern.finditer(text)):
        return "an IP address"
    if _PHONE_FR.search(text) or any(_phone(m) != m.group(0) for m in _PHONE_INTL.finditer(text)):
        return "a phone number"
    return None


def _key_value(match: re.Match[str]) -> str:
    return f"{match.group('key')}{match.group('sep')}{REDACTED}"


def is_sensitive_key(key: object) -> bool:
    normalised = str(key).strip().lower().replace("-", "_")
    return normalised in SENSITIVE_KEYS or normalised.endswith(SENSITIVE_SUFFIXES)


def redact_text(text: str) -> str:
    """`text` with every personal or secret value it visibly holds replaced."""
    parts = _UUID.split(text)
    for index in range(0, len(parts), 2):  # odd indexes are the UUIDs
        for pattern, replacement in _TEXT_RULES:
            parts[index] = pattern.sub(replacement, parts[index])
    # Values under personal keys go whatever their shape, UUIDs included (secret keys can be UUIDs).
    text = _KEY_VALUE.sub(_key_value, "".join(parts))
    return _NAME_VALUE.sub(_key_value, text)


def redact(value: Any) -> Any:
    """A copy of `value` safe to log: sensitive keys redacted, strings scrubbed, recursively."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (bool, int, float, type(None), dt.date, dt.time, uuid.UUID)):
        return value
    if isinstance(value, Mapping):
        # Keys can be values too (a dict keyed by e-mail address): scrub them as text.
        return {
            (redact_text(k) if isinstance(k, str) else k): REDACTED if is_sensitive_key(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"[{len(value)} bytes]"
    return redact_text(str(value))


_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class PiiFilter(logging.Filter):
    """Scrubs a record in place (message, extras, traceback); never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, Mapping):
            record.msg = redact(record.msg)
        else:
            try:
                text = record.getMessage()
            except Exception:  # a bad format string must not leak its arguments
                text = str(record.msg)
            record.msg = redact_text(text)
        record.args = None
        for key in [k for k in record.__dict__ if k not in _RECORD_ATTRIBUTES]:
            value = record.__dict__[key]
            record.__dict__[key] = REDACTED if is_sensitive_key(key) else redact(value)
        if record.exc_info and record.exc_info[1] is not None:
            # Exception messages carry values: render the traceback now, scrubbed, and drop the live
            # exception so no formatter renders it again. Powertools reads the `exception` extra.
            kind = record.exc_info[0].__name__ if record.exc_info[0] else "Exception"
            text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
            record.exc_text = text
            record.__dict__["exception"] = text
            record.__dict__["exception_name"] = kind
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools JSON, with the complete document scrubbed before it is serialised."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]  # Powertools passes its dict
        return super().serialize(redact(log))


class StdoutHandler(logging.StreamHandler):
    """Writes to the `sys.stdout` of the moment (test capture replaces it), like logging's lastResort."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


_logger: Logger | None = None
_logger_lock = threading.Lock()
# Libraries that log request and response bodies, URLs or SQL parameters at DEBUG or INFO (a customer's name
# sent to Stripe, an email in a Resend URL): held at WARNING whatever LOG_LEVEL or the root logger says.
QUIET_LIBRARY_LOGGERS = ("stripe", "urllib3", "requests", "resend", "botocore", "boto3", "s3transfer", "sqlalchemy")


def get_logger() -> Logger:
    """The process logger (level from LOG_LEVEL); the runtime sets its service and correlation id per call."""
    global _logger
    with _logger_lock:
        if _logger is None:
            handler = StdoutHandler()
            handler.addFilter(PiiFilter())
            _logger = Logger(
                service=LOGGER_NAME,
                logger_handler=handler,
                logger_formatter=RedactingFormatter(utc=True, use_rfc3339=True),
            )
            for name in QUIET_LIBRARY_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
            # Library warnings with no handler configured go to logging.lastResort: scrub those too.
            if logging.lastResort is not None and not any(isinstance(f, PiiFilter) for f in logging.lastResort.filters):
                logging.lastResort.addFilter(PiiFilter())
        return _logger


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def request_id_from(headers: Mapping[str, Any] | None) -> str:
    """The caller's X-Request-Id when it is a plain identifier, else a new one."""
    for key, value in (headers or {}).items():
        if str(key).lower() == "x-request-id" and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ScalewayContext:
    """Scaleway's context dict seen as the LambdaContext that Powertools expects."""

    function_name: str
    memory_limit_in_mb: int
    function_version: str
    invoked_function_arn: str
    aws_request_id: str

    @classmethod
    def from_scaleway(cls, context: Mapping[str, Any] | None, request_id: str) -> ScalewayContext:
        context = context if isinstance(context, Mapping) else {}
        name = str(context.get("functionName") or "unknown")
        version = str(context.get("functionVersion") or "")
        try:
            memory = int(context.get("memoryLimitInMb") or 0)
        except (TypeError, ValueError):
            memory = 0
        return cls(
            function_name=name,
            memory_limit_in_mb=memory,
            function_version=version,
            invoked_function_arn=f"scaleway:function:{name}:{version}" if version else f"scaleway:function:{name}",
            aws_request_id=request_id,
        )
