"""Keyed pseudonyms: the only form in which a subject appears in the audit trail and retained logs.

A pseudonym is HMAC-SHA256 under a key derived per purpose from the configured
pseudonym key, so the same value gives unrelated pseudonyms for different
purposes and nobody without the key can recompute one from a guessed value.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from shared.platform.config import get_settings


@functools.lru_cache(maxsize=32)
def _purpose_key(master_key: bytes, purpose: str) -> bytes:
    return hmac.new(master_key, b"purpose:" + purpose.encode(), hashlib.sha256).digest()


def pseudonymise(value: str, *, purpose: str = "subject") -> str:
    """64 hex characters; stable for a given key, purpose and value."""
    if not purpose:
        raise ValueError("a pseudonym needs a purpose")
    key = _purpose_key(get_settings().effective_pseudonym_key, purpose)
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def subject_pseudonym(account_id: str) -> str:
    return pseudonymise(account_id, purpose="subject")
