"""The data map's subject keys (what the subject search is generated from): well-formed and indexed."""

from __future__ import annotations

import sqlalchemy as sa

from shared.desk.search import column_expression
from shared.policy import data_map
from shared.ports import tables as schema


def _index_expressions(table: sa.Table) -> set[str]:
    dialect = sa.dialects.sqlite.dialect()
    out = set()
    for index in table.indexes:
        if len(index.expressions) == 1:
            expr = index.expressions[0]
            out.add(str(expr.compile(dialect=dialect, compile_kwargs={"literal_binds": True})))
    return out


def test_keys_name_personal_columns_and_known_kinds():
    assert data_map.searched_tables()
    for tm in data_map.searched_tables():
        table = schema.metadata.tables[tm.name]
        for key in tm.subject_keys:
            assert key.role in data_map.SEARCH_ROLES, tm.name
            assert key.owner in table.c, f"{tm.name}.{key.owner}"
            assert tm.link.column == key.owner, f"{tm.name}: the owner is the table's link to its account"
            for kind, columns in key.identifiers:
                assert kind in data_map.IDENTIFIER_KINDS, f"{tm.name}: {kind}"
                for column in columns:
                    assert tm.column(column).personal, f"{tm.name}.{column}"
                    if kind != "postal_address":
                        assert tm.column(column).identifier, f"{tm.name}.{column} is an identifier"
            assert any(kind != "postal_address" for kind, _ in key.identifiers), tm.name


def test_every_comparison_has_its_index():
    """email and name compare lower(<columns>), phone and SIRET the column: each has an index of that expression."""
    dialect = sa.dialects.sqlite.dialect()
    for tm in data_map.searched_tables():
        table = schema.metadata.tables[tm.name]
        indexed = _index_expressions(table)
        for key in tm.subject_keys:
            for kind, columns in key.identifiers:
                if kind == "postal_address":
                    continue  # narrows a name match only
                expr = column_expression(table, columns)
                if kind in ("email", "name"):
                    expr = sa.func.lower(expr)
                text = str(expr.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
                assert text in indexed, f"{tm.name}: no index on {text} (have {sorted(indexed)})"
