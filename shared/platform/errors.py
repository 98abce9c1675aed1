"""Client-visible errors.

Raise an `AppError` anywhere in `shared/` or a handler: the runtime adapter turns
it into its HTTP status with the body `{"error": {"code": ..., "message": ...}}`.
Messages are shown to the caller and may be logged: never put personal data or
submitted values in them, name the field instead.
"""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    """Base of every client-visible error."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"


class _DefaultedError(AppError):
    """An AppError whose subclass fixes the status and the default code."""

    status_code: int = 500
    default_code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(self.status_code, code or self.default_code, message, headers=headers)


class BadRequest(_DefaultedError):
    status_code, default_code = 400, "bad_request"


class ValidationFailed(_DefaultedError):
    status_code, default_code = 400, "invalid_request"


class Unauthorized(_DefaultedError):
    status_code, default_code = 401, "unauthorized"


class VerificationRequired(_DefaultedError):
    status_code, default_code = 401, "verification_required"


class Forbidden(_DefaultedError):
    status_code, default_code = 403, "forbidden"


class NotFound(_DefaultedError):
    status_code, default_code = 404, "not_found"


class MethodNotAllowed(_DefaultedError):
    status_code, default_code = 405, "method_not_allowed"


class Conflict(_DefaultedError):
    status_code, default_code = 409, "conflict"


class PayloadTooLarge(_DefaultedError):
    status_code, default_code = 413, "payload_too_large"


class TooManyRequests(_DefaultedError):
    status_code, default_code = 429, "too_many_requests"


class ExternalServiceError(RuntimeError):
    """A call to an external service failed; `retryable` says whether trying again may help."""

    def __init__(self, service: str, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(f"{service}: {message}")
        self.service = service
        self.retryable = retryable
        self.status = status


def service_unavailable(exc: ExternalServiceError, *services: str) -> AppError:
    """The one answer to an external service being down: 503, so a queue retries and a caller may try later.

    `services` names every service waited on when one answer covers several failures (a batch).
    """
    names = ", ".join(sorted(set(services) | {exc.service}))
    return AppError(503, "external_service_unavailable", f"{names} unavailable; the work resumes on retry")
