"""A local HTTP fake of the Resend API endpoints our mailer uses, checking request shape.

Endpoints: POST /emails (Idempotency-Key honoured), POST /contacts, GET/PATCH/DELETE /contacts/{id|email},
GET /contacts/{id|email}/segments, POST /contacts/{id|email}/segments/{segment id}
(Resend's global contacts). Every request is recorded; `fail_next` injects failures;
a request to any other route is recorded in `unknown_routes` (the fixture fails on it).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes.http_fake import FakeApiHandler, LocalHttpFake

API_KEY_RE = re.compile(r"^Bearer re_[A-Za-z0-9_]+$")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ResendFake(LocalHttpFake):
    def __init__(self) -> None:
        super().__init__()
        self.emails: list[dict[str, Any]] = []
        self.contacts: dict[str, dict[str, Any]] = {}  # by id
        self._idempotency: dict[str, tuple[str, dict[str, Any]]] = {}
        self._contact_by_email: dict[str, str] = {}  # lower-cased email -> id: lookups do not scan every contact

    # Arrange --------------------------------------------------------------------

    def add_contact(self, email: str, *, unsubscribed: bool = False, segments: tuple[str, ...] = ()) -> str:
        contact_id = str(uuid.uuid4())
        with self._lock:
            self.contacts[contact_id] = {
                "object": "contact",
                "id": contact_id,
                "email": email,
                "unsubscribed": unsubscribed,
                "segments": list(segments),
            }
            self._contact_by_email[email.lower()] = contact_id
        return contact_id

    def contact(self, email: str) -> dict[str, Any] | None:
        with self._lock:
            return self._find_contact(email)

    def _find_contact(self, id_or_email: str) -> dict[str, Any] | None:
        if id_or_email in self.contacts:
            return self.contacts[id_or_email]
        contact_id = self._contact_by_email.get(id_or_email.lower())
        return self.contacts.get(contact_id) if contact_id else None

    # Serving --------------------------------------------------------------------

    def _handler_class(self):
        fake = self

        class Handler(FakeApiHandler):
            def _respond(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                path = urlsplit(self.path).path
                with fake._lock:
                    fake.requests.append(RecordedRequest(self.command, path, dict(self.headers.items()), body))
                    failure = fake._failures.pop(0) if fake._failures else None
                if failure is not None:
                    return self._respond(
                        failure, {"statusCode": failure, "name": "application_error", "message": "Injected failure"}
                    )
                status, payload = fake._route(self.command, path, dict(self.headers.items()), raw, body)
                self._respond(status, payload)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle

        return Handler

    def _route(self, method: str, path: str, headers: dict[str, str], raw: bytes, body: Any) -> tuple[int, dict]:
        auth = headers.get("Authorization", "")
        if not auth:
            return _error(401, "missing_api_key", "Missing API key in the authorization header")
        if not API_KEY_RE.match(auth):
            return _error(403, "invalid_api_key", "API key is invalid")
        if method in ("POST", "PATCH") and "application/json" not in headers.get("Content-Type", ""):
            return _error(422, "validation_error", "Content-Type must be application/json")
        if method == "POST" and path == "/emails":
            return self._send_email(headers, raw, body)
        if method == "POST" and path == "/contacts":
            return self._create_contact(body)
        match = re.fullmatch(r"/contacts/([^/]+)/segments(?:/([^/]+))?", path)
        if match:
            return self._contact_segments(method, unquote(match.group(1)), match.group(2))
        match = re.fullmatch(r"/contacts/([^/]+)", path)
        if match:
            return self._contact(method, unquote(match.group(1)), body)
        with self._lock:
            self.unknown_routes.append(f"{method} {path}")
        return _error(404, "not_found", "The requested endpoint does not exist")

    def _send_email(self, headers: dict[str, str], raw: bytes, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict):
            return _error(422, "validation_error", "The body must be a JSON object")
        missing = [name for name in ("from", "to", "subject", "html", "text") if not body.get(name)]
        if missing:
            return _error(422, "missing_required_field", f"Missing `{'`, `'.join(missing)}` field")
        recipients = body["to"] if isinstance(body["to"], list) else [body["to"]]
        if not 1 <= len(recipients) <= 50 or not all(isinstance(r, str) and "@" in r for r in recipients):
            return _error(422, "validation_error", "Invalid `to` field")
        extra = body.get("headers")
        if extra is not None and not (isinstance(extra, dict) and all(isinstance(v, str) for v in extra.values())):
            return _error(422, "validation_error", "Invalid `headers` field")
        key = headers.get("Idempotency-Key")
        fingerprint = hashlib.sha256(raw).hexdigest()
        with self._lock:
            if key is not None:
                if key in self._idempotency:
                    seen, response = self._idempotency[key]
                    if seen != fingerprint:
                        return _error(409, "invalid_idempotent_request", "Same idempotency key, different payload")
                    return 200, response
            response = {"id": str(uuid.uuid4())}
            self.emails.append({"id": response["id"], "idempotency_key": key, **body})
            if key is not None:
                self._idempotency[key] = (fingerprint, response)
        return 200, response

    def _create_contact(self, body: Any) -> tuple[int, dict]:
        if not isinstance(body, dict) or not isinstance(body.get("email"), str) or "@" not in body["email"]:
            return _error(422, "validation_error", "Invalid `email` field")
        unknown = set(body) - {"email", "first_name", "last_name", "unsubscribed", "properties", "segments", "topics"}
        if unknown:
            return _error(422, "validation_error", f"Unknown fields: {sorted(unknown)}")
        with self._lock:
            if self._find_contact(body["email"]) is not None:
                return _error(409, "conflict", "A contact with this email already exists")
        segments = body.get("segments") or []
        if not isinstance(segments, list) or not all(
            isinstance(x, dict) and isinstance(x.get("id"), str) for x in segments
        ):
            return _error(422, "validation_error", "Invalid `segments` field")
        contact_id = self.add_contact(
            body["email"], unsubscribed=bool(body.get("unsubscribed")), segments=tuple(x["id"] for x in segments)
        )
        with self._lock:
            for field in ("first_name", "last_name"):
                if field in body:
                    self.contacts[contact_id][field] = body[field]
        return 200, {"object": "contact", "id": contact_id}

    def _contact_segments(self, method: str, id_or_email: str, segment_id: str | None) -> tuple[int, dict]:
        with self._lock:
            contact = self._find_contact(id_or_email)
            if contact is None:
                return _error(404, "not_found", "Contact not found")
            held = contact.setdefault("segments", [])
            if method == "GET" and segment_id is None:
                data = [{"id": s, "name": s, "created_at": "2026-01-01 00:00:00+00"} for s in held]
                return 200, {"object": "list", "data": data, "has_more": False}
            if method == "POST" and segment_id is not None:
                if segment_id not in held:
                    held.append(segment_id)
                return 200, {"id": segment_id}
        return _error(405, "method_not_allowed", "Method not allowed")

    def _contact(self, method: str, id_or_email: str, body: Any) -> tuple[int, dict]:
        with self._lock:
            contact = self._find_contact(id_or_email)
            if contact is None:
                return _error(404, "not_found", "Contact not found")
            if method == "GET":
                return 200, dict(contact)
            if method == "PATCH":
                if not isinstance(body, dict):
                    return _error(422, "validation_error", "The body must be a JSON object")
                for field in ("unsubscribed", "first_name", "last_name"):
                    if field in body:
                        contact[field] = body[field]
                return 200, {"object": "contact", "id": contact["id"]}
            if method == "DELETE":
                del self.contacts[contact["id"]]
                self._contact_by_email.pop(contact["email"].lower(), None)
                return 200, {"object": "contact", "contact": contact["id"], "deleted": True}
        return _error(405, "method_not_allowed", "Method not allowed")


def _error(status: int, name: str, message: str) -> tuple[int, dict]:
    return status, {"statusCode": status, "name": name, "message": message}
