"""expire-inactive-accounts-worker: one chunk of accounts from the queue `retention-chunks`.

Message `inactivity.chunk` {"account_ids": [...]}: each account is warned (mail, once per
warning) or its erasure registered through the erase-account saga (channel `retention`).
Idempotent: a repeat finds the warnings sent and the erasures registered. A failing mail
service answers 503 so the queue retries the chunk; the accounts already done stay done.
"""

from __future__ import annotations

from typing import Any

from shared.platform.messages import InactivityChunk
from shared.platform.runtime import QueueFunction, QueueMessage
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.retention import inactivity

worker = QueueFunction("expire-inactive-accounts-worker", processed=PROCESSED_MESSAGES)


@worker.on(InactivityChunk)
def process(message: QueueMessage) -> dict[str, Any]:
    # An external service down answers 503 (the runtime maps it once): the queue retries the chunk.
    return inactivity.process_chunk(get_engine(), InactivityChunk.of(message).account_ids)


handle = worker.handle
