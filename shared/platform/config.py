"""Configuration from environment variables, validated once at start-up.

Backends are chosen from configuration, never from code: an unset endpoint or
key selects the embedded default (SQLite file, local folder, in-process queue,
outbox folder, payment recorder). Anything that would send data outside the EU
is refused here, before a single request is served (policy 6.3).
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.platform.eu_guard import (  # noqa: F401  (EU_REGIONS and is_loopback re-exported)
    EU_REGIONS,
    RESEND_HOSTS,
    STRIPE_HOSTS,
    check_database_url,
    check_processor_url,
    check_scaleway_endpoint,
    is_local_postgres,
    is_loopback,
)
from shared.platform.keys import DEV_SECRETS_KEY_ID, parse_audit_keys, parse_secrets_keys  # noqa: F401


class ConfigurationError(RuntimeError):
    """Raised at start-up when the environment is invalid; the message names the variable."""


class Settings(BaseModel):
    """Every setting, with the environment variable it comes from in `alias`."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    environment: str = Field("local", alias="PRIVACY_ENV", pattern="^(local|test|production)$")
    data_dir: Path = Field(Path(".local"), alias="PRIVACY_DATA_DIR")
    log_level: str = Field("INFO", alias="LOG_LEVEL", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    database_url: str | None = Field(None, alias="DATABASE_URL")

    # Object storage: S3 when an endpoint is set, else folders under data_dir/objects.
    s3_endpoint_url: str | None = Field(None, alias="S3_ENDPOINT_URL")
    s3_region: str = Field("fr-par", alias="S3_REGION")
    s3_access_key: str | None = Field(None, alias="S3_ACCESS_KEY")
    s3_secret_key: str | None = Field(None, alias="S3_SECRET_KEY")
    exports_bucket: str = Field("jfb-privacy-exports", alias="EXPORTS_BUCKET")
    documents_bucket: str = Field("jfb-documents", alias="DOCUMENTS_BUCKET")
    archive_bucket: str = Field("jfb-retention-archive", alias="ARCHIVE_BUCKET")
    logs_bucket: str = Field("jfb-logs", alias="LOGS_BUCKET")
    # Local runs only: where `privacy-functions serve` answers the signed download links.
    local_base_url: str = Field("http://127.0.0.1:8080", alias="LOCAL_BASE_URL")

    # Queues: SQS when an endpoint is set (queue URL = prefix + queue name), else
    # in-process with the same semantics (retry, dead-letter after N attempts).
    sqs_endpoint_url: str | None = Field(None, alias="SQS_ENDPOINT_URL")
    queue_url_prefix: str | None = Field(None, alias="QUEUE_URL_PREFIX")
    sqs_access_key: str | None = Field(None, alias="SQS_ACCESS_KEY")
    sqs_secret_key: str | None = Field(None, alias="SQS_SECRET_KEY")
    queue_max_attempts: int = Field(3, alias="QUEUE_MAX_ATTEMPTS", ge=1, le=20)

    # Mail: Resend when an API key is set, else rendered messages in data_dir/outbox.
    resend_api_key: str | None = Field(None, alias="RESEND_API_KEY")
    resend_base_url: str | None = Field(None, alias="RESEND_BASE_URL")
    mail_from: str = Field("jefacturebien.fr <privacy@jefacturebien.fr>", alias="MAIL_FROM")
    client_area_url: str = Field("https://jefacturebien.fr/compte", alias="CLIENT_AREA_URL")

    # Payments: Stripe when an API key is set, else a recorder in data_dir/stripe.
    stripe_api_key: str | None = Field(None, alias="STRIPE_API_KEY")
    stripe_api_base: str | None = Field(None, alias="STRIPE_API_BASE")
    # Webhook endpoint secrets (whsec_...), comma-separated: during a rotation the old and the new
    # secret both verify. Event API versions accepted besides the Stripe SDK's pinned one, comma-separated.
    stripe_webhook_secrets: str | None = Field(None, alias="STRIPE_WEBHOOK_SECRETS")
    stripe_api_versions: str | None = Field(None, alias="STRIPE_API_VERSIONS")

    # Client-area tokens (issued by the platform).
    token_issuer: str = Field("https://jefacturebien.fr", alias="TOKEN_ISSUER")
    token_audience: str = Field("privacy-functions", alias="TOKEN_AUDIENCE")
    token_algorithm: str = Field("HS256", alias="TOKEN_ALGORITHM", pattern="^(HS256|HS384|HS512|RS256|ES256|EdDSA)$")
    token_verify_key: str | None = Field(None, alias="TOKEN_VERIFY_KEY")
    # Local development only: an HMAC key that both signs (`privacy-functions token`) and verifies.
    dev_token_key: str | None = Field(None, alias="DEV_TOKEN_KEY")

    # Keyed hashes (pseudonyms in audit, logs kept after erasure, consent proofs).
    pseudonym_key: str | None = Field(None, alias="PSEUDONYM_KEY")
    # Audit chain keys, "kid:base64key,kid2:base64key" (32+ bytes each): the first signs new entries and
    # checkpoints, every one listed still verifies what it signed. Checkpoints go to the bucket
    # (default: the archive bucket, Object Lock COMPLIANCE) under the prefix.
    audit_keys: str | None = Field(None, alias="AUDIT_KEYS")
    audit_checkpoint_bucket: str | None = Field(None, alias="AUDIT_CHECKPOINT_BUCKET")
    audit_checkpoint_prefix: str = Field(
        "audit/checkpoints/", alias="AUDIT_CHECKPOINT_PREFIX", pattern=r"^[a-z0-9][a-z0-9/_\-]*/$"
    )
    # Secrets sealed at rest (AES-256-GCM, e.g. TOTP secrets): "kid:base64-32-bytes,...", comma-separated;
    # the first key seals, every listed key opens what it sealed (rotation: prepend the new key, re-seal).
    secrets_keys: str | None = Field(None, alias="SECRETS_KEYS", repr=False)

    # Right to erasure: days during which the user can cancel before the erasure runs (0: at once).
    erasure_cooling_off_days: int = Field(7, alias="ERASURE_COOLING_OFF_DAYS", ge=0, le=30)
    # The erasure worker runs a message's erasures in batches sharing every statement, and starts
    # no batch after its time budget (well within the function timeout): the rest is re-queued.
    erasure_batch_size: int = Field(100, alias="ERASURE_BATCH_SIZE", ge=1, le=1000)
    erasure_time_budget_seconds: int = Field(120, alias="ERASURE_TIME_BUDGET_SECONDS", ge=10, le=840)

    verification_code_ttl_seconds: int = Field(600, alias="VERIFICATION_CODE_TTL_SECONDS", ge=60)
    verification_max_attempts: int = Field(5, alias="VERIFICATION_MAX_ATTEMPTS", ge=1)
    verification_rate_limit: int = Field(10, alias="VERIFICATION_RATE_LIMIT", ge=1)
    verification_rate_window_seconds: int = Field(900, alias="VERIFICATION_RATE_WINDOW_SECONDS", ge=60)

    # Consent (withdraw-consent): where mail unsubscribe links point, and how long they work.
    withdraw_consent_url: str | None = Field(None, alias="WITHDRAW_CONSENT_URL")
    unsubscribe_token_ttl_days: int = Field(90, alias="UNSUBSCRIBE_TOKEN_TTL_DAYS", ge=1, le=365)

    # Data export (export-on-request): the function's public URL, which download links point at,
    # and how long such a link lives (24 h at most, whatever the storage).
    export_function_url: str | None = Field(None, alias="EXPORT_FUNCTION_URL")
    export_link_ttl_seconds: int = Field(3600, alias="EXPORT_LINK_TTL_SECONDS", ge=60, le=86400)

    # Retention schedule (issue 6). Days before an inactivity erasure when the account is warned,
    # comma-separated (unset: the policy's 30,7); accounts per queue message of expire-inactive-accounts.
    inactivity_warning_days: str | None = Field(None, alias="INACTIVITY_WARNING_DAYS")
    retention_chunk_size: int = Field(200, alias="RETENTION_CHUNK_SIZE", ge=1, le=1000)
    # Invoices: what starts their clock (the issue date, or the close of its financial year taken as
    # 31 December) and how long they are kept (never under the 10 legal years).
    invoice_retention_clock: str = Field(
        "issue_date", alias="INVOICE_RETENTION_CLOCK", pattern="^(issue_date|financial_year_end)$"
    )
    invoice_retention_months: int = Field(120, alias="INVOICE_RETENTION_MONTHS", ge=120, le=600)
    # Request registry and receipts: kept as proof this many months after the request closed.
    request_records_retention_months: int = Field(60, alias="REQUEST_RECORDS_RETENTION_MONTHS", ge=12, le=240)
    # Register of authority requests and disclosures (policy 6.4), and released legal holds: kept as proof
    # this many months after the last disclosure (or the release).
    disclosure_records_retention_months: int = Field(72, alias="DISCLOSURE_RECORDS_RETENTION_MONTHS", ge=12, le=240)

    cors_allow_origin: str = Field("https://jefacturebien.fr", alias="CORS_ALLOW_ORIGIN")
    max_body_bytes: int = Field(64 * 1024, alias="MAX_BODY_BYTES", ge=1024)

    @field_validator("s3_region")
    @classmethod
    def _eu_region(cls, value: str) -> str:
        if value not in EU_REGIONS:
            raise ValueError(f"region {value!r} is outside the EU regions {EU_REGIONS} (policy 6.3)")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _s3_eu(cls, value: str | None) -> str | None:
        return check_scaleway_endpoint(value or None, "s3")

    @field_validator("sqs_endpoint_url", "queue_url_prefix")
    @classmethod
    def _sqs_eu(cls, value: str | None) -> str | None:
        return check_scaleway_endpoint(value or None, "sqs")

    @field_validator("database_url")
    @classmethod
    def _database_eu(cls, value: str | None) -> str | None:
        return check_database_url(value or None)

    @field_validator("secrets_keys")
    @classmethod
    def _secrets_keys(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_secrets_keys(value)
        return value

    @field_validator("resend_base_url")
    @classmethod
    def _resend_eu(cls, value: str | None) -> str | None:
        return check_processor_url(value or None, RESEND_HOSTS)

    @field_validator("stripe_api_base")
    @classmethod
    def _stripe_eu(cls, value: str | None) -> str | None:
        return check_processor_url(value or None, STRIPE_HOSTS)

    @field_validator("stripe_webhook_secrets")
    @classmethod
    def _webhook_secrets(cls, value: str | None) -> str | None:
        if value is None:
            return None
        secrets = [item.strip() for item in value.split(",")]
        if not all(item.startswith("whsec_") and len(item) > len("whsec_") for item in secrets):
            raise ValueError("each Stripe webhook secret must start with 'whsec_' (comma-separated list)")
        return ",".join(secrets)

    @field_validator("audit_keys")
    @classmethod
    def _audit_keys(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_audit_keys(value)
        return value

    @field_validator("inactivity_warning_days")
    @classmethod
    def _warning_days(cls, value: str | None) -> str | None:
        if value is None:
            return None
        items = [item.strip() for item in value.split(",")]
        if not all(item.isdigit() and 1 <= int(item) <= 365 for item in items) or len(set(items)) != len(items):
            raise ValueError("INACTIVITY_WARNING_DAYS is a comma-separated list of distinct days, 1 to 365")
        return ",".join(items)

    @model_validator(mode="after")
    def _sqs_needs_queue_urls(self) -> Settings:
        if self.sqs_endpoint_url and not self.queue_url_prefix:
            raise ValueError("SQS_ENDPOINT_URL requires QUEUE_URL_PREFIX (queue URL = prefix + queue name)")
        return self

    @model_validator(mode="after")
    def _production_needs_real_backends(self) -> Settings:
        if self.environment == "production":
            missing = [
                name
                for name, value in (
                    ("DATABASE_URL", self.database_url),
                    ("S3_ENDPOINT_URL", self.s3_endpoint_url),
                    ("SQS_ENDPOINT_URL", self.sqs_endpoint_url),
                    ("RESEND_API_KEY", self.resend_api_key),
                    ("STRIPE_API_KEY", self.stripe_api_key),
                    ("PSEUDONYM_KEY", self.pseudonym_key),
                    ("AUDIT_KEYS", self.audit_keys),
                    ("SECRETS_KEYS", self.secrets_keys),
                )
                if not value
            ]
            if self.token_verify_key is None:
                missing.append("TOKEN_VERIFY_KEY")
            if missing:
                raise ValueError("production requires " + ", ".join(missing))
            if self.dev_token_key:
                raise ValueError("DEV_TOKEN_KEY must not be set in production")
            # Loopback endpoints are local fakes: never the real services production needs.
            local = [
                name
                for name, url in (
                    ("S3_ENDPOINT_URL", self.s3_endpoint_url),
                    ("SQS_ENDPOINT_URL", self.sqs_endpoint_url),
                    ("QUEUE_URL_PREFIX", self.queue_url_prefix),
                    ("RESEND_BASE_URL", self.resend_base_url),
                    ("STRIPE_API_BASE", self.stripe_api_base),
                )
                if url and is_loopback(urlparse(url).hostname)
            ]
            if is_local_postgres(self.database_url):
                local.append("DATABASE_URL")
            if local:
                raise ValueError("production cannot use loopback endpoints: " + ", ".join(local))
        return self

    # Derived values -----------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'privacy.db'}"

    @property
    def effective_pseudonym_key(self) -> bytes:
        # Local and test runs get a fixed development key; production requires its own.
        return (self.pseudonym_key or "local-development-pseudonym-key").encode()

    @property
    def effective_audit_keys(self) -> tuple[tuple[str, bytes], ...]:
        # Local and test runs get a fixed development key; production requires its own.
        if self.audit_keys:
            return parse_audit_keys(self.audit_keys)
        return (("dev", b"local-development-audit-chain-key"),)

    @property
    def effective_audit_checkpoint_bucket(self) -> str:
        return self.audit_checkpoint_bucket or self.archive_bucket

    @property
    def sealing_keys(self) -> tuple[tuple[str, bytes], ...]:
        """(key id, 32-byte key) pairs, the sealing key first; production requires its own."""
        if self.secrets_keys:
            return parse_secrets_keys(self.secrets_keys)
        # Local and test runs get a fixed development key.
        return ((DEV_SECRETS_KEY_ID, hashlib.sha256(b"local-development-secrets-key").digest()),)

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        return tuple(self.stripe_webhook_secrets.split(",")) if self.stripe_webhook_secrets else ()

    @property
    def extra_stripe_api_versions(self) -> frozenset[str]:
        raw = self.stripe_api_versions or ""
        return frozenset(item.strip() for item in raw.split(",") if item.strip())

    @property
    def effective_withdraw_consent_url(self) -> str:
        # Locally the function is served at /withdraw-consent/ of `privacy-functions serve`.
        return self.withdraw_consent_url or f"{self.local_base_url.rstrip('/')}/withdraw-consent"

    @property
    def effective_export_function_url(self) -> str:
        if self.export_function_url:
            return self.export_function_url.rstrip("/")
        if self.environment == "production":
            raise ConfigurationError("EXPORT_FUNCTION_URL is required in production (download links point at it)")
        # Locally the function is served at /export-on-request/ of `privacy-functions serve`.
        return f"{self.local_base_url.rstrip('/')}/export-on-request"

    @property
    def inactivity_warning_offsets(self) -> tuple[int, ...] | None:
        """Warning offsets in days, largest first; None means the policy's own."""
        if not self.inactivity_warning_days:
            return None
        return tuple(sorted((int(item) for item in self.inactivity_warning_days.split(",")), reverse=True))

    @property
    def effective_token_verify_key(self) -> str | None:
        return self.token_verify_key or self.dev_token_key


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Build settings from the environment; a bad value raises ConfigurationError naming it."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        alias = field.alias or name
        if alias in env and env[alias] != "":
            values[alias] = env[alias]
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def reset_settings() -> None:
    """Forget cached settings and the backends built from them (tests change the environment)."""
    get_settings.cache_clear()
