"""HTTP functions: Scaleway's HTTP event routed by Powertools, answered in Scaleway's shape.

Scaleway's HTTP event has the API Gateway REST v1 shape, but `multiValueHeaders`
is null, `isBase64Encoded` is a guess (true for an empty body and for any body
that happens to be valid base64), and only `statusCode`, `headers`, `body` and
`isBase64Encoded` survive in the answer. Powertools' ALBResolver answers with
single-value `headers` (APIGatewayRestResolver answers `multiValueHeaders`, which
Scaleway drops), so every function is an ALBResolver fed a normalised event.
Every answer carries Content-Type, CORS, `Cache-Control: no-store` (answers hold
personal data) and the request's `X-Request-Id`.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import datetime as dt
import decimal
import ipaddress
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from aws_lambda_powertools.event_handler import ALBResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes.common import CaseInsensitiveDict
from pydantic import BaseModel, ConfigDict, ValidationError

from shared.platform.config import Settings, get_settings
from shared.platform.errors import (
    AppError,
    BadRequest,
    ExternalServiceError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    service_unavailable,
)
from shared.platform.logs import ScalewayContext, get_logger, request_id_from

ALLOWED_REQUEST_HEADERS = ("Authorization", "Content-Type", "X-Verification-Code", "X-Request-Id")
PREFLIGHT_MAX_AGE_SECONDS = 600
INTERNAL_ERROR_MESSAGE = "An internal error occurred. Quote the error id if you contact support."


# JSON -----------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_dumps(value: Any) -> str:
    """Compact UTF-8 JSON; datetimes as ISO 8601, UUIDs and decimals as strings, models dumped."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


# The request --------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """The request being served, decoded once: route code reads it through `current_request()`."""

    method: str
    path: str
    headers: Mapping[str, str]  # case-insensitive
    query: Mapping[str, str]
    body: bytes
    request_id: str
    context: ScalewayContext

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def client_ip(self) -> str | None:
        """The caller's address: the edge proxy's X-Envoy-External-Address, else the first X-Forwarded-For."""
        forwarded = (self.header("X-Forwarded-For") or "").split(",")[0]
        for candidate in (self.header("X-Envoy-External-Address") or "", forwarded):
            candidate = candidate.strip()
            try:
                return str(ipaddress.ip_address(candidate))
            except ValueError:
                continue
        return None


_current_request: contextvars.ContextVar[HttpRequest] = contextvars.ContextVar("current_request")
# The template of the route serving the request ("/<request_id>/download"): what the access log names.
_matched_route: contextvars.ContextVar[str | None] = contextvars.ContextVar("matched_route", default=None)


def current_request() -> HttpRequest:
    try:
        return _current_request.get()
    except LookupError:
        raise RuntimeError("no request is being handled") from None


def _decode_body(raw: Any, flagged_base64: bool) -> bytes:
    if raw is None or raw == "":
        return b""
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    text = str(raw)
    if flagged_base64:
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass  # the flag is Scaleway's guess: this body is plain text after all
    return text.encode("utf-8")


def _normalise_path(path: Any) -> str:
    text = str(path or "/")
    if not text.startswith("/"):
        text = "/" + text
    return text.rstrip("/") or "/"


def _parse_event(event: Any, context: ScalewayContext) -> HttpRequest:
    if not isinstance(event, Mapping) or not isinstance(event.get("httpMethod"), str):
        raise BadRequest("the invocation is not an HTTP event", code="bad_event")
    headers: Mapping[str, Any] = event["headers"] if isinstance(event.get("headers"), Mapping) else {}
    query: Mapping[str, Any] = (
        event["queryStringParameters"] if isinstance(event.get("queryStringParameters"), Mapping) else {}
    )
    if not all(storable(str(key)) and storable(str(value)) for key, value in query.items() if value is not None):
        raise ValidationFailed("the query string holds a NUL character or an unpaired surrogate")
    return HttpRequest(
        method=event["httpMethod"].upper(),
        path=_normalise_path(event.get("path")),
        headers=CaseInsensitiveDict({str(k): str(v) for k, v in headers.items() if v is not None}),
        query={str(k): str(v) for k, v in query.items() if v is not None},
        body=_decode_body(event.get("body"), bool(event.get("isBase64Encoded"))),
        request_id=context.aws_request_id,
        context=context,
    )


