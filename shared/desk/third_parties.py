"""Third parties named in users' documents (policy 2.4: the user is controller, the platform its processor).

    controllers_of(conn, identifiers) -> dict[account_id, tuple[identifier kinds]]
        the accounts whose documents name the person: their clients rows and invoice buyer fields
        (role third_party), and their own prospects (role prospect with an owner), per the data map.
    forward_to_controllers(engine, *, request_id, kind, identifiers, now=None) -> dict
        mails each such account once (notice `third_party_request`, French then English): the request,
        its kind, the identifiers that account's own documents already hold (never another one, never
        another account), and its duty to answer; audits each forwarding (the account's pseudonym).
        Returns {"request_id", "kind", "accounts": [ids], "mailed": n} (n: mails sent by this run).
    third_party_answer(engine, *, request_id, kind, identifiers, now=None) -> dict
        after forward_to_controllers: mails the person (when an email was given; notice
        `third_party_answer`) what was done and whom to address: the accounts' company names as
        controllers. Returns {"request_id", "sent": bool, "controllers": [{"account_id", "name"}]}.

Idempotent across crashes: each mail carries a stable idempotency key (`desk-forward:<request>:<account>`,
`desk-third-party-answer:<request>`), so a re-sent mail is deduplicated by the provider, and each
(request, account) has a processed marker committed with its audit entry, so a re-run skips it. The
mail text depends only on the request and the data, never on the time of the run, so a retry sends
the same payload under the same key. Nothing here writes to invoices, clients or any document:
issued invoices are never altered. Identifiers never reach a log line, the audit trail or a marker.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from shared import notices
from shared.desk.identifiers import SubjectIdentifiers
from shared.desk.once import once, stored_result
from shared.desk.search import owners
from shared.platform.clock import moment
from shared.platform.errors import Conflict, ValidationFailed
from shared.policy import data_map
from shared.policy import facts as policy
from shared.ports.backends import get_mailer
from shared.ports.mail import Message
from shared.ports.tables import accounts, companies, invoices
from shared.records import audit
from shared.records.registry import KINDS

FUNCTION = "dpo-desk"
ACTOR = "system:desk"
# The identifier kinds an account is shown, by the label of their data category.
_KIND_CATEGORY = {
    "email": "identification.email",
    "phone": "identification.phone",
    "siret": "identification.siret_siren",
    "name": "identification.name",
}
_CONTROLLER_ROLES = (data_map.ROLE_THIRD_PARTY, data_map.ROLE_PROSPECT)
_UNNAMED = "—"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationFailed(f"kind is one of {', '.join(KINDS)}", code="invalid_kind")


def _kind_context(kind: str) -> dict[str, Any]:
    right = policy.right(kind)
    return {"kind": {"fr": right.label.fr, "en": right.label.en}, "article": right.gdpr_article}


def controllers_of(conn: Connection, identifiers: SubjectIdentifiers) -> dict[str, tuple[str, ...]]:
    """Account id -> identifier kinds its documents hold, for every account whose documents name the person."""
    found: dict[str, set[str]] = {}
    for role in _CONTROLLER_ROLES:
        for owner, kinds in owners(conn, identifiers, role).items():
            if owner is not None:  # the platform's own prospects are the platform's (shared.desk.prospects)
                found.setdefault(owner, set()).update(kinds)
    return {account_id: tuple(sorted(kinds)) for account_id, kinds in sorted(found.items())}


def _forward_key(request_id: str, account_id: str) -> str:
    return f"desk:forward:{request_id}:{account_id}"


def _summary_key(request_id: str) -> str:
    return f"desk:forwarded:{request_id}"


def _request_mail(to: str, *, request_id: str, kind: str, account_id: str, held: list[dict[str, Any]]) -> Message:
    return notices.mail(
        "third_party_request",
        to=to,
        idempotency_key=f"desk-forward:{request_id}:{account_id}",
        request_id=request_id,
        held=held,
        dpo_email=policy.CONTROLLER.dpo_email,
        **_kind_context(kind),
    )


def _held(identifiers: SubjectIdentifiers, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """What the account's own documents already hold of what the person gave (nothing else)."""
    out = []
    for kind in kinds:
        if kind in _KIND_CATEGORY and getattr(identifiers, kind):
            label = policy.category(_KIND_CATEGORY[kind]).label
            out.append({"label": {"fr": label.fr, "en": label.en}, "value": getattr(identifiers, kind)})
    return out


