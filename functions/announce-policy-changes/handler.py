"""announce-policy-changes (daily CRON): every account is told once of a substantial policy change (policy 11).

CRON input {"job": "announce-policy-changes"}: queues the accounts not told yet of the latest
substantial version in force, one message per chunk on `policy-notices` (worker.py mails them).
Nothing to announce answers {"version": null}. Thin: the rules are in shared/rights/policy_notices.py.
"""

from __future__ import annotations

from typing import Any

from shared.platform.runtime import CronFunction
from shared.ports.db import get_engine
from shared.rights import policy_notices

cron = CronFunction("announce-policy-changes")  # input {"job": "announce-policy-changes"}; any other: 400 unknown_job


@cron.job
def run(_payload: dict[str, Any], _ctx) -> dict[str, Any]:
    return policy_notices.announce(get_engine())


handle = cron.handle
