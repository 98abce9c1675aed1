"""The work a verified request starts, by kind, through the right that answers it.

An account holder's access or portability request queues the export (its mail carries a signed
download link, since the person wrote by email or post); an erasure starts its cooling-off and
the saga; the other kinds are applied by the DPO through their own routes, then closed here with
`complete`, saying what was done (no personal data in the note).

A person without an account is found by the subject search, then served where they appear:
as a prospect of the platform (its controller: access archive, erasure, objection to marketing),
and as a third party named in users' documents (the users are controllers: each is told, and the
person is told whom to address). Each step is resumable (saga steps, markers): `start` runs again
on a request left in progress after a crash and repeats nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from shared.desk import notify, prospects, third_parties
from shared.desk.identifiers import SubjectIdentifiers
from shared.desk.search import search_subject
from shared.platform.clock import moment
from shared.platform.errors import Conflict
from shared.ports.backends import get_storage
from shared.records import audit, registry
from shared.records.registry import RequestRecord
from shared.rights import erasure, export, rectification

ACTOR = "system:desk"
# What a prospect of the platform may ask of its controller, by request kind.
_PROSPECT_WORK = {"access", "portability", "erasure", "objection", "consent_withdrawal"}

# Kinds whose work runs by itself once the request is verified (for an account holder); a
# rectification runs once the DPO gives the corrections (`rectify`), then completes by itself.
AUTOMATED_KINDS = frozenset({*export.EXPORT_KINDS, erasure.KIND, rectification.KIND})


def start(engine: Engine, record: RequestRecord, *, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Start what a verified request asks for; returns what was started (JSON)."""
    if not record.account_id and record.state in (registry.VERIFIED, registry.IN_PROGRESS):
        return _serve_without_account(engine, record, actor=actor, now=now)
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
            raise Conflict(
                f"a {record.kind} request completes by itself once its work is done", code="completes_itself"
            )
        if record.state == registry.VERIFIED:
            record = registry.transition(conn, request_id, registry.IN_PROGRESS, actor=actor, now=now)
        if record.state != registry.IN_PROGRESS:
            raise registry.InvalidTransition(
                f"only a verified request can be completed (this one is {record.state})",
                code="invalid_transition",
            )
        record = registry.transition(conn, request_id, registry.COMPLETED, actor=actor, reason=note, now=now)
        audit.record(
            conn,
            actor=actor,
            action="request.answered",
            outcome=registry.COMPLETED,
            request_id=request_id,
            subject=record.account_id,
            details={"kind": record.kind},
        )
    return record


def _tell_the_person(
    engine: Engine, record: RequestRecord, done: dict[str, Any], *, now: dt.datetime | None
) -> dict[str, Any] | None:
    """The platform's own answer as controller; a third party's answer (whom to address) is third_parties'."""
    if "prospect_archive" in done:
        url, until = prospects.archive_link(get_storage(), record.id, now=now)
        return notify.tell_answer(engine, record, outcome="archive", download_url=url, link_until=until, now=now)
    if "prospect_erasure" in done:
        return notify.tell_answer(engine, record, outcome="erased", now=now)
    if "prospect_objection" in done:
        return notify.tell_answer(engine, record, outcome="objection_recorded", now=now)
    if not done["found"]:
        return notify.tell_answer(engine, record, outcome="nothing_held", now=now)
    return None


def _serve_without_account(
    engine: Engine, record: RequestRecord, *, actor: str, now: dt.datetime | None
) -> dict[str, Any]:
    """Serve a person the platform knows no account of, wherever the search finds them; then close the request."""
    identifiers = SubjectIdentifiers(**record.identifiers())
    if record.state == registry.VERIFIED:
        with engine.begin() as conn:
            record = registry.transition(conn, record.id, registry.IN_PROGRESS, actor=actor, now=now)
    with engine.begin() as conn:
        found = search_subject(conn, identifiers, actor=actor, request_id=record.id).to_json()
    done: dict[str, Any] = {"found": bool(found["matches"])}
    if found["is_platform_prospect"] and record.kind in _PROSPECT_WORK:
        if record.kind in export.EXPORT_KINDS:
            done["prospect_archive"] = prospects.prospect_access_archive(
                engine, get_storage(), request_id=record.id, identifiers=identifiers, now=now
            )
        elif record.kind == erasure.KIND:
            done["prospect_erasure"] = prospects.erase_prospect(
                engine, request_id=record.id, identifiers=identifiers, actor=actor, now=now
            )
        else:
            done["prospect_objection"] = prospects.object_to_prospect_marketing(
                engine, request_id=record.id, identifiers=identifiers, actor=actor, now=now
            )
    if found["third_party_accounts"] or found["prospect_accounts"]:
        done["forwarded"] = third_parties.forward_to_controllers(
            engine, request_id=record.id, kind=record.kind, identifiers=identifiers, now=now
        )
        if identifiers.email:
            done["answered"] = third_parties.third_party_answer(
                engine, request_id=record.id, kind=record.kind, identifiers=identifiers, now=now
            )
    told = _tell_the_person(engine, record, done, now=now)
    if told:
        done["told"] = told
    summary = {
        "found": done["found"],
        "prospect": bool(found["is_platform_prospect"]),
        "controllers_told": len(done["forwarded"]["accounts"]) if "forwarded" in done else 0,
    }
    with engine.begin() as conn:
        current = registry.get_request(conn, record.id)
        if current.state == registry.IN_PROGRESS:
            registry.transition(
                conn,
                record.id,
                registry.COMPLETED,
                actor=actor,
                now=now,
                details={"answered": summary},
            )
            audit.record(
                conn,
                actor=actor,
                action="request.answered",
                outcome=registry.COMPLETED,
                request_id=record.id,
                details={"kind": record.kind, **summary},
            )
    return {"started": "served_without_account", **done}
