"""export-on-request worker: builds the archive of one request (queue `export-requests`) and sweeps (CRON).

- Queue message: {"type": "export.run", "idempotency_key": "export:<request_id>", "payload": {"request_id": ...}}.
  Idempotent: the runtime skips keys already processed, and shared.rights.export.run_export resumes its
  saga steps, so a redelivery never makes a second archive nor sends a second mail.
- CRON input {"job": "export-sweep"}: queues again every export verified or in progress whose state has
  not moved for 30 minutes (its message was dead-lettered, or its worker died): nothing stays stuck.

One function, two triggers (shared.platform.runtime.queue_and_cron tells them apart).
"""

from __future__ import annotations

from typing import Any

from shared.platform.messages import ExportRun
from shared.platform.runtime import CronFunction, QueueFunction, QueueMessage, queue_and_cron
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.rights import export

SWEEP_JOB = "export-sweep"

worker = QueueFunction("export-on-request-worker", processed=PROCESSED_MESSAGES)
sweep = CronFunction("export-on-request-sweep", job=SWEEP_JOB)


@worker.on(ExportRun)
def run(message: QueueMessage) -> dict[str, Any]:
    return export.run_export(get_engine(), ExportRun.of(message).request_id)


@sweep.job
def sweep_stalled(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    return {"queued": export.requeue_stalled_exports(get_engine())}


handle = queue_and_cron(queue=worker, cron=sweep)
