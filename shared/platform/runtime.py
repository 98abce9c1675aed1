"""The one adapter between Scaleway Functions and our code.

Every deployable function exposes `handle(event, context)`:

    app = HttpFunction("whoami")            # an ALBResolver: @app.get("/"), @app.post("/x"), app.route(...)
    handle = app.handle

    cron = CronFunction("log-rotation")     # Scaleway POSTs the trigger's `input` JSON to "/"
    @cron.job
    def run(payload: dict, ctx: ScalewayContext) -> dict: ...
    handle = cron.handle

    worker = QueueFunction("export-on-request-worker")  # one message per POST; status >= 300 is retried
    @worker.on("export.run")
    def run(message: QueueMessage) -> dict | None: ...
    handle = worker.handle

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import ALBResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.data_classes.common import CaseInsensitiveDict
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.platform.config import Settings, get_settings
from shared.platform.errors import AppError, BadRequest, MethodNotAllowed, NotFound, PayloadTooLarge, ValidationFailed
from shared.platform.logs import ScalewayContext, get_logger, request_id_from

__all__ = [
    "CronFunction",
    "HttpFunction",
    "HttpRequest",
    "QueueFunction",
    "QueueMessage",
    "Response",
    "ScalewayContext",
    "StrictModel",
    "current_request",
    "describe_validation_error",
    "json_body",
    "json_dumps",
    "make_message",
    "parse_message",
]

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
    headers = event.get("headers") if isinstance(event.get("headers"), Mapping) else {}
    query = event.get("queryStringParameters") if isinstance(event.get("queryStringParameters"), Mapping) else {}
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
    """Base for request bodies: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


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


# Answers ----------------------------------------------------------------------------------------


def _error_response(exc: AppError) -> Response:
    return Response(
        status_code=exc.status, content_type=content_types.APPLICATION_JSON, body=exc.to_body(), headers=exc.headers
    )


def _internal_error_body(exc: BaseException) -> dict[str, Any]:
    """Logs the traceback (through the PII filter) under a fresh error id that the caller sees."""
    error_id = str(uuid.uuid4())
    get_logger().error(
        "unhandled error", exc_info=exc, extra={"error_id": error_id, "error_type": type(exc).__name__}
    )
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
        method = path = None
        try:
            settings = get_settings()
            request = _parse_event(event, context)
            method, path = request.method, request.path
            if len(request.body) > settings.max_body_bytes:
                raise PayloadTooLarge(f"the request body exceeds {settings.max_body_bytes} bytes")
            token = _current_request.set(request)
            try:
                answer = self.resolve(_proxy_event(request), context)
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
                "path": path,
                "status": final["statusCode"],
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
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


# CRON -------------------------------------------------------------------------------------------

JobFn = Callable[[dict[str, Any], ScalewayContext], dict[str, Any] | None]


class CronFunction(HttpFunction):
    """A function run by a CRON trigger: Scaleway POSTs the trigger's `input` JSON object to "/".

    Every trigger of serverless.yml names its job in the input (`{"job": "<name>"}`); an input
    naming another job is refused with 400 `unknown_job` before anything runs.
    """

    def __init__(self, name: str, *, job: str | None = None) -> None:
        super().__init__(name)
        self.expected_job = job or name
        self._job: JobFn | None = None
        self.post("/")(self._run_job)

    def job(self, fn: JobFn) -> JobFn:
        if self._job is not None:
            raise RuntimeError(f"{self.name} already has a job")
        self._job = fn
        return fn

    def _run_job(self) -> dict[str, Any]:
        if self._job is None:
            raise RuntimeError(f"{self.name} has no job registered")
        request = current_request()
        payload = _json_object(request.body, empty_is_object=True)
        if payload.get("job") != self.expected_job:
            raise ValidationFailed(f"unknown job; this function runs {self.expected_job!r}", code="unknown_job")
        log = get_logger()
        log.info("cron job started", extra={"job": self.expected_job})
        result = self._job(payload, request.context)
        log.info("cron job finished", extra={"job": self.expected_job})
        return result if result is not None else {}


