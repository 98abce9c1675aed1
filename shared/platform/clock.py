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


# --- The one clock and the one ISO 8601 format ------------------------------------------------

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """The server's time, aware, in UTC: every timestamp we record comes from here."""
    return dt.datetime.now(UTC)


def moment(now: dt.datetime | None = None) -> dt.datetime:
    """The moment an operation is for: `now` (tests and replays give one) in UTC, else the server's clock."""
    return (now or utcnow()).astimezone(UTC)


def iso(moment: dt.datetime, *, timespec: str = "auto") -> str:
    """A moment as ISO 8601 in UTC with a `Z`: `2026-12-02T11:06:39Z` (timespec as datetime.isoformat)."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def iso_or_none(moment: dt.datetime | None, *, timespec: str = "auto") -> str | None:
    return None if moment is None else iso(moment, timespec=timespec)


def parse_iso(value: str) -> dt.datetime:
    """The inverse of `iso`: an aware UTC datetime from ISO 8601 text (`Z` or an offset)."""
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("an ISO 8601 moment needs a time zone")
    return parsed.astimezone(UTC)


def parse_date_argument(value: str, *, name: str = "the date") -> dt.datetime:
    """A command-line date: YYYY-MM-DD (the start of that day, UTC) or an ISO 8601 timestamp; naive means UTC.

    Raises ValueError naming the argument (`name`, e.g. "--at") when the text is neither.
    """
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 timestamp") from None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 has no UTC equivalent
        raise ValueError(f"{name} is out of the calendar's range") from None
