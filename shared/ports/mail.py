"""Mail port: Resend (official SDK) or an outbox folder of rendered messages.

Every message carries an idempotency key: the same key never sends a second mail
(Resend's Idempotency-Key; a file named from the key's hash in the outbox).
Contacts are Resend's global contacts (audiences became segments in 2025): a
contact is unsubscribed or removed once, for every segment it belongs to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

from shared.platform.config import Settings
from shared.platform.errors import ExternalServiceError
from shared.platform.pseudonym import pseudonymise

CATEGORIES = ("transactional", "marketing")
MAX_IDEMPOTENCY_KEY = 256  # Resend's limit
RESEND_API_URL = "https://api.resend.com"
# Marketing mail must offer one-click unsubscribe (RFC 8058).
UNSUBSCRIBE_HEADERS = ("List-Unsubscribe", "List-Unsubscribe-Post")
_RESERVED_HEADERS = {"from", "to", "cc", "bcc", "subject", "reply-to", "sender", "date", "message-id"}
_ADDRESS_RE = re.compile(r"^[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+\.[^@\s<>,;:\"()\[\]\\]+$")
_HEADER_NAME_RE = re.compile(r"^[A-Za-z0-9-]+$")


def _single_line(value: str) -> bool:
    return "\r" not in value and "\n" not in value


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str
    html: str
    idempotency_key: str
    category: str = "transactional"  # "transactional" | "marketing"
    headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.to, str) or not _ADDRESS_RE.match(self.to):
            raise ValueError("a message goes to exactly one plain email address")
        if not self.subject or not _single_line(self.subject):
            raise ValueError("a subject is one non-empty line")
        if not self.text or not self.html:
            raise ValueError("a message has both a text and an html part")
        if not self.idempotency_key or len(self.idempotency_key) > MAX_IDEMPOTENCY_KEY:
            raise ValueError(f"an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} characters")
        if self.category not in CATEGORIES:
            raise ValueError(f"category is one of {CATEGORIES}")
        for name, value in self.headers.items():
            if not _HEADER_NAME_RE.match(name) or name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} cannot be set on a message")
            if not isinstance(value, str) or not value or not _single_line(value):
                raise ValueError(f"header {name!r} must be one non-empty line")
        if self.category == "marketing":
            present = {name.lower() for name in self.headers}
            missing = [name for name in UNSUBSCRIBE_HEADERS if name.lower() not in present]
            if missing:
                raise ValueError("marketing mail must carry " + " and ".join(missing))
        object.__setattr__(self, "headers", dict(self.headers))


class Mailer(Protocol):
    def send(self, message: Message) -> str:
        """Send once per idempotency key; returns the provider's message id (the same for a repeat)."""

    def unsubscribe_contact(self, email: str) -> list[str]:
        """Mark the contact unsubscribed from all marketing; returns the contact ids touched ([] if none)."""

    def remove_contact(self, email: str) -> list[str]:
        """Delete the contact; returns the contact ids deleted ([] if there was none)."""

    def update_contact(self, email: str, *, first_name: str | None, last_name: str | None) -> list[str]:
        """Correct the contact's names (rectification); returns the contact ids touched ([] if none)."""

    def move_contact(
        self, old_email: str, new_email: str, *, first_name: str | None, last_name: str | None
    ) -> list[str]:
        """The contact of `old_email` now has `new_email`: created under the new address (its unsubscribed
        state kept) and the old one removed. Idempotent: rerun after a crash, it finishes the move.
        Its segments (the lists it belongs to) are carried over.
        Returns the contact ids under the new address ([] when there was no contact to move)."""


def build_mailer(settings: Settings) -> Mailer:
    if settings.resend_api_key:
        return ResendMailer(settings)
    return OutboxMailer(settings.data_dir / "outbox", mail_from=settings.mail_from)


# --- Resend ---------------------------------------------------------------------------

# The SDK keeps its key and URL in module globals, read during each call. Calls run
# concurrently while the globals hold their mailer's values; a mailer needing other
# values waits until the calls in flight are over, then sets them.
_sdk_state = threading.Condition()
_sdk_http_client_installed = False
_sdk_in_flight = 0
_sdk_config: tuple[str | None, str] | None = None
_sdk_waiting = 0  # mailers waiting to switch the globals: newcomers queue behind them


