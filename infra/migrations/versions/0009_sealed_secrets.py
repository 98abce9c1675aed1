"""TOTP secrets sealed at rest (policy 7.1): accounts.totp_secret widened and every value encrypted.

Upgrade seals each clear base32 seed with the first key of SECRETS_KEYS (read from the environment
of the machine running the migration: the same value as the functions'), bound to its account id.
The development key is used only on SQLite or a local PostgreSQL; elsewhere an unset SECRETS_KEYS
stops the migration. Downgrade opens them again (every key id in use must still be listed). Values are
never printed: a value that does not open stops the migration naming its account id only.

SQLite does not enforce VARCHAR lengths, and rebuilding `accounts` there would cascade deletes into
its children, so only PostgreSQL alters the column type.

Revision ID: 0009_sealed_secrets
Revises: 0008_audit_keyed
"""

import sqlalchemy as sa
from alembic import op

from shared.platform.config import get_settings, is_loopback
from shared.platform.sealing import column_context, is_sealed, seal, unseal

revision = "0009_sealed_secrets"
down_revision = "0008_audit_keyed"
branch_labels = None
depends_on = None

_accounts = sa.table("accounts", sa.column("id", sa.String), sa.column("totp_secret", sa.String))
_BATCH = 500


def _rewrite(transform) -> None:
    conn = op.get_bind()
    after = ""
    while True:
        rows = conn.execute(
            sa.select(_accounts.c.id, _accounts.c.totp_secret)
            .where(_accounts.c.totp_secret.is_not(None), _accounts.c.id > after)
            .order_by(_accounts.c.id)
            .limit(_BATCH)
        ).all()
        for row in rows:
            value = transform(row.totp_secret, column_context("accounts", "totp_secret", row.id))
            if value != row.totp_secret:
                conn.execute(sa.update(_accounts).where(_accounts.c.id == row.id).values(totp_secret=value))
        if len(rows) < _BATCH:
            return
        after = rows[-1].id


def _seal(value: str, context: str) -> str:
    return value if is_sealed(value) else seal(value, context=context)


def _open(value: str, context: str) -> str:
    return unseal(value, context=context) if is_sealed(value) else value


def _refuse_the_development_key_on_a_real_database() -> None:
    url = op.get_bind().engine.url
    host = (url.host or "").lower()
    local = url.get_backend_name() == "sqlite" or is_loopback(host) or "." not in host
    if get_settings().secrets_keys is None and not local:
        # The functions would hold other keys: every sealed secret would stop opening.
        raise RuntimeError(f"set SECRETS_KEYS (the functions' keys) before sealing the secrets of {host!r}")


def upgrade() -> None:
    _refuse_the_development_key_on_a_real_database()
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("accounts", "totp_secret", type_=sa.String(255), existing_type=sa.String(64))
    else:
        # Overwritten cells are zeroed in the pages this migration writes.
        op.execute("PRAGMA secure_delete = ON")
    _rewrite(_seal)


def downgrade() -> None:
    _rewrite(_open)
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("accounts", "totp_secret", type_=sa.String(64), existing_type=sa.String(255))
