"""The whole retention schedule (policy 5) for an operator: `privacy-functions retention plan|run`.

Three daily CRON functions apply it, each with its own module:

    expire-inactive-accounts  shared.retention.inactivity    warnings, then erasure (3 years)
    log-rotation              shared.retention.log_rotation  connection/access logs and log objects (1 year)
    enforce-retention         shared.retention.enforcement   invoices, payments, prospects, sessions, exports,
                                                             request registry and receipts, verification records

`plan(engine, at=...)` counts, per category of the three, what is due at a moment without
changing anything; `run_all(engine)` applies the three jobs with the code the CRON functions
run. The CLI reads `--at` with `shared.platform.clock.parse_date_argument`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from shared.platform.clock import moment
from shared.retention import enforcement, inactivity, log_rotation
from shared.retention.toolkit import Progress


def plan(engine: Engine, *, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every category of the schedule (the three CRON jobs) and what is due at `at`; changes nothing."""
    at = moment(at)
    return [*inactivity.plan(engine, at=at), *log_rotation.plan(engine, at=at), *enforcement.plan(engine, at=at)]


def run_all(engine: Engine, *, now: dt.datetime | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """What the three CRON functions do, in one go: the operator's `retention run`."""
    now = moment(now)
    return {
        "expire-inactive-accounts": inactivity.schedule(engine, now=now, progress=progress),
        "log-rotation": log_rotation.rotate(engine, now=now, progress=progress),
        "enforce-retention": enforcement.enforce(engine, now=now, progress=progress),
    }


def _counts_text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_counts_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return str(len(value)) if value and isinstance(value[0], dict) else (",".join(map(str, value)) or "0")
    return str(value)


def format_plan(entries: list[dict[str, Any]], *, at: dt.datetime | None = None) -> str:
    """The plan for an operator: one block per category, counts then the rule that applies."""
    when = moment(at).isoformat(timespec="seconds")
    lines = [f"Retention plan at {when} (nothing was changed)", ""]
    for entry in entries:
        rule = entry["rule"]
        lines.append(f"{entry['category']:<36} {entry['action']:<16} {_counts_text(entry['due'])}")
        lines.append(f"    {entry['scope']}")
        lines.append(f"    rule {rule['id']}: {rule['period']}; clock: {rule['clock']}; basis: {rule['legal_basis']}")
    return "\n".join(lines)
