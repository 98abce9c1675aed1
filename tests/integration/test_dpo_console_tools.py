"""The DPO console's other pages: subject search, legal holds, the retention plan, the audit chain, the register."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from shared.console.tools import HOLD_CATEGORIES
from shared.identity.dpo import create_dpo_credential
from shared.local.demo import create_account
from shared.local.server import build_app, load_manifest
from shared.ports.tables import audit_log, legal_holds
from tests.integration.test_dpo_console import _form_csrf, sign_in

CANARY_EMAIL = "canary.console.search@example.org"


@pytest.fixture
def credential(engine) -> str:
    with engine.begin() as conn:
        return create_dpo_credential(conn, "dpo")


@pytest.fixture
def client(env):
    return build_app(load_manifest()).test_client()


def _page(client, path: str) -> str:
    answer = client.get(f"/dpo-console{path}")
    assert answer.status_code == 200, (path, answer.status_code)
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    return answer.get_data(as_text=True)


def test_the_subject_search_shows_where_the_person_appears_never_the_identifiers(client, engine, credential):
    account = create_account(engine, email=CANARY_EMAIL)
    sign_in(client, credential, lang="en")
    form = _page(client, "/search?lang=en")
    answer = client.post("/dpo-console/search?lang=en", data={"csrf": _form_csrf(form), "email": CANARY_EMAIL})
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200 and 'id="matches"' in page and account["id"] in page
    assert "Searched on email" in page and "identification.email" in page
    assert CANARY_EMAIL not in page and "canary.console" not in page
    nobody = client.post("/dpo-console/search?lang=en", data={"csrf": _form_csrf(form)})
    assert nobody.status_code == 400 and 'role="alert"' in nobody.get_data(as_text=True)
    with engine.connect() as conn:
        assert CANARY_EMAIL not in repr(conn.execute(sa.select(audit_log)).all())


def test_a_legal_hold_is_placed_and_released_from_its_page(client, engine, credential):
    account = create_account(engine)
    sign_in(client, credential, lang="en")
    page = _page(client, "/holds?lang=en")
    assert "No legal hold." in page
    invoices = f"cat_{HOLD_CATEGORIES.index('documents.invoices')}"
    refused = client.post(
        "/dpo-console/holds?lang=en",
        data={"csrf": _form_csrf(page), "account_id": account["id"], "reason": "Litigation 2026-14"},
    )
    assert refused.status_code == 400 and "invalid_categories" in refused.get_data(as_text=True)
    placed = client.post(
        "/dpo-console/holds?lang=en",
        data={"csrf": _form_csrf(page), "account_id": account["id"], "reason": "Litigation <2026-14>", invoices: "1"},
    )
    page = placed.get_data(as_text=True)
    assert placed.status_code == 200 and "Hold placed:" in page and "1 hold(s) in force." in page
    assert "Litigation &lt;2026-14&gt;" in page
    hold_id = re.search(r'<tr id="hold-([0-9a-f-]+)"', page).group(1)
    released = client.post(
        f"/dpo-console/holds/{hold_id}/release?lang=en", data={"csrf": _form_csrf(page), "reason": "Case closed"}
    )
    page = released.get_data(as_text=True)
    assert released.status_code == 200 and "Hold released:" in page and "0 hold(s) in force." in page
    again = client.post(
        f"/dpo-console/holds/{hold_id}/release?lang=en", data={"csrf": _form_csrf(page), "reason": "Case closed"}
    )
    assert 400 <= again.status_code < 500 and 'role="alert"' in again.get_data(as_text=True)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(legal_holds)).scalar() == 1


def test_the_retention_plan_the_audit_chain_and_the_register(client, engine, credential):
    sign_in(client, credential, lang="en")
    plan = _page(client, "/retention?lang=en")
    assert "inactive_accounts" in plan and 'id="plan"' in plan and "No run recorded yet." in plan
    from shared.retention import operator

    operator.run_all(engine)
    plan = _page(client, "/retention?lang=en")
    assert 'id="runs"' in plan and "No run recorded yet." not in plan
    audit = _page(client, "/audit?lang=en")
    assert "The chain is intact:" in audit
    links = _page(client, "/register?lang=en")
    hrefs = re.findall(r'href="\./(register-of-processing\?[^"]+)"', links)
    assert len(hrefs) == 6
    for href in hrefs:
        answer = client.get("/dpo-console/" + href.replace("&amp;", "&"))
        assert answer.status_code == 200 and "attachment" in answer.headers["Content-Disposition"]
    assert client.get("/dpo-console/register-of-processing?format=exe").status_code == 400
    # None of these pages opens without the session.
    client.delete_cookie("dpo_console_token", path="/dpo-console")
    for path in ("/retention", "/audit", "/register", "/holds", "/search", "/register-of-processing?format=md"):
        assert client.get(f"/dpo-console{path}").status_code == 401, path


def test_the_activity_chart_counts_requests_per_month_and_marks_late_answers(client, engine, credential):
    import datetime as dt

    from shared.platform.clock import utcnow
    from shared.records import registry

    now = utcnow()
    a, b, c = (create_account(engine) for _ in range(3))
    with engine.begin() as conn:
        on_time = registry.create_request(
            conn, account_id=a["id"], kind="access", channel="email", now=now - dt.timedelta(days=40)
        )
        registry.transition(
            conn, on_time.id, registry.REJECTED, actor="dpo", reason="excessive", now=now - dt.timedelta(days=35)
        )
        late = registry.create_request(
            conn, account_id=b["id"], kind="erasure", channel="post", now=now - dt.timedelta(days=75)
        )
        registry.transition(
            conn, late.id, registry.REJECTED, actor="dpo", reason="excessive", now=now - dt.timedelta(days=5)
        )
        registry.create_request(conn, account_id=c["id"], kind="objection", channel="email", now=now)
    sign_in(client, credential, lang="en")
    page = _page(client, "/activity?lang=en")
    assert page.count("<rect x=") == 3 and "<circle cx=" in page
    assert page.count('class="late"') == 1 and page.count('class="on-time"') == 1
    assert "2 request(s) answered, 1 after their deadline" in page
    assert 'id="limit"' in page and "<script" not in page
    totals = re.findall(r"<td>(\d+)</td></tr>", page)
    assert sum(map(int, totals)) == 3
