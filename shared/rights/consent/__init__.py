"""Consent, objection and restriction (policy 3.4, 8.4, 8.6, 8.7; GDPR Art. 7, 18, 21).

- Consent lives in an append-only ledger (`consent_events`): the current state of a
  purpose is its latest event, derived on every read and never stored apart (ledger.py).
- Objections (Art. 21) and restrictions (Art. 18) are flags in
  `processing_restrictions`, in force until lifted; they are never deleted (flags.py).
- Every function of the suite asks the shared checks of shared.records.processing
  before processing (`may_send_marketing`, `may_collect_analytics`, `is_restricted`,
  `erasure_by_inactivity_allowed`, `restricted_accounts()` in bulk), re-exported here.
  Marketing mail has one path, `send_marketing`; analytics collection has one path,
  `collect_analytics_event` (marketing.py).
- Objections to the legitimate-interest purposes of policy 3.3 (legitimate_interest.py): at once
  for improvement and statistics; a request the DPO decides (`decide_objection`) for security
  and fraud prevention.
- `Sec-GPC: 1` is an objection to analytics (gpc.py); unsubscribe links (unsubscribe.py);
  a newsletter withdrawal is propagated to Resend by the `consent-propagation` queue
  (propagation.py); what the holder and the export see (views.py).

Modules, lowest first: writes (lock, ledger and flag rows, registry) < propagation <
ledger < flags < legitimate_interest < gpc, unsubscribe < marketing; views reads only.
"""

from shared.records.processing import (
    ALL,
    DPO_DECIDED_LI_PURPOSES,
    FLAG_KINDS,
    GIVEN,
    IMMEDIATE_LI_PURPOSES,
    LI_PURPOSES,
    OBJECTION_ANALYTICS,
    OBJECTION_DIRECT_MARKETING,
    OBJECTION_FOR_LI_PURPOSE,
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
    may_process,
    may_send_marketing,
    objecting_accounts,
    restricted_accounts,
)
from shared.rights.consent.flags import get_flag, lift, object_to, restrict
from shared.rights.consent.gpc import (
    GPC_HEADER,
    gpc_requested,
    honour_gpc,
    honour_gpc_signal,
)
from shared.rights.consent.ledger import give_consent, withdraw
from shared.rights.consent.legitimate_interest import (
    decide_objection,
    object_to_processing,
    objections_awaiting_decision,
    pending_objections,
    tell_decided_outcomes,
)
from shared.rights.consent.marketing import collect_analytics_event, send_marketing
from shared.rights.consent.propagation import (
    AUDIT_STEP,
    PROPAGATION_MESSAGE,
    PROPAGATION_QUEUE,
    RESEND_STEP,
    dispatch_propagations,
    pending_propagations,
    propagate_newsletter_withdrawal,
    propagation_message,
)
from shared.rights.consent.unsubscribe import (
    list_unsubscribe_headers,
    read_unsubscribe_token,
    unsubscribe,
    unsubscribe_token,
    unsubscribe_url,
)
from shared.rights.consent.views import export_section, status
from shared.rights.consent.writes import (
    CLIENT_AREA,
    DPO,
    EMAIL_LINK,
    GPC,
    LIFT_REASONS,
    MAX_NOTE_LENGTH,
    OBJECTION_REASONS,
    Change,
)

__all__ = [
    # the vocabulary and the shared checks (shared.records.processing)
    "ALL",
    "FLAG_KINDS",
    "GIVEN",
    "OBJECTION_ANALYTICS",
    "OBJECTION_DIRECT_MARKETING",
    "OBJECTION_FOR_PURPOSE",
    "PURPOSES",
    "RESTRICTION",
    "RESTRICTION_REASONS",
    "WITHDRAWN",
    "ConsentState",
    "Flag",
    "account_status",
    "all_flags",
    "blocked_by",
    "consent_history",
    "consent_state",
    "erasure_by_inactivity_allowed",
    "flag_from_row",
    "flags_in_force",
    "is_restricted",
    "latest_event",
    "may_collect_analytics",
    "may_send_marketing",
    "restricted_accounts",
    "LI_PURPOSES",
    "IMMEDIATE_LI_PURPOSES",
    "DPO_DECIDED_LI_PURPOSES",
    "OBJECTION_FOR_LI_PURPOSE",
    "may_process",
    "objecting_accounts",
    # channels and reasons
    "CLIENT_AREA",
    "DPO",
    "EMAIL_LINK",
    "GPC",
    "LIFT_REASONS",
    "MAX_NOTE_LENGTH",
    "OBJECTION_REASONS",
    "Change",
    # operations
    "give_consent",
    "withdraw",
    "object_to",
    "restrict",
    "lift",
    "get_flag",
    "object_to_processing",
    "decide_objection",
    "pending_objections",
    "tell_decided_outcomes",
    "objections_awaiting_decision",
    "GPC_HEADER",
    "gpc_requested",
    "honour_gpc",
    "honour_gpc_signal",
    "unsubscribe_token",
    "read_unsubscribe_token",
    "unsubscribe_url",
    "list_unsubscribe_headers",
    "unsubscribe",
    "send_marketing",
    "collect_analytics_event",
    "PROPAGATION_QUEUE",
    "PROPAGATION_MESSAGE",
    "RESEND_STEP",
    "AUDIT_STEP",
    "pending_propagations",
    "propagation_message",
    "dispatch_propagations",
    "propagate_newsletter_withdrawal",
    "status",
    "export_section",
]
