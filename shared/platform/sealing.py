"""Secrets sealed at rest (policy 7.1): AES-256-GCM under a key of the secret configuration.

A sealed value is text that fits the column it replaces:

    v1:<key id>:<base64url(12-byte nonce + ciphertext + 16-byte tag)>

The key id names the key of SECRETS_KEYS that sealed it, so keys rotate: put the new key first
(it seals from then on), keep the old ones listed (they still open what they sealed), run
`privacy-functions secrets reseal` (every value moves to the first key), then drop the old key.
The associated data binds the version, the key id and a context naming the row the value belongs
to (`accounts.totp_secret:<account id>`): a ciphertext copied to another row, or to another key
id, does not open. Errors name the key id and the context, never the value nor the key.

Review of the secret columns of shared/ports/tables.py (what a database or backup reader gets):

    column                          holds                                   at rest
    accounts.totp_secret            TOTP seed (mints step-up codes)         sealed here (0009_sealed_secrets)
    accounts.password_hash          platform's password hash (bcrypt)       one-way hash, kept as is
    sessions.token_hash             hash of a session token                 one-way hash of a random token
    api_keys.key_hash, key_prefix   hash of an API key; 12-char prefix      one-way hash; the prefix alone opens nothing
    verification_codes.code_hash    mailed 6-digit code                     keyed hash (HMAC), bound to the code id
    dpo_credentials.secret_hash     DPO token (token_urlsafe(32))           SHA-256 of 256 random bits: not invertible
    consent_events.proof_ip_pseudonym, *.subject_pseudonym   keyed pseudonyms (HMAC), not secrets
    audit_log.hash, prev_hash       chain integrity                         not secret
    stripe_* ids, payment_records   Stripe object ids                       identifiers, not credentials (no API key stored)
    dsr_requests.details            export object key, sizes, digest        download links are signed on demand, never stored

Only the TOTP seed is a usable secret stored in a recoverable form, so it is the one sealed.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from shared.platform.config import get_settings

FORMAT = "v1"
NONCE_BYTES = 12
_TOKEN = re.compile(r"^v1:([A-Za-z0-9_-]{1,16}):([A-Za-z0-9_-]+={0,2})$")


class SealingError(ValueError):
    """A sealed value that does not open (unknown key id, tampered, or moved to another row)."""


def column_context(table: str, column: str, row_id: str) -> str:
    """The associated data of a value stored in `table.column` of the row `row_id`."""
    if not (table and column and row_id):
        raise ValueError("a sealing context names the table, the column and the row")
    return f"{table}.{column}:{row_id}"


def _keys() -> tuple[tuple[str, bytes], ...]:
    return get_settings().sealing_keys


def current_key_id() -> str:
    return _keys()[0][0]


def _aad(kid: str, context: str) -> bytes:
    if not context:
        raise ValueError("sealing needs a context (use column_context)")
    return f"{FORMAT}:{kid}:{context}".encode()


def is_sealed(value: str | None) -> bool:
    return bool(value and _TOKEN.match(value))


def key_id_of(token: str) -> str:
    match = _TOKEN.match(token or "")
    if match is None:
        raise SealingError("not a sealed value (expected v1:<key id>:<data>)")
    return match.group(1)


def seal(plaintext: str, *, context: str) -> str:
    """Encrypt under the current key; a fresh random nonce each time."""
    # deferred for cold start: cryptography loads only when a secret is sealed or opened
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kid, key = _keys()[0]
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), _aad(kid, context))
    return f"{FORMAT}:{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(token: str, *, context: str) -> str:
    """Decrypt with the key the token names; SealingError when it does not open for this context."""
    match = _TOKEN.match(token or "")
    if match is None:
        raise SealingError(f"the value for {context} is not sealed (expected v1:<key id>:<data>)")
    kid, data = match.groups()
    key = dict(_keys()).get(kid)
    if key is None:
        raise SealingError(f"the value for {context} is sealed under key id {kid!r}, which SECRETS_KEYS does not hold")
    try:
        raw = base64.urlsafe_b64decode(data)
    except (binascii.Error, ValueError):
        raise SealingError(f"the value for {context} is not valid base64") from None
    if len(raw) <= NONCE_BYTES + 16:
        raise SealingError(f"the value for {context} is truncated")
    # deferred for cold start, as in seal()
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        plaintext = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(kid, context))
    except InvalidTag:
        raise SealingError(
            f"the value for {context} does not open under key id {kid!r} (tampered, or copied from another row)"
        ) from None
    return plaintext.decode()


def reseal(token: str, *, context: str) -> str:
    """The same secret under the current key; the token itself when it is already under it."""
    if key_id_of(token) == current_key_id():
        unseal(token, context=context)  # still proves it opens
        return token
    return seal(unseal(token, context=context), context=context)
