"""CRON and queue functions: what Scaleway's triggers POST to "/" and how it is answered."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from shared.platform.errors import BadRequest, ValidationFailed
from shared.platform.guards import trigger
from shared.platform.http import HttpFunction, _json_object, current_request, json_dumps
from shared.platform.logs import ScalewayContext, get_logger
from shared.platform.messages import Contract, QueueMessage, parse_message

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
        self.post("/", middlewares=[trigger("cron")])(self._run_job)

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


class ProcessedMessages(Protocol):
    """Where a queue function remembers the keys it has handled (shared.records.saga keeps them in the database)."""

    def seen(self, key: str) -> bool: ...

    def record(self, key: str, function: str, result: dict[str, Any] | None) -> None: ...


WorkerFn = Callable[[QueueMessage], dict[str, Any] | None]


class QueueFunction(HttpFunction):
    """A function fed by a queue trigger: one message per POST to "/", no message id.

    An answer >= 300 makes Scaleway deliver the message again (then dead-letter it), so a
    malformed message gets 400 and a failing worker 500. A message whose key is already in
    `processed_messages` is answered 200 "duplicate" without running: this is the outer
    guard, workers still make their steps idempotent (shared.records.saga.run_step).
    """

    def __init__(self, name: str, *, processed: ProcessedMessages) -> None:
        super().__init__(name)
        self.processed = processed
        self._workers: dict[str, WorkerFn] = {}
        self.post("/", middlewares=[trigger("queue")])(self._consume)

    def on(self, contract: type[Contract]) -> Callable[[WorkerFn], WorkerFn]:
        """Register the worker of one message contract; it reads the payload with `Contract.of(message)`."""
        message_type = contract.TYPE

        def register(fn: WorkerFn) -> WorkerFn:
            if message_type in self._workers:
                raise RuntimeError(f"{self.name} already handles {message_type!r}")
            self._workers[message_type] = fn
            return fn

        return register

    def _consume(self) -> dict[str, Any]:
        message = parse_message(current_request().body)
        keys = {"idempotency_key": message.idempotency_key, "message_type": message.type}
        log = get_logger()
        worker = self._workers.get(message.type)
        if worker is None:
            log.warning("queue message of a type this function does not handle", extra=keys)
            raise BadRequest("no worker handles this message type", code="unknown_message_type")
        if self.processed.seen(message.idempotency_key):
            log.info("duplicate queue message skipped", extra=keys)
            return {"status": "duplicate"}
        result = worker(message)
        stored = json.loads(json_dumps(result)) if result is not None else None
        # A concurrent delivery may have recorded the key first: that is not an error.
        self.processed.record(message.idempotency_key, self.name, stored)
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
