"""A local HTTP fake of the Stripe API endpoints our payments backend uses, plus webhook signing.

Endpoints: GET /v1/subscriptions (customer, status, limit, starting_after),
DELETE /v1/subscriptions/{id}, GET, POST (update) and DELETE /v1/customers/{id}. It checks the
bearer key (sk_test_...), form encoding of request bodies, and an Idempotency-Key on
every mutating request (replayed like Stripe: same key and request => same answer).
Errors have Stripe's shape. Requests are recorded; `fail_next` injects failures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_fake import FakeApiHandler, LocalHttpFake

API_KEY_RE = re.compile(r"^Bearer sk_test_[A-Za-z0-9_]+$")


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A real Stripe-Signature header: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<payload>")."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


class StripeFake(LocalHttpFake):
    def __init__(self) -> None:
        super().__init__()
        self.customers: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}  # insertion order = listing order
        self._subscriptions_of: dict[str, list[str]] = {}  # customer -> ids: lookups do not scan every customer
        self._idempotency: dict[str, tuple[str, int, dict[str, Any]]] = {}

    # Arrange --------------------------------------------------------------------

    def add_customer(self) -> str:
        customer_id = "cus_" + uuid.uuid4().hex[:14]
        with self._lock:
            self.customers[customer_id] = {"id": customer_id, "object": "customer", "created": int(time.time())}
        return customer_id

    def add_subscription(self, customer_id: str, *, status: str = "active") -> str:
        subscription_id = "sub_" + uuid.uuid4().hex[:14]
        with self._lock:
            self.subscriptions[subscription_id] = {
                "id": subscription_id,
                "object": "subscription",
                "customer": customer_id,
                "status": status,
                "created": int(time.time()),
                "canceled_at": int(time.time()) if status == "canceled" else None,
            }
            self._subscriptions_of.setdefault(customer_id, []).append(subscription_id)
        return subscription_id

    def mutations(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method in ("POST", "DELETE")]

    # Serving --------------------------------------------------------------------

    def _handler_class(self):
        fake = self

        class Handler(FakeApiHandler):
            def _respond(self, status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + uuid.uuid4().hex[:14])
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = dict(self.headers.items())
                if raw and "application/x-www-form-urlencoded" not in headers.get("Content-Type", ""):
                    return self._respond(*_error(400, "invalid_request_error", None, "Bodies must be form-encoded"))
                form = {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
                with fake._lock:
                    fake.requests.append(RecordedRequest(self.command, parts.path, query, headers, form))
                    failure = fake._failures.pop(0) if fake._failures else None
                if failure is not None:
                    return self._respond(*_error(failure, "api_error", None, "Injected failure"))
                self._respond(*fake._dispatch(self.command, parts.path, query, headers, form))

            do_GET = do_POST = do_DELETE = _handle

        return Handler

    def _dispatch(self, method: str, path: str, query: dict, headers: dict, form: dict):
        if not API_KEY_RE.match(headers.get("Authorization", "")):
            return _error(401, "invalid_request_error", None, "Invalid API Key provided")
        if method == "GET":
            return self._route(method, path, query)
        key = headers.get("Idempotency-Key")
        if not key:
            return _error(400, "invalid_request_error", None, "This fake requires an Idempotency-Key on every mutation")
        fingerprint = json.dumps([method, path, sorted(query.items()), sorted(form.items())])
        with self._lock:
            if key in self._idempotency:
                seen, status, body = self._idempotency[key]
                if seen != fingerprint:
                    return _error(
                        400,
                        "idempotency_error",
                        None,
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                    )
                return status, body, {"Idempotent-Replayed": "true"}
        status, body, extra = self._route(method, path, {**query, **form})
        if status < 500:  # Stripe does not save results of server errors
            with self._lock:
                self._idempotency[key] = (fingerprint, status, body)
        return status, body, extra

    def _route(self, method: str, path: str, params: dict):
        with self._lock:
            if method == "GET" and path == "/v1/subscriptions":
                return self._list_subscriptions(params)
            match = re.fullmatch(r"/v1/subscriptions/([^/]+)", path)
            if match and method == "DELETE":
                return self._cancel_subscription(match.group(1))
            match = re.fullmatch(r"/v1/customers/([^/]+)", path)
            if match and method in ("GET", "DELETE"):
                return self._customer(method, match.group(1))
            if match and method == "POST":
                return self._update_customer(match.group(1), params)
            self.unknown_routes.append(f"{method} {path}")
        return _error(404, "invalid_request_error", None, f"Unrecognized request URL ({method}: {path})")

    def _list_subscriptions(self, params: dict):
        customer = params.get("customer")
        if customer is not None and customer not in self.customers:
            return _error(
                400, "invalid_request_error", "resource_missing", f"No such customer: '{customer}'", "customer"
            )
        status = params.get("status")
        try:
            limit = int(params.get("limit", 10))
        except ValueError:
            return _error(400, "invalid_request_error", "parameter_invalid_integer", "Invalid integer", "limit")
        if not 1 <= limit <= 100:
            return _error(400, "invalid_request_error", "parameter_invalid_integer", "limit is 1 to 100", "limit")
        candidates = (
            self.subscriptions.values()
            if customer is None
            else [self.subscriptions[i] for i in self._subscriptions_of.get(customer, [])]
        )
        items = [
            s
            for s in candidates
            if (
                status == "all"
                or (status is None and s["status"] not in ("canceled", "incomplete_expired"))
                or s["status"] == status
            )
        ]
        after = params.get("starting_after")
        if after:
            ids = [s["id"] for s in items]
            if after not in ids:
                return _error(400, "invalid_request_error", "resource_missing", f"No such subscription: '{after}'")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        return (
            200,
            {
                "object": "list",
                "url": "/v1/subscriptions",
                "has_more": len(items) > limit,
                "data": [dict(s) for s in page],
            },
            None,
        )

    def _cancel_subscription(self, subscription_id: str):
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            return _error(
                404, "invalid_request_error", "resource_missing", f"No such subscription: '{subscription_id}'", "id"
            )
        if subscription["status"] != "canceled":
            subscription["status"] = "canceled"
            subscription["canceled_at"] = int(time.time())
        return 200, dict(subscription), None

    def _update_customer(self, customer_id: str, params: dict):
        customer = self.customers.get(customer_id)
        if customer is None or customer.get("deleted"):
            return _error(404, "invalid_request_error", "resource_missing", f"No such customer: '{customer_id}'", "id")
        updated = dict(customer, address=dict(customer.get("address") or {}))
        refused = _update_fields(updated, params)
        if refused is not None:
            return refused
        self.customers[customer_id] = updated
        return 200, dict(updated), None

    def _customer(self, method: str, customer_id: str):
        customer = self.customers.get(customer_id)
        if customer is None or (method == "DELETE" and customer.get("deleted")):
            return _error(404, "invalid_request_error", "resource_missing", f"No such customer: '{customer_id}'", "id")
        if method == "GET":
            return 200, dict(customer), None
        # Deleting a customer cancels its subscriptions at once, as Stripe does.
        for subscription in (self.subscriptions[i] for i in self._subscriptions_of.get(customer_id, [])):
            if subscription["status"] != "canceled":
                subscription["status"] = "canceled"
                subscription["canceled_at"] = int(time.time())
        self.customers[customer_id] = {"id": customer_id, "object": "customer", "deleted": True}
        return 200, {"id": customer_id, "object": "customer", "deleted": True}, None


_CUSTOMER_FIELDS = {"name", "email", "phone"}
_ADDRESS_FIELDS = {"line1", "line2", "postal_code", "city", "country"}


def _update_fields(customer: dict[str, Any], params: dict[str, str]):
    """Stripe's form encoding: name=..., address[city]=...; anything else is refused as Stripe does."""
    for key, value in params.items():
        nested = re.fullmatch(r"address\[([a-z0-9_]+)\]", key)
        if key in _CUSTOMER_FIELDS:
            customer[key] = value
        elif nested and nested.group(1) in _ADDRESS_FIELDS:
            customer.setdefault("address", {})[nested.group(1)] = value
        else:
            return _error(400, "invalid_request_error", "parameter_unknown", f"Received unknown parameter: {key}", key)
    return None


def _error(status: int, error_type: str, code: str | None, message: str, param: str | None = None):
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return status, {"error": error}, None
