"""Bounded moments for request bodies: a date input is never before a given day nor in the future.

`past_moment(not_before)` is a pydantic type for a StrictModel field: an ISO 8601 moment with a
time zone (parsed from JSON text, hence `strict=False`), not before `not_before` (00:00 UTC) and
not after the server's clock. Out of range, or at the calendar's edge (`0001-01-01T00:00:00+14:00`
has no UTC equivalent), it fails validation: the route answers 400 invalid_request, never 500.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field

from shared.platform.clock import UTC, utcnow

# Tolerated clock skew between the caller and the server.
FUTURE_SKEW = dt.timedelta(minutes=5)


def bounded(moment: dt.datetime, *, not_before: dt.date) -> dt.datetime:
    """`moment` in UTC if it lies between `not_before` (00:00 UTC) and now, else ValueError."""
    try:
        moment = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError("the moment is out of range") from None
    earliest = dt.datetime.combine(not_before, dt.time(), UTC)
    if moment < earliest:
        raise ValueError(f"the moment cannot be before {not_before.isoformat()}")
    if moment > utcnow() + FUTURE_SKEW:
        raise ValueError("the moment cannot be in the future")
    return moment


def past_moment(not_before: dt.date) -> Any:
    """An aware moment between `not_before` and now (a pydantic Annotated type)."""
    return Annotated[
        AwareDatetime, Field(strict=False), AfterValidator(lambda value: bounded(value, not_before=not_before))
    ]
