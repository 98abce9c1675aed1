"""announce-policy-changes-worker: one chunk of accounts from the queue `policy-notices`.

Message `policy.notice_chunk` {"version", "account_ids": [...]}: each active account not told
yet gets the policy-change notice (a service notice, whatever the marketing consent), then its
`told_at` is recorded. Idempotent: a repeat finds them told; a mail retried after a crash carries
the same idempotency key. A failing mail service answers 503 so the queue retries the chunk.
"""

from __future__ import annotations

from typing import Any

from shared.platform.messages import PolicyNoticeChunk
from shared.platform.runtime import QueueFunction, QueueMessage
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.rights import policy_notices

worker = QueueFunction("announce-policy-changes-worker", processed=PROCESSED_MESSAGES)


@worker.on(PolicyNoticeChunk)
def process(message: QueueMessage) -> dict[str, Any]:
    chunk = PolicyNoticeChunk.of(message)
    return policy_notices.process_chunk(get_engine(), chunk.version, list(chunk.account_ids))


handle = worker.handle
