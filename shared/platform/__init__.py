"""platform: how a function runs on Scaleway, whatever it does. The bottom layer: imports no other layer.

runtime     the adapter handlers use: HttpFunction, CronFunction, QueueFunction, json_body, Response
http        HTTP events in, Scaleway's four-key answers out; errors mapped once
triggers    CRON and queue functions (one message per POST, idempotency by key)
messages    the queue envelope and one contract per message type (ExportRun, ErasureRun, ...)
guards      route guards: Guard, public, trigger, body, principal, declared_routes
health      what `GET /healthz` answers: the version and the checks the layers above register
config      Settings from the environment, validated at start-up (EU endpoints only)
logs        structured logs through a filter that strips personal data
errors      AppError and its 4xx family, ExternalServiceError, service_unavailable
clock       UTC, utcnow, iso, parse_iso, parse_date_argument, calendar months
moments     past_moment(not_before): the bounded date type of request bodies (400 out of range)
pseudonym   keyed pseudonyms (HMAC) for identifiers kept as proof
sealing     secrets sealed at rest (AES-256-GCM by key id): seal, unseal, reseal, column_context
"""
