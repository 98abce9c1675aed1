"""The console's request pages: the open list (markers, filters) and one request (timeline, actions).

    list_page(query, now=...)      -> the context of pages/dpo_console_requests
    request_page(request_id, ...)  -> the context of pages/dpo_console_request
    registration(form)             -> operations.register's arguments, from the list page's form

The rows come from shared/desk/operations.list_requests; the console adds the deadline marker
and, for a request about an account, the account's name and email (shown to the DPO, escaped
by the templates). The identifiers of a person without an account stay sealed: the page says
which kinds were given, never their values.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from shared.desk import operations
from shared.platform.clock import UTC, moment
from shared.platform.errors import ValidationFailed
from shared.policy.facts import IDENTITY_VERIFICATION_METHODS
from shared.ports.db import get_engine
from shared.ports.tables import accounts
from shared.records import registry

DUE_SOON = dt.timedelta(days=7)
OVERDUE, DUE_SOON_MARK, ON_TIME = "overdue", "due_soon", "on_time"
MARKERS = (OVERDUE, DUE_SOON_MARK, ON_TIME)
FILTERS = ("state", "kind", "channel", "due_within_days", "overdue")
OPEN_STATES = tuple(s for s in registry.STATES if s in registry.OPEN_STATES)
INTAKE_CHANNELS = tuple(c for c in operations.INTAKE_CHANNELS if c != "client_area")  # email, post
IDENTIFIER_FIELDS = ("email", "name", "postal_address", "phone", "siret")


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def whole_days(delta: dt.timedelta) -> int:
    """Days left (negative: days late), any part of a day counting as a day: due in 23 hours is 1 day left."""
    days = math.ceil(abs(delta) / dt.timedelta(days=1))
    return days if delta >= dt.timedelta(0) else -days


def marker_for(due_at: dt.datetime, now: dt.datetime) -> str:
    if due_at <= now:
        return OVERDUE
    if due_at - now <= DUE_SOON:
        return DUE_SOON_MARK
    return ON_TIME


def _day(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d")


def _minute(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _subjects(account_ids: set[str]) -> dict[str, dict[str, str | None]]:
    """Name and email of the accounts the requests are about (for the DPO's eyes only, never logged)."""
    if not account_ids:
        return {}
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(accounts.c.id, accounts.c.first_name, accounts.c.last_name, accounts.c.email).where(
                accounts.c.id.in_(sorted(account_ids))
            )
        )
        return {
            row.id: {"name": " ".join(p for p in (row.first_name, row.last_name) if p) or None, "email": row.email}
            for row in rows
        }


