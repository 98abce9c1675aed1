"""Read-only views of an account that several functions answer with."""

from __future__ import annotations

from sqlalchemy import func, select

from shared.platform.errors import NotFound
from shared.ports.db import get_engine
from shared.ports.tables import accounts, dsr_requests
from shared.records.registry import OPEN_STATES


def account_overview(account_id: str) -> dict:
    """What the caller may see about their own account: no secrets, no hashes."""
    with get_engine().connect() as conn:
        row = conn.execute(
            select(
                accounts.c.id,
                accounts.c.status,
                accounts.c.locale,
                accounts.c.created_at,
                accounts.c.totp_secret.is_not(None).label("two_factor"),
            ).where(accounts.c.id == account_id)
        ).one_or_none()
        if row is None:
            raise NotFound("no such account")
        open_requests = conn.execute(
            select(func.count())
            .select_from(dsr_requests)
            .where(
                dsr_requests.c.account_id == account_id,
                dsr_requests.c.state.in_(sorted(OPEN_STATES)),
            )
        ).scalar_one()
    return {
        "account_id": row.id,
        "status": row.status,
        "locale": row.locale,
        "two_factor": bool(row.two_factor),
        "created_at": row.created_at.isoformat(),
        "open_requests": open_requests,
    }
