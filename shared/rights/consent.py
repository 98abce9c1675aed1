"""Consent, objection and restriction (policy 3.4, 8.4, 8.6, 8.7; GDPR Art. 7, 18, 21).

- Consent lives in an append-only ledger (`consent_events`): the current state of a
  purpose is its latest event, derived on every read and never stored apart.
- Objections (Art. 21) and restrictions (Art. 18) are flags in
  `processing_restrictions`, in force until lifted; they are never deleted.
- Every function of the suite asks the shared checks below before processing:
  `may_send_marketing`, `may_collect_analytics`, `is_restricted`,
  `erasure_by_inactivity_allowed` (or `restricted_accounts()` in bulk). Marketing
  mail has one path, `send_marketing`; analytics collection has one path,
  `collect_analytics_event`.
- A newsletter withdrawal is propagated to Resend by the `consent-propagation`
  queue (a saga step per withdrawal event, so a retry unsubscribes once); an
  analytics withdrawal deletes the events collected under the consent in the same
  transaction as the withdrawal itself, so no window exists where they remain.

Writes for one account are serialised by locking its `accounts` row, which makes
"withdraw twice" write one event even when the two calls race.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, delete, insert, select, update

from shared.records import audit
from shared.records.processing import (  # noqa: F401  (the vocabulary of consent, re-exported for its callers)
    ALL,
    FLAG_KINDS,
    GIVEN,
    OBJECTION_ANALYTICS,
    OBJECTION_DIRECT_MARKETING,
    OBJECTION_FOR_PURPOSE,
    PURPOSES,
    RESTRICTION,
    RESTRICTION_REASONS,
    WITHDRAWN,
    ConsentState,
    Flag,
    account_status,
    all_flags,
    blocked_by,
    consent_history,
    consent_state,
    erasure_by_inactivity_allowed,
    flag_from_row,
    flags_in_force,
    is_restricted,
    latest_event,
    may_collect_analytics,
    may_send_marketing,
    restricted_accounts,
)

from shared.records import registry as requests
from shared.identity.client import header_value
from shared.platform.errors import ExternalServiceError
from shared.platform.config import get_settings
from shared.platform.clock import UTC, iso_or_none, utcnow
from shared.platform.errors import AppError, Conflict, NotFound, ValidationFailed
from shared.platform.logs import get_logger
from shared.policy.facts import POLICY_VERSION
from shared.platform.pseudonym import pseudonymise
from shared.ports.tables import accounts, analytics_events, consent_events, processing_restrictions, saga_steps

PROPAGATION_QUEUE = "consent-propagation"
PROPAGATION_MESSAGE = "consent.newsletter_withdrawn"
RESEND_STEP = "resend_unsubscribe"
AUDIT_STEP = "audit_propagation"

# Ledger channels, and the request-registry channel each one maps to.
CLIENT_AREA, EMAIL_LINK, DPO, GPC = "client_area", "email_link", "dpo", "gpc"
_REQUEST_CHANNEL = {CLIENT_AREA: "client_area", EMAIL_LINK: "email", DPO: "dpo", GPC: "client_area"}

OBJECTION_REASONS = ("data_subject_request", "gpc_signal")
LIFT_REASONS = (
    "accuracy_verified",
    "processing_lawful",
    "legal_claims_closed",
    "objection_rejected",
    "data_subject_request",
    "new_explicit_consent",
)
MAX_NOTE_LENGTH = 2000

GPC_HEADER = "Sec-GPC"
_TOKEN_VERSION = "v1"
_CAMPAIGN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_ONE_TICK = dt.timedelta(microseconds=1)


# --- Views -------------------------------------------------------------------------------


def status(conn: Connection, account_id: str) -> dict[str, Any]:
    """What the account's holder sees: consents, restriction and objections, and the ledger."""
    flags = flags_in_force(conn, account_id)
    restriction = flags.get(RESTRICTION)
    return {
        "consents": {purpose: state.to_json() for purpose, state in consent_state(conn, account_id).items()},
        "restriction": {
            "in_force": restriction is not None,
            "since": iso_or_none(restriction.set_at) if restriction else None,
            "reason_code": restriction.reason_code if restriction else None,
            "legal_ground": RESTRICTION_REASONS.get(restriction.reason_code) if restriction else None,
        },
        "objections": {
            "direct_marketing": OBJECTION_DIRECT_MARKETING in flags,
            "analytics": OBJECTION_ANALYTICS in flags,
        },
        "history": consent_history(conn, account_id),
    }


