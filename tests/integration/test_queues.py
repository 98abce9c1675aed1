"""Queue port: the in-process queue and SQS (over a moto server) deliver like Scaleway's trigger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from shared.ports.backends import ensure_queue, get_queue, reset_backends
from shared.ports.queues import InvalidMessage, LocalQueue, SqsQueue
from tests.fakes.moto import raw_client

# The queue port never touches the database: one database backend is enough here.
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

ROOT = Path(__file__).resolve().parents[2]


def envelope(n: int, kind: str = "erasure.step") -> dict:
    return {"type": kind, "idempotency_key": f"key-{n}", "payload": {"n": n}}


class Recorder:
    """A consumer standing in for a worker's handle(event, context)."""

    def __init__(self, answer=lambda message, attempt: 200):
        self.events: list[dict] = []
        self.answer = answer
        self._lock = threading.Lock()

    def __call__(self, event: dict) -> dict:
        message = json.loads(event["body"])
        with self._lock:
            self.events.append(event)
            attempt = sum(json.loads(e["body"]) == message for e in self.events)
        status = self.answer(message, attempt)
        if isinstance(status, Exception):
            raise status
        return {"statusCode": status, "headers": {}, "body": ""}

    def keys(self) -> list[str]:
        return [json.loads(e["body"])["idempotency_key"] for e in self.events]


@pytest.fixture(params=["local", "sqs"])
def backend(request, env):
    """(queue, settings): a fresh queue named `jobs`, in a folder then on SQS."""
    settings = request.getfixturevalue("sqs_env") if request.param == "sqs" else env
    queue = ensure_queue("jobs")
    assert isinstance(queue, SqsQueue if request.param == "sqs" else LocalQueue)
    return queue, settings


def test_send_deliver_acknowledge(backend):
    queue, _ = backend
    ids = [queue.send(envelope(n)) for n in range(3)]
    assert len(set(ids)) == 3
    assert queue.pending_count() == 3

    consumer = Recorder()
    assert queue.deliver_pending(consumer) == 3

    assert sorted(consumer.keys()) == ["key-0", "key-1", "key-2"]
    for event in consumer.events:
        # The Scaleway SQS trigger: POST "/" with the message body as is, no message id.
        assert event["httpMethod"] == "POST" and event["path"] == "/"
        assert event["headers"]["Content-Type"] == "application/json"
        assert event["isBase64Encoded"] is False
        assert json.loads(event["body"])["payload"] == {"n": int(json.loads(event["body"])["idempotency_key"][4:])}
    assert queue.pending_count() == 0
    assert queue.deliver_pending(consumer) == 0
    assert queue.dead_letter_count() == 0


@pytest.mark.parametrize("failure", [500, 302, RuntimeError("worker crashed")], ids=["500", "302", "exception"])
def test_failing_message_is_tried_max_attempts_times_then_dead_lettered(backend, failure):
    queue, settings = backend
    assert settings.queue_max_attempts == 3
    queue.send(envelope(1))
    queue.send(envelope(2))

    consumer = Recorder(lambda message, attempt: failure if message["idempotency_key"] == "key-1" else 200)
    acknowledged = 0
    for _ in range(5):  # more rounds than attempts: the count must stop at the limit
        acknowledged += queue.deliver_pending(consumer)

    assert acknowledged == 1
    assert Counter(consumer.keys()) == {"key-1": 3, "key-2": 1}
    assert queue.pending_count() == 0
    assert queue.dead_letter_count() == 1


def test_retried_message_is_acknowledged_once_it_succeeds(backend):
    queue, _ = backend
    queue.send(envelope(1))
    consumer = Recorder(lambda message, attempt: 503 if attempt < 2 else 200)
    delivered = sum(queue.deliver_pending(consumer) for _ in range(3))
    assert delivered == 1
    assert consumer.keys() == ["key-1", "key-1"]
    assert queue.dead_letter_count() == 0 and queue.pending_count() == 0


