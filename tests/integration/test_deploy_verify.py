"""`privacy-functions deploy verify` reads the namespace through the official SDK and names every difference.

The namespace is the fake Scaleway API's (tests/fakes/scaleway_fake.py), seeded as a successful deploy
of serverless.yml leaves it, then changed the ways a deploy goes wrong.
"""

from __future__ import annotations

import json
import re

import pytest

from shared.local import cli
from shared.local.documents import read_yaml
from shared.local.server import PROJECT_ROOT
from tests.fakes.scaleway_fake import ScalewayFake, seed

TOKEN = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
PROJECT = "7b0c5d2e-1f3a-4c5b-9d6e-0a1b2c3d4e5f"
DOCUMENT = read_yaml(PROJECT_ROOT / "serverless.yml")
NAMES = sorted(set(re.findall(r"\$\{env:(\w+)\}", (PROJECT_ROOT / "serverless.yml").read_text())))


@pytest.fixture
def fake(monkeypatch):
    with ScalewayFake(token=TOKEN) as fake:
        env = {name: f"canary-{name.lower()}" for name in NAMES}
        env.update(
            SCW_ACCESS_KEY="SCWAAAAAAAAAAAAAAAAA",
            SCW_SECRET_KEY=TOKEN,
            SCW_DEFAULT_PROJECT_ID=PROJECT,
            SCW_API_URL=fake.url,
        )
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        seed(fake, DOCUMENT, env, PROJECT)
        yield fake


def verify(capsys) -> tuple[int, list[dict]]:
    code = cli.main(["deploy", "verify"])
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert len(out.err.splitlines()) == len(report["differences"])  # one DIFF line each
    return code, report["differences"]


def _function(fake: ScalewayFake, name: str) -> dict:
    return fake.functions_of(fake.namespace_named("privacy-functions")["id"])[name]


def test_a_namespace_as_deployed_has_no_difference(fake, capsys):
    code = cli.main(["deploy", "verify"])
    report = json.loads(capsys.readouterr().out)
    assert (code, report["differences"]) == (0, [])
    assert report["checked"]["functions"] == len(DOCUMENT["functions"])
    assert report["checked"]["crons"] == len(fake.crons) >= 5
    sqs_triggers = sum(1 for s in DOCUMENT["functions"].values() for e in s.get("events") or [] if "sqs" in e)
    assert report["checked"]["sqs_triggers"] == len(fake.triggers) == sqs_triggers >= 5
    assert any(c.method == "GET" and c.path == "namespaces" for c in fake.calls)  # read through the API


def test_a_missing_trigger_is_named(fake, capsys):
    worker = _function(fake, "export-on-request-worker")
    (trigger_id,) = [t for t, v in fake.triggers.items() if v["function_id"] == worker["id"]]
    del fake.triggers[trigger_id]
    code, differences = verify(capsys)
    assert code == 1
    assert differences == [
        {
            "kind": "sqs trigger missing",
            "name": "export-on-request-worker",
            "expected": ["export-requests-trigger", "export-requests", PROJECT, "fr-par"],
        }
    ]


def test_a_cron_with_another_schedule_is_named(fake, capsys):
    function = _function(fake, "log-rotation")
    (cron,) = [c for c in fake.crons.values() if c["function_id"] == function["id"]]
    cron["schedule"] = "21 2 * * *"
    code, differences = verify(capsys)
    assert code == 1
    assert [(d["kind"], d["name"]) for d in differences] == [
        ("cron missing", "log-rotation"),
        ("cron not in serverless.yml", "log-rotation"),
    ]
    assert differences[0]["expected"][0] == "20 2 * * *" and differences[1]["found"][0] == "21 2 * * *"


def test_a_doubled_cron_is_named(fake, capsys):
    function = _function(fake, "enforce-retention")
    (cron,) = [c for c in fake.crons.values() if c["function_id"] == function["id"]]
    fake.crons["copy"] = {**cron, "id": "copy"}
    code, differences = verify(capsys)
    assert code == 1 and [d["kind"] for d in differences] == ["cron doubled"]


def test_another_memory_limit_timeout_and_http_option_are_named(fake, capsys):
    _function(fake, "erase-account-worker")["memory_limit"] = 256
    _function(fake, "export-on-request-worker")["timeout"] = "300s"
    _function(fake, "whoami")["http_option"] = "enabled"
    code, differences = verify(capsys)
    assert code == 1
    assert {(d["kind"], d["name"], d["expected"], d["found"]) for d in differences} == {
        ("memory_limit differs", "erase-account-worker", 512, 256),
        ("timeout differs", "export-on-request-worker", 900.0, 300.0),
        ("http_option differs", "whoami", "redirected", "enabled"),
    }


def test_left_over_and_missing_functions_are_named(fake, capsys):
    whoami = _function(fake, "whoami")
    fake.functions["old"] = {**whoami, "id": "old", "name": "retired-function"}
    del fake.functions[_function(fake, "log-rotation")["id"]]
    code, differences = verify(capsys)
    assert code == 1
    assert {(d["kind"], d["name"]) for d in differences} == {
        ("function missing", "log-rotation"),
        ("function not in serverless.yml", "retired-function"),
    }


def test_secrets_and_variables_are_checked_without_printing_values(fake, capsys, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "canary-rotated-stripe-key")  # the namespace still holds the old one
    namespace = fake.namespace_named("privacy-functions")
    del namespace["environment_variables"]["LOG_LEVEL"]
    namespace["environment_variables"]["DEBUG"] = "1"
    code = cli.main(["deploy", "verify"])
    out = capsys.readouterr()
    differences = json.loads(out.out)["differences"]
    assert code == 1
    assert {(d["kind"], d["name"]) for d in differences} == {
        ("secret differs", "namespace: STRIPE_API_KEY"),
        ("environment variable missing", "namespace: LOG_LEVEL"),
        ("environment variable not in serverless.yml", "namespace: DEBUG"),
    }
    assert "canary" not in out.out + out.err


def test_an_unknown_value_is_checked_for_presence_only(fake, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.delenv("QUEUE_URL_PREFIX")
    assert verify(capsys) == (0, [])


def test_no_namespace_and_refused_credentials(fake, capsys, monkeypatch):
    fake.namespaces.clear()
    assert verify(capsys) == (1, [{"kind": "namespace missing", "name": "privacy-functions"}])
    monkeypatch.setenv("SCW_SECRET_KEY", "00000000-0000-4000-8000-000000000000")
    assert cli.main(["deploy", "verify"]) == 2
    assert "could not be read" in capsys.readouterr().err
