"""rectify-account-worker: tells the recipients of a rectification (Art. 19), from the queue.

- Queue `rectification-propagation`: each message names one request (idempotency key
  `rectification:<request id>`); the Stripe customer and the Resend contact are saga steps of
  it, so a crash and a retry tell each once; then the request completes.
- CRON input {"job": "rectification-sweep"}: queues again every rectification left in progress
  for 15 minutes (its message lost after the commit, or dead-lettered while a processor was down),
  and deletes the unconfirmed changes of address whose code has expired.
"""

from __future__ import annotations

from shared.platform.messages import RectificationRun
from shared.platform.runtime import CronFunction, QueueFunction, QueueMessage, queue_and_cron
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.rights import rectification

SWEEP_JOB = "rectification-sweep"

worker = QueueFunction("rectify-account-worker", processed=PROCESSED_MESSAGES)
sweep = CronFunction("rectify-account-sweep", job=SWEEP_JOB)


@worker.on(RectificationRun)
def propagate(message: QueueMessage) -> dict:
    return rectification.run_rectification(get_engine(), RectificationRun.of(message).request_id)


@sweep.job
def sweep_stale(_payload: dict, _ctx) -> dict:
    return rectification.sweep(get_engine())


handle = queue_and_cron(queue=worker, cron=sweep)