def export_section(conn: Connection, account_id: str) -> dict[str, Any]:
    """For the access/portability export: the ledger and every flag, lifted ones included."""
    return {
        "consents": {purpose: state.to_json() for purpose, state in consent_state(conn, account_id).items()},
        "consent_history": consent_history(conn, account_id),
        "restrictions_and_objections": [flag.to_json() for flag in all_flags(conn, account_id)],
    }


# --- Writing: lock, ledger, flags, registry ---------------------------------------------


def _lock_account(conn: Connection, account_id: str) -> str:
    """Serialise consent writes of one account; returns its status. 404 when it does not exist."""
    if conn.dialect.name == "postgresql":
        found = conn.execute(select(accounts.c.status).where(accounts.c.id == account_id).with_for_update()).scalar()
    else:
        # SQLite: a no-op write takes the database write lock before anything is read.
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(status=accounts.c.status))
        found = account_status(conn, account_id)
    if found is None:
        raise NotFound("no such account", code="account_not_found")
    return found


def _check_purposes(purpose: Any) -> tuple[str, ...]:
    if purpose == ALL:
        return PURPOSES
    if isinstance(purpose, str) and purpose in PURPOSES:
        return (purpose,)
    raise ValidationFailed(f"purpose must be one of {', '.join((*PURPOSES, ALL))}", code="unknown_purpose")


def _append_event(
    conn: Connection,
    *,
    account_id: str,
    purpose: str,
    action: str,
    channel: str,
    now: dt.datetime,
    ip: str | None,
    user_agent: str | None,
    previous,
) -> tuple[str, dt.datetime]:
    # Strictly increasing per account and purpose, so "the latest event" is never ambiguous.
    occurred_at = now if previous is None or now > previous.occurred_at else previous.occurred_at + _ONE_TICK
    event_id = str(uuid.uuid4())
    conn.execute(
        insert(consent_events).values(
            id=event_id,
            account_id=account_id,
            purpose=purpose,
            action=action,
            occurred_at=occurred_at,
            channel=channel,
            policy_version=POLICY_VERSION,
            proof_ip_pseudonym=pseudonymise(ip, purpose="consent-proof-ip") if ip else None,
            proof_user_agent=(user_agent or None) and user_agent[:400],
        )
    )
    return event_id, occurred_at


def _withdraw_in(
    conn: Connection, account_id: str, purpose: str, *, channel: str, actor: str, now: dt.datetime,
    ip: str | None, user_agent: str | None,
) -> str | None:
    """Append a withdrawal if the consent is currently given; the new event id, or None (nothing to do)."""
    previous = latest_event(conn, account_id, purpose)
    if previous is None or previous.action != GIVEN:
        return None
    event_id, occurred_at = _append_event(
        conn, account_id=account_id, purpose=purpose, action=WITHDRAWN, channel=channel, now=now,
        ip=ip, user_agent=user_agent, previous=previous,
    )
    details: dict[str, Any] = {"purpose": purpose, "channel": channel, "consent_event_id": event_id}
    if purpose == "analytics":
        # Under the account lock, every analytics event of the account was collected under
        # the consent now withdrawn (or under none): all of them go, atomically with it.
        details["analytics_events_deleted"] = conn.execute(
            delete(analytics_events).where(analytics_events.c.account_id == account_id)
        ).rowcount
    audit.record(conn, actor=actor, action="consent.withdrawn", outcome="recorded", subject=account_id,
                 details=details, now=occurred_at)
    return event_id


