"""A tiny function of each kind (HTTP, CRON, queue) built on shared.platform.runtime, for the runtime tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ConfigDict, Field

from shared.platform import config as config_module
from shared.platform.errors import Conflict, TooManyRequests
from shared.platform.logs import ScalewayContext, get_logger
from shared.platform.messages import Contract
from shared.platform.runtime import (
    CronFunction,
    HttpFunction,
    QueueFunction,
    QueueMessage,
    StrictModel,
    current_request,
    json_body,
)
from shared.records.saga import PROCESSED_MESSAGES

app = HttpFunction("sample")
handle = app.handle


class Greeting(StrictModel):
    name: str = Field(min_length=1, max_length=50)
    count: int = Field(ge=1, le=10)


@app.get("/")
def index() -> dict[str, Any]:
    return {"hello": "world", "request_id": current_request().request_id}


@app.post("/greetings")
def greet() -> tuple[dict[str, Any], int]:
    greeting = json_body(Greeting)
    return {"greeting": f"hello {greeting.name}", "count": greeting.count}, 201


@app.get("/items/<item_id>")
def item(item_id: str) -> dict[str, Any]:
    return {"item_id": item_id, "query": dict(current_request().query)}


@app.get("/caller")
def caller() -> dict[str, Any]:
    request = current_request()
    return {"client_ip": request.client_ip, "verification_code_sent": request.header("x-verification-code") is not None}


@app.get("/conflict")
def conflict() -> dict[str, Any]:
    raise Conflict("the request is already being processed")


@app.get("/slow-down")
def slow_down() -> dict[str, Any]:
    raise TooManyRequests("too many attempts", headers={"Retry-After": "60"})


@app.get("/boom")
def boom() -> dict[str, Any]:
    raise RuntimeError("lookup failed for canary.boom@example.test")


cron = CronFunction("sample-cron")
CRON_CALLS: list[tuple[dict[str, Any], ScalewayContext]] = []


@cron.job
def rotate(payload: dict[str, Any], ctx: ScalewayContext) -> dict[str, Any]:
    CRON_CALLS.append((payload, ctx))
    return {"rotated": payload.get("older_than_days", 0)}


worker = QueueFunction("sample-worker", processed=PROCESSED_MESSAGES)
WORKER_RUNS: list[QueueMessage] = []


class SampleRun(Contract):
    QUEUE: ClassVar[str] = "sample"
    TYPE: ClassVar[str] = "sample.run"
    model_config = ConfigDict(extra="allow", strict=False)


class SampleRace(Contract):
    QUEUE: ClassVar[str] = "sample"
    TYPE: ClassVar[str] = "sample.race"
    model_config = ConfigDict(extra="allow", strict=False)


@worker.on(SampleRun)
def run(message: QueueMessage) -> dict[str, Any]:
    WORKER_RUNS.append(message)
    get_logger().info("sample work done", extra={"step": "collect", "email": message.payload.get("email")})
    if message.payload.get("fail"):
        raise RuntimeError("worker failed")
    return {"items": len(message.payload)}


@worker.on(SampleRace)
def race(message: QueueMessage) -> dict[str, Any]:
    """Another delivery of the same message records the key while this one is still running."""
    from shared.ports.db import get_engine
    from shared.records.saga import mark_processed

    with get_engine().begin() as conn:
        mark_processed(conn, message.idempotency_key, "sample-worker", {"by": "the other delivery"})
    return {"by": "this delivery"}


def configure_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **overrides: str) -> config_module.Settings:
    """A test configuration without database (HTTP adapter tests); `overrides` maps env var -> value."""
    for field in config_module.Settings.model_fields.values():
        if field.alias:
            monkeypatch.delenv(field.alias, raising=False)
    monkeypatch.setenv("PRIVACY_ENV", "test")
    monkeypatch.setenv("PRIVACY_DATA_DIR", str(tmp_path / "data"))
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    config_module.reset_settings()
    return config_module.get_settings()
