"""ports: the outside world, each with a production backend and an embedded default chosen by configuration.

backends    get_storage, get_queue, get_mailer, get_payments (built once, SDKs loaded only when used)
db          engines (PostgreSQL or SQLite), UtcDateTime, migrate
tables      the database schema (SQLAlchemy Core)
storage/    ObjectStore: folder (local) or S3 (boto3)
queues/     Queue: folder with retries (local) or SQS (boto3)
mail        Mailer: outbox folder or Resend; Message
payments    Payments: recorder or Stripe
"""
