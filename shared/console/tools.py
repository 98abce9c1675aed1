"""The console's other pages: subject search, legal holds, the retention plan, the audit chain, the register.

search_page(form, actor=...)     operations.search: categories, roles, owning accounts, counts
                                 (the identifiers searched are never shown back)
holds_page()                     shared/records/holds: the holds, the categories a hold may name
place_hold(form, actor=...), release_hold(hold_id, reason, actor=...)
retention_page()                 shared/retention/operator.plan: what the next runs would delete;
                                 the last runs (their audit entries)
audit_page()                     shared/records/audit.verify_chain: the chain's state
HoldForm                         the form placing a hold (one checkbox per category)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import Field, create_model
from sqlalchemy import select

from shared.desk import operations
from shared.platform.clock import iso, moment
from shared.platform.errors import ValidationFailed
from shared.platform.runtime import StrictModel
from shared.ports.db import get_engine
from shared.ports.tables import audit_log
from shared.records import holds
from shared.records.audit import verify_chain
from shared.retention import operator

LAST_RUNS = 30
SEARCH_FIELDS = ("email", "phone", "siret", "name", "postal_address")
HOLD_CATEGORIES = tuple(sorted(holds.account_categories()))

# One checkbox field per category: the model is built from the data map's categories.
_HOLD_FIELDS: dict[str, Any] = {
    "account_id": (str, Field(max_length=36)),
    "reason": (str, Field(min_length=1, max_length=1000)),
    "ends_on": (str, Field(default="", max_length=10)),
    "authority_request_id": (str, Field(default="", max_length=36)),
    **{f"cat_{i}": (str, Field(default="", max_length=2)) for i in range(len(HOLD_CATEGORIES))},
}
HoldForm = create_model("HoldForm", __base__=StrictModel, **_HOLD_FIELDS)


def search_page(form: Mapping[str, str] | None, *, actor: str) -> dict[str, Any]:
    """The search form and, when it was posted, where the person appears: no identifier is echoed back."""
    if form is None:
        return {"searched": False, "fields": SEARCH_FIELDS}
    given = {k: v for k, v in form.items() if k in SEARCH_FIELDS and v}
    result = operations.search(given, actor=actor)
    return {
        "searched": True,
        "fields": SEARCH_FIELDS,
        "kinds": result["searched"],
        "matches": [
            {k: m[k] for k in ("categories", "table", "role", "account_id", "count", "via")} for m in result["matches"]
        ],
        "by_category": result["by_category"],
        "accounts_holding": result["accounts_holding"],
        "third_party_accounts": result["third_party_accounts"],
        "prospect_accounts": result["prospect_accounts"],
        "is_platform_prospect": result["is_platform_prospect"],
        "total": sum(m["count"] for m in result["matches"]),
    }


def holds_page(*, now: dt.datetime | None = None) -> dict[str, Any]:
    now = moment(now)
    with get_engine().connect() as conn:
        listed = [hold.to_json(now=now) for hold in holds.list_holds(conn, now=now)]
    return {
        "holds": listed,
        "categories": [{"field": f"cat_{i}", "name": c} for i, c in enumerate(HOLD_CATEGORIES)],
        "in_force": sum(1 for h in listed if h["in_force"]),
    }


def place_hold(form: Any, *, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    chosen = [c for i, c in enumerate(HOLD_CATEGORIES) if getattr(form, f"cat_{i}")]
    ends_on = None
    if form.ends_on:
        try:
            ends_on = dt.date.fromisoformat(form.ends_on)
        except ValueError:
            raise ValidationFailed("ends on: a date (YYYY-MM-DD)", code="invalid_end_date") from None
    if not chosen:
        raise ValidationFailed("choose at least one category", code="invalid_categories")
    with get_engine().begin() as conn:
        hold = holds.place_hold(
            conn,
            categories=chosen,
            reason=form.reason,
            actor=actor,
            account_id=form.account_id or None,
            ends_on=ends_on,
            authority_request_id=form.authority_request_id or None,
            now=now,
        )
    return hold.to_json(now=now)


def release_hold(hold_id: str, *, reason: str, actor: str, now: dt.datetime | None = None) -> dict[str, Any]:
    with get_engine().begin() as conn:
        return holds.release_hold(conn, hold_id, reason=reason, actor=actor, now=now).to_json(now=now)


def _counts(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_counts(v)}" for k, v in value.items())
    if isinstance(value, list):
        return str(len(value))
    return str(value)


def retention_page(*, now: dt.datetime | None = None) -> dict[str, Any]:
    """What the next retention runs would do per category (changes nothing)."""
    now = moment(now)
    entries = operator.plan(get_engine(), at=now)
    with get_engine().connect() as conn:
        runs = conn.execute(
            select(audit_log.c.occurred_at, audit_log.c.action, audit_log.c.outcome, audit_log.c.details)
            .where(audit_log.c.action.like("retention.%"))
            .order_by(audit_log.c.seq.desc())
            .limit(LAST_RUNS)
        ).all()
    return {
        "plan": [
            {
                "category": e.get("category", ""),
                "action": e.get("action", ""),
                "scope": e.get("scope", ""),
                "due": _counts(e.get("due", {})),
            }
            for e in entries
        ],
        # The last runs, from their audit entries (one per category and run: counts and the rule, no personal data).
        "runs": [
            {
                "at": iso(r.occurred_at),
                "category": r.action.split(".", 1)[1],
                "outcome": r.outcome,
                "rule": (r.details or {}).get("rule", ""),
                "counts": _counts((r.details or {}).get("counts", {})),
            }
            for r in runs
        ],
    }


def audit_page() -> dict[str, Any]:
    with get_engine().connect() as conn:
        return {"audit": verify_chain(conn).to_json()}
