"""erase-account-worker: runs erasure sagas (queue `erasure-steps`) and sweeps due erasures (CRON).

- Queue message `erasure.run` {"request_ids": [...]} (1 to 1000): runs or resumes the
  sagas, ERASURE_BATCH_SIZE at a time (one batch shares every database statement); no
  batch starts after ERASURE_TIME_BUDGET_SECONDS, the rest is queued again. Stripe or
  Resend down: answers 503 so the queue retries with backoff; the step stays
  incomplete and nothing is lost (completed erasures are not run again; after the
  retries the message is dead-lettered, and the next sweep queues the erasures again).
- CRON input {"job": "erasure-sweep"}: queues every erasure whose cooling-off is
  over (`erase_after <= now`) and every one started but unfinished.

One function, two triggers (shared.platform.runtime.queue_and_cron tells them apart).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from shared.platform.config import get_settings
from shared.platform.errors import AppError, ExternalServiceError, service_unavailable
from shared.platform.logs import get_logger
from shared.platform.messages import ErasureRun
from shared.platform.runtime import (
    CronFunction,
    QueueFunction,
    QueueMessage,
    queue_and_cron,
)
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.rights import erasure

SWEEP_JOB = "erasure-sweep"

worker = QueueFunction("erase-account-worker", processed=PROCESSED_MESSAGES)
sweep = CronFunction("erase-account-sweep", job=SWEEP_JOB)


@worker.on(ErasureRun)
def run(message: QueueMessage) -> dict[str, Any]:
    payload = ErasureRun.of(message)
    settings = get_settings()
    outcomes, errors, left = erasure.run_queued(
        get_engine(),
        payload.request_ids,
        batch_size=settings.erasure_batch_size,
        deadline=time.monotonic() + settings.erasure_time_budget_seconds,
    )
    if left:  # the time budget is spent: the rest goes on in another invocation (same key if this one is retried)
        erasure.enqueue_runs(
            left, reason="rest-of:" + hashlib.sha256(message.idempotency_key.encode()).hexdigest()[:16]
        )
    waiting = {request_id: exc for request_id, exc in errors.items() if isinstance(exc, ExternalServiceError)}
    for request_id, waited in waiting.items():
        get_logger().warning(
            "erasure step waits for an external service",
            extra={"request_id": request_id, "service": waited.service, "retryable": waited.retryable},
        )
    for request_id, exc in errors.items():
        if request_id not in waiting:
            get_logger().error("erasure step failed", extra={"request_id": request_id, "error": type(exc).__name__})
    if waiting:
        # The queue retries with backoff; completed erasures are not run again, the others resume.
        first, *others = waiting.values()
        raise service_unavailable(first, *(exc.service for exc in others))
    if errors:
        raise AppError(500, "erasure_failed", f"{len(errors)} erasure(s) failed; the sweep resumes them")
    return {"outcomes": outcomes, "requeued": len(left)}


@sweep.job
def sweep_due(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    return {"queued": erasure.enqueue_due_erasures(get_engine())}


handle = queue_and_cron(queue=worker, cron=sweep)
