"""What `GET /healthz` of every HTTP function answers: the version, and whether what it depends on is reachable.

The platform layer knows no database: the layers above register their checks (shared.ports.db registers
`database` when it is imported, which every function that uses the database does at load). A check is a
callable that returns nothing or raises; the answer names each check as "ok" or "unavailable", never the
exception's text (a connection error can quote a host or a user name), so it holds nothing personal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import shared
from shared.platform.logs import get_logger

HealthCheck = Callable[[], None]

_checks: dict[str, HealthCheck] = {}
_lock = threading.Lock()


def register_health_check(name: str, check: HealthCheck) -> None:
    """Adds (or replaces) the check `name` that `/healthz` runs."""
    with _lock:
        _checks[name] = check


def registered_checks() -> tuple[str, ...]:
    with _lock:
        return tuple(sorted(_checks))


def health_report(function: str) -> tuple[int, dict[str, Any]]:
    """(200 if every check passed else 503, the answer's body)."""
    with _lock:
        checks = dict(sorted(_checks.items()))
    results: dict[str, str] = {}
    started = time.perf_counter()
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001  any failure is "unavailable": the monitor needs no more
            results[name] = "unavailable"
            get_logger().warning("health check failed", extra={"check": name, "error": type(exc).__name__})
    healthy = all(value == "ok" for value in results.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "function": function,
        "version": shared.__version__,
        "checks": results,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return (200 if healthy else 503), body
