"""export-on-request worker: builds the archive of one request, from the queue `export-requests`.

Message: {"type": "export.run", "idempotency_key": "export:<request_id>", "payload": {"request_id": ...}}.
Idempotent: the runtime skips keys already processed, and shared.rights.export.run_export resumes its
saga steps, so a redelivery never makes a second archive nor sends a second mail.
"""

from __future__ import annotations

from typing import Any

from shared.platform.messages import ExportRun
from shared.platform.runtime import QueueFunction, QueueMessage
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.rights import export

worker = QueueFunction("export-on-request-worker", processed=PROCESSED_MESSAGES)


@worker.on(ExportRun)
def run(message: QueueMessage) -> dict[str, Any]:
    return export.run_export(get_engine(), ExportRun.of(message).request_id)


handle = worker.handle
