"""whoami: a diagnostic that says which account a client-area token acts for."""

from shared.identity.client import authenticate_client
from shared.platform.runtime import HttpFunction, current_request

app = HttpFunction("whoami")


@app.get("/")
def whoami() -> dict:
    from shared.records.accounts import account_overview

    identity = authenticate_client(current_request().headers)
    return account_overview(identity.account_id)


handle = app.handle
