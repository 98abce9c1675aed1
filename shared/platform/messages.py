"""Queue messages: the envelope every message travels in, each with its own idempotency key."""

from __future__ import annotations

import builtins
import json
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.platform.errors import ValidationFailed
from shared.platform.http import (
    ModelT,
    _json_object,
    describe_validation_error,
    json_dumps,
    validated,
)
from shared.platform.logs import get_logger


class QueueMessage(BaseModel):
    """The envelope of every queue message: each one carries its own idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$")
    # The key is logged and stored (processed_messages): build it from ids, never from personal data.
    idempotency_key: str = Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    payload: dict[str, Any] = Field(default_factory=dict)

    def payload_as(self, model: builtins.type[ModelT]) -> ModelT:
        """The payload as `model` (a StrictModel), else 400 invalid_request: the queue does not retry it."""
        return validated(model, self.payload)


def make_message(type: str, idempotency_key: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """A validated envelope, ready to send (the queue backends serialise it as JSON)."""
    message = QueueMessage(type=type, idempotency_key=idempotency_key, payload=payload or {})
    return json.loads(json_dumps(message))


def parse_message(body: bytes) -> QueueMessage:
    """The envelope in a queue delivery, else 400 invalid_request (logged with the message key only)."""
    log = get_logger()
    try:
        data = _json_object(body)
    except ValidationFailed:
        log.warning("malformed queue message", extra={"idempotency_key": None})
        raise
    try:
        return QueueMessage.model_validate(data)
    except ValidationError as exc:
        key = data.get("idempotency_key")
        log.warning(
            "malformed queue message",
            extra={"idempotency_key": key[:200] if isinstance(key, str) else None},
        )
        raise ValidationFailed(describe_validation_error(exc)) from None


# --- The contracts: one model per message type, shared by the sender and the worker ------------------

Id = Annotated[str, Field(min_length=1, max_length=36)]
MAX_IDS_PER_MESSAGE = 1000


class Contract(BaseModel):
    """A message type's payload; `QUEUE` and `TYPE` say where it goes and how the worker knows it."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    QUEUE: ClassVar[str]
    TYPE: ClassVar[str]

    def envelope(self, idempotency_key: str) -> dict[str, Any]:
        """The message to send: this payload in its envelope, under the sender's idempotency key."""
        return make_message(self.TYPE, idempotency_key, self.model_dump(mode="json"))

    @classmethod
    def of(cls, message: QueueMessage) -> Self:
        """The payload of a delivered message as this contract, else 400 invalid_request (not retried)."""
        if message.type != cls.TYPE:
            raise ValidationFailed(f"a {cls.TYPE} message was expected", code="unknown_message_type")
        try:
            return cls.model_validate(message.payload, strict=False)  # JSON has no tuples or datetimes
        except ValidationError as exc:
            raise ValidationFailed(describe_validation_error(exc)) from None


class ExportRun(Contract):
    """Build the archive of one access/portability request."""

    QUEUE: ClassVar[str] = "export-requests"
    TYPE: ClassVar[str] = "export.run"
    request_id: Id


class ErasureRun(Contract):
    """Run (or resume) these erasures, in batches, within the worker's time budget."""

    QUEUE: ClassVar[str] = "erasure-steps"
    TYPE: ClassVar[str] = "erasure.run"
    request_ids: list[Id] = Field(min_length=1, max_length=MAX_IDS_PER_MESSAGE)


class NewsletterWithdrawn(Contract):
    """Propagate one newsletter withdrawal to Resend."""

    QUEUE: ClassVar[str] = "consent-propagation"
    TYPE: ClassVar[str] = "consent.newsletter_withdrawn"
    consent_event_id: Id
    account_id: Id


class InactivityChunk(Contract):
    """Warn, or register the erasure of, these inactive accounts."""

    QUEUE: ClassVar[str] = "retention-chunks"
    TYPE: ClassVar[str] = "inactivity.chunk"
    account_ids: list[Id] = Field(min_length=1, max_length=MAX_IDS_PER_MESSAGE)


class StripeEventToApply(Contract):
    """A verified, minimised Stripe event to apply to the payment records, in order."""

    QUEUE: ClassVar[str] = "stripe-events"
    TYPE: ClassVar[str] = "stripe.event"
    event_id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    created: int
    api_version: str | None = Field(default=None, max_length=32)
    livemode: bool
    object_id: str | None = Field(default=None, max_length=255)
    facts: dict[str, Any]


class RectificationRun(Contract):
    """Tell the recipients (Stripe, Resend) of one rectification (Art. 19); the values are read from the database."""

    QUEUE: ClassVar[str] = "rectification-propagation"
    TYPE: ClassVar[str] = "rectification.run"
    request_id: Id


class PolicyNoticeChunk(Contract):
    """Tell these accounts of a substantial change of the policy (policy 11), once each."""

    QUEUE: ClassVar[str] = "policy-notices"
    TYPE: ClassVar[str] = "policy.notice_chunk"
    version: str = Field(min_length=1, max_length=16, pattern=r"^[0-9]+(\.[0-9]+)*$")
    account_ids: list[Id] = Field(min_length=1, max_length=MAX_IDS_PER_MESSAGE)


CONTRACTS: tuple[type[Contract], ...] = (
    ExportRun,
    ErasureRun,
    NewsletterWithdrawn,
    InactivityChunk,
    StripeEventToApply,
    RectificationRun,
    PolicyNoticeChunk,
)
