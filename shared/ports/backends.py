"""The ports' backends, chosen from configuration and built once per process.

Each port has a production backend (S3, SQS, Resend, Stripe) and an embedded
default (folder, in-process queue, outbox, recorder). Which one runs depends only
on Settings: an endpoint or API key selects the real service. Backends are built
lazily, and each backend imports its SDK only when built, so a function loads only
the SDKs it actually uses (cold starts).
"""

from __future__ import annotations

import threading

from shared.platform.config import get_settings
from shared.platform.errors import ExternalServiceError  # noqa: F401  (re-exported for the ports' callers)
from shared.ports.mail import Mailer, build_mailer
from shared.ports.payments import Payments, build_payments
from shared.ports.queues import Queue, build_queue
from shared.ports.storage import ObjectStore, build_object_store

_lock = threading.Lock()
_storage: ObjectStore | None = None
_mailer: Mailer | None = None
_payments: Payments | None = None
_queues: dict[str, Queue] = {}


def get_storage() -> ObjectStore:
    global _storage
    with _lock:
        if _storage is None:
            _storage = build_object_store(get_settings())
        return _storage


def get_queue(name: str) -> Queue:
    with _lock:
        if name not in _queues:
            _queues[name] = build_queue(name, get_settings())
        return _queues[name]


def get_mailer() -> Mailer:
    global _mailer
    with _lock:
        if _mailer is None:
            _mailer = build_mailer(get_settings())
        return _mailer


def get_payments() -> Payments:
    global _payments
    with _lock:
        if _payments is None:
            _payments = build_payments(get_settings())
        return _payments


def reset_backends() -> None:
    """Forget every backend built so far (tests change the configuration between cases)."""
    global _storage, _mailer, _payments
    with _lock:
        _storage = _mailer = _payments = None
        _queues.clear()


def ensure_queue(name: str) -> Queue:
    """Create the queue and its dead-letter queue if needed (local runs and tests; Terraform in production)."""

    queue = get_queue(name)
    queue.ensure()
    return queue
