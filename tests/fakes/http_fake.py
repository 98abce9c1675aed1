"""What the local HTTP fakes of external APIs share: a threaded server on 127.0.0.1, failure injection."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

# How often a serving thread looks for shutdown(): serve_forever's default of 0.5 s would make every
# server's stop wait up to half a second.
SHUTDOWN_POLL_SECONDS = 0.01

ServerT = TypeVar("ServerT", bound=socketserver.BaseServer)


@contextmanager
def serving(server: ServerT) -> Iterator[ServerT]:
    """Serve `server` on a daemon thread for the block; on exit stop it, close its socket, join the thread."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class FakeApiHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1, as the real APIs: a client's pooled connection serves many calls.

    Every response carries its Content-Length; Nagle is off so a response's header and body
    segments are not held back waiting for an acknowledgement.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many pooled clients connect at once (the default backlog is 5)


class LocalHttpFake:
    """Subclasses define `_handler_class()`, returning the request handler bound to the fake."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.unknown_routes: list[str] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._serving = serving(self._server)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self):
        self._serving.__enter__()
        return self

    def stop(self) -> None:
        self._serving.__exit__(None, None, None)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """The next `n` requests answer `status` (then the fake behaves again)."""
        with self._lock:
            self._failures.extend([status] * n)
