"""Objection to processing based on legitimate interest (Art. 21(1); policy 8.6 and 3.3).

Each purpose of policy 3.3 has its objection kind, a flag of `processing_restrictions` like the
objections to marketing and analytics, honoured by every collector through
`shared.records.processing.may_process`:

- improvement of the services, usage statistics: the objection takes effect at once, in one
  transaction under the account lock: the flag is set (no more events are collected for the
  account under that purpose) and the events held under it are deleted. Statistics already
  anonymised no longer relate to the person: the answer says so.
- platform security, fraud prevention: the objection is a request of the registry (kind
  `objection`, details `awaiting: dpo_decision`) that the DPO decides (`decide_objection`): either
  accepted (the flag is set) or overridden by compelling legitimate grounds, recorded as the
  request's reason (Art. 12(4)). Either way the person is told the outcome and the right to lodge a
  complaint with the CNIL, once (a saga step, the mail keyed by the request). The logs keep their
  1-year rule whatever the outcome (LCEN).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeGuard

from sqlalchemy import Connection, Engine, delete, select

from shared import notices
from shared.platform.clock import UTC, iso_or_none, moment
from shared.platform.config import get_settings
from shared.platform.errors import AppError, Conflict, ExternalServiceError, NotFound, ValidationFailed
from shared.policy import facts as policy
from shared.ports.backends import get_mailer
from shared.ports.mail import Message
from shared.ports.tables import accounts, analytics_events, dsr_requests, saga_steps
from shared.records import audit
from shared.records import registry as requests
from shared.records.processing import (
    DPO_DECIDED_LI_PURPOSES,
    LI_PURPOSES,
    OBJECTION_FOR_LI_PURPOSE,
    flags_in_force,
)
from shared.records.saga import run_step, step_key
from shared.rights.consent.writes import (
    _REQUEST_CHANNEL,
    AWAITING_DPO_DECISION,
    DPO,
    attach_request,
    check_channel,
    lock_account,
    register,
    set_flag_in,
)

ACCEPTED, OVERRIDDEN = "accepted", "overridden"
OUTCOMES = (ACCEPTED, OVERRIDDEN)
PENDING = "pending_dpo_decision"
IN_FORCE = "in_force"
TELL_STEP = "tell-objection-outcome"
SWEEP_DAYS = 35
_RULES = {o.purpose: o for o in policy.LEGITIMATE_INTEREST_OBJECTIONS}


def _text(t: policy.Text) -> dict[str, str]:
    return {"fr": t.fr, "en": t.en}


@dataclass(frozen=True)
class Objection:
    """What an objection changed, or where it stands; the client's answer."""

    purpose: str
    state: str  # in_force | pending_dpo_decision
    changed: bool
    request_id: str | None = None
    due_at: dt.datetime | None = None
    events_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        rule = _RULES[self.purpose]
        return {
            "purpose": self.purpose,
            "kind": OBJECTION_FOR_LI_PURPOSE[self.purpose],
            "state": self.state,
            "changed": self.changed,
            "decided_by_dpo": rule.decided_by_dpo,
            "request_id": self.request_id,
            "due_at": iso_or_none(self.due_at),
            "events_deleted": self.events_deleted,
            "note": _text(rule.note),
        }


def _check_purpose(purpose: Any) -> str:
    if not isinstance(purpose, str) or purpose not in LI_PURPOSES:
        raise ValidationFailed(f"purpose must be one of {', '.join(LI_PURPOSES)}", code="unknown_purpose")
    return purpose


def _pending(record: requests.RequestRecord | None) -> TypeGuard[requests.RequestRecord]:
    return record is not None and record.details.get("awaiting") == AWAITING_DPO_DECISION


def object_to_processing(
    engine: Engine,
    account_id: str,
    purpose: str,
    *,
    channel: str,
    actor: str,
    now: dt.datetime | None = None,
) -> Objection:
    """Object to a legitimate-interest purpose (policy 3.3). Idempotent: objecting again changes nothing."""
    purpose = _check_purpose(purpose)
    check_channel(channel)
    now = moment(now)
    kind = OBJECTION_FOR_LI_PURPOSE[purpose]
    with engine.begin() as conn:
        lock_account(conn, account_id)
        if kind in flags_in_force(conn, account_id):
            return Objection(purpose, IN_FORCE, changed=False)
        if purpose in DPO_DECIDED_LI_PURPOSES:
            return _register_for_decision(conn, account_id, purpose, channel=channel, actor=actor, now=now)
        flag = set_flag_in(
            conn,
            account_id=account_id,
            kind=kind,
            reason_code="data_subject_request",
            note=None,
            channel=channel,
            actor=actor,
            now=now,
        )
        assert flag is not None  # not in force: checked above under the account lock
        deleted = max(
            conn.execute(
                delete(analytics_events).where(
                    analytics_events.c.account_id == account_id, analytics_events.c.purpose == purpose
                )
            ).rowcount,
            0,
        )
        details = {"purposes": [purpose], "objections": [kind], "events_deleted": deleted}
        request_id = register(
            conn, account_id=account_id, kind="objection", channel=channel, actor=actor, now=now, details=details
        )
        attach_request(conn, request_id, [flag.id])
        audit.record(
            conn,
            actor=actor,
            action="objection.events_deleted",
            outcome="deleted",
            subject=account_id,
            request_id=request_id,
            details={"purpose": purpose, "events_deleted": deleted},
        )
    return Objection(purpose, IN_FORCE, changed=True, request_id=request_id, events_deleted=deleted)


