"""expire-inactive-accounts-worker: one chunk of accounts from the queue `retention-chunks`.

Message `inactivity.chunk` {"account_ids": [...]}: each account is warned (mail, once per
warning) or its erasure registered through the erase-account saga (channel `retention`).
Idempotent: a repeat finds the warnings sent and the erasures registered. A failing mail
service answers 503 so the queue retries the chunk; the accounts already done stay done.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from shared.platform.runtime import QueueFunction, QueueMessage, StrictModel
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.retention import inactivity

worker = QueueFunction("expire-inactive-accounts-worker", processed=PROCESSED_MESSAGES)

AccountId = Annotated[str, StringConstraints(min_length=1, max_length=36)]


class Chunk(StrictModel):
    account_ids: list[AccountId] = Field(min_length=1, max_length=inactivity.MAX_CHUNK)


@worker.on(inactivity.CHUNK_MESSAGE)
def process(message: QueueMessage) -> dict[str, Any]:
    # An external service down answers 503 (the runtime maps it once): the queue retries the chunk.
    return inactivity.process_chunk(get_engine(), message.payload_as(Chunk).account_ids)


handle = worker.handle