def _proxy_event(request: HttpRequest) -> dict[str, Any]:
    """The ALB-shaped event Powertools routes: single-value headers, body already decoded."""
    try:
        body, encoded = request.body.decode("utf-8"), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(request.body).decode("ascii"), True
    return {
        "httpMethod": request.method,
        "path": request.path,
        "headers": dict(request.headers),
        "multiValueHeaders": None,
        "queryStringParameters": dict(request.query),
        "multiValueQueryStringParameters": None,
        "body": body,
        "isBase64Encoded": encoded,
        "requestContext": {"elb": {"targetGroupArn": ""}},
    }


# Bodies -----------------------------------------------------------------------------------------


class StrictModel(BaseModel):
    """Base for request bodies: unknown fields are refused, and no value is coerced.

    Strict: `"yes"` or `1` is not a boolean, `"1"` is not a number. A field that must be
    parsed from JSON text (a moment, see shared.platform.moments) says `strict=False` itself.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


ModelT = TypeVar("ModelT", bound=BaseModel)


def describe_validation_error(exc: ValidationError, *, limit: int = 5) -> str:
    """Names the fields at fault, never the submitted values."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False)[:limit]:
        field = ".".join(str(part) for part in error["loc"]) or "body"
        if error["type"] == "extra_forbidden":
            problems.append(f"{field}: unknown field")
        elif error["type"] == "missing":
            problems.append(f"{field}: field required")
        else:
            problems.append(f"{field}: {error['msg']}")
    return "invalid request: " + "; ".join(problems)


def storable(text: str) -> bool:
    """Text a database column can hold: no NUL (PostgreSQL refuses it in text) and no lone surrogate
    (JSON's `\\ud800` escapes decode to one, which no UTF-8 encoder accepts)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _all_storable(value: Any) -> bool:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(_all_storable(key) and _all_storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_all_storable(item) for item in value)
    return True


def _json_object(body: bytes, *, empty_is_object: bool = False) -> dict[str, Any]:
    if not body.strip():
        if empty_is_object:
            return {}
        raise ValidationFailed("the request body must be a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValidationFailed("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationFailed("the request body must be a JSON object")
    if not _all_storable(data):
        raise ValidationFailed("the request body holds a NUL character or an unpaired surrogate")
    return data


def json_body(model: type[ModelT]) -> ModelT:
    """The current request's JSON body as `model` (which must forbid extra fields), else 400 invalid_request."""
    return validated(model, _json_object(current_request().body))


def validated(model: type[ModelT], data: Any) -> ModelT:
    """`data` as `model` (which must forbid extra fields), else 400 invalid_request naming the fields."""
    if model.model_config.get("extra") != "forbid":
        raise TypeError(f"{model.__name__} must forbid extra fields (derive it from StrictModel)")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_error(exc)) from None


# Pages ------------------------------------------------------------------------------------------

# Our pages need no script and nothing from another origin: the browser refuses anything else.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "Referrer-Policy": "no-referrer",  # a page may hold a link token: it never leaves in a Referer
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
}


def html_page(body: str, *, status: int = 200) -> Response:
    """An HTML page answer, with the Content-Security-Policy and the headers every page carries."""
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=body, headers=dict(PAGE_HEADERS))


# Answers ----------------------------------------------------------------------------------------


def _error_response(exc: AppError) -> Response:
    return Response(
        status_code=exc.status, content_type=content_types.APPLICATION_JSON, body=exc.to_body(), headers=exc.headers
    )


def _service_unavailable_response(exc: ExternalServiceError) -> Response:
    get_logger().warning(
        "an external service is unavailable", extra={"service": exc.service, "retryable": exc.retryable}
    )
    return _error_response(service_unavailable(exc))


def _internal_error_body(exc: BaseException) -> dict[str, Any]:
    """Logs the traceback (through the PII filter) under a fresh error id that the caller sees."""
    error_id = str(uuid.uuid4())
    get_logger().error("unhandled error", exc_info=exc, extra={"error_id": error_id, "error_type": type(exc).__name__})
    return {"error": {"code": "internal_error", "message": INTERNAL_ERROR_MESSAGE, "error_id": error_id}}


def _internal_error_response(exc: Exception) -> Response:
    return Response(status_code=500, content_type=content_types.APPLICATION_JSON, body=_internal_error_body(exc))


