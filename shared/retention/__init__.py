"""Retention (policy 5): every period of the policy enforced by a daily schedule.

    toolkit       bounded deletes, keyset pages, object deletes, the audit of a run
    enforcement   enforce-retention: invoices, payments, prospects, sessions, exports, proofs
    inactivity    expire-inactive-accounts: warnings, then erasure through the erase-account saga
    log_rotation  log-rotation: connection and access logs, in the database and in object storage
    operator      the whole schedule for an operator: plan (changes nothing), run_all, format_plan

The period arithmetic is `shared.policy.rules`; the periods themselves `shared.policy.facts`.
"""

from shared.retention import enforcement, inactivity, log_rotation, operator, toolkit
from shared.retention.enforcement import CATEGORIES, enforce
from shared.retention.inactivity import process_chunk, record_activity
from shared.retention.log_rotation import rotate
from shared.retention.operator import format_plan, plan, run_all

__all__ = [
    "CATEGORIES",
    "enforce",
    "enforcement",
    "format_plan",
    "inactivity",
    "log_rotation",
    "operator",
    "plan",
    "process_chunk",
    "record_activity",
    "rotate",
    "run_all",
    "toolkit",
]
