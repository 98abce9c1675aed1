"""Subcommand groups of `privacy-functions`, one module each, registered by shared/local/cli.py."""