def _plain_answer(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """An answer built outside routing (before the resolver could run)."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(headers or {})},
        "body": json_dumps(body),
        "isBase64Encoded": False,
    }


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    for existing in [key for key in headers if key.lower() == name.lower()]:
        del headers[existing]
    headers[name] = value


class HttpFunction(ALBResolver):
    """A deployable HTTP function: Powertools routing behind Scaleway's event and response contract."""

    def __init__(self, name: str) -> None:
        # debug=False: Powertools' debug mode prints whole events, which hold personal data.
        super().__init__(debug=False, serializer=json_dumps)
        self.name = name
        self.exception_handler(AppError)(_error_response)
        self.exception_handler(ExternalServiceError)(_service_unavailable_response)
        self.exception_handler(NotFoundError)(self._unmatched)
        self.exception_handler(Exception)(_internal_error_response)
        self._invoke_logged = get_logger().inject_lambda_context(self._invoke, clear_state=True)

    def handle(self, event: dict[str, Any], context: Mapping[str, Any] | None) -> dict[str, Any]:
        """Scaleway's entry point: `functions/<name>/handler.handle`."""
        headers = event.get("headers") if isinstance(event, Mapping) else None
        request_id = request_id_from(headers if isinstance(headers, Mapping) else None)
        return self._invoke_logged(event, ScalewayContext.from_scaleway(context, request_id))

    def _invoke(self, event: Any, context: ScalewayContext) -> dict[str, Any]:
        log = get_logger()
        log.append_keys(service=self.name)
        log.set_correlation_id(context.aws_request_id)
        started = time.perf_counter()
        settings: Settings | None = None
        method = None
        route_token = _matched_route.set(None)
        try:
            settings = get_settings()
            request = _parse_event(event, context)
            method = request.method
            if len(request.body) > settings.max_body_bytes:
                raise PayloadTooLarge(f"the request body exceeds {settings.max_body_bytes} bytes")
            token = _current_request.set(request)
            try:
                answer = self.resolve(_proxy_event(request), cast(Any, context))  # what Powertools reads of it
            finally:
                _current_request.reset(token)
        except AppError as exc:  # raised before routing: not an HTTP event, body too large
            answer = _plain_answer(exc.status, exc.to_body(), exc.headers)
        except Exception as exc:
            answer = _plain_answer(500, _internal_error_body(exc))
        final = self._finish(answer, settings, context.aws_request_id)
        log.info(
            "request handled",
            extra={
                "method": method,
                # The route's template ("/<request_id>/download"), never the raw path: paths carry ids.
                "path": _matched_route.get(),
                "status": final["statusCode"],
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        _matched_route.reset(route_token)
        return final

    @staticmethod
    def _finish(answer: Mapping[str, Any], settings: Settings | None, request_id: str) -> dict[str, Any]:
        """Exactly the four keys Scaleway keeps, with the headers every answer must carry."""
        headers = {
            str(k): ", ".join(v) if isinstance(v, list) else str(v) for k, v in (answer.get("headers") or {}).items()
        }
        _set_header(headers, "Cache-Control", "no-store")
        _set_header(headers, "X-Content-Type-Options", "nosniff")
        _set_header(headers, "X-Request-Id", request_id)
        if settings is not None:
            _set_header(headers, "Access-Control-Allow-Origin", settings.cors_allow_origin)
            _set_header(headers, "Access-Control-Allow-Headers", ", ".join(ALLOWED_REQUEST_HEADERS))
            _set_header(headers, "Access-Control-Expose-Headers", "X-Request-Id")
        return {
            "statusCode": int(answer.get("statusCode") or 500),
            "headers": headers,
            "body": answer.get("body") or "",
            "isBase64Encoded": bool(answer.get("isBase64Encoded")),
        }

    def _call_route(self, route: Any, route_arguments: dict[str, str]) -> Any:
        _matched_route.set(route.path)  # logged by _invoke
        return super()._call_route(route, route_arguments)

    def _allowed_methods(self, path: str) -> set[str]:
        return {route.method for route in self._static_routes + self._dynamic_routes if route.rule.match(path)}

    def _unmatched(self, _exc: NotFoundError) -> Response:
        """No route for (method, path): CORS preflight, 405 with Allow, or 404."""
        request = current_request()
        allowed = self._allowed_methods(request.path)
        if not allowed or request.method in allowed:  # the latter: a route raised Powertools' NotFoundError
            return _error_response(NotFound("no such route"))
        if request.method == "OPTIONS":
            return Response(
                status_code=204,
                content_type=None,
                body="",
                headers={
                    "Access-Control-Allow-Methods": ", ".join(sorted(allowed | {"OPTIONS"})),
                    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
                },
            )
        return _error_response(
            MethodNotAllowed("this method is not allowed on this route", headers={"Allow": ", ".join(sorted(allowed))})
        )
