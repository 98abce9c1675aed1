"""Every column holding a sealed value (shared.platform.sealing), and moving them to the current key.

A value is bound to its row (`<table>.<column>:<row id>`), so resealing reads and rewrites
each row under its own context; a value that no longer opens stops the run, naming its row only.
"""

from __future__ import annotations

from sqlalchemy import Engine, Table, select, update

from shared.platform.sealing import column_context, current_key_id, reseal
from shared.ports.tables import accounts, dsr_requests

# (table, column, name in `privacy-functions secrets reseal`'s answer)
SEALED_COLUMNS: tuple[tuple[Table, str, str], ...] = (
    (accounts, "totp_secret", "totp_secrets"),
    (dsr_requests, "subject_identifiers", "subject_identifiers"),
)


def reseal_column(engine: Engine, table: Table, column: str, *, batch_size: int = 200) -> dict[str, int | str]:
    """Move every value of `table.column` under the current sealing key (after a rotation); idempotent."""
    key_id = current_key_id()
    checked = resealed_count = 0
    value_column, id_column = table.c[column], table.c.id
    after = ""
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(id_column, value_column)
                .where(value_column.is_not(None), id_column > after)
                .order_by(id_column)
                .limit(batch_size)
            ).all()
            for row_id, value in rows:
                resealed = reseal(value, context=column_context(table.name, column, row_id))
                if resealed != value:
                    conn.execute(
                        update(table).where(id_column == row_id, value_column == value).values({column: resealed})
                    )
                    resealed_count += 1
            checked += len(rows)
        if len(rows) < batch_size:
            return {"key_id": key_id, "checked": checked, "resealed": resealed_count}
        after = rows[-1][0]


def reseal_all(engine: Engine) -> dict[str, dict[str, int | str]]:
    """Every sealed column moved to the current key: {name: counts}."""
    return {name: reseal_column(engine, table, column) for table, column, name in SEALED_COLUMNS}
