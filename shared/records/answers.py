"""The answers' shapes, for the API contract: what a request endpoint returns about a request.

`RequestRecord.to_json` builds the answer; these models only describe it (shared.platform.openapi reads
them from a route's `responses=`). Fields beyond these may follow (an export's download link, an
erasure's `erase_after`): a model allows them.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


class RequestAnswer(BaseModel):
    """A data-subject request as its endpoints show it: no personal data, ids and dates only."""

    model_config = ConfigDict(extra="allow")

    request_id: str
    kind: str
    channel: str
    state: str
    received_at: dt.datetime
    due_at: dt.datetime
    extended_due_at: dt.datetime | None = None
    extension_reason: str | None = None
    closed_at: dt.datetime | None = None
    reason: str | None = None
