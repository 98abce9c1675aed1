"""policy: the privacy policy as data, read by every operation; nothing here writes.

facts       controller, purposes, legal bases, categories, retention rules, recipients, rights, channels
data_map    where personal data lives (table.column, object prefix), its category and erasure strategy
rules       the retention rules as configured: cutoff, invoice_expiry, request_records_rule
"""
