"""Calendar arithmetic for deadlines and retention periods.

The GDPR's "one month" (Art. 12(3)) and the policy's periods are calendar
periods, not fixed day counts: 31 January + 1 month = 28 (or 29) February.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import TypeVar

D = TypeVar("D", dt.date, dt.datetime)


def add_months(value: D, months: int) -> D:
    """Same day `months` later (or earlier), clamped to the last day of a shorter month."""
    month_index = value.month - 1 + months
    year = value.year + month_index // 12
    month = month_index % 12 + 1
    day = min(value.day, calendar.monthrange(year, month)[1])
    return value.replace(year=year, month=month, day=day)


def add_years(value: D, years: int) -> D:
    """Same date `years` later; 29 February becomes 28 February in a common year."""
    return add_months(value, 12 * years)