def _install_pooled_http_client() -> None:
    """Give the SDK an HTTP client that keeps its connections open (one session per thread).

    The SDK's default client opens a new connection for every call (`requests.request`),
    which costs a TCP and TLS handshake per mail or contact. The environment's proxy and
    .netrc settings are not consulted: the Resend host is configuration, checked by the EU guard.
    """
    global _sdk_http_client_installed
    # deferred for cold start: only functions that call Resend load its SDK
    import requests
    import resend
    from resend.http_client_requests import RequestsClient

    class PooledRequestsClient(RequestsClient):
        def __init__(self, timeout: int = 30):
            super().__init__(timeout=timeout)
            self._local = threading.local()

        def request(
            self, method: str, url: str, headers: Any, json: Any = None, files: Any = None, data: Any = None
        ) -> Any:
            session = getattr(self._local, "session", None)
            if session is None:
                session = self._local.session = requests.Session()
                session.trust_env = False
            try:
                response = session.request(
                    method=method,
                    url=url,
                    headers=headers,
                    files=files,
                    data=data,
                    json=json if data is None and files is None else None,
                    timeout=self._timeout,
                )
            except requests.RequestException as exc:
                raise RuntimeError(f"Request failed: {type(exc).__name__}") from exc  # as the SDK's own client
            return response.content, response.status_code, response.headers

    with _sdk_state:
        if not _sdk_http_client_installed:
            resend.default_http_client = PooledRequestsClient()
            _sdk_http_client_installed = True


class ResendMailer:
    def __init__(self, settings: Settings):
        self._api_key = settings.resend_api_key
        self._api_url = (settings.resend_base_url or RESEND_API_URL).rstrip("/")
        self._from = settings.mail_from
        _install_pooled_http_client()

    @contextmanager
    def _sdk(self) -> Iterator[Any]:
        global _sdk_in_flight, _sdk_config, _sdk_waiting
        # deferred for cold start: only functions that call Resend load its SDK
        import resend
        from resend.exceptions import ResendError

        config = (self._api_key, self._api_url)
        with _sdk_state:
            if _sdk_config != config or _sdk_waiting:
                _sdk_waiting += 1
                try:
                    while _sdk_in_flight:
                        _sdk_state.wait()
                finally:
                    _sdk_waiting -= 1
            if _sdk_config != config or (resend.api_key, resend.api_url) != config:
                resend.api_key, resend.api_url = config
                _sdk_config = config
            _sdk_in_flight += 1
        try:
            yield resend
        except ResendError as exc:
            raise _external_error(exc) from exc
        finally:
            with _sdk_state:
                _sdk_in_flight -= 1
                _sdk_state.notify_all()

    def send(self, message: Message) -> str:
        params: dict[str, Any] = {
            "from": self._from,
            "to": [message.to],
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "tags": [{"name": "category", "value": message.category}],
        }
        if message.headers:
            params["headers"] = dict(message.headers)
        with self._sdk() as resend:
            response = resend.Emails.send(params, {"idempotency_key": message.idempotency_key})
        return response["id"]

    def unsubscribe_contact(self, email: str) -> list[str]:
        try:
            with self._sdk() as resend:
                response = resend.Contacts.update({"email": email, "unsubscribed": True})
        except ExternalServiceError as exc:
            if exc.status == 404:  # no such contact: nothing to unsubscribe
                return []
            raise
        return [response["id"]]

    def remove_contact(self, email: str) -> list[str]:
        try:
            with self._sdk() as resend:
                response = resend.Contacts.remove(email=email)
        except ExternalServiceError as exc:
            if exc.status == 404:  # already gone
                return []
            raise
        return [response["contact"]]

    def _get_contact(self, email: str) -> dict[str, Any] | None:
        try:
            with self._sdk() as resend:
                return dict(resend.Contacts.get(email=email))
        except ExternalServiceError as exc:
            if exc.status == 404:
                return None
            raise

    def update_contact(self, email: str, *, first_name: str | None, last_name: str | None) -> list[str]:
        params: dict[str, Any] = {"email": email, **_names(first_name, last_name)}
        try:
            with self._sdk() as resend:
                response = resend.Contacts.update(params)
        except ExternalServiceError as exc:
            if exc.status == 404:  # no contact: Resend holds nothing to correct
                return []
            raise
        return [response["id"]]

    def move_contact(
        self, old_email: str, new_email: str, *, first_name: str | None, last_name: str | None
    ) -> list[str]:
        # Resend identifies a contact by its address and cannot change it: create under the new one, drop the old.
        old = self._get_contact(old_email)
        new = self._get_contact(new_email)
        if old is None and new is None:
            return []
        names = _names(first_name, last_name)
        segments = self._segments(old_email) if old is not None else []
        if new is None:
            assert old is not None  # both absent: returned above
            params: dict[str, Any] = {"email": new_email, "unsubscribed": bool(old.get("unsubscribed")), **names}
            if segments:
                params["segments"] = [{"id": segment} for segment in segments]
            with self._sdk() as resend:
                new = dict(resend.Contacts.create(params))
        elif old is not None:
            # A previous attempt created it: carry the state and the segments over again (no-ops when done).
            with self._sdk() as resend:
                resend.Contacts.update({"email": new_email, "unsubscribed": bool(old.get("unsubscribed")), **names})
            for segment in sorted(set(segments) - set(self._segments(new_email))):
                with self._sdk() as resend:
                    resend.Contacts.Segments.add({"email": new_email, "segment_id": segment})
        if old is not None:
            self.remove_contact(old_email)
        return [new["id"]]

    def _segments(self, email: str) -> list[str]:
        with self._sdk() as resend:
            listing = resend.Contacts.Segments.list({"email": email})
        return [segment["id"] for segment in listing.get("data") or []]


