"""dpo-digest (daily CRON): what the desk owes, every morning.

CRON input {"job": "dpo-digest"}: the notices owed to people (an extension or refusal whose mail
did not go out; letters for the post wait for the DPO), then the DPO's digest of open requests
newly due within 7 days, due tomorrow or overdue (each request at each threshold once).
Thin: shared/desk/digest.py.
"""

from __future__ import annotations

from typing import Any

from shared.desk import digest
from shared.platform.runtime import CronFunction
from shared.ports.db import get_engine

cron = CronFunction("dpo-digest")  # input {"job": "dpo-digest"}; any other input answers 400 unknown_job


@cron.job
def run(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    return digest.daily(get_engine())


handle = cron.handle
