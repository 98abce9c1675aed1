"""The DPO desk: requests received by email, post or the client area, from anyone, answered on time.

Above the rights it routes work to (export, erasure, consent...), beside retention.
"""