def _register_for_decision(
    conn: Connection, account_id: str, purpose: str, *, channel: str, actor: str, now: dt.datetime
) -> Objection:
    """The objection to security or fraud prevention: a request the DPO decides within the month."""
    open_record = requests.find_open_request(conn, account_id=account_id, kind="objection")
    if _pending(open_record):
        if purpose in open_record.details.get("purposes", []):
            return Objection(
                purpose, PENDING, changed=False, request_id=open_record.id, due_at=open_record.effective_due_at
            )
        raise Conflict(
            "an objection awaits the DPO's decision; object to this purpose once it is decided",
            code="objection_pending",
        )
    if open_record is not None:  # an objection of another kind left open by a crash: finish it first
        raise Conflict("an objection request is open for this account", code="request_already_open")
    record = requests.create_request(
        conn,
        account_id=account_id,
        kind="objection",
        channel=_REQUEST_CHANNEL[channel],
        now=now,
        actor=actor,
        details={
            "purposes": [purpose],
            "objections": [OBJECTION_FOR_LI_PURPOSE[purpose]],
            "awaiting": AWAITING_DPO_DECISION,
        },
    )
    if record.channel not in requests.SELF_VERIFIED_CHANNELS:
        # The caller is the account holder (client token) or a signed link: the identity is verified.
        record = requests.transition(conn, record.id, requests.VERIFIED, actor=actor, now=now)
    return Objection(purpose, PENDING, changed=True, request_id=record.id, due_at=record.effective_due_at)


def pending_objections(conn: Connection, account_id: str) -> list[dict[str, Any]]:
    """The objection awaiting the DPO's decision, if any (what the holder sees)."""
    record = requests.find_open_request(conn, account_id=account_id, kind="objection")
    if not _pending(record):
        return []
    return [
        {
            "request_id": record.id,
            "purposes": list(record.details.get("purposes", [])),
            "received_at": iso_or_none(record.received_at),
            "due_at": iso_or_none(record.effective_due_at),
        }
    ]


def objections_awaiting_decision(conn: Connection, *, limit: int = 100) -> list[dict[str, Any]]:
    """For the DPO's desk: objections to security or fraud prevention not decided yet, oldest due first."""
    r = dsr_requests
    rows = conn.execute(
        select(r.c.id)
        .where(r.c.kind == "objection", r.c.state.in_(sorted(requests.OPEN_STATES)))
        .order_by(r.c.due_at)
        .limit(limit)
    ).scalars()
    records = [rec for rec in requests.load_many(conn, list(rows)) if _pending(rec)]
    return [
        {**rec.to_json(), "account_id": rec.account_id, "purposes": list(rec.details.get("purposes", []))}
        for rec in records
    ]


# --- The DPO's decision ---------------------------------------------------------------------------


