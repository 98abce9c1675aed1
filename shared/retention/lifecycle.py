"""Object lifecycle rules: what the buckets' own expiry must say, from the policy, and the drift from it.

Storage expires log objects and exports by itself (S3 lifecycle rules, set by Terraform); log rotation
checks each run that the rules in force still match the policy's periods and reports any drift.
A versioned bucket needs NoncurrentVersionExpiration too, or deleted objects stay as old versions.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from shared.platform.config import Settings, get_settings
from shared.policy import facts as policy
from shared.ports.backends import get_storage
from shared.ports.storage import ObjectStore
from shared.retention.toolkit import object_prefix

LIFECYCLE_PREFIXES = ("connection_log_files", "access_log_files", "exports")
NONCURRENT_MAX_DAYS = 1


# --- Lifecycle rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedLifecycle:
    bucket_setting: str
    prefix: str
    rule: str
    min_days: int  # expiring earlier would delete before the period ends
    max_days: int  # expiring later would keep data beyond it


@functools.cache
def _day_bounds(rule_id: str) -> tuple[int, int]:
    """Shortest and longest length in days of the rule's period, over every start day of a leap cycle."""
    rule = policy.retention_rule(rule_id)
    start = dt.date(2024, 1, 1)
    lengths = {(policy.expires_at(rule, day) - day).days for day in (start + dt.timedelta(days=n) for n in range(1461))}
    return min(lengths), max(lengths)


def expected_lifecycle() -> list[ExpectedLifecycle]:
    expected = []
    for prefix_id in LIFECYCLE_PREFIXES:
        prefix = object_prefix(prefix_id)
        low, high = _day_bounds(prefix.retention)
        expected.append(ExpectedLifecycle(prefix.bucket_setting, prefix.prefix(), prefix.retention, low, high))
    return expected


def policy_lifecycle_rules(settings: Settings | None = None) -> dict[str, list[dict[str, Any]]]:
    """Lifecycle rules that match the policy, per bucket (what Terraform should declare)."""
    settings = settings or get_settings()
    rules: dict[str, list[dict[str, Any]]] = {}
    for item in expected_lifecycle():
        rules.setdefault(getattr(settings, item.bucket_setting), []).append(
            {
                "ID": f"{item.rule}-{item.prefix.strip('/').replace('/', '-')}",
                "Status": "Enabled",
                "Filter": {"Prefix": item.prefix},
                "Expiration": {"Days": item.min_days},
                "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_MAX_DAYS},
            }
        )
    return rules


def _rule_prefix(rule: dict[str, Any]) -> str | None:
    """The prefix a rule applies to; None when it only applies to tagged objects (not all of ours)."""
    flt = rule.get("Filter")
    if flt is None:
        return rule.get("Prefix", "")
    if "Tag" in flt or "Tags" in flt.get("And", {}):
        return None
    return flt.get("Prefix", flt.get("And", {}).get("Prefix", ""))


def _drift_of(item: ExpectedLifecycle, rules: list[dict[str, Any]]) -> list[str]:
    applicable = [
        r
        for r in rules
        if r.get("Status") == "Enabled" and (prefix := _rule_prefix(r)) is not None and item.prefix.startswith(prefix)
    ]
    if not applicable:
        return ["no_rule"]
    problems = []
    # Overlapping rules: S3 applies the earliest expiration.
    days = [r["Expiration"]["Days"] for r in applicable if "Days" in r.get("Expiration", {})]
    if not days:
        problems.append("no_expiration")
    elif min(days) > item.max_days:
        problems.append("expires_too_late")
    elif min(days) < item.min_days:
        problems.append("expires_too_early")
    noncurrent = [
        r["NoncurrentVersionExpiration"]["NoncurrentDays"]
        for r in applicable
        if "NoncurrentDays" in r.get("NoncurrentVersionExpiration", {})
    ]
    if not noncurrent:
        problems.append("no_noncurrent_expiration")
    elif min(noncurrent) > NONCURRENT_MAX_DAYS:
        problems.append("noncurrent_kept_too_long")
    return problems


def lifecycle_drift(storage: ObjectStore | None = None, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Where the buckets' lifecycle rules differ from the policy; [] when they all match."""
    storage = storage or get_storage()
    settings = settings or get_settings()
    rules_by_bucket: dict[str, list[dict[str, Any]]] = {}
    drift = []
    for item in expected_lifecycle():
        bucket = getattr(settings, item.bucket_setting)
        if bucket not in rules_by_bucket:
            rules_by_bucket[bucket] = storage.get_lifecycle(bucket)
        for problem in _drift_of(item, rules_by_bucket[bucket]):
            drift.append(
                {
                    "bucket": bucket,
                    "prefix": item.prefix,
                    "rule": item.rule,
                    "problem": problem,
                    "expected_days": [item.min_days, item.max_days],
                    "noncurrent_max_days": NONCURRENT_MAX_DAYS,
                }
            )
    return drift
