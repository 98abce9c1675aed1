"""Notices: every mail and page a person reads, as Jinja2 templates in French and English.

A mail notice is `templates/mail/<name>.<lang>.txt` and `<name>.<lang>.html`; each sets its
`subject` with `{% set subject = ... %}`. Mails go out bilingual (French first, then English,
as the platform writes to its users), assembled by `_layout.txt` / `_layout.html`:

    message = notices.mail("verification_code", to=email, idempotency_key=key, code="123456", minutes=10)

A page is `templates/pages/<name>.<lang>.html` extending `pages/_layout.html`:

    body = notices.page("unsubscribe_done", language="fr", ...)

HTML is autoescaped; the text parts are not (they are plain text). Templates receive only
what the caller passes: the DPO address and the controller's name come from `policy_context()`,
which callers in the policy layer and above add.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from shared.ports.mail import Message

if TYPE_CHECKING:
    import jinja2

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"
SEPARATOR = "\n\n---\n\n"

__all__ = ["LANGUAGES", "Notice", "mail", "mail_names", "page", "page_names", "render_mail"]


@cache
def _environment() -> jinja2.Environment:
    # deferred for cold start: Jinja2 loads when the first mail or page is rendered
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("shared.notices", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty sentence
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


class Notice:
    """One rendered mail: subject, text and HTML, each with every language of the notice."""

    def __init__(self, subject: str, text: str, html: str) -> None:
        self.subject, self.text, self.html = subject, text, html


def _languages(language: str | None) -> Sequence[str]:
    if language is None:
        return LANGUAGES
    if language not in LANGUAGES:
        raise ValueError(f"language is one of {LANGUAGES}")
    return (language,)


def render_mail(name: str, *, language: str | None = None, **context: Any) -> Notice:
    """A mail notice in one language, or in both (French, then English) when `language` is None."""
    env = _environment()
    subjects, texts, htmls = [], [], []
    for lang in _languages(language):
        text_template = env.get_template(f"mail/{name}.{lang}.txt")
        module = text_template.make_module(context)
        subjects.append(str(module.subject).strip())  # type: ignore[attr-defined]  # the template sets it
        texts.append(str(module).strip())
        htmls.append((lang, env.get_template(f"mail/{name}.{lang}.html").render(context).strip()))
    text = SEPARATOR.join(texts) + "\n"
    html = env.get_template("mail/_layout.html").render(sections=htmls, lang=htmls[0][0])
    return Notice(" / ".join(subjects), text, html)


def mail(
    name: str,
    *,
    to: str,
    idempotency_key: str,
    language: str | None = None,
    category: str = "transactional",
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> Message:
    """A mail notice ready for the mail port."""
    notice = render_mail(name, language=language, **context)
    return Message(
        to=to,
        subject=notice.subject,
        text=notice.text,
        html=notice.html,
        idempotency_key=idempotency_key,
        category=category,
        headers=dict(headers or {}),
    )


def page(name: str, *, language: str = DEFAULT_LANGUAGE, **context: Any) -> str:
    """An HTML page notice in one language (pages follow the reader's Accept-Language)."""
    (lang,) = _languages(language)
    return _environment().get_template(f"pages/{name}.{lang}.html").render(context, lang=lang)


def _names(folder: str) -> list[str]:
    names = {
        template.split("/", 1)[1].split(".", 1)[0]
        for template in _environment().list_templates()
        if template.startswith(folder + "/") and not template.split("/", 1)[1].startswith("_")
    }
    return sorted(names)


def mail_names() -> list[str]:
    return _names("mail")


def page_names() -> list[str]:
    return _names("pages")
