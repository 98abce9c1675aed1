"""The one path of marketing mail and the one path of analytics collection.

No other code of the suite builds a marketing Message (a test enforces it): each goes
through `send_marketing`, which asks `may_send_marketing` (consent, objection,
restriction) first. Analytics events are stored only by `collect_analytics_event`.
"""

from __future__ import annotations

import datetime as dt
import re
from html import escape as _escape  # `html` is also send_marketing's parameter

from sqlalchemy import Engine, insert, select

from shared.platform.clock import moment
from shared.ports.backends import get_mailer
from shared.ports.mail import Message
from shared.ports.tables import accounts, analytics_events
from shared.records.processing import (
    consent_state,
    may_process,
    may_send_marketing,
)
from shared.rights.consent.unsubscribe import list_unsubscribe_headers, unsubscribe_url

_CAMPAIGN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


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

    The campaign's content is the caller's; this adds the unsubscribe link and headers. One
    mail per campaign and account, whatever the retries (the idempotency key).
    """
    if not _CAMPAIGN.match(campaign_id or ""):
        raise ValueError(f"campaign_id must match {_CAMPAIGN.pattern}")
    with engine.connect() as conn:
        if not may_send_marketing(conn, account_id):
            return None
        email = conn.execute(select(accounts.c.email).where(accounts.c.id == account_id)).scalar_one()
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
    return _escape(value, quote=True)


# The purposes an event of `analytics_events` is collected under (tables.analytics_events.purpose).
EVENT_PURPOSES = ("analytics", "service_improvement", "usage_statistics")


def collect_analytics_event(
    engine: Engine,
    account_id: str,
    name: str,
    *,
    page: str | None = None,
    purpose: str = "analytics",
    now: dt.datetime | None = None,
) -> bool:
    """Store one usage event under `purpose`; False (nothing stored) when `may_process` refuses it.

    `analytics`: under the consent in force (3.4). `service_improvement`, `usage_statistics`: under
    the legitimate interest (3.3), unless the account objected or is restricted.
    """
    if purpose not in EVENT_PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(EVENT_PURPOSES)}")
    now = moment(now)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Shares with other collectors, waits for a withdrawal or objection in progress (which deletes events).
            conn.execute(select(accounts.c.id).where(accounts.c.id == account_id).with_for_update(read=True))
        if not may_process(conn, account_id, purpose):
            return False
        consent_id = consent_state(conn, account_id)["analytics"].event_id if purpose == "analytics" else None
        conn.execute(
            insert(analytics_events).values(
                account_id=account_id,
                occurred_at=now,
                name=name[:64],
                page=page[:400] if page else None,
                consent_event_id=consent_id,
                purpose=purpose,
            )
        )
    return True
