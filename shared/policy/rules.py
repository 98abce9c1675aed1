"""The configured retention rules: a policy period turned into the boundary of what has expired.

Clocks are counted in calendar days (UTC): data whose clock started on day D expires on
`facts.expires_at(rule, D)`. `add_months` on dates never decreases when the day increases,
so "expired" is always a prefix of the clock column: one indexed range `clock < cutoff`.
Erasure (what a receipt announces) and the retention schedule (what is deleted) both read
these rules, so a receipt's date is the day the data goes.
"""

from __future__ import annotations

import datetime as dt

from shared.platform.clock import UTC, add_months
from shared.platform.config import get_settings
from shared.policy import facts as policy

ONE_DAY = dt.timedelta(days=1)


# --- Period arithmetic --------------------------------------------------------------------------


def last_expired_day(months: int, days: int, today: dt.date) -> dt.date:
    """The latest clock day D whose period (`months` then `days`) has ended on `today`.

    Ended means add_months(D, months) + days <= today. Because add_months never decreases,
    every earlier day has ended too. At month ends several days share an end (29, 30 and
    31 January + 1 month all end on 28 February): the loop takes the last of them.
    """
    limit = today - dt.timedelta(days=days)
    day = add_months(limit, -months)
    while add_months(day + ONE_DAY, months) <= limit:
        day += ONE_DAY
    return day


def start_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=UTC)


def cutoff(rule: str | policy.RetentionRule, today: dt.date, *, archive: bool = False) -> dt.datetime:
    """Exclusive bound on a timestamp clock: expired (or, with archive=True, due for archive) iff clock < bound."""
    r = rule if isinstance(rule, policy.RetentionRule) else policy.retention_rule(rule)
    months = r.active_months if archive else r.total_months
    if months is None:
        raise ValueError(f"retention rule {r.id!r} has no fixed period")
    return start_of_day(last_expired_day(months, r.active_days, today) + ONE_DAY)


def invoice_rule() -> policy.RetentionRule:
    return policy.configured_rule("invoices", active_months=get_settings().invoice_retention_months)


def request_records_rule() -> policy.RetentionRule:
    return policy.configured_rule("request_records", active_months=get_settings().request_records_retention_months)


def disclosure_records_rule() -> policy.RetentionRule:
    return policy.configured_rule(
        "disclosure_records", active_months=get_settings().disclosure_records_retention_months
    )


def invoice_clock_start(issue_date: dt.date) -> dt.date:
    if get_settings().invoice_retention_clock == "financial_year_end":
        return dt.date(issue_date.year, 12, 31)
    return issue_date


def invoice_expiry(issue_date: dt.date) -> dt.date:
    """The day an invoice (its lines and PDF) is deleted, under the configured clock and period."""
    return policy.expires_at(invoice_rule(), invoice_clock_start(issue_date))


def invoice_issue_bound(today: dt.date) -> dt.date:
    """Exclusive bound on invoices.issue_date: the invoices issued before it have expired."""
    rule = invoice_rule()
    if rule.total_months is None:
        raise ValueError("the invoice rule has no end")
    last = last_expired_day(rule.total_months, rule.active_days, today)
    if get_settings().invoice_retention_clock == "financial_year_end":
        # Years whose 31 December is at most `last` are over.
        last_year = last.year if (last.month, last.day) == (12, 31) else last.year - 1
        return dt.date(last_year + 1, 1, 1)
    return last + ONE_DAY