@pytest.mark.parametrize(
    "message",
    [
        {"type": "erasure.step", "payload": {}},
        {"type": "erasure.step", "idempotency_key": "", "payload": {}},
        {"type": "erasure.step", "idempotency_key": "   ", "payload": {}},
        {"type": "erasure.step", "idempotency_key": 42, "payload": {}},
        {"idempotency_key": "k", "payload": {}},
        {"type": "erasure.step", "idempotency_key": "k", "payload": "not an object"},
        {"type": "erasure.step", "idempotency_key": "k", "payload": {"big": "x" * 300_000}},
        ["not", "an", "object"],
    ],
)
def test_invalid_envelope_is_refused_and_nothing_is_sent(backend, message):
    queue, _ = backend
    with pytest.raises(InvalidMessage):
        queue.send(message)
    with pytest.raises(InvalidMessage):
        queue.send_many([envelope(1), message])
    assert queue.pending_count() == 0


def test_send_many_and_max_messages(backend):
    queue, _ = backend
    ids = queue.send_many([envelope(n) for n in range(25)])
    assert len(set(ids)) == 25
    consumer = Recorder()
    assert queue.deliver_pending(consumer, max_messages=4) == 4
    assert queue.pending_count() == 21
    assert queue.deliver_pending(consumer) == 21
    assert sorted(consumer.keys()) == sorted(f"key-{n}" for n in range(25))


def test_sqs_batches_sends_by_ten(sqs_env):
    queue = ensure_queue("jobs")
    batches: list[int] = []
    queue.client.meta.events.register(
        "before-parameter-build.sqs.SendMessageBatch", lambda params, **_: batches.append(len(params["Entries"]))
    )
    queue.send_many([envelope(n) for n in range(25)])
    assert batches == [10, 10, 5]


def test_sqs_dead_letter_queue_holds_the_message(sqs_env):
    queue = ensure_queue("jobs")
    queue.send(envelope(7))
    queue.deliver_pending(Recorder(lambda message, attempt: 500))
    sqs = raw_client("sqs", sqs_env.sqs_endpoint_url)
    received = sqs.receive_message(QueueUrl=queue.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [envelope(7)]


def test_local_dead_letters_are_kept_as_files(env):
    queue = ensure_queue("jobs")
    queue.send(envelope(7))
    queue.deliver_pending(Recorder(lambda message, attempt: 500))
    files = list((env.data_dir / "queues" / "jobs-dlq").glob("*.json"))
    assert len(files) == 1
    assert queue.dead_letters == [{"id": files[0].stem, "message": envelope(7), "attempts": 3}]


def test_local_queue_is_shared_between_processes(env):
    # `privacy-functions invoke` enqueues in one process, `serve` delivers in another.
    script = "from shared.ports.backends import get_queue; get_queue('jobs').send(" + repr(envelope(1)) + ")"
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, env=os.environ.copy(), timeout=60)

    reset_backends()  # a new queue object, as in a fresh process
    queue = get_queue("jobs")
    assert queue.pending_count() == 1
    consumer = Recorder()
    assert queue.deliver_pending(consumer) == 1
    assert consumer.keys() == ["key-1"]


def test_local_concurrent_deliverers_run_each_message_once(env):
    sender = get_queue("jobs")
    sender.send_many([envelope(n) for n in range(40)])
    consumer = Recorder()
    # Separate queue objects (as separate processes would have) delivering at the same time.
    deliverers = [LocalQueue("jobs", env.data_dir / "queues", max_attempts=3) for _ in range(4)]
    threads = [threading.Thread(target=q.deliver_pending, args=(consumer,)) for q in deliverers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(consumer.keys()) == sorted(f"key-{n}" for n in range(40))
    assert sender.pending_count() == 0


def test_local_attempts_survive_a_crash_during_delivery(env):
    queue = get_queue("jobs")
    queue.send(envelope(1))

    def crash(event):
        raise SystemExit("the process dies mid-delivery")

    with pytest.raises(SystemExit):
        queue.deliver_pending(crash)

    failing = Recorder(lambda message, attempt: 500)
    after_restart = LocalQueue("jobs", env.data_dir / "queues", max_attempts=3)
    assert after_restart.pending_count() == 1
    after_restart.deliver_pending(failing)
    assert len(failing.events) == 2  # the crashed attempt counted: 3 in all
    assert after_restart.dead_letter_count() == 1 and after_restart.pending_count() == 0
