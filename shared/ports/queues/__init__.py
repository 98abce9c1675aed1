"""Queue port: Scaleway Queues (SQS protocol) or an in-process queue persisted in a folder, one backend per module.

    base   the message envelope (encode_message), the Queue interface, its errors, the trigger's event
    local  LocalQueue: pending messages as files, delivered like the trigger (retries, dead letters)
    sqs    SqsQueue: Scaleway Queues through boto3 (imported only when the backend is built)

`build_queue(name, settings)` picks one from the configuration: an SQS endpoint selects SQS.
"""

from __future__ import annotations

from shared.platform.config import Settings
from shared.ports.queues.base import (
    MAX_MESSAGE_BYTES,
    SEND_BATCH_SIZE,
    Consumer,
    InvalidMessage,
    Queue,
    QueueError,
    encode_message,
    trigger_event,
)
from shared.ports.queues.local import LocalQueue
from shared.ports.queues.sqs import SqsQueue

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SEND_BATCH_SIZE",
    "Consumer",
    "InvalidMessage",
    "LocalQueue",
    "Queue",
    "QueueError",
    "SqsQueue",
    "build_queue",
    "encode_message",
    "trigger_event",
]


def build_queue(name: str, settings: Settings) -> Queue:
    if settings.sqs_endpoint_url:
        return SqsQueue(name, settings)
    return LocalQueue(name, settings.data_dir / "queues", max_attempts=settings.queue_max_attempts)
