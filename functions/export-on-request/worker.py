"""export-on-request worker: builds the archive of one request, from the queue `export-requests`.

Message: {"type": "export.run", "idempotency_key": "export:<request_id>", "payload": {"request_id": ...}}.
Idempotent: the runtime skips keys already processed, and shared.rights.export.run_export resumes its
saga steps, so a redelivery never makes a second archive nor sends a second mail.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.platform.runtime import QueueFunction, QueueMessage, StrictModel
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.rights import export

worker = QueueFunction("export-on-request-worker", processed=PROCESSED_MESSAGES)


class RunPayload(StrictModel):
    request_id: str = Field(min_length=1, max_length=36)


@worker.on(export.MESSAGE_TYPE)
def run(message: QueueMessage) -> dict[str, Any]:
    return export.run_export(get_engine(), message.payload_as(RunPayload).request_id)


handle = worker.handle
