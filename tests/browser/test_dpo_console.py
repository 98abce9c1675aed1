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
        tomorrow = registry.create_request(
            conn,
            account_id=markup["id"],
            kind="access",
            channel="email",
            now=add_months(utcnow() + dt.timedelta(days=1), -1),
        )
        late = registry.create_request(
            conn, account_id=julien["id"], kind="erasure", channel="post", now=utcnow() - dt.timedelta(days=35)
        )

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


def test_extend_the_request_due_tomorrow_with_a_reason_and_find_the_notice_in_the_outbox(
    page, live_server, screenshots
):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    markup = next(a for a in demo_accounts() if a["name"] == MARKUP_NAME)
    with get_engine().begin() as conn:
        credential = create_dpo_credential(conn, "dpo")
        tomorrow = registry.create_request(
            conn,
            account_id=markup["id"],
            kind="access",
            channel="email",
            now=add_months(utcnow() + dt.timedelta(days=1), -1),
        )
    shot = screenshots
    page.goto(live_server.url("/dpo-console/?lang=fr"))
    page.get_by_label("Identifiant DPO").fill(credential)
    page.get_by_label("Identifiant DPO").press("Enter")
    row = page.locator(f"#request-{tomorrow.id}")
    expect()(row).to_contain_text("Échéance proche")
    expect()(row).to_contain_text("1 jour(s) restant(s)")
    shot(page, "open-requests")

    # To the request by keyboard: its link, then Enter.
    row.get_by_role("link").focus()
    page.keyboard.press("Enter")
    expect()(page.get_by_role("heading", level=1)).to_have_text("Console DPO — demande")
    expect()(page.locator("#timeline li").first).to_contain_text("Reçue")
    expect()(page.locator(".subject-name")).to_have_text(MARKUP_NAME)
    assert_labelled(page)
    shot(page, "request")

    reason = "Archives <anciennes> à rassembler"
    page.get_by_label("Mois à ajouter").select_option("1")
    page.get_by_label("Motif communiqué à la personne").fill(reason)
    page.get_by_role("button", name="Prolonger").press("Enter")
    expect()(page.get_by_role("status")).to_contain_text("Délai prolongé.")
    expect()(page.locator("#changes")).to_contain_text("Échéance")
    expect()(page.locator("#delivered")).to_contain_text("Prolongation du délai — par courriel")
    expect()(page.locator("#extension")).to_contain_text(reason)
    expect()(page.locator('#timeline li[data-event="extended"]')).to_have_count(1)
    expect()(page.locator('#timeline li[data-event="notice_sent"]')).to_have_count(1)
    shot(page, "extended")

    mails = [m for m in live_server.mails_to(markup["email"]) if "Prolongation du délai" in m["Subject"]]
    assert len(mails) == 1
    text = mails[0].get_body(("plain",)).get_content()
    assert reason in text and tomorrow.id in text

    # Back to the list: the request is extended, no longer due tomorrow.
    page.get_by_role("link", name="Retour aux demandes ouvertes").click()
    expect()(page.locator(f"#request-{tomorrow.id}")).to_contain_text("prolongée")
    shot(page, "open-requests-after")
    assert dialogs == [] and page.problems == []


def test_every_console_page_by_keyboard_with_labels_and_no_script(page, live_server, screenshots):
    markup = next(a for a in demo_accounts() if a["name"] == MARKUP_NAME)
    with get_engine().begin() as conn:
        credential = create_dpo_credential(conn, "dpo")
        done = registry.create_request(
            conn, account_id=markup["id"], kind="access", channel="email", now=utcnow() - dt.timedelta(days=40)
        )
        registry.transition(
            conn, done.id, registry.REJECTED, actor="dpo", reason="excessive", now=utcnow() - dt.timedelta(days=35)
        )
    shot = screenshots
    page.goto(live_server.url("/dpo-console/?lang=en"))
    page.get_by_label("DPO credential").fill(credential)
    page.get_by_label("DPO credential").press("Enter")
    expect()(page.get_by_role("heading", level=1)).to_have_text("DPO console — open requests")

    for link, heading in (
        ("Activity", "DPO console — activity"),
        ("Subject search", "DPO console — subject search"),
        ("Legal holds", "DPO console — legal holds"),
        ("Retention plan", "DPO console — retention plan"),
        ("Audit trail", "DPO console — audit trail"),
        ("Register of processing", "DPO console — register of processing"),
    ):
        page.get_by_role("navigation").get_by_role("link", name=link).focus()
        page.keyboard.press("Enter")
        expect()(page.get_by_role("heading", level=1)).to_have_text(heading)
        assert_labelled(page)
        shot(page, link.lower().replace(" ", "-"))
        if link == "Activity":
            expect()(page.locator("#chart-answer-time circle")).to_have_count(1)
        if link == "Subject search":
            page.get_by_label("Email address").fill(markup["email"])
            page.get_by_label("Email address").press("Enter")
            expect()(page.locator("#matches")).to_contain_text(markup["id"])
            assert markup["email"] not in page.locator("main").inner_text()
            shot(page, "search-results")
        if link == "Legal holds":
            page.get_by_label("Account id").fill(markup["id"])
            page.get_by_label("documents.invoices").check()
            page.get_by_label("Reason (no personal data)").fill("Litigation 2026-14")
            page.get_by_role("button", name="Place the hold").press("Enter")
            expect()(page.get_by_role("status")).to_contain_text("Hold placed:")
            shot(page, "hold-placed")
        if link == "Audit trail":
            expect()(page.locator("#chain")).to_contain_text("The chain is intact")
        if link == "Register of processing":
            with page.expect_download() as download:
                page.get_by_role("link", name="English — CSV").click()
            assert download.value.suggested_filename == "register-of-processing.en.csv"
    assert page.problems == []
