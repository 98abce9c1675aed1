"""`GET /healthz` on every public HTTP function: no authentication, the version and the database's state, nothing else."""

from __future__ import annotations

import json
import tomllib

import pytest

import shared
from shared.local.documents import read_yaml
from shared.local.server import PROJECT_ROOT, http_event, load_handler, load_manifest, scaleway_context
from shared.platform import config as config_module
from shared.platform.health import registered_checks
from shared.ports.db import dispose_engines

MANIFEST = load_manifest()
DEPLOYED = read_yaml(PROJECT_ROOT / "serverless.yml")["functions"]
PUBLIC = sorted(name for name, spec in DEPLOYED.items() if spec.get("privacy") == "public")
CANARY_USER = "canaryhealthuser"
CANARY_DB = "canaryhealthdb"


def call(function: str, method: str = "GET", headers: dict | None = None) -> dict:
    spec = MANIFEST.functions[function]
    return load_handler(spec)(http_event(method, "/healthz", headers=headers), scaleway_context(spec))


def test_every_public_function_is_counted():
    assert set(PUBLIC) == {
        "whoami",
        "stripe-webhook",
        "withdraw-consent",
        "erase-account",
        "export-on-request",
        "dpo-desk",
        "legal-holds",
        "rectify-account",
        "privacy-notice",
        "dpo-console",
    }


def test_the_version_is_the_projects():
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert shared.__version__ == pyproject["project"]["version"]


@pytest.mark.parametrize("function", PUBLIC)
def test_healthz_answers_without_authentication(env, function):
    answer = call(function)
    assert answer["statusCode"] == 200, answer["body"]
    body = json.loads(answer["body"])
    assert set(body) == {"status", "function", "version", "checks", "duration_ms"}
    assert body["status"] == "ok" and body["function"] == function and body["version"] == shared.__version__
    assert body["checks"] == {"database": "ok"}
    assert answer["headers"]["Cache-Control"] == "no-store"
    assert "database" in registered_checks()


@pytest.mark.parametrize("function", ["whoami", "export-on-request"])
def test_healthz_ignores_credentials_and_refuses_other_methods(env, function):
    assert call(function, headers={"Authorization": "Bearer not-a-token"})["statusCode"] == 200
    refused = call(function, method="POST")
    assert refused["statusCode"] == 405 and json.loads(refused["body"])["error"]["code"]
    assert "GET" in refused["headers"]["Allow"]


def test_an_unreachable_database_is_503_and_named_nowhere(env, monkeypatch, capsys):
    # Port 9 (discard) on localhost: nothing listens, the connection is refused at once.
    monkeypatch.setenv("DATABASE_URL", f"postgresql://{CANARY_USER}:canarypw@127.0.0.1:9/{CANARY_DB}")
    config_module.reset_settings()
    dispose_engines()
    try:
        answer = call("whoami")
    finally:
        config_module.reset_settings()
        dispose_engines()
    assert answer["statusCode"] == 503
    body = json.loads(answer["body"])
    assert body["status"] == "degraded" and body["checks"] == {"database": "unavailable"}
    printed = capsys.readouterr()
    everything = answer["body"] + printed.out + printed.err
    assert "health check failed" in printed.out
    for canary in (CANARY_USER, CANARY_DB, "canarypw", "127.0.0.1:9"):
        assert canary not in everything
