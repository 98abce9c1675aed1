"""Signals a client-area call carries that are rights in themselves, honoured by a route guard.

`Sec-GPC: 1` on any client-area call is an objection to analytics (policy 3.4, Art. 21): every
client route declares `gpc_signal` after its client token.
"""

from __future__ import annotations

from typing import Any

from shared.identity.client import ClientIdentity
from shared.platform.guards import Guard
from shared.platform.http import HttpRequest
from shared.ports.db import get_engine
from shared.rights.consent import honour_gpc


def _honour(request: HttpRequest, context: dict[str, Any]) -> None:
    identity = context.get("client")
    if not isinstance(identity, ClientIdentity):
        raise RuntimeError("gpc_signal must follow client_token on the route")
    honour_gpc(get_engine(), identity.account_id, request.headers)


gpc_signal = Guard("gpc", "Global Privacy Control signal honoured", _honour)