# Queues -----------------------------------------------------------------------------------------


class QueueMessage(BaseModel):
    """The envelope of every queue message: each one carries its own idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    # The key is logged and stored (processed_messages): build it from ids, never from personal data.
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    payload: dict[str, Any] = Field(default_factory=dict)

    def payload_as(self, model: type[ModelT]) -> ModelT:
        """The payload as `model` (a StrictModel), else 400 invalid_request: the queue does not retry it."""
        return validated(model, self.payload)


def make_message(type: str, idempotency_key: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validated envelope, ready to send (the queue backends serialise it as JSON)."""
    message = QueueMessage(type=type, idempotency_key=idempotency_key, payload=payload or {})
    return json.loads(json_dumps(message))


def parse_message(body: bytes) -> QueueMessage:
    """The envelope in a queue delivery, else 400 invalid_request (logged with the message key only)."""
    log = get_logger()
    try:
        data = _json_object(body)
    except ValidationFailed:
        log.warning("malformed queue message", extra={"idempotency_key": None})
        raise
    try:
        return QueueMessage.model_validate(data)
    except ValidationError as exc:
        key = data.get("idempotency_key")
        log.warning(
            "malformed queue message",
            extra={"idempotency_key": key[:200] if isinstance(key, str) else None},
        )
        raise ValidationFailed(describe_validation_error(exc)) from None


WorkerFn = Callable[[QueueMessage], dict[str, Any] | None]


class QueueFunction(HttpFunction):
    """A function fed by a queue trigger: one message per POST to "/", no message id.

    An answer >= 300 makes Scaleway deliver the message again (then dead-letter it), so a
    malformed message gets 400 and a failing worker 500. A message whose key is already in
    `processed_messages` is answered 200 "duplicate" without running: this is the outer
    guard, workers still make their steps idempotent (shared.records.saga.run_step).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._workers: dict[str, WorkerFn] = {}
        self.post("/")(self._consume)

    def on(self, message_type: str) -> Callable[[WorkerFn], WorkerFn]:
        def register(fn: WorkerFn) -> WorkerFn:
            if message_type in self._workers:
                raise RuntimeError(f"{self.name} already handles {message_type!r}")
            self._workers[message_type] = fn
            return fn

        return register

    def _consume(self) -> dict[str, Any]:
        from shared.ports.db import get_engine
        from shared.records.saga import is_processed, mark_processed

        message = parse_message(current_request().body)
        keys = {"idempotency_key": message.idempotency_key, "message_type": message.type}
        log = get_logger()
        worker = self._workers.get(message.type)
        if worker is None:
            log.warning("queue message of a type this function does not handle", extra=keys)
            raise BadRequest("no worker handles this message type", code="unknown_message_type")
        engine = get_engine()
        with engine.connect() as conn:
            if is_processed(conn, message.idempotency_key):
                log.info("duplicate queue message skipped", extra=keys)
                return {"status": "duplicate"}
        result = worker(message)
        stored = json.loads(json_dumps(result)) if result is not None else None
        with engine.begin() as conn:
            # A concurrent delivery may have recorded the key first: that is not an error.
            mark_processed(conn, message.idempotency_key, self.name, stored)
        log.info("queue message processed", extra=keys)
        return {"status": "processed", "result": stored}


def queue_and_cron(*, queue: QueueFunction, cron: CronFunction) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """One deployed function with both an SQS and a CRON trigger.

    Both POST a JSON body to "/": a queue message is an envelope with a `type`, a CRON
    input names its `job` (and has no `type`); the body decides which side answers.
    """

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        body = event.get("body") if isinstance(event, dict) else None
        try:
            data = json.loads(body) if isinstance(body, str) and body.strip() else None
        except ValueError:
            data = None
        is_cron = isinstance(data, dict) and "job" in data and "type" not in data
        return (cron if is_cron else queue).handle(event, context)

    return handle
