"""The browser tests' harness: a missing Chromium skips them with a message, and fails them under CI=true."""

from __future__ import annotations

import pytest

from tests.browser import conftest as harness


def test_a_missing_browser_is_a_skip_with_a_message_locally(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium chromium-driver"):
        harness._unavailable("Debian's Chromium at /usr/bin/chromium")


def test_a_missing_browser_fails_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="in CI"):
        harness._unavailable("Debian's Chromium at /usr/bin/chromium")


def test_chromium_path_follows_chromium_path_when_it_is_an_executable(monkeypatch, tmp_path):
    monkeypatch.setenv("CHROMIUM_PATH", str(tmp_path / "absent"))
    assert harness.chromium_path() in (None, *harness.CHROMIUM_CANDIDATES)
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHROMIUM_PATH", str(fake))
    assert harness.chromium_path() == str(fake)
