"""Queue messages: the envelope every message travels in, each with its own idempotency key."""

from __future__ import annotations

import json
from typing import Any

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

    def payload_as(self, model: type[ModelT]) -> ModelT:
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
