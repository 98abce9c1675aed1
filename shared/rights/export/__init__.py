"""Export on request: the right of access (Art. 15) and to portability (Art. 20).

- requests: the client area (bearer token + step-up) or the DPO (a request received by
  email or post) registers an export; the work runs from the queue `export-requests`.
- run: the worker, a saga of persisted steps (archive, complete, mail), each resumable.
- archive: the streamed ZIP (data.json, schema.json, csv/, invoices/, README.html),
  memory flat whatever the account's size; readme: its README.html (a notice page);
  schema: what an export holds, derived from the data map, and the JSON Schema of data.json.
- links: signed download links (at most 24 hours, re-issued on each view) and
  `download_location`, which checks the 7-day expiry and audits every download; views:
  the JSON answers.
"""

from shared.policy.facts import DPO_CHANNELS
from shared.rights.export.archive import (
    ArchiveStats,
    chunk_reader,
    document_file,
    iter_archive,
)
from shared.rights.export.links import (
    MAX_LINK_SECONDS,
    REDIRECT_URL_SECONDS,
    ExportExpired,
    download_link,
    download_location,
)
from shared.rights.export.readme import readme_html
from shared.rights.export.requests import (
    DPO_VERIFICATION_METHODS,
    EXPORT_KINDS,
    MESSAGE_TYPE,
    QUEUE_NAME,
    has_open_export,
    queue_export,
    register_dpo_export,
    start_client_export,
)
from shared.rights.export.run import (
    STALLED_AFTER,
    WORKER_ACTOR,
    object_key,
    ready_message,
    requeue_stalled_exports,
    run_export,
    stalled_exports,
)
from shared.rights.export.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ExportTable,
    data_json_schema,
    export_tables,
)
from shared.rights.export.views import export_view, request_view

__all__ = [
    "DPO_CHANNELS",
    "DPO_VERIFICATION_METHODS",
    "EXPORT_KINDS",
    "MESSAGE_TYPE",
    "QUEUE_NAME",
    "has_open_export",
    "queue_export",
    "register_dpo_export",
    "start_client_export",
    "request_view",
    "export_view",
    "MAX_LINK_SECONDS",
    "REDIRECT_URL_SECONDS",
    "ExportExpired",
    "download_link",
    "download_location",
    "WORKER_ACTOR",
    "object_key",
    "run_export",
    "ready_message",
    "STALLED_AFTER",
    "stalled_exports",
    "requeue_stalled_exports",
    "ArchiveStats",
    "chunk_reader",
    "document_file",
    "iter_archive",
    "readme_html",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ExportTable",
    "data_json_schema",
    "export_tables",
]
