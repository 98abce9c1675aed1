"""Subcommand groups of `privacy-functions`, one module each, registered by shared/local/cli.py."""

from __future__ import annotations

import sys

from shared.platform.config import ConfigurationError, Settings, get_settings


def checked_settings() -> Settings:
    """The settings, or exit with the configuration error (a command-line answer, not a traceback)."""
    try:
        return get_settings()
    except ConfigurationError as exc:
        sys.exit(f"privacy-functions: {exc}")
