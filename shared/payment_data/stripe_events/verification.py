"""Verification of a webhook call: `Stripe-Signature` checked with the Stripe SDK, accepted API versions."""

from __future__ import annotations

from collections.abc import Sequence

from shared.platform.config import get_settings
from shared.platform.errors import AppError, BadRequest

SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookNotConfigured(AppError):
    def __init__(self) -> None:
        # 503: Stripe retries, and the deployment is fixed rather than the events lost.
        super().__init__(503, "webhook_not_configured", "no Stripe webhook secret is configured")


def accepted_api_versions() -> frozenset[str]:
    import stripe  # deferred for cold start: heavy, and only the webhook needs it

    return frozenset({stripe.api_version}) | get_settings().extra_stripe_api_versions


def verify_signature(payload: bytes, signature_header: str | None, secrets: Sequence[str]) -> None:
    """The Stripe SDK's check of `Stripe-Signature` against each secret, 300 s tolerance.

    Raises 400 `missing_signature`, `stale_signature` (a valid signature outside the
    tolerance) or `invalid_signature`.
    """
    if not secrets:
        raise WebhookNotConfigured()
    if not signature_header:
        raise BadRequest("the Stripe-Signature header is missing", code="missing_signature")
    import stripe  # deferred for cold start, as above

    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text", code="invalid_signature") from None

    def matches(tolerance: int | None) -> bool:
        for secret in secrets:
            try:
                stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance)
                return True
            except stripe.SignatureVerificationError:
                continue
        return False

    if matches(SIGNATURE_TOLERANCE_SECONDS):
        return
    if matches(None):
        raise BadRequest(
            f"the Stripe-Signature timestamp is older than {SIGNATURE_TOLERANCE_SECONDS} seconds",
            code="stale_signature",
        )
    raise BadRequest("the Stripe-Signature does not match any configured endpoint secret", code="invalid_signature")
