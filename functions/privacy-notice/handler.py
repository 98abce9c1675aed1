"""privacy-notice: the policy version in force and the account's acknowledgement of it (policy 11).

Client area (bearer token):
    GET  /              the version in force, its date and summary (French, English), whether the
                        account was told of it (the policy-change mail) and has acknowledged it
    POST /acknowledge   {"version": "<the version shown>"} records the acknowledgement (once);
                        409 not_version_in_force for any other version

Thin: every rule is in shared/rights/policy_notices.py.
"""

from __future__ import annotations

from pydantic import Field

from shared.identity.guards import client_token
from shared.platform.guards import Middlewares, body, principal
from shared.platform.runtime import HttpFunction, StrictModel
from shared.ports.db import get_engine
from shared.rights import policy_notices
from shared.rights.signals import gpc_signal

app = HttpFunction("privacy-notice")


class Acknowledgement(StrictModel):
    version: str = Field(min_length=1, max_length=16, pattern=r"^[0-9]+(\.[0-9]+)*$")


CLIENT: Middlewares = [client_token(), gpc_signal]


@app.get("/", middlewares=CLIENT)
def current() -> dict:
    with get_engine().connect() as conn:
        return policy_notices.notice_view(conn, principal(app, "client").account_id)


@app.post("/acknowledge", middlewares=[*CLIENT, body(Acknowledgement)])
def acknowledge() -> dict:
    request = principal(app, "body")
    return policy_notices.acknowledge(get_engine(), principal(app, "client").account_id, request.version)


handle = app.handle
