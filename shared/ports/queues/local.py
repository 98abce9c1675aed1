"""In-process queues persisted in a folder: the embedded default of the queue port (local runs and tests)."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shared.ports.queues.base import Consumer, acknowledges, encode_message, log


class LocalQueue:
    """Pending messages are files in `<root>/<name>/` (one JSON per message, in send order).

    Another process (`privacy-functions invoke` then `serve`) sees the same messages. A
    message being delivered is held under an exclusive lock (flock), so two deliverers
    (threads or processes) never run the same message at once; attempts are persisted
    beside it, so a crash does not reset the count.
    """

    _sequence = itertools.count()

    def __init__(self, name: str, root: Path, *, max_attempts: int):
        if not name or "/" in name or name.startswith("."):
            raise ValueError("invalid queue name")
        self.name = name
        self.max_attempts = max_attempts
        self.directory = Path(root) / name
        self.dlq_directory = Path(root) / f"{name}-dlq"
        self._lock = threading.Lock()

    def ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.dlq_directory.mkdir(parents=True, exist_ok=True)

    def _write_new(self, directory: Path, stem: str, data: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{stem}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, directory / f"{stem}.json")

    def send(self, message: dict[str, Any]) -> str:
        body = encode_message(message)
        with self._lock:
            # Sortable names: time first, then a per-process counter, then randomness.
            stem = f"{time.time_ns():020d}-{next(self._sequence):08d}-{uuid.uuid4().hex[:8]}"
        self._write_new(self.directory, stem, {"id": stem, "body": body})
        return stem

    def send_many(self, messages: Iterable[dict[str, Any]]) -> list[str]:
        messages = list(messages)
        for message in messages:  # all or nothing: validate before sending any
            encode_message(message)
        return [self.send(message) for message in messages]

    def _pending_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.json"))

    def pending_count(self) -> int:
        return len(self._pending_files())

    def dead_letter_count(self) -> int:
        return len(list(self.dlq_directory.glob("*.json"))) if self.dlq_directory.is_dir() else 0

    @property
    def dead_letters(self) -> list[dict[str, Any]]:
        """Dead-lettered messages, oldest first: {"id", "message", "attempts"}."""
        if not self.dlq_directory.is_dir():
            return []
        letters = []
        for path in sorted(self.dlq_directory.glob("*.json")):
            record = json.loads(path.read_text())
            letters.append({"id": record["id"], "message": json.loads(record["body"]), "attempts": record["attempts"]})
        return letters

    def deliver_pending(self, consumer: Consumer, *, max_messages: int | None = None) -> int:
        """Deliver every pending message (at most `max_messages`); returns how many were acknowledged."""
        acknowledged = taken = 0
        for path in self._pending_files():
            if max_messages is not None and taken >= max_messages:
                break
            outcome = self._deliver_one(path, consumer)
            if outcome is not None:
                taken += 1
                acknowledged += outcome
        return acknowledged

    def _deliver_one(self, path: Path, consumer: Consumer) -> bool | None:
        """Run one message to acknowledgement or dead letter; None if another deliverer has it."""
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            if os.fstat(handle.fileno()).st_nlink == 0:  # finished by someone else meanwhile
                return None
            record = json.loads(handle.read())
            attempts_path = path.with_suffix(".attempts")
            attempts = int(attempts_path.read_text()) if attempts_path.exists() else 0
            while attempts < self.max_attempts:
                attempts += 1
                tmp = attempts_path.with_name(f".{attempts_path.name}.tmp")
                tmp.write_text(str(attempts))
                os.replace(tmp, attempts_path)
                if acknowledges(consumer, self.name, record["body"]):
                    path.unlink()
                    attempts_path.unlink(missing_ok=True)
                    return True
            self._write_new(self.dlq_directory, record["id"], {**record, "attempts": attempts})
            path.unlink()
            attempts_path.unlink(missing_ok=True)
            log.warning("queue message dead-lettered", extra={"queue": self.name, "attempts": attempts})
            return False
