"""Response deadlines are calendar months (Art. 12(3)), clamped to the end of shorter months."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.records.registry import MAX_EXTENSION_MONTHS, due_date_for, extended_due_date

UTC = dt.UTC


def at(year: int, month: int, day: int, hour: int = 9) -> dt.datetime:
    return dt.datetime(year, month, day, hour, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received", "due"),
    [
        (at(2027, 1, 31), at(2027, 2, 28)),  # common year
        (at(2028, 1, 31), at(2028, 2, 29)),  # leap year
        (at(2027, 11, 30), at(2027, 12, 30)),
        (at(2027, 12, 31), at(2028, 1, 31)),  # across the year end
        (at(2027, 3, 31), at(2027, 4, 30)),
        (at(2027, 2, 28), at(2027, 3, 28)),  # not "end of month to end of month"
        (at(2027, 6, 15), at(2027, 7, 15)),
    ],
)
def test_due_date_is_one_calendar_month_later(received: dt.datetime, due: dt.datetime) -> None:
    assert due_date_for(received) == due


def test_due_date_keeps_the_time_of_day() -> None:
    received = dt.datetime(2027, 1, 31, 23, 59, 59, 123456, tzinfo=UTC)
    assert due_date_for(received) == dt.datetime(2027, 2, 28, 23, 59, 59, 123456, tzinfo=UTC)


def test_extension_counts_from_the_original_due_date() -> None:
    due = at(2027, 3, 31)
    assert extended_due_date(due, 2) == at(2027, 5, 31)
    # Twice one month is the same as two months at once: not 31 Mar -> 30 Apr -> 30 May.
    assert extended_due_date(due, 1) == at(2027, 4, 30)
    assert extended_due_date(due, 1 + 1) == at(2027, 5, 31)


@pytest.mark.parametrize("total", [0, MAX_EXTENSION_MONTHS + 1, -1])
def test_extension_beyond_two_months_is_refused(total: int) -> None:
    with pytest.raises(ValueError):
        extended_due_date(at(2027, 3, 31), total)