def forward_to_controllers(
    engine: Engine,
    *,
    request_id: str,
    kind: str,
    identifiers: SubjectIdentifiers,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """One mail per account whose documents name the person; once per (request, account), across crashes."""
    _check_kind(kind)
    now = moment(now)
    with engine.connect() as conn:
        done, summary = stored_result(conn, _summary_key(request_id))
        if done and summary is not None:
            return {"request_id": request_id, "kind": summary["kind"], "accounts": summary["accounts"], "mailed": 0}
        found = controllers_of(conn, identifiers)
        contacts = (
            {
                row.id: row.email
                for row in conn.execute(
                    sa.select(accounts.c.id, accounts.c.email).where(accounts.c.id.in_(list(found)))
                )
            }
            if found
            else {}
        )
    mailer = get_mailer()
    mailed = 0
    for account_id, kinds in found.items():
        key = _forward_key(request_id, account_id)
        with engine.connect() as conn:
            if stored_result(conn, key)[0]:
                continue
        email = contacts.get(account_id)
        if email is None:
            continue  # erased meanwhile: nobody left to tell
        mailer.send(
            _request_mail(
                email, request_id=request_id, kind=kind, account_id=account_id, held=_held(identifiers, kinds)
            )
        )
        mailed += 1

        def audited(conn: Connection, account_id: str = account_id, kinds: tuple[str, ...] = kinds) -> dict[str, Any]:
            audit.record(
                conn,
                actor=ACTOR,
                action="desk.third_party_forwarded",
                outcome="mailed",
                request_id=request_id,
                subject=account_id,
                details={"kind": kind, "matched_on": list(kinds)},
            )
            return {"account_id": account_id}

        once(engine, key, FUNCTION, audited, now=now)
    notified = sorted(a for a in found if a in contacts)
    once(engine, _summary_key(request_id), FUNCTION, lambda _conn: {"kind": kind, "accounts": notified}, now=now)
    return {"request_id": request_id, "kind": kind, "accounts": notified, "mailed": mailed}


def controller_names(conn: Connection, account_ids: list[str]) -> dict[str, str]:
    """The name a person knows each account by: its company, else the seller printed on its invoices, else its holder."""
    if not account_ids:
        return {}
    names: dict[str, str] = {}
    for row in conn.execute(
        sa.select(companies.c.account_id, companies.c.name)
        .where(companies.c.account_id.in_(account_ids))
        .order_by(companies.c.account_id, companies.c.created_at, companies.c.id)
    ):
        names.setdefault(row.account_id, row.name)
    missing = [a for a in account_ids if a not in names]
    if missing:
        for row in conn.execute(
            sa.select(invoices.c.account_id, invoices.c.seller_name)
            .where(invoices.c.account_id.in_(missing))
            .order_by(invoices.c.account_id, invoices.c.issue_date.desc(), invoices.c.id)
        ):
            names.setdefault(row.account_id, row.seller_name)
    missing = [a for a in account_ids if a not in names]
    if missing:
        for person in conn.execute(
            sa.select(accounts.c.id, accounts.c.first_name, accounts.c.last_name).where(accounts.c.id.in_(missing))
        ):
            full = " ".join(part for part in (person.first_name, person.last_name) if part)
            names[person.id] = full or _UNNAMED
    return {a: names.get(a, _UNNAMED) for a in account_ids}


def third_party_answer(
    engine: Engine,
    *,
    request_id: str,
    kind: str,
    identifiers: SubjectIdentifiers,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Tell the person what was done and whom to address; once per request. 409 before the forwarding."""
    _check_kind(kind)
    now = moment(now)
    with engine.connect() as conn:
        done, summary = stored_result(conn, _summary_key(request_id))
        if not done or summary is None:
            raise Conflict("forward the request to the controllers first", code="not_forwarded")
        names = controller_names(conn, summary["accounts"])
    controllers = [{"account_id": a, "name": names[a]} for a in summary["accounts"]]
    key = f"desk:third-party-answer:{request_id}"
    with engine.connect() as conn:
        done, previous = stored_result(conn, key)
    if done and previous is not None:
        return {"request_id": request_id, "sent": previous["sent"], "controllers": controllers}
    sent = False
    if identifiers.email:
        get_mailer().send(
            notices.mail(
                "third_party_answer",
                to=identifiers.email,
                idempotency_key=f"desk-third-party-answer:{request_id}",
                request_id=request_id,
                controllers=[{"name": c["name"]} for c in controllers],
                dpo_email=policy.CONTROLLER.dpo_email,
                cnil_website=policy.CNIL.website,
                **_kind_context(kind),
            )
        )
        sent = True

    def audited(conn: Connection) -> dict[str, Any]:
        audit.record(
            conn,
            actor=ACTOR,
            action="desk.third_party_answered",
            outcome="mailed" if sent else "no_email",
            request_id=request_id,
            details={"kind": kind, "controllers": len(controllers)},
        )
        return {"sent": sent}

    once(engine, key, FUNCTION, audited, now=now)
    return {"request_id": request_id, "sent": sent, "controllers": controllers}
