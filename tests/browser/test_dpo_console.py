"""The DPO console in a real browser: sign in with a credential, see the request due tomorrow flagged, sign out."""

from __future__ import annotations

import datetime as dt

from shared.identity.console import SESSION_COOKIE
from shared.identity.dpo import create_dpo_credential
from shared.local.privacy_center import demo_accounts
from shared.platform.clock import add_months, utcnow
from shared.ports.db import get_engine
from shared.records import registry
from tests.browser.conftest import assert_labelled
from tests.browser.test_privacy_center import MARKUP_NAME, expect


def test_sign_in_see_the_request_due_tomorrow_flagged_and_sign_out(page, live_server, screenshots):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    markup = next(a for a in demo_accounts() if a["name"] == MARKUP_NAME)
    julien = next(a for a in demo_accounts() if a["email"] == "julien.moreau@example.com")
    with get_engine().begin() as conn:
        credential = create_dpo_credential(conn, "dpo")
        tomorrow = registry.create_request(conn, account_id=markup["id"], kind="access", channel="email",
                                           now=add_months(utcnow() + dt.timedelta(days=1), -1))
        late = registry.create_request(conn, account_id=julien["id"], kind="erasure", channel="post",
                                       now=utcnow() - dt.timedelta(days=35))

    page.goto(live_server.url("/dpo-console/?lang=fr"))
    shot = screenshots
    shot(page, "sign-in")
    assert_labelled(page)
    box = page.get_by_label("Identifiant DPO")
    box.fill(credential[:-3] + "xyz")
    box.press("Enter")
    expect()(page.get_by_role("alert")).to_have_text("Cet identifiant n'est pas valide.")
    shot(page, "sign-in-refused")
    page.get_by_label("Identifiant DPO").fill(credential)
    page.get_by_label("Identifiant DPO").press("Enter")

    expect()(page.get_by_role("heading", level=1)).to_have_text("Console DPO — demandes ouvertes")
    rows = page.locator("#requests tbody tr")
    expect()(rows).to_have_count(2)
    expect()(rows.nth(0)).to_have_attribute("id", f"request-{late.id}")
    expect()(rows.nth(0)).to_contain_text("En retard")
    due_tomorrow = page.locator(f"#request-{tomorrow.id}")
    expect()(due_tomorrow).to_contain_text("Échéance proche")
    expect()(due_tomorrow.locator(".subject-name")).to_have_text(MARKUP_NAME)
    assert_labelled(page)
    shot(page, "open-requests")

    cookie = next(c for c in page.context.cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dpo-console"

    # Filters by keyboard: the kind select, then its button; the overdue box, ticked with the space bar.
    page.get_by_label("Type de demande", exact=True).select_option("access")
    page.get_by_role("button", name="Filtrer").focus()
    page.keyboard.press("Enter")
    expect()(rows).to_have_count(1)
    expect()(rows.nth(0)).to_have_attribute("id", f"request-{tomorrow.id}")
    shot(page, "filtered-access")
    page.get_by_label("Type de demande", exact=True).select_option("")
    page.get_by_label("En retard seulement").focus()
    page.keyboard.press("Space")
    page.get_by_role("button", name="Filtrer").press("Enter")
    expect()(rows).to_have_count(1)
    expect()(rows.nth(0)).to_have_attribute("id", f"request-{late.id}")
    shot(page, "filtered-overdue")

    page.get_by_role("button", name="Se déconnecter").click()
    expect()(page.get_by_label("Identifiant DPO")).to_be_visible()
    page.goto(live_server.url("/dpo-console/requests"))
    expect()(page.get_by_role("alert")).to_contain_text("Connectez-vous")
    shot(page, "after-sign-out")

    assert dialogs == [] and page.problems == []
    logged = "\n".join(live_server.access_log)
    assert cookie["value"] not in logged and credential not in logged
