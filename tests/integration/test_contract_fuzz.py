"""The API contract, fuzzed: schemathesis against the local server, on every operation of every function.

The server is `make run`'s (shared.local.server.build_app), started here on a free port over the test
database with the demo accounts; requests carry the demo credentials their operation's security asks for
(client token, a fresh TOTP step-up code, a DPO credential). Schemathesis sends valid and schema-breaking
requests (small `max-examples`, so `make test` stays quick) and checks: no 5xx, every answer matches its
documented status, content type, headers and schema, no 2xx for a request that breaks the schema. Here
too: a refused request (4xx) leaves every table as it was, but the security records a refusal writes by
design (audit entries, step-up attempts and codes). Not checked: that every schema-valid request is
accepted, since rules beyond a schema refuse some (a letter received in the future, an unknown id).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
import requests
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from werkzeug.serving import make_server

from shared.identity.client import issue_dev_token
from shared.identity.dpo import create_dpo_credential
from shared.local.demo import create_account, seed_demo
from shared.local.server import build_app, load_manifest
from shared.platform.config import reset_settings
from shared.ports import tables as schema
from shared.ports.backends import get_storage
from shared.ports.db import get_engine
from tests.fakes.http_fake import serving

# `make test` runs a few examples, the same each time (derandomised); CONTRACT_FUZZ_EXAMPLES=200 with
# CONTRACT_FUZZ_RANDOM=1 explores further.
MAX_EXAMPLES = int(os.environ.get("CONTRACT_FUZZ_EXAMPLES", "5"))
DERANDOMIZE = os.environ.get("CONTRACT_FUZZ_RANDOM") != "1"
# Written by a refusal on purpose: the audit trail, the step-up attempts (rate limit), the mailed codes.
SECURITY_RECORDS = {"audit_log", "verification_attempts", "verification_codes", "totp_used_steps"}


class Credentials:
    """The demo credentials; the erasure routes act for an account of their own (an erasure deactivates it)."""

    def __init__(self, client: dict[str, Any], erasing: dict[str, Any], dpo_token: str) -> None:
        self.client, self.erasing, self.dpo_token = client, erasing, dpo_token
        self.tokens = {account["id"]: issue_dev_token(account["id"]) for account in (client, erasing)}

    def headers_for(self, path: str, security: list[dict[str, Any]]) -> dict[str, str]:
        schemes = {name for requirement in security for name in requirement}
        account = self.erasing if path.startswith("/erase-account/") else self.client
        headers: dict[str, str] = {}
        if "ClientToken" in schemes:
            headers["Authorization"] = f"Bearer {self.tokens[account['id']]}"
        if "DpoCredential" in schemes:
            headers["Authorization"] = f"Bearer {self.dpo_token}"
        if "StepUpCode" in schemes:
            headers["X-Verification-Code"] = pyotp.TOTP(account["totp_secret"]).now()
        return headers


@pytest.fixture
def contract_server(env, monkeypatch) -> Iterator[tuple[str, Credentials]]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRETS", "whsec_contract_fuzz_0123456789")
    reset_settings()
    engine = get_engine()
    accounts = seed_demo(engine, get_storage())
    with_2fa = next(account for account in accounts if account["totp_secret"])
    erasing = create_account(engine, with_2fa=True)
    with engine.begin() as conn:
        dpo_token = create_dpo_credential(conn, "dpo")
    credentials = Credentials(with_2fa, erasing, dpo_token)
    httpd = make_server("127.0.0.1", 0, build_app(load_manifest()), threaded=True)
    with serving(httpd):
        yield f"http://127.0.0.1:{httpd.server_port}", credentials


def row_counts(engine: sa.Engine) -> dict[str, int]:
    """Every table's row count, in one statement (one snapshot, one round trip per fuzzed request)."""
    tables = [table for table in schema.metadata.sorted_tables if table.name not in SECURITY_RECORDS]
    counts = sa.select(*(sa.select(sa.func.count()).select_from(t).scalar_subquery().label(t.name) for t in tables))
    with engine.connect() as conn:
        return dict(conn.execute(counts).one()._mapping)


def fuzz(
    operation: Any, security: list[dict[str, Any]], base_url: str, credentials: Credentials, engine: sa.Engine
) -> set[int]:
    """MAX_EXAMPLES valid and as many schema-breaking requests to `operation`, each checked; the statuses seen."""
    statuses: set[int] = set()
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=strategy)
    @settings(
        max_examples=2 * MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        before = row_counts(engine)
        headers = credentials.headers_for(case.path, security)
        response = case.call_and_validate(
            base_url=base_url, headers=headers, excluded_checks=[positive_data_acceptance]
        )
        statuses.add(response.status_code)
        if 400 <= response.status_code < 500:
            assert row_counts(engine) == before, f"{case.method} {case.path}: {response.status_code} yet it wrote"

    run()
    return statuses


def test_every_operation_of_every_function_keeps_its_contract(contract_server):
    base_url, credentials = contract_server
    loaded = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json",
        config=schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}}),
    )
    document = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 25
    failures, seen = [], {}
    for operation in operations:
        security = document["paths"][operation.path][operation.method.lower()]["security"]
        try:
            seen[f"{operation.method.upper()} {operation.path}"] = fuzz(
                operation, security, base_url, credentials, get_engine()
            )
        except (Exception, BaseExceptionGroup) as exc:  # every operation is fuzzed; failures reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:3000]}")
    assert not failures, "\n\n".join(failures)
    print("statuses seen:", {name: sorted(statuses) for name, statuses in seen.items()})
    # The credentials work: the fuzzing reaches the routes' own code, not only their guards.
    assert 200 in seen["GET /whoami/"] and 200 in seen["GET /withdraw-consent/"]


def test_the_links_chain_operations_statefully(contract_server):
    """The documented links (create a request, then read or cancel it; set a flag, then lift it) walked."""
    base_url, credentials = contract_server
    loaded = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    document = requests.get(f"{base_url}/openapi.json", timeout=10).json()
    links = [
        (path, method, name)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        for answer in operation["responses"].values()
        for name in answer.get("links", {})
    ]
    assert len(links) >= 5

    class Scenario(loaded.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            security = document["paths"][case.path][case.method.lower()]["security"]
            return {"base_url": base_url, "headers": credentials.headers_for(case.path, security)}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

    Scenario.run(
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=4,
            deadline=None,
            database=None,
            derandomize=DERANDOMIZE,
            phases=(Phase.explicit, Phase.generate),
            suppress_health_check=list(HealthCheck),
        )
    )