def decide_objection(
    engine: Engine,
    *,
    request_id: str,
    outcome: str,
    grounds: str | None,
    actor: str,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """The DPO decides an objection to security or fraud prevention, and the person is told.

    `accepted`: the objection's flag is set (`may_process` refuses the purpose from now on).
    `overridden`: `grounds` (required, no personal data, at most 1000 characters) are the compelling
    legitimate grounds, kept as the request's reason and told to the person. The decision is one
    transaction; the notice (outcome, grounds, the right to complain to the CNIL) is a saga step
    after it: if the mail service is down the decision stands, the answer is 503 and calling again
    with the same outcome sends the notice, once. Another outcome afterwards is 409 already_decided.
    """
    if outcome not in OUTCOMES:
        raise ValidationFailed(f"outcome must be one of {', '.join(OUTCOMES)}", code="invalid_outcome")
    if outcome == ACCEPTED and grounds is not None:
        raise ValidationFailed("grounds are given only when the objection is overridden", code="unexpected_grounds")
    now = moment(now)
    with engine.begin() as conn:
        record = (
            requests.get_request(conn, request_id) if isinstance(request_id, str) and len(request_id) <= 36 else None
        )
        if record is None or record.kind != "objection" or record.details.get("awaiting") != AWAITING_DPO_DECISION:
            raise NotFound("no objection awaiting a DPO decision has this id", code="objection_not_found")
        if record.is_terminal:
            if record.details.get("outcome") != outcome:
                raise Conflict(
                    f"this objection was already decided ({record.details.get('outcome')})", code="already_decided"
                )
        else:
            record = _decide_in(conn, record, outcome=outcome, grounds=grounds, actor=actor, now=now)
    try:
        told = _tell(engine, record, now=now)
    except ExternalServiceError:
        raise AppError(
            503,
            "notification_failed",
            "the decision is recorded but the person could not be told yet; "
            "decide again with the same outcome to send the notice",
        ) from None
    return {
        "request": record.to_json(),
        "outcome": outcome,
        "purposes": list(record.details.get("purposes", [])),
        "told": told,
    }


def _decide_in(
    conn: Connection, record: requests.RequestRecord, *, outcome: str, grounds: str | None, actor: str, now: dt.datetime
) -> requests.RequestRecord:
    exists = _account_exists(conn, record.account_id)  # the request outlives an erased account
    if exists:
        lock_account(conn, record.account)
    purposes = list(record.details.get("purposes", []))
    decision = {"outcome": outcome, "decided_by": actor, "decided_at": now.isoformat()}
    if outcome == OVERRIDDEN:
        # The grounds are the request's reason: checked (required, no personal data) by the registry.
        return requests.transition(
            conn, record.id, requests.REJECTED, actor=actor, reason=grounds, now=now, details=decision
        )
    flag_ids = []
    if exists:
        for purpose in purposes:
            flag = set_flag_in(
                conn,
                account_id=record.account,
                kind=OBJECTION_FOR_LI_PURPOSE[purpose],
                reason_code="data_subject_request",
                note=None,
                channel=DPO,
                actor=actor,
                now=now,
            )
            if flag is not None:
                flag_ids.append(flag.id)
    attach_request(conn, record.id, flag_ids)
    if record.state != requests.IN_PROGRESS:
        requests.transition(conn, record.id, requests.IN_PROGRESS, actor=actor, now=now)
    return requests.transition(conn, record.id, requests.COMPLETED, actor=actor, now=now, details=decision)


def _account_exists(conn: Connection, account_id: str | None) -> bool:
    return (
        account_id is not None
        and conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first() is not None
    )


def _tell(engine: Engine, record: requests.RequestRecord, *, now: dt.datetime) -> bool:
    """The outcome notice, once per request (saga step; the mail's key is the step's)."""

    def send() -> dict[str, Any]:
        with engine.connect() as conn:
            email = conn.execute(select(accounts.c.email).where(accounts.c.id == record.account_id)).scalar()
        if email is None:  # the account was erased meanwhile: nobody to tell
            return {"told": False}
        get_mailer().send(decision_message(record, to=email))
        with engine.begin() as conn:
            audit.record(
                conn,
                actor="system:objections",
                action="objection.outcome_told",
                outcome="sent",
                request_id=record.id,
                subject=record.account_id,
                details={"outcome": record.details.get("outcome")},
            )
        return {"told": True}

    result = run_step(engine, record.id, TELL_STEP, send, now=now)
    return bool(result and result.get("told"))


def tell_decided_outcomes(engine: Engine, *, now: dt.datetime | None = None, limit: int = 200) -> int:
    """Tell every outcome decided in the last `SWEEP_DAYS` days whose notice did not go (the process
    died between the decision and the mail, or the mail service was down and the DPO did not retry).
    Run by the hourly sweep of withdraw-consent-worker; the notice is still sent once (saga step)."""
    now = moment(now)
    r = dsr_requests
    query = (
        select(r.c.id)
        .outerjoin(saga_steps, (saga_steps.c.job_id == r.c.id) & (saga_steps.c.step == TELL_STEP))
        .where(
            r.c.kind == "objection",
            r.c.state.in_((requests.COMPLETED, requests.REJECTED)),
            r.c.closed_at >= now - dt.timedelta(days=SWEEP_DAYS),
            saga_steps.c.state.is_(None) | (saga_steps.c.state != "completed"),
        )
        .order_by(r.c.closed_at)
        .limit(limit)
    )
    told = 0
    with engine.connect() as conn:
        records = requests.load_many(conn, list(conn.execute(query).scalars()))
    for record in records:
        if record.details.get("awaiting") != AWAITING_DPO_DECISION:
            continue  # answered at once (improvement, statistics, marketing): nothing to tell
        try:
            told += _tell(engine, record, now=now)
        except ExternalServiceError:
            break  # the next sweep
    return told


def decision_message(record: requests.RequestRecord, *, to: str) -> Message:
    purposes = [policy.purpose(p) for p in record.details.get("purposes", [])]
    received = record.received_at.astimezone(UTC).date()
    return notices.mail(
        "objection_decision",
        to=to,
        idempotency_key=step_key(record.id, TELL_STEP),
        accepted=record.details.get("outcome") == ACCEPTED,
        grounds=record.reason or "",
        purposes_fr=", ".join(p.label.fr for p in purposes),
        purposes_en=", ".join(p.label.en for p in purposes),
        received_on_fr=f"{received:%d/%m/%Y}",
        received_on_iso=received.isoformat(),
        cnil_name=policy.CNIL.name,
        cnil_website=policy.CNIL.website,
        cnil_address=policy.CNIL.address,
        dpo_email=policy.CONTROLLER.dpo_email,
        client_area_url=get_settings().client_area_url,
    )
