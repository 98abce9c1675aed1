"""The queue port: the envelope every message is, the interface both backends keep, the trigger's event.

Every message is the JSON envelope {"type", "idempotency_key", "payload"}: Scaleway's
SQS trigger delivers the body without a message id and retries on a status >= 300,
so the envelope carries its own idempotency key and workers must be idempotent.

`deliver_pending` plays the trigger's part locally and in tests: one HTTP event per
message (POST "/", the body as is), a status < 300 acknowledges, anything else (or an
exception) is retried, up to `queue_max_attempts` attempts in all, then dead-lettered.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from shared.platform.errors import ExternalServiceError

log = logging.getLogger("shared.ports.queues")  # one logger for the port, whichever backend delivers

MAX_MESSAGE_BYTES = 256 * 1024  # SQS (and Scaleway Queues) body limit
SEND_BATCH_SIZE = 10  # SendMessageBatch limit

Consumer = Callable[[dict[str, Any]], Any]


class InvalidMessage(ValueError):
    """The message is not a valid envelope; nothing was sent."""


class QueueError(ExternalServiceError):
    def __init__(self, message: str, *, retryable: bool = True, status: int | None = None):
        super().__init__("queue", message, retryable=retryable, status=status)


class Queue(Protocol):
    name: str

    def send(self, message: dict[str, Any]) -> str: ...

    def send_many(self, messages: Iterable[dict[str, Any]]) -> list[str]: ...

    def deliver_pending(self, consumer: Consumer, *, max_messages: int | None = None) -> int: ...

    def pending_count(self) -> int: ...

    def dead_letter_count(self) -> int: ...

    def ensure(self) -> None: ...


def encode_message(message: dict[str, Any]) -> str:
    """Validate the envelope and return its JSON body."""
    if not isinstance(message, dict):
        raise InvalidMessage("a message is a JSON object")
    if not isinstance(message.get("type"), str) or not message["type"]:
        raise InvalidMessage("a message needs a non-empty string 'type'")
    key = message.get("idempotency_key")
    if not isinstance(key, str) or not key.strip():
        raise InvalidMessage("a message needs a non-empty string 'idempotency_key'")
    if not isinstance(message.get("payload", {}), dict):
        raise InvalidMessage("a message 'payload' is a JSON object")
    try:
        body = json.dumps(message, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        raise InvalidMessage("a message must be JSON-serialisable") from None
    if len(body.encode()) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"a message body is at most {MAX_MESSAGE_BYTES} bytes")
    return body


def trigger_event(body: str) -> dict[str, Any]:
    """The HTTP event Scaleway's SQS trigger sends to a function for one message."""
    return {
        "path": "/",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": None,
        "queryStringParameters": {},
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariable": {},
        "requestContext": {
            "accountId": "",
            "resourceId": "",
            "stage": "",
            "requestId": str(uuid.uuid4()),
            "resourcePath": "",
            "authorizer": None,
            "httpMethod": "POST",
            "apiId": "",
        },
        "body": body,
        "isBase64Encoded": False,
    }


def acknowledges(consumer: Consumer, queue: str, body: str) -> bool:
    """Invoke the consumer once; True when it answered with a status below 300."""
    try:
        response = consumer(trigger_event(body))
    except Exception as exc:  # the trigger sees a failed invocation, like a 5xx
        log.warning("queue consumer raised", extra={"queue": queue, "error": type(exc).__name__})
        return False
    if isinstance(response, str):  # Scaleway accepts a bare string as a 200 body
        return True
    status = int((response or {}).get("statusCode", 200))
    if status >= 300:
        log.warning("queue consumer refused a message", extra={"queue": queue, "status": status})
    return status < 300
