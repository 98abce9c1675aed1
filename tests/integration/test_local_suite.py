"""The local suite end to end: serverless.yml drives invoke and serve, as `make run` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from shared.local.server import PROJECT_ROOT, build_app, invoke, load_manifest
from tests.fakes.http_fake import serving

EVENTS = PROJECT_ROOT / "events"


def test_every_handler_of_serverless_yml_exists_and_has_events():
    manifest = load_manifest()
    assert manifest.functions, "serverless.yml declares no function"
    for spec in manifest.functions.values():
        path_part, _, attribute = spec.handler.rpartition(".")
        assert spec.handler.count(".") == 1, f"{spec.name}: Scaleway wants exactly one dot in the handler"
        assert (PROJECT_ROOT / f"{path_part}.py").is_file(), f"{spec.name}: {path_part}.py is missing"
        assert attribute == "handle"
        assert spec.memory_limit <= 256 or spec.name.endswith("worker"), spec.name
        for schedule in spec.schedules:
            assert "/" not in schedule.rate.split()[0] or not schedule.rate.startswith("*/"), "the plugin rejects */N"
            assert not any(day in schedule.rate.upper() for day in ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"))


def test_every_event_file_is_a_complete_scaleway_event():
    required = {"path", "httpMethod", "headers", "body", "isBase64Encoded"}
    files = [p for p in EVENTS.glob("*/*.json") if p.parent.name in load_manifest().functions]
    assert files
    for path in files:
        event = json.loads(path.read_text())
        assert required <= event.keys(), f"{path} lacks {required - event.keys()}"
        assert event.get("multiValueHeaders") is None, path


def test_invoke_whoami_with_a_development_token(env):
    from shared.identity.client import issue_dev_token
    from shared.local.demo import create_account
    from shared.ports.db import get_engine

    account = create_account(get_engine(), email="canary.whoami@example.test")
    spec = load_manifest().functions["whoami"]
    event = json.loads((EVENTS / "whoami" / "get.json").read_text())

    assert invoke(spec, event)["statusCode"] == 401

    event["headers"]["Authorization"] = f"Bearer {issue_dev_token(account['id'])}"
    response = invoke(spec, event)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["account_id"] == account["id"]
    assert response["headers"]["Cache-Control"] == "no-store"


def test_serve_mounts_every_http_function_and_answers_healthz(env):
    from werkzeug.serving import make_server

    manifest = load_manifest()
    server = make_server("127.0.0.1", 0, build_app(manifest), threaded=True)
    with serving(server):
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/healthz") as response:
            health = json.loads(response.read())
        mounted = {f["name"] for f in health["functions"]}
        assert mounted == {s.name for s in manifest.functions.values() if s.is_http}
        # A function answers at its own base URL, with its routes relative to it.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}/whoami/")
        assert refused.value.code == 401
        assert json.loads(refused.value.read())["error"]["code"] == "missing_token"
        # Callers such as Stripe never follow redirects: a POST to a base URL is answered, not redirected.
        for spec in manifest.functions.values():
            if spec.is_http:
                request = urllib.request.Request(
                    f"{base}/{spec.name}/", data=b"{}", method="POST", headers={"Content-Type": "application/json"}
                )
                try:
                    status = urllib.request.urlopen(request).status
                except urllib.error.HTTPError as error:
                    status = error.code
                assert not 300 <= status < 400, spec.name


def test_cli_refuses_a_token_without_development_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DEV_TOKEN_KEY", "TOKEN_VERIFY_KEY"}}
    env["PRIVACY_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "shared.local.cli", "token", "some-account"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "DEV_TOKEN_KEY" in result.stderr


def test_cli_seed_demo_then_token_then_audit_verify(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "S3_", "SQS_", "RESEND_", "STRIPE_"))
    }
    env.update(PRIVACY_DATA_DIR=str(tmp_path / "data"), DEV_TOKEN_KEY="cli-test-key", PRIVACY_ENV="local")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "shared.local.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    seeded = cli("seed-demo")
    assert seeded.returncode == 0, seeded.stderr
    accounts = json.loads(seeded.stdout)["accounts"]
    assert any(a["totp_secret"] for a in accounts) and any(a["totp_secret"] is None for a in accounts)
    token = cli("token", accounts[0]["id"])
    assert token.returncode == 0 and token.stdout.count(".") == 2
    verified = cli("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True
