"""The work a verified request starts, by kind, through the right that answers it.

An account holder's access or portability request queues the export (its mail carries a signed
download link, since the person wrote by email or post); an erasure starts its cooling-off and
the saga; the other kinds are applied by the DPO through their own routes, then closed here with
`complete`, saying what was done (no personal data in the note).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from shared.platform.clock import moment
from shared.platform.errors import Conflict
from shared.records import audit, registry
from shared.records.registry import RequestRecord
from shared.rights import erasure, export, rectification

# Kinds whose work runs by itself once the request is verified (for an account holder); a
# rectification runs once the DPO gives the corrections (`rectify`), then completes by itself.
AUTOMATED_KINDS = frozenset({*export.EXPORT_KINDS, erasure.KIND, rectification.KIND})


def start(engine: Engine, record: RequestRecord, *, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Start what a verified request asks for; returns what was started (JSON)."""
    if record.state != registry.VERIFIED:
        return {"started": None, "state": record.state}
    if record.account_id and record.kind in export.EXPORT_KINDS:
        export.queue_export(record)
        return {"started": "export", "delivery": "download link mailed to the account's address"}
    if record.account_id and record.kind == erasure.KIND:
        waiting = erasure.start_verified_erasure(engine, record.id, actor=actor, now=now)
        return {"started": "erasure", "erase_after": waiting.details.get("erase_after")}
    if record.account_id and record.kind == rectification.KIND:
        return {"started": None, "next": "give the corrections (rectify): they apply and the processors are told"}
    return {"started": None, "next": "apply it, then complete the request with what was done"}


def rectify(
    engine: Engine, record: RequestRecord, fields: dict[str, Any], *, actor: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Apply the corrections of a verified rectification request (Art. 16); Stripe and Resend are told (Art. 19)."""
    if record.kind != rectification.KIND or not record.account_id:
        raise Conflict("only an account holder's rectification request takes corrections", code="not_a_rectification")
    return rectification.apply_rectification(
        engine, account_id=record.account_id, fields=fields, actor=actor, request_id=record.id, now=now
    )


def complete(
    engine: Engine, request_id: str, *, note: str, actor: str, now: dt.datetime | None = None
) -> RequestRecord:
    """Close a verified request the DPO answered by hand (restriction set, objection recorded...)."""
    now = moment(now)
    with engine.begin() as conn:
        record = registry.get_request(conn, request_id)
        if record.account_id and record.kind in AUTOMATED_KINDS:
            raise Conflict(f"a {record.kind} request completes by itself once its work is done", code="completes_itself")
        if record.state == registry.VERIFIED:
            record = registry.transition(conn, request_id, registry.IN_PROGRESS, actor=actor, now=now)
        if record.state != registry.IN_PROGRESS:
            raise registry.InvalidTransition(
                f"only a verified request can be completed (this one is {record.state})",
                code="invalid_transition",
            )
        record = registry.transition(conn, request_id, registry.COMPLETED, actor=actor, reason=note, now=now)
        audit.record(
            conn, actor=actor, action="request.answered", outcome=registry.COMPLETED, request_id=request_id,
            subject=record.account_id, details={"kind": record.kind},
        )
    return record