def _set_flag_in(
    conn: Connection, *, account_id: str, kind: str, reason_code: str, note: str | None, channel: str,
    actor: str, now: dt.datetime,
) -> Flag | None:
    """Set a flag unless one of that kind is in force; the new flag, or None."""
    if kind in flags_in_force(conn, account_id):
        return None
    flag_id = str(uuid.uuid4())
    conn.execute(
        insert(processing_restrictions).values(
            id=flag_id, account_id=account_id, kind=kind, reason_code=reason_code, note=note,
            channel=channel, set_at=now, set_by=actor,
        )
    )
    audit.record(conn, actor=actor, action=f"{_flag_family(kind)}.set", outcome="in_force", subject=account_id,
                 details={"kind": kind, "reason_code": reason_code, "channel": channel, "flag_id": flag_id}, now=now)
    return _load_flag(conn, flag_id)


def _flag_family(kind: str) -> str:
    return "restriction" if kind == RESTRICTION else "objection"


def _load_flag(conn: Connection, flag_id: str) -> Flag | None:
    row = conn.execute(select(processing_restrictions).where(processing_restrictions.c.id == flag_id)).first()
    return flag_from_row(row) if row else None


def _lift_in(conn: Connection, flag: Flag, *, actor: str, reason_code: str, now: dt.datetime,
             notified_at: dt.datetime | None = None) -> None:
    conn.execute(
        update(processing_restrictions)
        .where(processing_restrictions.c.id == flag.id)
        .values(lifted_at=now, lifted_by=actor, lift_reason_code=reason_code, lift_notified_at=notified_at)
    )
    audit.record(conn, actor=actor, action=f"{_flag_family(flag.kind)}.lifted", outcome="lifted",
                 subject=flag.account_id,
                 details={"kind": flag.kind, "reason_code": reason_code, "flag_id": flag.id,
                          "notified_first": notified_at is not None}, now=now)


def _register(
    conn: Connection, *, account_id: str, kind: str, channel: str, actor: str, now: dt.datetime,
    details: dict[str, Any],
) -> str:
    """A request in the registry for a change already made, closed as completed; its id.

    The change is effective at once (withdrawing consent must be as easy as giving it,
    Art. 7(3)): the caller is already authenticated, by a client token, a signed link or a
    DPO credential, so the request is recorded as verified and completed in one go.
    """
    request_channel = _REQUEST_CHANNEL[channel]
    record = requests.find_open_request(conn, account_id=account_id, kind=kind)
    if record is None:
        record = requests.create_request(
            conn, account_id=account_id, kind=kind, channel=request_channel, now=now, details=details, actor=actor
        )
    path = {requests.RECEIVED: (requests.VERIFIED, requests.IN_PROGRESS, requests.COMPLETED),
            requests.VERIFIED: (requests.IN_PROGRESS, requests.COMPLETED),
            requests.WAITING: (requests.IN_PROGRESS, requests.COMPLETED),
            requests.IN_PROGRESS: (requests.COMPLETED,)}[record.state]
    if record.channel in requests.SELF_VERIFIED_CHANNELS and path[0] == requests.VERIFIED:
        path = path[1:]
    for state in path:
        record = requests.transition(conn, record.id, state, actor=actor, now=now,
                                     details=details if state == requests.COMPLETED else None)
    return record.id


def _attach_request(conn: Connection, request_id: str, flag_ids: list[str]) -> None:
    if flag_ids:
        conn.execute(
            update(processing_restrictions)
            .where(processing_restrictions.c.id.in_(flag_ids))
            .values(request_id=request_id)
        )


