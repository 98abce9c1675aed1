"""The ports' backends, chosen from configuration and built once per process.

Each port has a production backend (S3, SQS, Resend, Stripe) and an embedded
default (folder, in-process queue, outbox, recorder). Which one runs depends only
on Settings: an endpoint or API key selects the real service. Backends are built
lazily so a function only imports the SDKs it actually uses (cold starts).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from shared.platform.config import get_settings

if TYPE_CHECKING:
    from shared.ports.mail import Mailer
    from shared.ports.payments import Payments
    from shared.ports.queues import Queue
    from shared.ports.storage import ObjectStore


class ExternalServiceError(RuntimeError):
    """A call to an external service failed; `retryable` says whether trying again may help."""

    def __init__(self, service: str, message: str, *, retryable: bool, status: int | None = None):
        super().__init__(f"{service}: {message}")
        self.service = service
        self.retryable = retryable
        self.status = status


_lock = threading.Lock()
_storage: ObjectStore | None = None
_mailer: Mailer | None = None
_payments: Payments | None = None
_queues: dict[str, Queue] = {}


def get_storage() -> ObjectStore:
    global _storage
    with _lock:
        if _storage is None:
            from shared.ports.storage import build_object_store

            _storage = build_object_store(get_settings())
        return _storage


def get_queue(name: str) -> Queue:
    with _lock:
        if name not in _queues:
            from shared.ports.queues import build_queue

            _queues[name] = build_queue(name, get_settings())
        return _queues[name]


def get_mailer() -> Mailer:
    global _mailer
    with _lock:
        if _mailer is None:
            from shared.ports.mail import build_mailer

            _mailer = build_mailer(get_settings())
        return _mailer


def get_payments() -> Payments:
    global _payments
    with _lock:
        if _payments is None:
            from shared.ports.payments import build_payments

            _payments = build_payments(get_settings())
        return _payments


def reset_backends() -> None:
    """Forget every backend built so far (tests change the configuration between cases)."""
    global _storage, _mailer, _payments
    with _lock:
        _storage = _mailer = _payments = None
        _queues.clear()
