"""What an archive holds, counted while it is written: the README and the request's result report it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ArchiveStats:
    rows: dict[str, int] = field(default_factory=dict)
    documents: int = 0
    missing_documents: set[str] = field(default_factory=set)
    log_objects: int = 0  # log files under logs/ listed in data.json
    log_months: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (kind, YYYY-MM) -> [files, bytes]
    size_bytes: int = 0
