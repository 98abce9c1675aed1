"""What the account's holder, the DPO and the export see of consent, restriction and objections."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from shared.platform.clock import iso_or_none
from shared.records.processing import (
    OBJECTION_ANALYTICS,
    OBJECTION_DIRECT_MARKETING,
    OBJECTION_FOR_LI_PURPOSE,
    RESTRICTION,
    RESTRICTION_REASONS,
    all_flags,
    consent_history,
    consent_state,
    flags_in_force,
)
from shared.rights.consent.legitimate_interest import pending_objections


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
            # Legitimate interest (policy 3.3): in force; security and fraud prevention once the DPO accepted.
            **{purpose: kind in flags for purpose, kind in OBJECTION_FOR_LI_PURPOSE.items()},
        },
        "objections_awaiting_decision": pending_objections(conn, account_id),
        "history": consent_history(conn, account_id),
    }


def export_section(conn: Connection, account_id: str) -> dict[str, Any]:
    """For the access/portability export: the ledger and every flag, lifted ones included."""
    return {
        "consents": {purpose: state.to_json() for purpose, state in consent_state(conn, account_id).items()},
        "consent_history": consent_history(conn, account_id),
        "restrictions_and_objections": [flag.to_json() for flag in all_flags(conn, account_id)],
    }
