"""erase-account-worker: runs erasure sagas (queue `erasure-steps`) and sweeps due erasures (CRON).

- Queue message `erasure.run` {"request_id"}: runs or resumes the saga. Stripe or
  Resend down: answers 503 so the queue retries with backoff; the step stays
  incomplete and nothing is lost (after the retries the message is dead-lettered,
  and the next sweep queues the erasure again).
- CRON input {"job": "erasure-sweep"}: queues every erasure whose cooling-off is
  over (`erase_after <= now`) and every one started but unfinished.

One function, two triggers (shared.runtime.queue_and_cron tells them apart).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from shared import erasure
from shared.backends import ExternalServiceError
from shared.db import get_engine
from shared.errors import AppError, ValidationFailed
from shared.logs import get_logger
from shared.runtime import (
    CronFunction,
    QueueFunction,
    QueueMessage,
    StrictModel,
    describe_validation_error,
    queue_and_cron,
)

SWEEP_JOB = "erasure-sweep"

worker = QueueFunction("erase-account-worker")
sweep = CronFunction("erase-account-sweep", job=SWEEP_JOB)


class RunPayload(StrictModel):
    request_id: str = Field(min_length=1, max_length=36)


@worker.on(erasure.RUN_MESSAGE)
def run(message: QueueMessage) -> dict[str, Any]:
    try:
        payload = RunPayload.model_validate(message.payload)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_error(exc)) from None
    try:
        outcome = erasure.run_erasure(get_engine(), payload.request_id)
    except ExternalServiceError as exc:
        get_logger().warning(
            "erasure step waits for an external service",
            extra={"request_id": payload.request_id, "service": exc.service, "retryable": exc.retryable},
        )
        raise AppError(503, "external_service_unavailable", f"{exc.service} is unavailable; the erasure will resume") from None
    return {"request_id": payload.request_id, "outcome": outcome}


@sweep.job
def sweep_due(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    return {"queued": erasure.enqueue_due_erasures(get_engine())}


handle = queue_and_cron(queue=worker, cron=sweep)
