"""Retention (policy 5): every period of the policy enforced by a daily schedule.

    toolkit       bounded deletes, keyset pages, object deletes, the audit of a run
    enforcement   enforce-retention: invoices, payments, prospects, sessions, exports, proofs
    inactivity    expire-inactive-accounts: warnings, then erasure through the erase-account saga
    log_rotation  log-rotation: connection and access logs, in the database and in object storage
    lifecycle     the buckets' expiry rules the policy implies, and their drift
    operator      the whole schedule for an operator: plan (changes nothing), run_all, format_plan

Import the module you need (`from shared.retention import enforcement`): this package imports nothing,
so a function loads only its own job (cold start). The period arithmetic is `shared.policy.rules`; the periods themselves `shared.policy.facts`.
"""