def _names(first_name: str | None, last_name: str | None) -> dict[str, str]:
    return {key: value for key, value in (("first_name", first_name), ("last_name", last_name)) if value is not None}


def _external_error(exc: Any) -> ExternalServiceError:
    # Resend's message can quote the request (an address): keep only its code and type.
    try:
        status: int | None = int(exc.code)
    except (TypeError, ValueError):
        status = None
    transport = exc.error_type == "HttpClientError"
    retryable = transport or status is None or status == 429 or status >= 500
    return ExternalServiceError(
        "resend",
        f"request failed ({exc.error_type}, {exc.code})",
        retryable=retryable,
        status=None if transport else status,
    )


# --- Outbox folder --------------------------------------------------------------------


class OutboxMailer:
    """Writes `<root>/<hash of key>.eml` (RFC 5322, text + html) and a `.json` sidecar per message."""

    def __init__(self, root: Path, *, mail_from: str):
        self.root = Path(root)
        self._from = mail_from
        self._domain = parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
        self._lock = threading.Lock()

    @staticmethod
    def message_id(idempotency_key: str) -> str:
        return "outbox-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]

    def render(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._from
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        mail["Message-ID"] = make_msgid(domain=self._domain)
        for name, value in message.headers.items():
            mail[name] = value
        mail.set_content(message.text)
        mail.add_alternative(message.html, subtype="html")
        return mail

    def send(self, message: Message) -> str:
        message_id = self.message_id(message.idempotency_key)
        eml = self.root / f"{message_id}.eml"
        if eml.exists():
            return message_id
        self.root.mkdir(parents=True, exist_ok=True)
        sidecar = {
            "id": message_id,
            "to": message.to,
            "subject": message.subject,
            "category": message.category,
            "idempotency_key": message.idempotency_key,
            "headers": dict(message.headers),
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        self._write(self.root / f"{message_id}.json", json.dumps(sidecar, indent=2).encode(), replace=True)
        # The .eml is the commit point: created only if absent, so a key never makes two messages.
        self._write(eml, self.render(message).as_bytes(), replace=False)
        return message_id

    def _write(self, target: Path, data: bytes, *, replace: bool) -> None:
        tmp = self.root / f".{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        try:
            if replace:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)
        except FileExistsError:
            pass  # written by a concurrent send with the same key
        finally:
            tmp.unlink(missing_ok=True)

    def _record_contact(self, action: str, email: str) -> None:

        entry = {
            "action": action,
            "contact": pseudonymise(email.strip().lower(), purpose="mail-contact"),
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.root / "contacts.jsonl", "a") as log:
            log.write(json.dumps(entry) + "\n")

    def unsubscribe_contact(self, email: str) -> list[str]:
        # The outbox keeps no contacts: record the request, touch nothing.
        self._record_contact("unsubscribe", email)
        return []

    def remove_contact(self, email: str) -> list[str]:
        self._record_contact("remove", email)
        return []

    def update_contact(self, email: str, *, first_name: str | None, last_name: str | None) -> list[str]:
        self._record_contact("update", email)
        return []

    def move_contact(
        self, old_email: str, new_email: str, *, first_name: str | None, last_name: str | None
    ) -> list[str]:
        self._record_contact("move", old_email)
        return []
