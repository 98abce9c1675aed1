"""Scaleway Queues (SQS protocol) through boto3."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from shared.platform.config import Settings
from shared.ports.queues.base import (
    SEND_BATCH_SIZE,
    Consumer,
    QueueError,
    acknowledges,
    encode_message,
)


class SqsQueue:
    """Scaleway Queues through boto3; the queue URL is QUEUE_URL_PREFIX + name.

    Dead-lettering is the queue's own RedrivePolicy (maxReceiveCount = queue_max_attempts),
    which `ensure()` sets; a failed delivery makes the message visible again at once.
    """

    def __init__(self, name: str, settings: Settings, *, visibility_timeout: int = 30):
        # The SDK is deferred for cold start: only a function that builds this backend loads it.
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
        # Deferred for cold start, like boto3.
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
                if acknowledges(consumer, self.name, item["Body"]):
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
