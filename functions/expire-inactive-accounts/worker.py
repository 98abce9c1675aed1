"""expire-inactive-accounts-worker: one chunk of accounts from the queue `retention-chunks`.

Message `inactivity.chunk` {"account_ids": [...]}: each account is warned (mail, once per
warning) or its erasure registered through the erase-account saga (channel `retention`).
Idempotent: a repeat finds the warnings sent and the erasures registered. A failing mail
service answers 503 so the queue retries the chunk; the accounts already done stay done.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from shared.retention import inactivity
from shared.platform.errors import ExternalServiceError
from shared.ports.db import get_engine
from shared.platform.errors import AppError
from shared.platform.logs import get_logger
from shared.platform.runtime import QueueFunction, QueueMessage, StrictModel
from shared.records.saga import PROCESSED_MESSAGES

worker = QueueFunction("expire-inactive-accounts-worker", processed=PROCESSED_MESSAGES)

AccountId = Annotated[str, StringConstraints(min_length=1, max_length=36)]


class Chunk(StrictModel):
    account_ids: list[AccountId] = Field(min_length=1, max_length=inactivity.MAX_CHUNK)


@worker.on(inactivity.CHUNK_MESSAGE)
def process(message: QueueMessage) -> dict[str, Any]:
    chunk = message.payload_as(Chunk)
    try:
        return inactivity.process_chunk(get_engine(), chunk.account_ids)
    except ExternalServiceError as exc:
        get_logger().warning(
            "inactivity chunk waits for an external service",
            extra={"idempotency_key": message.idempotency_key, "service": exc.service, "retryable": exc.retryable},
        )
        raise AppError(503, "external_service_unavailable", f"{exc.service} is unavailable; the chunk will be retried") from None


handle = worker.handle
