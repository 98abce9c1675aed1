"""What an export holds, derived from the data map, and the JSON Schema of its data.json.

One plan serves the archive writer, the CSV files and schema.json, so the three
can never disagree: every table of `shared.policy.data_map` whose rows link to an
account (directly or through a parent) is exported, with every column except
secrets and keyed pseudonyms (see `exported`). Values are encoded once
(`ExportColumn.to_json`): timestamps as ISO 8601 UTC, dates as ISO dates, decimals
as strings (no binary rounding), the rest as JSON natives.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from shared.platform.clock import iso
from shared.policy import data_map
from shared.policy import facts as policy
from shared.ports import tables as schema
from shared.ports.db import UtcDateTime

FORMAT_NAME = "jefacturebien-personal-data-export"
FORMAT_VERSION = 1
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Authentication secrets are never exported: they help nobody read their data and would
# weaken the account if the archive leaked. Keyed pseudonyms mean nothing without our key.
_SECRET_SUFFIXES = ("_hash", "_secret")
_PSEUDONYM_SUFFIX = "_pseudonym"


def exported(column: data_map.ColumnMap) -> bool:
    name = column.name
    return not (name.endswith(_SECRET_SUFFIXES) or name.endswith(_PSEUDONYM_SUFFIX))


def _iso_date(value: dt.date) -> str:
    return value.isoformat()


def _decimal_text(value: decimal.Decimal | float) -> str:
    return str(value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value)))


def _codec(column: sa.Column) -> tuple[dict[str, Any], Callable[[Any], Any] | None]:
    """The JSON Schema of a column's values and the encoder that produces them (None: as is)."""
    kind = column.type
    if isinstance(kind, UtcDateTime):
        return {"type": "string", "format": "date-time"}, iso  # UtcDateTime gives aware UTC values
    if isinstance(kind, sa.Date):
        return {"type": "string", "format": "date"}, _iso_date
    if isinstance(kind, sa.Numeric) and not isinstance(kind, (sa.Integer, sa.Float)):
        return {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "description": "decimal number, exact"}, _decimal_text
    if isinstance(kind, sa.Integer):
        return {"type": "integer"}, None
    if isinstance(kind, sa.Boolean):
        return {"type": "boolean"}, bool
    if isinstance(kind, sa.JSON):
        return {}, None
    if isinstance(kind, sa.String):
        spec: dict[str, Any] = {"type": "string"}
        if kind.length:
            spec["maxLength"] = kind.length
        return spec, None
    raise TypeError(f"{column.table.name}.{column.name}: no export encoding for {kind!r}")


@dataclass(frozen=True)
class ExportColumn:
    name: str
    category: str
    json_schema: dict[str, Any]
    encode: Callable[[Any], Any] | None

    def to_json(self, value: Any) -> Any:
        if value is None or self.encode is None:
            return value
        return self.encode(value)


@dataclass(frozen=True)
class ExportTable:
    name: str
    categories: tuple[str, ...]
    columns: tuple[ExportColumn, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def select(self, account_id: str) -> sa.Select:
        """The account's rows, only the exported columns, in a stable order."""
        table = schema.metadata.tables[self.name]
        query = data_map.subject_rows(self.name, account_id)
        key = [table.c[c.name] for c in table.primary_key.columns]
        return query.with_only_columns(*(table.c[name] for name in self.column_names)).order_by(*key)


@functools.cache
def export_tables() -> tuple[ExportTable, ...]:
    """Every table holding rows of an account: the account first, then its data parents before
    children (invoices before their lines), the suite's own records last."""
    linked = [
        tm
        for tm in reversed(data_map.TABLES)
        # Not linked to an account, or only through a keyed pseudonym (the audit trail): nothing to export.
        if tm.link.column is not None and not tm.link.pseudonym
    ]
    tables = []
    for tm in sorted(linked, key=lambda tm: (tm.name != "accounts", tm.suite)):
        table = schema.metadata.tables[tm.name]
        columns = []
        for cm in tm.columns:
            if not exported(cm):
                continue
            spec, encode = _codec(table.c[cm.name])
            if table.c[cm.name].nullable:
                spec = _nullable(spec)
            columns.append(ExportColumn(cm.name, cm.category, spec, encode))
        tables.append(ExportTable(tm.name, tm.categories, tuple(columns)))
    return tuple(tables)


def _nullable(spec: dict[str, Any]) -> dict[str, Any]:
    if "type" not in spec:
        return spec
    return {**spec, "type": [spec["type"], "null"]}


def _category_description(category_id: str) -> str:
    if category_id in data_map.NOT_PERSONAL:
        return "not personal data" if category_id == data_map.NON_PERSONAL else "identifier linking records"
    category = policy.category(category_id)
    return f"{category.label.en} / {category.label.fr} (policy {category.section})"


def _row_schema(table: ExportTable) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(table.column_names),
        "properties": {
            c.name: {**c.json_schema, "x-category": c.category, "description": _category_description(c.category)}
            for c in table.columns
        },
    }


