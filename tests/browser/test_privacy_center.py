"""The reference privacy center in a real browser: demo sign-in, consents, export with step-up, erasure."""

from __future__ import annotations

import re

import pytest

from shared.local.privacy_center import COOKIE
from tests.browser.conftest import assert_labelled

JULIEN = "julien.moreau@example.com"  # a demo account without 2FA: step-up by a mailed code
MARKUP_NAME = "Alex <script>alert(1)</script> Dupont"


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def sign_in(page, live_server, name: str, shot=None):
    page.goto(live_server.url("/privacy-center/?lang=fr"))
    if shot:
        shot(page, "sign-in")
    assert_labelled(page)
    page.get_by_label(re.compile(re.escape(name))).check()
    page.get_by_role("button", name="Se connecter").click()
    expect()(page.get_by_role("heading", level=1)).to_have_text("Centre de confidentialité")


def no_leak(live_server, page):
    """Neither the token cookie nor the bearer token reaches the access log; the page raised no error."""
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == COOKIE)
    assert live_server.access_log, "the access log recorded nothing"
    assert not any(cookie in line or "Bearer" in line for line in live_server.access_log)
    assert page.problems == []


def test_withdraw_the_newsletter_then_export_my_data_with_a_mailed_code(page, live_server, screenshots):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, live_server, "Julien Moreau", shots := screenshots)

    newsletter = page.get_by_label("Recevoir la newsletter")
    expect()(newsletter).to_be_checked()
    expect()(newsletter).to_be_enabled()
    expect()(page.locator("#account-summary")).to_have_text(
        "Compte actif · vérification par code envoyé par courriel · 0 demande(s) en cours"
    )
    assert_labelled(page)
    shots(page, "privacy-center")

    # Keyboard only: focus the switch and press Space.
    newsletter.focus()
    page.keyboard.press("Space")
    expect()(page.locator("#consents-status")).to_have_text("Consentement retiré.")
    expect()(newsletter).not_to_be_checked()
    expect()(
        page.locator("#consent-history tbody tr").filter(has_text="newsletter").filter(has_text="retiré")
    ).to_have_count(1)
    expect()(
        page.get_by_role("switch", name="Mesure d'audience", exact=True)
    ).to_be_checked()  # only the newsletter was withdrawn
    shots(page, "newsletter-withdrawn")

    page.get_by_role("button", name="Préparer mon archive").click()
    code_box = page.get_by_label("Code de vérification (6 chiffres)").first
    expect()(code_box).to_be_visible()
    expect()(code_box).to_be_focused()
    expect()(page.locator("#export-status")).to_contain_text("courriel")
    shots(page, "export-step-up")
    code_box.fill(live_server.step_up_code(JULIEN))
    code_box.press("Enter")

    link = page.get_by_role("link", name="Télécharger l'archive")
    expect()(link).to_be_visible(timeout=30_000)
    expect()(page.locator("#export-status")).to_contain_text("Votre archive est prête")
    shots(page, "export-ready")
    with page.expect_download() as download:
        link.click()
    archive = download.value
    assert archive.suggested_filename.endswith(".zip")
    assert archive.path().stat().st_size > 0

    assert dialogs == []
    no_leak(live_server, page)


def test_a_name_made_of_markup_is_shown_as_text(page, live_server, screenshots):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(live_server.url("/privacy-center/?lang=en"))
    expect()(page.get_by_label(re.compile(re.escape(MARKUP_NAME)))).to_have_count(1)
    shots = screenshots
    shots(page, "sign-in-en")
    page.get_by_label(re.compile(re.escape(MARKUP_NAME))).check()
    page.get_by_role("button", name="Sign in").click()
    expect()(page.locator("#pc-name")).to_have_text(MARKUP_NAME)
    expect()(page.get_by_label("Receive the newsletter")).to_be_checked()
    shots(page, "privacy-center-en")
    assert page.locator("script:not([src]):not([type='application/json'])").count() == 0
    assert dialogs == []
    # Rectification and the policy notice answer from their own functions: the name is shown as text there too.
    expect()(page.locator("#rectify-details")).to_contain_text("<script>alert(1)</script>")
    expect()(page.locator("#notice-version")).to_have_text("1.1")
    no_leak(live_server, page)


def test_delete_my_account_shows_the_cooling_off_countdown_and_cancels(page, live_server, screenshots):
    sign_in(page, live_server, "Julien Moreau")
    page.get_by_label("Je comprends que mon compte sera supprimé à la fin du délai").check()
    page.get_by_role("button", name="Supprimer mon compte").click()
    code_box = page.locator("#erasure-code")
    expect()(code_box).to_be_visible()
    code_box.fill(live_server.step_up_code(JULIEN))
    code_box.press("Enter")
    expect()(page.locator("#erasure-status")).to_contain_text("Votre compte sera supprimé le")
    expect()(page.locator("#erasure-countdown")).to_have_text(re.compile(r"Temps restant : \d+ j \d\d:\d\d:\d\d"))
    # Deactivated by its pending erasure: the consents say why they cannot be managed.
    expect()(page.locator("#consents-status")).to_contain_text("désactivé")
    expect()(page.locator("#account-summary")).to_contain_text("Compte désactivé (suppression en cours)")
    screenshots(page, "erasure-pending")

    page.get_by_role("button", name="Annuler la suppression").click()
    expect()(page.locator("#erasure-status")).to_have_text("Suppression annulée : votre compte est de nouveau actif.")
    expect()(page.get_by_label("Recevoir la newsletter")).to_be_checked()
    screenshots(page, "erasure-cancelled")
    no_leak(live_server, page)


def test_the_page_loads_nothing_from_another_origin(page, live_server):
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    sign_in(page, live_server, "Julien Moreau")
    expect()(page.get_by_label("Recevoir la newsletter")).to_be_checked()
    response = page.request.get(live_server.url("/privacy-center/"))
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert requested and all(url.startswith(live_server.base_url) for url in requested)


@pytest.mark.parametrize("lang, button", [("fr", "Se connecter"), ("en", "Sign in")])
def test_sign_in_by_keyboard_alone(page, live_server, lang, button):
    page.goto(live_server.url(f"/privacy-center/?lang={lang}"))
    page.keyboard.press("Tab")  # the language link
    page.keyboard.press("Tab")  # the first account (checked)
    page.keyboard.press("ArrowDown")  # the second
    page.keyboard.press("Tab")
    expect()(page.get_by_role("button", name=button)).to_be_focused()
    page.keyboard.press("Enter")
    expect()(page.locator("#pc-name")).to_have_text("Julien Moreau")


def test_object_to_direct_marketing(page, live_server, screenshots):
    sign_in(page, live_server, "Julien Moreau")
    objection = page.get_by_label("Je m'oppose à la prospection commerciale")
    expect()(objection).to_be_enabled()
    objection.focus()
    page.keyboard.press("Space")
    expect()(page.locator("#objections-status")).to_have_text("Opposition enregistrée.")
    expect()(objection).to_be_checked()
    expect()(objection).to_be_disabled()  # lifting it is a new explicit consent, not a box to untick
    expect()(page.get_by_label("Recevoir la newsletter")).not_to_be_checked()  # the objection withdrew it too
    screenshots(page, "objection-recorded")
    page.reload()
    expect()(page.get_by_label("Je m'oppose à la prospection commerciale")).to_be_checked()
    no_leak(live_server, page)
