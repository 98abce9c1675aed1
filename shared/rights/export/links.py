"""Download links: signed, bound to the request and the account, valid at most 24 hours.

Re-issued on each view; the export itself expires after 7 days (policy rule `exports`),
checked here whatever the storage's lifecycle does; every download is audited.
"""

from __future__ import annotations

import datetime as dt
import hmac

from sqlalchemy import Engine

from shared.platform.clock import UTC, moment, parse_iso
from shared.platform.config import Settings, get_settings
from shared.platform.errors import AppError, Conflict, NotFound, Unauthorized
from shared.platform.pseudonym import pseudonymise
from shared.ports.backends import get_storage
from shared.records import audit
from shared.records.registry import COMPLETED, RequestRecord, get_request
from shared.rights.export.requests import EXPORT_KINDS

# The presigned URL behind a download only has to survive the redirect.
REDIRECT_URL_SECONDS = 300
MAX_LINK_SECONDS = 24 * 3600


class ExportExpired(AppError):
    def __init__(self) -> None:
        super().__init__(410, "export_expired", "this export has expired; request a new one from your client area")


def _invalid_link(
    message: str = "the download link is not valid; open the export again in your client area",
) -> Unauthorized:
    return Unauthorized(message, code="invalid_download_token")


def _link_signature(request_id: str, account_id: str, expires: int) -> str:
    return pseudonymise(f"{request_id}\n{account_id}\n{expires}", purpose="export-download")


def export_expires_at(record: RequestRecord) -> dt.datetime | None:
    value = record.details.get("expires_at")
    return parse_iso(value) if value else None


def download_link(
    record: RequestRecord, *, now: dt.datetime | None = None, settings: Settings | None = None
) -> tuple[str, dt.datetime]:
    """A fresh signed link to the archive and when it stops working (never after the export itself)."""
    settings = settings or get_settings()
    now = moment(now)
    ttl = min(settings.export_link_ttl_seconds, MAX_LINK_SECONDS)
    export_expires = export_expires_at(record)
    if export_expires is None:
        raise ValueError("only a completed export has a download link")
    expires = min(int(now.timestamp()) + ttl, int(export_expires.timestamp()))
    token = f"{expires}.{_link_signature(record.id, record.account, expires)}"
    url = f"{settings.effective_export_function_url}/{record.id}/download?token={token}"
    return url, dt.datetime.fromtimestamp(expires, UTC)


def download_location(engine: Engine, request_id: str, token: str | None, *, now: dt.datetime | None = None) -> str:
    """Check a download link and audit the download; returns a short-lived URL of the archive."""
    now = moment(now)
    expires_text, _, signature = (token or "").partition(".")
    if not expires_text.isdigit() or len(signature) != 64:
        raise _invalid_link()
    expires = int(expires_text)
    with engine.begin() as conn:
        try:
            record = get_request(conn, request_id)
        except NotFound:
            raise _invalid_link() from None
        if record.kind not in EXPORT_KINDS or not record.account_id:
            raise _invalid_link()
        if not hmac.compare_digest(_link_signature(record.id, record.account_id, expires), signature):
            raise _invalid_link()
        if now.timestamp() >= expires:
            raise _invalid_link("the download link has expired; open the export again in your client area")
        expires_at = export_expires_at(record)
        if record.state != COMPLETED or expires_at is None:
            raise Conflict("the export is not ready yet", code="export_not_ready")
        if now >= expires_at:
            raise ExportExpired()
        storage = get_storage()
        bucket, key = get_settings().exports_bucket, record.details["object_key"]
        if not storage.exists(bucket, key):
            raise ExportExpired()  # removed by the bucket's lifecycle rule
        audit.record(
            conn,
            actor="client",
            action="export.downloaded",
            outcome="redirected",
            request_id=record.id,
            subject=record.account_id,
        )
    return storage.presigned_get_url(bucket, key, expires_in=REDIRECT_URL_SECONDS)