def data_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of data.json, written as schema.json in every archive."""
    tables = export_tables()
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:jefacturebien:privacy-export:v{FORMAT_VERSION}",
        "title": "jefacturebien.fr personal data export (GDPR Art. 15 and 20)",
        "description": (
            "Everything held on one account. `data` has one array per table, one object per row; "
            "the same rows are in csv/<table>.csv. `information` is the Art. 15(1) information in French and English."
        ),
        "type": "object",
        "additionalProperties": False,
        "required": [
            "format",
            "generated_at",
            "account_id",
            "request",
            "information",
            "sources",
            "automated_decisions",
            "data",
            "documents",
            "log_objects",
            "summary",
        ],
        "properties": {
            "format": {
                "type": "object",
                "required": ["name", "version", "schema"],
                "properties": {
                    "name": {"const": FORMAT_NAME},
                    "version": {"const": FORMAT_VERSION},
                    "schema": {"const": "schema.json"},
                },
            },
            "generated_at": timestamp,
            "account_id": {"type": "string"},
            "request": {
                "type": "object",
                "required": ["request_id", "kind", "channel", "state", "received_at", "due_at"],
                "properties": {"request_id": {"type": "string"}, "kind": {"enum": ["access", "portability"]}},
            },
            "information": {
                "type": "object",
                "required": list(policy.LANGUAGES),
                "properties": {
                    language: {
                        "type": "object",
                        "required": [
                            "purposes",
                            "categories",
                            "retention",
                            "recipients",
                            "rights",
                            "how_to_exercise",
                            "complaint",
                        ],
                    }
                    for language in policy.LANGUAGES
                },
            },
            "sources": {
                "type": "object",
                "description": "Where each category of data comes from (GDPR Art. 15(1)(g)): source ids per category, and their labels.",
                "additionalProperties": False,
                "required": ["categories", "labels"],
                "properties": {
                    "categories": {
                        "type": "object",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    },
                    "labels": {
                        "type": "object",
                        "additionalProperties": {"type": "object", "required": list(policy.LANGUAGES)},
                    },
                },
            },
            "automated_decisions": {
                "type": "object",
                "description": "Automated decision-making, including profiling (GDPR Art. 15(1)(h), Art. 22): none.",
                "additionalProperties": False,
                "required": ["automated_decision_making", "profiling", "statement"],
                "properties": {
                    "automated_decision_making": {"const": False},
                    "profiling": {"const": False},
                    "statement": {"type": "object", "required": list(policy.LANGUAGES)},
                },
            },
            "data": {
                "type": "object",
                "additionalProperties": False,
                "required": [t.name for t in tables],
                "properties": {
                    t.name: {
                        "type": "array",
                        "description": ", ".join(t.categories) or "records",
                        "items": _row_schema(t),
                    }
                    for t in tables
                },
            },
            "documents": {
                "type": "array",
                "description": "Invoice PDFs: where each one is in the archive.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["invoice_id", "number", "file", "included"],
                    "properties": {
                        "invoice_id": {"type": "string"},
                        "number": {"type": "string"},
                        "file": {"type": "string"},
                        "included": {"type": "boolean", "description": "false when the file could not be found"},
                    },
                },
            },
            "log_objects": {
                "type": "array",
                "description": (
                    "Log files held in storage (logs/) dated since the account was created: they mix every user's "
                    "lines and are not searchable per account; the same logs' rows are in data."
                ),
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["kind", "key", "date", "size_bytes", "category"],
                    "properties": {
                        "kind": {"enum": ["connection", "access"]},
                        "key": {"type": "string"},
                        "date": {"type": "string", "format": "date"},
                        "size_bytes": {"type": "integer", "minimum": 0},
                        "category": {"type": "string"},
                    },
                },
            },
            "summary": {
                "type": "object",
                "additionalProperties": False,
                "required": ["rows", "documents", "log_objects", "categories"],
                "properties": {
                    "rows": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    "documents": {"type": "integer", "minimum": 0},
                    "log_objects": {"type": "integer", "minimum": 0},
                    "categories": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    }
