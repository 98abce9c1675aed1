"""Key rings from the secret configuration: "kid:base64key,kid2:base64key", the current key first.

The first key signs or seals; every key listed still verifies or opens what it did, so keys rotate by
putting the new one first and dropping the old one once nothing needs it. Errors name the setting and
the key id, never a key.
"""

from __future__ import annotations

import base64
import binascii
import re

KEY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,15}$")
DEV_SECRETS_KEY_ID = "dev"

KeyRing = tuple[tuple[str, bytes], ...]


def parse_key_ring(value: str, *, setting: str, min_bytes: int = 32, exact_bytes: int | None = None) -> KeyRing:
    """((key id, key), ...) in the given order; ValueError names what is wrong, never a key."""
    keys: list[tuple[str, bytes]] = []
    for position, item in enumerate(value.split(","), start=1):
        kid, sep, encoded = item.strip().partition(":")
        if not sep or not KEY_ID.match(kid):
            raise ValueError(f"{setting} item {position}: expected 'kid:base64-key', kid of 1 to 16 [a-z0-9_-]")
        try:  # standard or URL-safe base64
            key = base64.b64decode(encoded.strip().replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{setting}: the key of {kid!r} is not base64") from None
        if exact_bytes is not None and len(key) != exact_bytes:
            raise ValueError(f"{setting}: the key of {kid!r} is not {exact_bytes} bytes")
        if len(key) < min_bytes:
            raise ValueError(f"{setting}: the key of {kid!r} is shorter than {min_bytes} bytes")
        if kid in dict(keys):
            raise ValueError(f"{setting}: key id {kid!r} is listed twice")
        keys.append((kid, key))
    return tuple(keys)


def parse_audit_keys(value: str) -> KeyRing:
    """AUDIT_KEYS: HMAC keys of the audit chain and its checkpoints (32 bytes or more)."""
    return parse_key_ring(value, setting="AUDIT_KEYS")


def parse_secrets_keys(value: str) -> KeyRing:
    """SECRETS_KEYS: AES-256-GCM keys sealing secrets at rest (exactly 32 bytes)."""
    return parse_key_ring(value, setting="SECRETS_KEYS", exact_bytes=32)
