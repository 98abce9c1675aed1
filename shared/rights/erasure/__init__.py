"""Right to erasure (GDPR Art. 17), reconciled with legal retention (Art. 17(3)(b)).

One erasure for every path: the client area's "Delete my account" button, the DPO
(requests received by email or post) and the inactivity schedule (channel
`retention`) all go through the same entry points:

    register_erasure(conn, account_id, *, channel, actor, now=None) -> RequestRecord
        in the caller's transaction: registers the erasure (or returns the pending one),
        deactivates the account at once (sessions and API keys revoked).
    request_erasure(engine, account_id, *, channel, actor, now=None) -> (RequestRecord, created)
        the same in its own transaction, then queues the run when no cooling-off applies.
    run_erasure(engine, request_id, *, now=None) -> str
    run_erasures(engine, request_ids, *, now=None, workers=8) -> {request_id: outcome}
        execute the saga once the cooling-off is over; the queue worker runs the ids of
        one message (up to RUN_MESSAGE_MAX) as batches of ERASURE_BATCH_SIZE.
    enqueue_runs(request_ids, *, reason) / enqueue_due_erasures(engine, *, now=None) -> int
        queue runs, many ids per message; the CRON sweep queues due and unfinished erasures.

The erasure runs ERASURE_COOLING_OFF_DAYS after registration; until then
`cancel_erasure` gives the account back. A restriction under Art. 18 blocks the
`retention` channel only, never the subject's own request.

The saga is a sequence of persisted, idempotent steps (table saga_steps): a crash
anywhere resumes at the interrupted step and no external effect happens twice
(each carries the step's idempotency key, `shared.records.saga.step_key`):

    plan          what will be erased, pseudonymised or retained, and until when
    stripe        delete the customer, which cancels its active subscriptions (404 = done)
    resend        remove the contact (404 = done)
    receipt_mail  the receipt, mailed while the address still exists
    database      driven by the data map, set-based, one transaction with its own record, self-verified
    objects       exports deleted, invoice PDFs moved to the retention archive (Object Lock)
    receipt       the receipt stored as proof (no personal data), the ledger mirrored
then the request completes, the ledger row is written and the audit entry appended.
Several erasures run as one batch share every database statement (WHERE account_id IN
...), so the work per account does not grow with the number of accounts held.

The erasure ledger (request id, account id, pseudonym, date) lets an operator
re-apply every erasure after a backup is restored (`replay_erasures`).

Modules: registration (register, cancel, queue, due), plan (each category's outcome),
strategies (one set-based class per data-map action), scrub (the database step and its
self-check), objects (files deleted or moved to the retention archive), processors (Stripe,
Resend, the receipt mail: notice `erasure_receipt`), receipt (the proof and the ledger),
saga (the batched run), replay (after a backup restore), suspended (what a legal hold kept, erased
once the hold ends); common holds what they share.

Legal holds (`shared.records.holds`): the plan marks what a hold in force keeps as `held` (with
the hold's reason and end), the database and objects steps leave it in place, and the account
row stays as its anchor until the hold ends and `finish_suspended` completes the erasure.
"""

from __future__ import annotations

from shared.rights.erasure.common import (
    CLIENT_CHANNEL,
    KIND,
    QUEUE_NAME,
    RETENTION_CHANNEL,
    RUN_MESSAGE,
    RUN_MESSAGE_MAX,
    STEPS,
    SYSTEM_ACTOR,
    ErasureVerificationFailed,
    ProcessingRestricted,
    erase_after,
)
from shared.rights.erasure.receipt import load_receipt, receipt_key
from shared.rights.erasure.registration import (
    cancel_erasure,
    due_erasures,
    enqueue_due_erasures,
    enqueue_run,
    enqueue_runs,
    erasure_view,
    find_pending_erasure,
    get_erasure,
    register_erasure,
    request_erasure,
    start_verified_erasure,
)
from shared.rights.erasure.replay import ReplayReport, parse_since, replay_erasures
from shared.rights.erasure.saga import run_erasure, run_erasures, run_queued
from shared.rights.erasure.scrub import erase_account_data, erase_accounts_data
from shared.rights.erasure.suspended import count_suspended, finish_suspended

__all__ = [
    "CLIENT_CHANNEL",
    "KIND",
    "QUEUE_NAME",
    "RETENTION_CHANNEL",
    "RUN_MESSAGE",
    "RUN_MESSAGE_MAX",
    "STEPS",
    "SYSTEM_ACTOR",
    "ErasureVerificationFailed",
    "ProcessingRestricted",
    "ReplayReport",
    "cancel_erasure",
    "count_suspended",
    "due_erasures",
    "enqueue_due_erasures",
    "enqueue_run",
    "enqueue_runs",
    "erase_account_data",
    "erase_accounts_data",
    "erase_after",
    "erasure_view",
    "find_pending_erasure",
    "finish_suspended",
    "get_erasure",
    "load_receipt",
    "parse_since",
    "receipt_key",
    "register_erasure",
    "replay_erasures",
    "request_erasure",
    "start_verified_erasure",
    "run_erasure",
    "run_erasures",
    "run_queued",
]
