"""whoami: a diagnostic that says which account a client-area token acts for."""

from shared.identity.guards import client_token
from shared.platform.guards import principal
from shared.platform.runtime import HttpFunction
from shared.records.accounts import account_overview
from shared.rights.signals import gpc_signal

app = HttpFunction("whoami")


@app.get("/", middlewares=[client_token(), gpc_signal])
def whoami() -> dict:

    return account_overview(principal(app, "client").account_id)


handle = app.handle
