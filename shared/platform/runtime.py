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

The adapter lives in three modules (http, triggers, messages); this one names what handlers use.

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

from aws_lambda_powertools.event_handler import Response

from shared.platform.http import (
    HttpFunction,
    HttpRequest,
    StrictModel,
    current_request,
    describe_validation_error,
    html_page,
    json_body,
    json_dumps,
    validated,
)
from shared.platform.logs import ScalewayContext
from shared.platform.messages import QueueMessage, make_message, parse_message
from shared.platform.triggers import CronFunction, QueueFunction, queue_and_cron

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
    "html_page",
    "json_body",
    "json_dumps",
    "make_message",
    "parse_message",
    "queue_and_cron",
    "validated",
]
