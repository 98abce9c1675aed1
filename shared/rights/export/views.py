"""The JSON answers of the export endpoints: the request, and once completed its download link."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from shared.platform.clock import iso, moment
from shared.platform.errors import NotFound
from shared.records.registry import COMPLETED, RequestRecord, get_request
from shared.rights.export.links import download_link, export_expires_at
from shared.rights.export.requests import EXPORT_KINDS


def _view(record: RequestRecord, now: dt.datetime, *, with_link: bool) -> dict[str, Any]:
    body = record.to_json()
    expires_at = export_expires_at(record)
    if record.state == COMPLETED and expires_at is not None:
        body["expires_at"] = iso(expires_at)
        body["size_bytes"] = record.details.get("size_bytes")
        body["expired"] = now >= expires_at
        if with_link and not body["expired"]:
            body["download_url"], link_expires = download_link(record, now=now)
            body["download_url_expires_at"] = iso(link_expires)
    return body


def request_view(record: RequestRecord, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The JSON answer of the request endpoints (without a download link)."""
    return _view(record, moment(now), with_link=False)


def export_view(
    engine: Engine, request_id: str, *, account_id: str | None, with_link: bool = True, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The request's view; with the download link once completed. Another account's id: 404."""
    with engine.connect() as conn:
        record = get_request(conn, request_id, account_id=account_id)
    if record.kind not in EXPORT_KINDS:
        raise NotFound("no such request", code="request_not_found")
    return _view(record, moment(now), with_link=with_link)
