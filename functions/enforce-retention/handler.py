"""enforce-retention (daily CRON): every other period of policy 5 and of the suite's own records.

CRON input {"job": "enforce-retention"}: invoices (lines, PDFs) 10 years, payment records
archived at 13 months then deleted 5 years later, prospects 3 years after their last
contact, exports after 7 days, request registry and receipts after their proof period,
verification records after 30 days; one audit entry per category; then the daily audit checkpoint. Thin: shared/retention/enforcement.py.
"""

from __future__ import annotations

from typing import Any

from shared.platform.runtime import CronFunction
from shared.ports.db import get_engine
from shared.records import audit
from shared.retention import enforcement

cron = CronFunction("enforce-retention")  # input {"job": "enforce-retention"}; any other input answers 400 unknown_job


@cron.job
def run(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    result = enforcement.enforce(get_engine())
    audit.checkpoint(get_engine())  # the daily anchor of the audit chain's head (Object Lock)
    return result


handle = cron.handle
