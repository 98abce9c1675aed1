"""records: what the suite keeps as proof and state of its work.

registry    data-subject requests: state machine, received_at, due_at one calendar month later
audit       the append-only, chained audit trail (record, verify_chain)
saga        persisted saga steps (run_step) and the queue functions' processed keys
processing  what an account allows: consent state, restrictions, objections (the one shared check)
accounts    an account's overview
answers     the shape of a request's answer, for the API contract
"""
