"""withdraw-consent-worker: propagates newsletter withdrawals to Resend (queue `consent-propagation`).

- Queue: each message names one withdrawal event (idempotency key `consent-propagation:<event id>`);
  the Resend unsubscribe is a saga step of that event, so a crash and a retry unsubscribe once.
- CRON input {"job": "propagation-sweep"}: queues every withdrawal not yet propagated, whether
  its first enqueue failed after the withdrawal committed or its message was dead-lettered
  while Resend was down; and tells every objection outcome the DPO decided whose notice did
  not go (shared.rights.consent.legitimate_interest.tell_decided_outcomes).

One function, two triggers (shared.platform.runtime.queue_and_cron tells them apart).
"""

from __future__ import annotations

from shared.platform.messages import NewsletterWithdrawn
from shared.platform.runtime import (
    CronFunction,
    QueueFunction,
    QueueMessage,
    queue_and_cron,
)
from shared.ports.db import get_engine
from shared.records.saga import PROCESSED_MESSAGES
from shared.rights import consent

SWEEP_JOB = "propagation-sweep"
SWEEP_LIMIT = 1000  # per run: the next run takes the rest

worker = QueueFunction("withdraw-consent-worker", processed=PROCESSED_MESSAGES)
sweep = CronFunction("withdraw-consent-sweep", job=SWEEP_JOB)


@worker.on(NewsletterWithdrawn)
def propagate(message: QueueMessage) -> dict:
    payload = NewsletterWithdrawn.of(message)
    return consent.propagate_newsletter_withdrawal(get_engine(), payload.consent_event_id)


@sweep.job
def sweep_pending(_payload: dict, _ctx) -> dict:
    engine = get_engine()
    answer = {"queued": consent.dispatch_propagations(engine, limit=SWEEP_LIMIT)}
    # Objection outcomes the DPO decided whose notice did not go (Art. 21(1)): told now, once.
    told = consent.tell_decided_outcomes(engine)
    return {**answer, "objection_outcomes_told": told} if told else answer


handle = queue_and_cron(queue=worker, cron=sweep)
