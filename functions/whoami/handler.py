"""whoami: a diagnostic that says which account a client-area token acts for."""

import datetime as dt

from pydantic import BaseModel

from shared.identity.guards import client_token
from shared.platform.guards import principal
from shared.platform.openapi import answer
from shared.platform.runtime import HttpFunction
from shared.records.accounts import account_overview
from shared.rights.signals import gpc_signal

app = HttpFunction("whoami")


class AccountOverview(BaseModel):
    """The contract's description of the answer (account_overview builds it): no secrets, no hashes."""

    account_id: str
    status: str
    locale: str
    two_factor: bool
    created_at: dt.datetime
    open_requests: int


@app.get(
    "/", middlewares=[client_token(), gpc_signal], responses={200: answer("The caller's account", AccountOverview)}
)
def whoami() -> dict:
    """The account the token acts for."""
    return account_overview(principal(app, "client").account_id)


handle = app.handle
