"""log-rotation (daily CRON): connection and access logs live one year (policy 5, LCEN).

CRON input {"job": "log-rotation"}: creates the coming months' partitions, drops expired
ones and deletes the boundary range (PostgreSQL; SQLite: ranged deletes in batches),
deletes expired date-partitioned log objects (DeleteObjects, 1000 keys at most, every
version), and reports lifecycle rules that drift from the policy. Thin: shared/retention/log_rotation.py.
"""

from __future__ import annotations

from typing import Any

from shared.platform.runtime import CronFunction
from shared.ports.db import get_engine
from shared.retention import log_rotation

cron = CronFunction("log-rotation")  # input {"job": "log-rotation"}; any other input answers 400 unknown_job


@cron.job
def run(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    return log_rotation.rotate(get_engine())


handle = cron.handle
