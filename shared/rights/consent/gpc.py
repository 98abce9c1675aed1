"""Global Privacy Control: `Sec-GPC: 1` on a client-area call is an objection to analytics (policy 3.4, Art. 21).

`honour_gpc_signal(headers, account_id)` is what a route guard calls once it knows the
account; without the header it costs nothing, with it one read unless something must change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import Engine

from shared.ports.db import get_engine
from shared.records.processing import OBJECTION_ANALYTICS, consent_state, flags_in_force
from shared.rights.consent.flags import object_to
from shared.rights.consent.writes import GPC

GPC_HEADER = "Sec-GPC"


def gpc_requested(headers: Mapping[str, str] | None) -> bool:
    """True when the request carries `Sec-GPC: 1` (the header's name in any case)."""
    wanted = GPC_HEADER.lower()
    value = next((v for k, v in (headers or {}).items() if k.lower() == wanted), None)
    return value is not None and value.strip() == "1"


def honour_gpc(
    engine: Engine,
    account_id: str,
    headers: Mapping[str, str] | None,
    *,
    now: dt.datetime | None = None,
) -> bool:
    """`Sec-GPC: 1` is an objection to analytics (consent withdrawn, flag set). True when it changed something.

    Called on every authenticated client-area call, after the caller's own transaction.
    """
    if not gpc_requested(headers):
        return False
    with engine.connect() as conn:
        if (
            OBJECTION_ANALYTICS in flags_in_force(conn, account_id)
            and not consent_state(conn, account_id)["analytics"].granted
        ):
            return False
    change = object_to(
        engine, account_id, OBJECTION_ANALYTICS, channel=GPC, actor="gpc", reason_code="gpc_signal", now=now
    )
    return change.changed


def honour_gpc_signal(
    headers: Mapping[str, str] | None,
    account_id: str,
    *,
    engine: Engine | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """The route guard's entry point: honour the request's GPC signal for `account_id` (see `honour_gpc`)."""
    if not gpc_requested(headers):
        return False
    return honour_gpc(engine or get_engine(), account_id, headers, now=now)