def _row(view: Mapping[str, Any], subject: Mapping[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
    due = _parse(view["effective_due_at"])
    received = _parse(view["received_at"])
    return {
        "id": view["request_id"],
        "kind": view["kind"],
        "channel": view["channel"],
        "state": view["state"],
        "identity": view["identity"]["state"],
        "received_iso": view["received_at"],
        "received_day": _day(received),
        "due_iso": view["effective_due_at"],
        "due_text": _minute(due),
        "extended": "extended_due_at" in view,
        "marker": marker_for(due, now),
        "days_left": whole_days(due - now),
        "account_id": view["subject"]["account_id"],
        "identified_by": list(view["subject"]["identified_by"]),
        "subject_name": (subject or {}).get("name"),
        "subject_email": (subject or {}).get("email"),
    }


def list_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """The list's query string: unknown names or values are refused (400), empty values are no filter."""
    unknown = sorted(set(query) - {*FILTERS, "lang"})
    if unknown:
        raise ValidationFailed("unknown filter", code="invalid_filter")
    values = {name: (query.get(name) or None) for name in FILTERS}
    days = values["due_within_days"]
    if days is not None and not (days.isdigit() and len(days) <= 3):
        raise ValidationFailed("due within: a number of days", code="invalid_due_within")
    if values["overdue"] not in (None, "true"):
        raise ValidationFailed("overdue is true or absent", code="invalid_overdue")
    return {
        "state": values["state"],
        "kind": values["kind"],
        "channel": values["channel"],
        "due_within_days": int(days) if days is not None else None,
        "overdue": values["overdue"] == "true",
    }


def list_page(query: Mapping[str, str], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Open requests, the closest deadline first, with their marker; the filters as the form shows them."""
    now = moment(now)
    filters = list_filters(query)
    views = operations.list_requests(**filters, now=now)["requests"]
    subjects = _subjects({v["subject"]["account_id"] for v in views if v["subject"]["account_id"]})
    rows = [_row(v, subjects.get(v["subject"]["account_id"] or ""), now) for v in views]
    return {
        "rows": rows,
        "counts": {m: sum(1 for r in rows if r["marker"] == m) for m in MARKERS},
        "filters": {
            **filters,
            "due_within_days": "" if filters["due_within_days"] is None else str(filters["due_within_days"]),
        },
        "states": OPEN_STATES,
        "kinds": registry.KINDS,
        "channels": registry.CHANNELS,
        "intake_channels": INTAKE_CHANNELS,
        "today": _day(now),
    }


# One request -------------------------------------------------------------------------------------

ACTIONS = ("verify_identity", "extend", "reject", "complete")


def _actions(record: Mapping[str, Any], now: dt.datetime) -> list[str]:
    """The forms the request page offers (the desk still refuses what does not apply, 409)."""
    if record["state"] in registry.TERMINAL_STATES:
        return []
    offered = []
    if record["identity"]["state"] == registry.AWAITING_IDENTITY:
        offered.append("verify_identity")
    months = 0
    if "extended_due_at" in record:
        months = (
            1 if _parse(record["extended_due_at"]) <= registry.extended_due_date(_parse(record["due_at"]), 1) else 2
        )
    if months < registry.MAX_EXTENSION_MONTHS and now <= _parse(record["due_at"]):
        offered.append("extend")
    offered.append("reject")
    if record["identity"]["state"] != registry.AWAITING_IDENTITY:
        offered.append("complete")
    return offered


def _event(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One line of the timeline: what happened, when, by whom (the audit's actor), and its details."""
    details = entry.get("details") or {}
    action, outcome = entry["action"], entry["outcome"]
    event = {
        "at_iso": entry["at"],
        "at_text": _minute(_parse(entry["at"])),
        "actor": entry["actor"],
        "action": action,
        "outcome": outcome,
        "what": action,
        "detail": "",
    }
    if action == "request.created":
        event["what"] = "received"
    elif action == "request.identity_verified":
        event["what"], event["detail"] = "identity_verified", details.get("method", "")
    elif action == "request.deadline_extended":
        event["what"] = "extended"
        event["detail"] = f"+{details.get('months', '?')} → {str(details.get('extended_due_at', ''))[:10]}"
    elif action == "request.transition":
        event["what"] = f"state_{outcome}"
    elif action == "request.notice_sent":
        event["what"], event["detail"] = "notice_sent", f"{details.get('notice', '')} ({outcome})"
    elif action == "request.answered":
        event["what"] = "answered"
    return event


def request_page(request_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """One request: its facts, its timeline (from the audit trail), its notices and the actions open to it."""
    now = moment(now)
    view = operations.view(operations.checked_request_id(request_id), now=now)
    subject = _subjects({view["subject"]["account_id"]} if view["subject"]["account_id"] else set())
    row = _row(view, subject.get(view["subject"]["account_id"] or ""), now)
    timeline = [_event(entry) for entry in view["timeline"]]
    if view["identity"]["state"] == registry.AWAITING_IDENTITY:
        timeline.insert(
            1 if timeline else 0,
            {
                "at_iso": "",
                "at_text": "",
                "actor": "",
                "action": "",
                "outcome": "",
                "what": "identity_asked",
                "detail": "",
            },
        )
    return {
        "request": {
            **row,
            "state": view["state"],
            "due_at_text": _minute(_parse(view["due_at"])),
            "extended_due_text": _minute(_parse(view["extended_due_at"])) if "extended_due_at" in view else "",
            "extension_reason": view.get("extension_reason") or "",
            "reason": view.get("reason") or "",
            "reason_code": view.get("reason_code") or "",
            "identity_method": view["identity"].get("method", ""),
            "terminal": view["state"] in registry.TERMINAL_STATES,
        },
        "timeline": timeline,
        "notices": [
            {"notice": n["notice"], "delivery": n["delivery"], "sent_at_text": _minute(_parse(n["sent_at"]))}
            for n in view["notices"]
        ],
        "actions": _actions(view, now),
        "methods": IDENTITY_VERIFICATION_METHODS,
        "reason_codes": registry.REJECTION_REASON_CODES,
        "max_months": registry.MAX_EXTENSION_MONTHS,
        "max_reason": registry.MAX_REASON_LENGTH,
    }


def changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, str]]:
    """What an action changed on the request page: state, identity, deadline, reason (before -> after)."""
    lines = []
    for key in ("state", "identity", "due_text", "extension_reason", "reason_code"):
        old, new = before["request"].get(key, ""), after["request"].get(key, "")
        if old != new:
            lines.append({"field": key, "before": str(old or "—"), "after": str(new or "—")})
    return lines


def work_started(result: Mapping[str, Any]) -> str:
    """What the desk started once identity was verified (an export queued, an erasure waiting...), or ''."""
    work = result.get("work") or {}
    return str(work.get("started") or "")


def registration(form: Mapping[str, str | None], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """operations.register's arguments from the list page's form: the account id, or the identifiers given."""
    now = moment(now)
    received_at = None
    day = form.get("received_on") or ""
    if day:
        try:
            received = dt.date.fromisoformat(day)
        except ValueError:
            raise ValidationFailed("received on: a date (YYYY-MM-DD)", code="invalid_received_at") from None
        if received != now.date():
            received_at = dt.datetime.combine(received, dt.time(0, 0), tzinfo=UTC)
    identifiers = {k: form[k] for k in IDENTIFIER_FIELDS if form.get(k)}
    return {
        "kind": form.get("kind"),
        "channel": form.get("channel"),
        "received_at": received_at,
        "account_id": form.get("account_id") or None,
        "identifiers": identifiers or None,
    }
