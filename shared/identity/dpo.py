"""DPO credentials: bearer tokens `dpo_<credential id>_<secret>`, kept only as a SHA-256 of the secret.

The secret has 256 bits of entropy, so a plain SHA-256 is enough at rest (no
salt or slow hash needed) and comparisons are constant-time. A credential can be
revoked. Client tokens never pass here, DPO tokens never pass as client tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from shared.identity.client import DPO_TOKEN_PREFIX, bearer_token
from shared.platform.errors import NotFound, Unauthorized, ValidationFailed
from shared.ports.db import get_engine, utcnow
from shared.ports.tables import dpo_credentials
from shared.records import audit

MAX_LABEL_LENGTH = 100
# Compared against when the credential id is unknown, so timing does not tell ids apart.
_NO_SUCH_HASH = hashlib.sha256(b"no such credential").hexdigest()


@dataclass(frozen=True)
class DpoIdentity:
    credential_id: str
    label: str

    @property
    def actor(self) -> str:
        """How this credential appears in the audit trail."""
        return f"dpo:{self.credential_id}"


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_dpo_credential(conn: Connection, label: str, *, now: dt.datetime | None = None) -> str:
    """Store a new credential and return its token; the token is shown once and never stored."""
    label = (label or "").strip()
    if not label or len(label) > MAX_LABEL_LENGTH:
        raise ValidationFailed(f"label must be 1 to {MAX_LABEL_LENGTH} characters", code="invalid_label")
    if audit.personal_data_reason(label):
        raise ValidationFailed("label names a role (e.g. 'dpo'), not a person", code="invalid_label")
    credential_id, secret = str(uuid.uuid4()), secrets.token_urlsafe(32)
    now = now or utcnow()
    conn.execute(
        insert(dpo_credentials).values(id=credential_id, label=label, secret_hash=_secret_hash(secret), created_at=now)
    )
    audit.record(
        conn,
        actor="admin",
        action="dpo_credential.created",
        outcome="succeeded",
        details={"credential_id": credential_id},
    )
    return f"{DPO_TOKEN_PREFIX}{credential_id}_{secret}"


def revoke_dpo_credential(conn: Connection, credential_id: str, *, now: dt.datetime | None = None) -> None:
    now = now or utcnow()
    revoked = conn.execute(
        update(dpo_credentials)
        .where(dpo_credentials.c.id == credential_id, dpo_credentials.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if revoked.rowcount != 1:
        raise NotFound("no such active DPO credential", code="credential_not_found")
    audit.record(
        conn,
        actor="admin",
        action="dpo_credential.revoked",
        outcome="succeeded",
        details={"credential_id": credential_id},
    )


def authenticate_dpo(headers: Mapping[str, str] | None) -> DpoIdentity:
    """The DPO credential behind `Authorization: Bearer dpo_...`; 401 otherwise."""
    token = bearer_token(headers)
    if not token.startswith(DPO_TOKEN_PREFIX):
        raise Unauthorized("DPO routes need a DPO credential, not a client token", code="wrong_token_type")
    credential_id, _, secret = token[len(DPO_TOKEN_PREFIX) :].partition("_")
    invalid = Unauthorized("the DPO credential is not valid", code="invalid_token")
    if not secret or len(credential_id) != 36:
        raise invalid
    with get_engine().connect() as conn:
        row = conn.execute(
            select(dpo_credentials.c.label, dpo_credentials.c.secret_hash, dpo_credentials.c.revoked_at).where(
                dpo_credentials.c.id == credential_id
            )
        ).first()
    if not hmac.compare_digest(_secret_hash(secret), row.secret_hash if row else _NO_SUCH_HASH) or row is None:
        raise invalid
    if row.revoked_at is not None:
        raise Unauthorized("the DPO credential has been revoked", code="token_revoked")
    return DpoIdentity(credential_id=credential_id, label=row.label)