@dataclass(frozen=True)
class Change:
    """What one operation changed; `request_id` is None when nothing did (idempotent repeat)."""

    withdrawn: tuple[str, ...] = ()
    given: tuple[str, ...] = ()
    flags_set: tuple[str, ...] = ()
    flags_lifted: tuple[str, ...] = ()
    request_id: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.withdrawn or self.given or self.flags_set or self.flags_lifted)

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "withdrawn": list(self.withdrawn),
            "given": list(self.given),
            "objections_set": list(self.flags_set),
            "objections_lifted": list(self.flags_lifted),
            "request_id": self.request_id,
        }


def _check_channel(channel: str) -> None:
    if channel not in _REQUEST_CHANNEL:
        raise ValueError(f"unknown consent channel {channel!r}")


def withdraw(
    engine: Engine,
    account_id: str,
    purpose: str,
    *,
    channel: str,
    actor: str,
    objection: bool = False,
    reason_code: str = "data_subject_request",
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> Change:
    """Withdraw consent for `purpose` (or "all") at once; with `objection`, also object (Art. 21).

    Idempotent: what is already withdrawn (or objected to) writes nothing, and a call that
    changes nothing creates no request. Newsletter withdrawals are then propagated to Resend.
    """
    purposes = _check_purposes(purpose)
    _check_channel(channel)
    if reason_code not in OBJECTION_REASONS:
        raise ValidationFailed(f"reason_code must be one of {', '.join(OBJECTION_REASONS)}", code="invalid_reason")
    now = (now or utcnow()).astimezone(UTC)
    withdrawn: list[str] = []
    flags: list[Flag] = []
    with engine.begin() as conn:
        _lock_account(conn, account_id)
        for item in purposes:
            event_id = _withdraw_in(conn, account_id, item, channel=channel, actor=actor, now=now,
                                    ip=ip, user_agent=user_agent)
            if event_id is not None:
                withdrawn.append(item)
            if objection:
                flag = _set_flag_in(conn, account_id=account_id, kind=OBJECTION_FOR_PURPOSE[item],
                                    reason_code=reason_code, note=None, channel=channel, actor=actor, now=now)
                if flag is not None:
                    flags.append(flag)
        request_id = None
        if withdrawn or flags:
            request_id = _register(
                conn, account_id=account_id, kind="objection" if flags else "consent_withdrawal",
                channel=channel, actor=actor, now=now,
                details={"purposes": withdrawn, "objections": [f.kind for f in flags], "consent_channel": channel},
            )
            _attach_request(conn, request_id, [f.id for f in flags])
    try:
        dispatch_propagations(engine, account_id=account_id)
    except ExternalServiceError:
        # The withdrawal holds (send_marketing reads the ledger); the propagation stays
        # pending and is queued again by the account's next call or the hourly sweep.
        get_logger().warning("consent propagation not queued", extra={"queue": PROPAGATION_QUEUE})
    return Change(withdrawn=tuple(withdrawn), flags_set=tuple(f.kind for f in flags), request_id=request_id)


def give_consent(
    engine: Engine,
    account_id: str,
    purpose: str,
    *,
    channel: str,
    actor: str,
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> Change:
    """Record consent for one purpose (idempotent).

    An objection in force blocks it (409 `objection_in_force`) unless the consent is a new
    explicit act of the user in the client area, which lifts the objection (Art. 21).
    """
    if purpose == ALL:
        raise ValidationFailed("consent is given one purpose at a time", code="unknown_purpose")
    (purpose,) = _check_purposes(purpose)
    _check_channel(channel)
    now = (now or utcnow()).astimezone(UTC)
    lifted: list[str] = []
    with engine.begin() as conn:
        _lock_account(conn, account_id)
        objection = flags_in_force(conn, account_id).get(OBJECTION_FOR_PURPOSE[purpose])
        if objection is not None:
            if channel != CLIENT_AREA:
                raise Conflict("an objection is in force: only a new explicit consent in the client area lifts it",
                               code="objection_in_force")
            _lift_in(conn, objection, actor=actor, reason_code="new_explicit_consent", now=now)
            lifted.append(objection.kind)
        previous = latest_event(conn, account_id, purpose)
        if previous is not None and previous.action == GIVEN and not lifted:
            return Change()
        _, occurred_at = _append_event(conn, account_id=account_id, purpose=purpose, action=GIVEN, channel=channel,
                                       now=now, ip=ip, user_agent=user_agent, previous=previous)
        audit.record(conn, actor=actor, action="consent.given", outcome="recorded", subject=account_id,
                     details={"purpose": purpose, "channel": channel}, now=occurred_at)
    return Change(given=(purpose,), flags_lifted=tuple(lifted))


def object_to(
    engine: Engine,
    account_id: str,
    kind: str,
    *,
    channel: str,
    actor: str,
    reason_code: str = "data_subject_request",
    ip: str | None = None,
    user_agent: str | None = None,
    now: dt.datetime | None = None,
) -> Change:
    """Art. 21 objection: withdraws the purpose's consent and blocks it until a new explicit consent."""
    purposes = [p for p, k in OBJECTION_FOR_PURPOSE.items() if k == kind]
    if not purposes:
        raise ValidationFailed(f"kind must be one of {', '.join(OBJECTION_FOR_PURPOSE.values())}", code="invalid_kind")
    return withdraw(engine, account_id, purposes[0], channel=channel, actor=actor, objection=True,
                    reason_code=reason_code, ip=ip, user_agent=user_agent, now=now)


def honour_gpc(
    engine: Engine,
    account_id: str,
    headers: Mapping[str, str] | None,
    *,
    now: dt.datetime | None = None,
) -> bool:
    """`Sec-GPC: 1` is an objection to analytics (consent withdrawn, flag set). True when it changed something.

    Called on every authenticated client-area call (shared.identity.client.authenticate_client), after
    the caller's own transaction: without the header it costs nothing, with it one read
    unless something must change.
    """
    value = header_value(headers, GPC_HEADER)
    if value is None or value.strip() != "1":
        return False
    with engine.connect() as conn:
        if OBJECTION_ANALYTICS in flags_in_force(conn, account_id) and not consent_state(conn, account_id)["analytics"].granted:
            return False
    change = object_to(engine, account_id, OBJECTION_ANALYTICS, channel=GPC, actor="gpc", reason_code="gpc_signal",
                       now=now)
    return change.changed


# --- Restriction (Art. 18), set and lifted by the DPO -------------------------------------


def restrict(
    engine: Engine,
    account_id: str,
    *,
    reason_code: str,
    actor: str,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[Flag, bool]:
    """Put a restriction in force (DPO); (flag, created). Setting it twice returns the one in force."""
    if reason_code not in RESTRICTION_REASONS:
        raise ValidationFailed(f"reason_code must be one of {', '.join(RESTRICTION_REASONS)}", code="invalid_reason")
    note = _clean_note(note)
    now = (now or utcnow()).astimezone(UTC)
    with engine.begin() as conn:
        _lock_account(conn, account_id)
        flag = _set_flag_in(conn, account_id=account_id, kind=RESTRICTION, reason_code=reason_code, note=note,
                            channel=DPO, actor=actor, now=now)
        if flag is None:
            return flags_in_force(conn, account_id)[RESTRICTION], False
        request_id = _register(conn, account_id=account_id, kind="restriction", channel=DPO, actor=actor, now=now,
                               details={"action": "set", "flag_id": flag.id, "reason_code": reason_code})
        _attach_request(conn, request_id, [flag.id])
        return _load_flag(conn, flag.id), True


def _clean_note(note: str | None) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise ValidationFailed(f"note must be a string of at most {MAX_NOTE_LENGTH} characters", code="invalid_note")
    return note.strip() or None


def get_flag(conn: Connection, flag_id: str) -> Flag:
    flag = _load_flag(conn, flag_id) if isinstance(flag_id, str) and len(flag_id) <= 36 else None
    if flag is None:
        raise NotFound("no such restriction or objection", code="flag_not_found")
    return flag


def lift(
    engine: Engine,
    flag_id: str,
    *,
    reason_code: str,
    actor: str,
    now: dt.datetime | None = None,
) -> Flag:
    """Lift a flag (DPO). A restriction is lifted only after its holder has been told (Art. 18(3)).

    The notice is mailed first with an idempotency key bound to the flag, so a retry after a
    failure between the mail and the lift sends no second mail. Lifting twice is a no-op.
    """
    if reason_code not in LIFT_REASONS:
        raise ValidationFailed(f"reason_code must be one of {', '.join(LIFT_REASONS)}", code="invalid_reason")
    now = (now or utcnow()).astimezone(UTC)
    with engine.connect() as conn:
        flag = get_flag(conn, flag_id)
        email, locale = conn.execute(select(accounts.c.email, accounts.c.locale).where(accounts.c.id == flag.account_id)).one()
    if not flag.in_force:
        return flag
    notified_at = None
    if flag.kind == RESTRICTION:
        try:
            _send_lift_notice(flag, email)
        except ExternalServiceError:
            raise AppError(503, "notification_failed",
                           "the account holder could not be told; the restriction stays in force, retry later") from None
        notified_at = now
    with engine.begin() as conn:
        _lock_account(conn, flag.account_id)
        flag = get_flag(conn, flag_id)
        if not flag.in_force:
            return flag
        _lift_in(conn, flag, actor=actor, reason_code=reason_code, now=now, notified_at=notified_at)
        request_id = _register(conn, account_id=flag.account_id, kind=_flag_family(flag.kind), channel=DPO,
                               actor=actor, now=now,
                               details={"action": "lift", "flag_id": flag.id, "reason_code": reason_code})
        conn.execute(update(processing_restrictions).where(processing_restrictions.c.id == flag.id)
                     .values(lift_request_id=request_id))
        return get_flag(conn, flag_id)


def _send_lift_notice(flag: Flag, email: str) -> None:
    from shared.ports.backends import get_mailer
    from shared.ports.mail import Message

    settings = get_settings()
    since = flag.set_at.astimezone(UTC).strftime("%d/%m/%Y")
    text_fr = (
        "Bonjour,\n\n"
        f"La limitation du traitement de vos données, en vigueur depuis le {since}, va être levée "
        "(article 18, paragraphe 3, du RGPD). Vos données seront de nouveau traitées selon notre "
        "politique de confidentialité.\n"
        "Pour toute question ou pour vous y opposer : dpo@jefacturebien.fr\n"
        f"Votre espace client : {settings.client_area_url}\n"
    )
    text_en = (
        "Hello,\n\n"
        f"The restriction of processing of your data, in force since {since}, is about to be lifted "
        "(GDPR Article 18(3)). Your data will again be processed as our privacy policy describes.\n"
        "Questions, or to object: dpo@jefacturebien.fr\n"
        f"Your client area: {settings.client_area_url}\n"
    )
    body = f"{text_fr}\n---\n\n{text_en}"
    html = "".join(f"<p>{line}</p>" for line in body.split("\n") if line)
    get_mailer().send(
        Message(
            to=email,
            subject="Levée de la limitation du traitement de vos données / Restriction of processing to be lifted",
            text=body,
            html=f"<!doctype html><html><body>{html}</body></html>",
            idempotency_key=f"restriction-lift-notice:{flag.id}",
        )
    )


# --- Unsubscribe links (RFC 8058 one-click) ------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _signature(payload: str) -> str:
    key = hmac.new(get_settings().effective_pseudonym_key, b"purpose:unsubscribe-token", hashlib.sha256).digest()
    return _b64(hmac.new(key, f"{_TOKEN_VERSION}.{payload}".encode(), hashlib.sha256).digest())


def unsubscribe_token(account_id: str, *, now: dt.datetime | None = None) -> str:
    """A signed, expiring token that withdraws the newsletter consent of one account, without login."""
    now = now or utcnow()
    expires = now + dt.timedelta(days=get_settings().unsubscribe_token_ttl_days)
    payload = _b64(json.dumps({"a": account_id, "p": "newsletter", "e": int(expires.timestamp())},
                              separators=(",", ":")).encode())
    return f"{_TOKEN_VERSION}.{payload}.{_signature(payload)}"


def read_unsubscribe_token(token: str | None, *, now: dt.datetime | None = None) -> str:
    """The account id a valid token stands for; 400 when malformed or tampered, 410 when expired."""
    invalid = ValidationFailed("the unsubscribe link is not valid", code="invalid_unsubscribe_token")
    if not isinstance(token, str) or len(token) > 512 or token.count(".") != 2:
        raise invalid
    version, payload, signature = token.split(".")
    if version != _TOKEN_VERSION or not hmac.compare_digest(signature, _signature(payload)):
        raise invalid
    try:
        claims = json.loads(_unb64(payload))
        account_id, purpose, expires = claims["a"], claims["p"], int(claims["e"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid from None
    if purpose != "newsletter" or not isinstance(account_id, str):
        raise invalid
    if (now or utcnow()).timestamp() > expires:
        raise AppError(410, "unsubscribe_token_expired", "the unsubscribe link has expired; use your client area")
    return account_id


def unsubscribe_url(account_id: str, *, now: dt.datetime | None = None) -> str:
    base = get_settings().effective_withdraw_consent_url.rstrip("/")
    return f"{base}/unsubscribe?t={quote(unsubscribe_token(account_id, now=now))}"


def list_unsubscribe_headers(account_id: str, *, now: dt.datetime | None = None) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers of a marketing mail."""
    return {
        "List-Unsubscribe": f"<{unsubscribe_url(account_id, now=now)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe(engine: Engine, token: str | None, *, now: dt.datetime | None = None) -> Change:
    """One-click unsubscribe: withdraws the newsletter consent of the token's account (idempotent)."""
    account_id = read_unsubscribe_token(token, now=now)
    try:
        return withdraw(engine, account_id, "newsletter", channel=EMAIL_LINK, actor="email_link", now=now)
    except NotFound:
        return Change()  # the account is gone: nothing can be sent to it any more


# --- Marketing mail: the only path -----------------------------------------------------------


def send_marketing(
    engine: Engine,
    account_id: str,
    *,
    campaign_id: str,
    subject: str,
    text: str,
    html: str,
    now: dt.datetime | None = None,
) -> str | None:
    """Send one marketing mail if (and only if) `may_send_marketing`; the provider id, or None when refused.

    No other code of the suite builds a marketing Message (a test enforces it). One mail per
    campaign and account, whatever the retries (the idempotency key).
    """
    if not _CAMPAIGN.match(campaign_id or ""):
        raise ValueError(f"campaign_id must match {_CAMPAIGN.pattern}")
    with engine.connect() as conn:
        if not may_send_marketing(conn, account_id):
            return None
        email = conn.execute(select(accounts.c.email).where(accounts.c.id == account_id)).scalar_one()
    from shared.ports.backends import get_mailer
    from shared.ports.mail import Message

    url = unsubscribe_url(account_id, now=now)
    footer_text = f"\n\n--\nSe désinscrire / Unsubscribe: {url}\n"
    footer_html = f'<p><a href="{_html_attr(url)}">Se désinscrire / Unsubscribe</a></p>'
    return get_mailer().send(
        Message(
            to=email,
            subject=subject,
            text=text + footer_text,
            html=html + footer_html,
            idempotency_key=f"marketing:{campaign_id}:{account_id}",
            category="marketing",
            headers=list_unsubscribe_headers(account_id, now=now),
        )
    )


def _html_attr(value: str) -> str:
    import html as html_module

    return html_module.escape(value, quote=True)


# --- Analytics collection: the only path -----------------------------------------------------


def collect_analytics_event(
    engine: Engine, account_id: str, name: str, *, page: str | None = None, now: dt.datetime | None = None
) -> bool:
    """Store one analytics event under the consent in force; False (nothing stored) when not allowed."""
    now = (now or utcnow()).astimezone(UTC)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Shares with other collectors, waits for a withdrawal in progress (which deletes events).
            conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update(read=True))
        if not may_collect_analytics(conn, account_id):
            return False
        consent_id = consent_state(conn, account_id)["analytics"].event_id
        conn.execute(insert(analytics_events).values(account_id=account_id, occurred_at=now, name=name[:64],
                                                     page=page[:400] if page else None, consent_event_id=consent_id))
    return True


# --- Propagation to Resend (queue `consent-propagation`) ------------------------------------


def pending_propagations(conn: Connection, *, account_id: str | None = None, limit: int = 100) -> list[tuple[str, str]]:
    """(consent event id, account id) of newsletter withdrawals not yet propagated to Resend."""
    query = (
        select(consent_events.c.id, consent_events.c.account_id)
        .outerjoin(saga_steps, (saga_steps.c.job_id == consent_events.c.id) & (saga_steps.c.step == RESEND_STEP))
        .where(
            consent_events.c.purpose == "newsletter",
            consent_events.c.action == WITHDRAWN,
            (saga_steps.c.state.is_(None)) | (saga_steps.c.state != "completed"),
        )
        .order_by(consent_events.c.occurred_at)
        .limit(limit)
    )
    if account_id is not None:
        query = query.where(consent_events.c.account_id == account_id)
    return [(row.id, row.account_id) for row in conn.execute(query)]


def propagation_message(consent_event_id: str, account_id: str) -> dict[str, Any]:
    from shared.platform.runtime import make_message

    return make_message(
        PROPAGATION_MESSAGE,
        f"consent-propagation:{consent_event_id}",
        {"consent_event_id": consent_event_id, "account_id": account_id},
    )


def dispatch_propagations(engine: Engine, *, account_id: str | None = None, limit: int = 100) -> int:
    """Queue every pending propagation (of one account, or all); a duplicate message is harmless.

    Called after each withdrawal commits, so a propagation whose first enqueue failed is
    queued again by the account's next call or by the hourly sweep (withdraw-consent-worker).
    """
    with engine.connect() as conn:
        pending = pending_propagations(conn, account_id=account_id, limit=limit)
    if pending:
        from shared.ports.backends import get_queue

        get_queue(PROPAGATION_QUEUE).send_many([propagation_message(e, a) for e, a in pending])
    return len(pending)


def propagate_newsletter_withdrawal(engine: Engine, consent_event_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Unsubscribe the contact in Resend for one withdrawal (a saga step: done once), then audit it."""
    from shared.records.saga import run_step

    with engine.connect() as conn:
        event = conn.execute(select(consent_events).where(consent_events.c.id == consent_event_id)).first()
        if event is None:
            return {"outcome": "gone"}  # the account was erased, and its ledger with it
        email = conn.execute(select(accounts.c.email).where(accounts.c.id == event.account_id)).scalar()
        superseded = consent_state(conn, event.account_id)["newsletter"].granted

    def unsubscribe_contact() -> dict[str, Any]:
        if superseded or email is None:
            # A newer consent was given since: unsubscribing now would override the user's choice.
            return {"outcome": "superseded"}
        from shared.ports.backends import get_mailer

        return {"outcome": "unsubscribed", "audiences": len(get_mailer().unsubscribe_contact(email))}

    result = run_step(engine, consent_event_id, RESEND_STEP, unsubscribe_contact) or {}

    def record_audit() -> dict[str, Any]:
        with engine.begin() as conn:
            audit.record(conn, actor="system:consent", action="consent.propagated", outcome=result.get("outcome", "done"),
                         subject=event.account_id,
                         details={"step": RESEND_STEP, "consent_event_id": consent_event_id, **{
                             k: v for k, v in result.items() if k != "outcome"}}, now=now)
        return {}

    run_step(engine, consent_event_id, AUDIT_STEP, record_audit)
    return result
