"""Every notice renders in French and in English from its template, with what its caller gives it.

Each template has a sample context in tests/unit/notice_samples/<mail|pages>/<name>.json; a
template without one fails here, so a new notice cannot ship untested.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from shared import notices

SAMPLES = Path(__file__).parent / "notice_samples"
MAILS = notices.mail_names()
PAGES = notices.page_names()


def _sample(kind: str, name: str) -> dict:
    path = SAMPLES / kind / f"{name}.json"
    assert path.exists(), f"notice {kind}/{name} has no sample context at {path}"
    return json.loads(path.read_text(encoding="utf-8"))


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value] if len(value) >= 4 else []
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_templates_are_found():
    assert "verification_code" in MAILS
    assert len(MAILS) >= 1 and all(name and not name.startswith("_") for name in MAILS + PAGES)


@pytest.mark.parametrize("name", MAILS)
@pytest.mark.parametrize("language", notices.LANGUAGES)
def test_each_mail_renders_in_each_language(name, language):
    sample = _sample("mail", name)
    notice = notices.render_mail(name, language=language, **sample)
    assert notice.subject and "\n" not in notice.subject
    assert f'lang="{language}"' in notice.html
    for value in _strings(sample.get("_shown", sample)):
        assert value in notice.text, f"{value!r} missing from the {language} text of {name}"
        assert html.escape(value, quote=False) in notice.html or html.escape(value) in notice.html


@pytest.mark.parametrize("name", MAILS)
def test_a_mail_goes_out_french_first_then_english(name):
    notice = notices.render_mail(name, **_sample("mail", name))
    french, english = (
        notices.render_mail(name, language="fr", **_sample("mail", name)),
        notices.render_mail(name, language="en", **_sample("mail", name)),
    )
    assert notice.subject == f"{french.subject} / {english.subject}"
    assert notice.text.index(french.text.strip()) < notice.text.index(english.text.strip())


@pytest.mark.parametrize("name", PAGES)
@pytest.mark.parametrize("language", notices.LANGUAGES)
def test_each_page_renders_in_each_language(name, language):
    sample = _sample("pages", name)
    page = notices.page(name, language=language, **sample)
    assert page.startswith("<!doctype html>") and f'<html lang="{language}">' in page
    for value in _strings(sample.get("_shown", sample)):
        assert html.escape(value) in page or html.escape(value, quote=False) in page


def test_html_escapes_what_it_is_given():
    notice = notices.render_mail("verification_code", code="<script>alert(1)</script>", minutes=10)
    assert "<script>" not in notice.html and "&lt;script&gt;" in notice.html
    assert "<script>alert(1)</script>" in notice.text  # plain text is not HTML


def test_a_missing_value_is_an_error_not_an_empty_sentence():
    with pytest.raises(Exception, match="minutes"):
        notices.render_mail("verification_code", code="123456")
