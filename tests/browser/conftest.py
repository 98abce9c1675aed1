"""Browser tests: Playwright (PyPI) driving Debian's Chromium against the local server.

Chromium is the system's (`apt-get install chromium chromium-driver`, `.ci/run` does it),
never a browser Playwright would download: the machine may have no network. Without it the
tests are skipped with a message, except under CI=true where a missing browser fails the
run (as a missing PostgreSQL does). Each test gets the local server of `make run` on a free
port, over the parametrised database (SQLite and PostgreSQL), with the demo accounts seeded
and the queue pump delivering messages to the workers. Screenshots of every page go under
test-output/browser/<test>/ (ignored by git) so CI can keep them.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.local.server import PROJECT_ROOT, QueuePump, access_log_handler, build_app, load_manifest
from shared.platform import config as config_module
from tests.fakes.http_fake import serving

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
OUTPUT = PROJECT_ROOT / "test-output" / "browser"
CODE_IN_MAIL = re.compile(r"code de vérification jefacturebien\.fr : (\d{6})")


def chromium_path() -> str | None:
    wanted = os.environ.get("CHROMIUM_PATH")
    for candidate in ([wanted] if wanted else []) + list(CHROMIUM_CANDIDATES):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests need {reason} in CI (.ci/run installs chromium)")
    pytest.skip(f"browser tests skipped: {reason} (apt-get install -y chromium chromium-driver)")


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    if executable is None:
        _unavailable("Debian's Chromium at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package (pip install -e '.[dev]')")
    profile = tempfile.mkdtemp(prefix="pf-chromium-")
    with sync_playwright() as playwright:
        # A persistent context is the only way to give Chromium a user-data dir of its own (fresh each session).
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            locale="fr-FR",
            viewport={"width": 1100, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, request):
    browser.clear_cookies()
    tab = browser.new_page()
    problems: list[str] = []

    def console(message) -> None:
        # A 4xx answer to fetch() is logged by Chromium; the page handles those. Anything else (a CSP refusal) counts.
        if message.type == "error" and not message.text.startswith("Failed to load resource: the server responded"):
            problems.append(f"console {message.type}: {message.text}")

    tab.on("console", console)
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.problems = problems
    yield tab
    tab.close()


@dataclass
class LiveServer:
    base_url: str
    data_dir: Path
    access_log: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        outbox = self.data_dir / "outbox"
        mails = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in outbox.glob("*.eml")]
        return sorted(
            (m for m in mails if m["To"] == address), key=lambda m: email.utils.parsedate_to_datetime(m["Date"])
        )

    def step_up_code(self, address: str) -> str:
        """The code of the latest verification mail to `address`, read from the local outbox."""
        for mail in reversed(self.mails_to(address)):
            found = CODE_IN_MAIL.search(mail.get_body(("plain",)).get_content())
            if found:
                return found.group(1)
        raise AssertionError(f"no verification code mailed to {address}")


@pytest.fixture
def live_server(env, monkeypatch) -> Iterator[LiveServer]:
    from werkzeug.serving import make_server

    from shared.local.demo import seed_demo
    from shared.ports.backends import get_storage, reset_backends
    from shared.ports.db import get_engine

    manifest = load_manifest()
    app = build_app(manifest)
    access_log: list[str] = []
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=access_log_handler(app, access_log.append))
    base_url = f"http://127.0.0.1:{server.server_port}"
    # Links the functions build (downloads) point at this server, as `serve` arranges.
    monkeypatch.setenv("LOCAL_BASE_URL", base_url)
    monkeypatch.setenv("CORS_ALLOW_ORIGIN", base_url)
    config_module.reset_settings()
    reset_backends()
    seed_demo(get_engine(), get_storage())
    stop = threading.Event()
    worker_log: list[str] = []
    pump = QueuePump(manifest, PROJECT_ROOT, worker_log.append, stop)
    pump.start()
    try:
        with serving(server):
            yield LiveServer(base_url, env.data_dir, access_log)
    finally:
        stop.set()
        pump.join(timeout=5)


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !(e.labels && e.labels.length && [...e.labels].some(l => l.textContent.trim())))
    .map(e => e.id || e.name || e.outerHTML)"""


def assert_labelled(tab) -> None:
    """Every visible or hidden-for-now control of the page has a label with text (WCAG 1.3.1, 4.1.2)."""
    assert tab.evaluate(UNLABELLED) == []


@pytest.fixture
def screenshots(request, db_url) -> Iterator:
    """`shot(page, name)` saves test-output/browser/<test>/<nn>-<name>.png. The pages are the same on both
    databases: the screenshots are taken on PostgreSQL's run only (a full-page one costs about 70 ms)."""
    folder = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    taking = db_url.startswith("postgresql")
    if taking:
        folder.mkdir(parents=True, exist_ok=True)
    count = 0

    def shot(tab, name: str) -> None:
        nonlocal count
        count += 1
        if taking:
            tab.screenshot(path=str(folder / f"{count:02d}-{name}.png"), full_page=True)

    yield shot
