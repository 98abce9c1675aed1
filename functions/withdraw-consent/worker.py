"""withdraw-consent-worker: propagates newsletter withdrawals to Resend (queue `consent-propagation`).

Each message names one withdrawal event (idempotency key `consent-propagation:<event id>`);
the Resend unsubscribe is a saga step of that event, so a crash and a retry unsubscribe once.
"""

from __future__ import annotations

from pydantic import Field

from shared import consent
from shared.db import get_engine
from shared.errors import ValidationFailed
from shared.runtime import QueueFunction, QueueMessage, StrictModel, describe_validation_error

worker = QueueFunction("withdraw-consent-worker")


class Propagation(StrictModel):
    consent_event_id: str = Field(min_length=1, max_length=36)
    account_id: str = Field(min_length=1, max_length=36)


@worker.on(consent.PROPAGATION_MESSAGE)
def propagate(message: QueueMessage) -> dict:
    from pydantic import ValidationError

    try:
        payload = Propagation.model_validate(message.payload)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_error(exc)) from None
    return consent.propagate_newsletter_withdrawal(get_engine(), payload.consent_event_id)


handle = worker.handle
