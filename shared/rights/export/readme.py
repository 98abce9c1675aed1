"""README.html of the archive: a human-readable summary, French first, English below (page `export_readme`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared import notices
from shared.platform.clock import iso
from shared.policy import facts as policy
from shared.policy import sources as data_sources
from shared.records.registry import RequestRecord
from shared.rights.export.schema import ExportTable
from shared.rights.export.stats import ArchiveStats

README_LANGUAGES = ("fr", "en")


def readme_context(
    record: RequestRecord, tables: tuple[ExportTable, ...], stats: ArchiveStats, now: dt.datetime
) -> dict[str, Any]:
    """What the template shows: the archive's counts and the Art. 15(1) information in each language."""
    return {
        "generated_at": iso(now),
        "request_id": record.id,
        "documents": stats.documents,
        "missing_documents": len(stats.missing_documents),
        "tables": [
            {
                "name": table.name,
                "rows": stats.rows.get(table.name, 0),
                "categories": {
                    language: ", ".join(policy.category(c).label.get(language) for c in table.categories)
                    for language in README_LANGUAGES
                },
                "sources": {
                    language: ", ".join(
                        dict.fromkeys(
                            s.label.get(language) for c in table.categories for s in data_sources.category_sources(c)
                        )
                    )
                    for language in README_LANGUAGES
                },
            }
            for table in tables
        ],
        "information": {language: policy.art15_information(language) for language in README_LANGUAGES},
        "sources": {language: [s.label.get(language) for s in data_sources.SOURCES] for language in README_LANGUAGES},
        "no_automated_decisions": {
            language: data_sources.NO_AUTOMATED_DECISIONS.get(language) for language in README_LANGUAGES
        },
        "log_objects": stats.log_objects,
        "log_months": [
            {"kind": kind, "month": month, "files": files, "bytes": size}
            for (kind, month), (files, size) in sorted(stats.log_months.items())
        ],
    }


def readme_html(record: RequestRecord, tables: tuple[ExportTable, ...], stats: ArchiveStats, now: dt.datetime) -> str:
    """The README page, French first, English below."""
    return notices.page("export_readme", language="fr", **readme_context(record, tables, stats, now))
