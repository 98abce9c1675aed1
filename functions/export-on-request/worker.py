"""export-on-request worker: builds the archive of one request, from the queue `export-requests`.

Message: {"type": "export.run", "idempotency_key": "export:<request_id>", "payload": {"request_id": ...}}.
Idempotent: the runtime skips keys already processed, and shared.export.run_export resumes its
saga steps, so a redelivery never makes a second archive nor sends a second mail.
"""

from __future__ import annotations

from typing import Any

from shared import export
from shared.db import get_engine
from shared.errors import ValidationFailed
from shared.runtime import QueueFunction, QueueMessage

worker = QueueFunction("export-on-request-worker")


@worker.on(export.MESSAGE_TYPE)
def run(message: QueueMessage) -> dict[str, Any]:
    request_id = message.payload.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise ValidationFailed("payload.request_id: field required")
    return export.run_export(get_engine(), request_id)


handle = worker.handle
