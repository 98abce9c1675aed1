"""Queue port: Scaleway Queues (SQS protocol) or an in-process queue persisted in a folder.

Every message is the JSON envelope {"type", "idempotency_key", "payload"}: Scaleway's
SQS trigger delivers the body without a message id and retries on a status >= 300,
so the envelope carries its own idempotency key and workers must be idempotent.

`deliver_pending` plays the trigger's part locally and in tests: one HTTP event per
message (POST "/", the body as is), a status < 300 acknowledges, anything else (or an
exception) is retried, up to `queue_max_attempts` attempts in all, then dead-lettered.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from shared.platform.errors import ExternalServiceError
from shared.platform.config import Settings

log = logging.getLogger(__name__)

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


def build_queue(name: str, settings: Settings) -> Queue:
    if settings.sqs_endpoint_url:
        return SqsQueue(name, settings)
    return LocalQueue(name, settings.data_dir / "queues", max_attempts=settings.queue_max_attempts)


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


def _acknowledged(consumer: Consumer, queue: str, body: str) -> bool:
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


# --- In-process, persisted in a folder ------------------------------------------------


class LocalQueue:
    """Pending messages are files in `<root>/<name>/` (one JSON per message, in send order).

    Another process (`privacy-functions invoke` then `serve`) sees the same messages. A
    message being delivered is held under an exclusive lock (flock), so two deliverers
    (threads or processes) never run the same message at once; attempts are persisted
    beside it, so a crash does not reset the count.
    """

    _sequence = itertools.count()

    def __init__(self, name: str, root: Path, *, max_attempts: int):
        if not name or "/" in name or name.startswith("."):
            raise ValueError("invalid queue name")
        self.name = name
        self.max_attempts = max_attempts
        self.directory = Path(root) / name
        self.dlq_directory = Path(root) / f"{name}-dlq"
        self._lock = threading.Lock()

    def ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dlq_directory.mkdir(parents=True, exist_ok=True)

    def _write_new(self, directory: Path, stem: str, data: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{stem}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, directory / f"{stem}.json")

    def send(self, message: dict[str, Any]) -> str:
        body = encode_message(message)
        with self._lock:
            # Sortable names: time first, then a per-process counter, then randomness.
            stem = f"{time.time_ns():020d}-{next(self._sequence):08d}-{uuid.uuid4().hex[:8]}"
        self._write_new(self.directory, stem, {"id": stem, "body": body})
        return stem

    def send_many(self, messages: Iterable[dict[str, Any]]) -> list[str]:
        messages = list(messages)
        for message in messages:  # all or nothing: validate before sending any
            encode_message(message)
        return [self.send(message) for message in messages]

    def _pending_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.json"))

    def pending_count(self) -> int:
        return len(self._pending_files())

    def dead_letter_count(self) -> int:
        return len(list(self.dlq_directory.glob("*.json"))) if self.dlq_directory.is_dir() else 0

    @property
    def dead_letters(self) -> list[dict[str, Any]]:
        """Dead-lettered messages, oldest first: {"id", "message", "attempts"}."""
        if not self.dlq_directory.is_dir():
            return []
        letters = []
        for path in sorted(self.dlq_directory.glob("*.json")):
            record = json.loads(path.read_text())
            letters.append({"id": record["id"], "message": json.loads(record["body"]), "attempts": record["attempts"]})
        return letters

    def deliver_pending(self, consumer: Consumer, *, max_messages: int | None = None) -> int:
        """Deliver every pending message (at most `max_messages`); returns how many were acknowledged."""
        acknowledged = taken = 0
        for path in self._pending_files():
            if max_messages is not None and taken >= max_messages:
                break
            outcome = self._deliver_one(path, consumer)
            if outcome is not None:
                taken += 1
                acknowledged += outcome
        return acknowledged

    def _deliver_one(self, path: Path, consumer: Consumer) -> bool | None:
        """Run one message to acknowledgement or dead letter; None if another deliverer has it."""
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            if os.fstat(handle.fileno()).st_nlink == 0:  # finished by someone else meanwhile
                return None
            record = json.loads(handle.read())
            attempts_path = path.with_suffix(".attempts")
            attempts = int(attempts_path.read_text()) if attempts_path.exists() else 0
            while attempts < self.max_attempts:
                attempts += 1
                tmp = attempts_path.with_name(f".{attempts_path.name}.tmp")
                tmp.write_text(str(attempts))
                os.replace(tmp, attempts_path)
                if _acknowledged(consumer, self.name, record["body"]):
                    path.unlink()
                    attempts_path.unlink(missing_ok=True)
                    return True
            self._write_new(self.dlq_directory, record["id"], {**record, "attempts": attempts})
            path.unlink()
            attempts_path.unlink(missing_ok=True)
            log.warning("queue message dead-lettered", extra={"queue": self.name, "attempts": attempts})
            return False


# --- SQS ------------------------------------------------------------------------------


class SqsQueue:
    """Scaleway Queues through boto3; the queue URL is QUEUE_URL_PREFIX + name.

    Dead-lettering is the queue's own RedrivePolicy (maxReceiveCount = queue_max_attempts),
    which `ensure()` sets; a failed delivery makes the message visible again at once.
    """

    def __init__(self, name: str, settings: Settings, *, visibility_timeout: int = 30):
        import boto3
        from botocore.config import Config

        if not name or "/" in name:
            raise ValueError("invalid queue name")
        self.name = name
        self.max_attempts = settings.queue_max_attempts
        self.visibility_timeout = visibility_timeout
        prefix = (settings.queue_url_prefix or "").rstrip("/")
        self.url = f"{prefix}/{name}"
        self.dlq_url = f"{prefix}/{name}-dlq"
        self.client = boto3.client(
            "sqs",
            endpoint_url=settings.sqs_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.sqs_access_key,
            aws_secret_access_key=settings.sqs_secret_key,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30),
        )

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(**params)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = exc.response.get("Error", {}).get("Code", "")
            raise QueueError(
                f"SQS {operation} refused ({code or status})",
                retryable=bool(status and (status >= 500 or status == 429)),
                status=status,
            ) from exc
        except BotoCoreError as exc:
            raise QueueError(f"SQS unreachable ({type(exc).__name__})") from exc

    def ensure(self) -> None:
        dlq_url = self._call("create_queue", QueueName=f"{self.name}-dlq")["QueueUrl"]
        dlq_arn = self._call("get_queue_attributes", QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self._call(
            "create_queue",
            QueueName=self.name,
            Attributes={
                "VisibilityTimeout": str(self.visibility_timeout),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(self.max_attempts)}
                ),
            },
        )

    def send(self, message: dict[str, Any]) -> str:
        body = encode_message(message)
        return self._call("send_message", QueueUrl=self.url, MessageBody=body)["MessageId"]

    def send_many(self, messages: Iterable[dict[str, Any]]) -> list[str]:
        bodies = [encode_message(message) for message in messages]  # all valid before any is sent
        ids: list[str] = []
        for start in range(0, len(bodies), SEND_BATCH_SIZE):
            chunk = bodies[start : start + SEND_BATCH_SIZE]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            response = self._call("send_message_batch", QueueUrl=self.url, Entries=entries)
            if response.get("Failed"):
                raise QueueError(f"SQS refused {len(response['Failed'])} of {len(chunk)} messages")
            by_entry = {item["Id"]: item["MessageId"] for item in response.get("Successful", [])}
            ids.extend(by_entry[str(i)] for i in range(len(chunk)))
        return ids

    def _count(self, url: str) -> int:
        attributes = self._call(
            "get_queue_attributes",
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def pending_count(self) -> int:
        return self._count(self.url)

    def dead_letter_count(self) -> int:
        return self._count(self.dlq_url)

    def deliver_pending(self, consumer: Consumer, *, max_messages: int | None = None) -> int:
        """Receive and deliver until the queue looks empty; returns how many were acknowledged.

        `max_messages` bounds the number of deliveries (retries included). A message already
        received max_attempts times is left to the redrive policy, never delivered again here.
        """
        acknowledged = deliveries = 0
        while max_messages is None or deliveries < max_messages:
            batch = 10 if max_messages is None else min(10, max_messages - deliveries)
            received = self._call(
                "receive_message",
                QueueUrl=self.url,
                MaxNumberOfMessages=batch,
                WaitTimeSeconds=0,
                VisibilityTimeout=self.visibility_timeout,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ).get("Messages", [])
            if not received:
                break
            for item in received:
                if int(item.get("Attributes", {}).get("ApproximateReceiveCount", "1")) > self.max_attempts:
                    continue  # no redrive policy caught it: leave it hidden rather than loop
                deliveries += 1
                if _acknowledged(consumer, self.name, item["Body"]):
                    self._call("delete_message", QueueUrl=self.url, ReceiptHandle=item["ReceiptHandle"])
                    acknowledged += 1
                else:
                    # Visible again at once: the next receive is the retry.
                    self._call(
                        "change_message_visibility",
                        QueueUrl=self.url,
                        ReceiptHandle=item["ReceiptHandle"],
                        VisibilityTimeout=0,
                    )
        return acknowledged
