"""The one adapter between Scaleway Functions and our code.

Every deployable function exposes `handle(event, context)`:

    app = HttpFunction("whoami")            # an ALBResolver; each route declares its guard
    @app.get("/", middlewares=[client_token(), gpc_signal])
    def whoami() -> dict: ...
    handle = app.handle

    cron = CronFunction("log-rotation")     # Scaleway POSTs the trigger's `input` JSON to "/"
    @cron.job
    def run(payload: dict, ctx: ScalewayContext) -> dict: ...
    handle = cron.handle

    worker = QueueFunction("export-on-request-worker", processed=PROCESSED_MESSAGES)  # status >= 300: retried
    @worker.on(ExportRun)                   # the message's contract (shared.platform.messages)
    def run(message: QueueMessage) -> dict | None: return ...(ExportRun.of(message).request_id)
    handle = worker.handle

The adapter lives in four modules: http (HTTP events and answers, Scaleway's contract), openapi (the API
contract each HTTP function serves), triggers (CRON and queue functions), messages (the queue envelope and
contracts). This one names what handlers use.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response, content_types

from shared.platform import http
from shared.platform.guards import public
from shared.platform.health import health_report
from shared.platform.http import (
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
from shared.platform.openapi import serve_contract
from shared.platform.triggers import CronFunction, QueueFunction, queue_and_cron

HEALTH_PATH = "/healthz"
HEALTH_REASON = "health check for monitors: the version and whether the database answers, nothing personal"


class HttpFunction(http.HttpFunction):
    """A public HTTP function: its routes, `GET /openapi.json` (its own contract) and `GET /healthz` for monitors.

    Both need no authentication and answer nothing personal (shared.platform.openapi, shared.platform.health).
    CRON and queue functions are private (only their trigger can call them) and have no such routes.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        serve_contract(self)

        @self.get(HEALTH_PATH, middlewares=[public(HEALTH_REASON)])
        def healthz() -> Response:
            status, report = health_report(self.name)
            return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json_dumps(report))


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
