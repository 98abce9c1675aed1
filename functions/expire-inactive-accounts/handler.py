"""expire-inactive-accounts (daily CRON): accounts unused for 3 years are warned, then erased (policy 5).

CRON input {"job": "expire-inactive-accounts"}: drops the warnings of accounts active again,
then queues the accounts with a warning or an erasure due, one message per chunk on
`retention-chunks` (worker.py does the work). Thin: every rule is in shared/retention/inactivity.py.
"""

from __future__ import annotations

from typing import Any

from shared.platform.runtime import CronFunction
from shared.ports.db import get_engine
from shared.retention import inactivity

cron = CronFunction(
    "expire-inactive-accounts"
)  # input {"job": "expire-inactive-accounts"}; any other input answers 400 unknown_job


@cron.job
def run(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    return inactivity.schedule(get_engine())


handle = cron.handle
