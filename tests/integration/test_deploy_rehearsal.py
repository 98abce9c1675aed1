"""The deploy, rehearsed: the pinned Serverless CLI (osls) and Scaleway plugin deploy serverless.yml to a fake API.

`serverless deploy` runs for real (package.json and its lock pin both; `npm ci` installs them and
patch-package applies patches/serverless-scaleway-functions+0.5.0.patch) against the local fake of
Scaleway's Functions API (tests/fakes/scaleway_fake.py), which records what it is sent. The recorded
namespace is checked against serverless.yml: every function with its memory, timeout, scale, privacy,
HTTP option, handler, environment and secrets; every CRON with its schedule and input; every SQS
trigger with its queue. The fake keeps the namespace "pending" for a moment after each update, as
Scaleway does: unpatched, the plugin's trigger creations fail there. A second deploy, with one CRON
changed, must leave each trigger exactly once (0.5.0 started deletes and creates without awaiting
them). The zip holds a stub package/ (the real one is `make package`'s; tests/integration/test_package_slim.py).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from shared.local import cli
from shared.local.documents import read_yaml
from shared.local.server import PROJECT_ROOT
from tests.fakes.scaleway_fake import ScalewayFake

SERVERLESS_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "serverless"
PATCH = PROJECT_ROOT / "patches" / "serverless-scaleway-functions+0.5.0.patch"
TOKEN = "5c1e0bd4-0000-4000-8000-000000000d31"  # the plugin wants 36 characters
PROJECT = "7b0c5d2e-1f3a-4c5b-9d6e-0a1b2c3d4e5f"

pytestmark = pytest.mark.skipif(
    not SERVERLESS_BIN.exists(),
    reason="no node_modules: `npm ci` installs the pinned Serverless CLI and Scaleway plugin (.ci/run does)",
)


def _service(tmp_path: Path) -> Path:
    """A copy of the service: serverless.yml, the code, a stub package/, the installed node_modules."""
    service = tmp_path / "service"
    service.mkdir()
    shutil.copy(PROJECT_ROOT / "serverless.yml", service / "serverless.yml")
    for top in ("shared", "functions"):
        shutil.copytree(PROJECT_ROOT / top, service / top, ignore=shutil.ignore_patterns("__pycache__"))
    (service / "package").mkdir()
    (service / "package" / "STUB").write_text("the dependencies: make package\n")
    (service / "node_modules").symlink_to(PROJECT_ROOT / "node_modules")
    return service


def _environment(service: Path, fake: ScalewayFake, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCW_", "SLS_", "SERVERLESS_"))}
    env.update(
        HOME=str(home),
        SCW_SECRET_KEY=TOKEN,
        SCW_DEFAULT_PROJECT_ID=PROJECT,
        SCW_FUNCTION_URL=fake.functions_url,
        SLS_TELEMETRY_DISABLED="1",
        SLS_NOTIFICATIONS_MODE="off",
        CI="1",
    )
    for name in sorted(set(re.findall(r"\$\{env:(\w+)\}", (service / "serverless.yml").read_text()))):
        env.setdefault(name, f"canary-{name.lower()}")
    env["SCW_SECRET_KEY"], env["SCW_DEFAULT_PROJECT_ID"] = TOKEN, PROJECT
    return env


def _resolved(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _resolved(v, env) for k, v in value.items()}
    if isinstance(value, str):
        return re.sub(r"\$\{env:(\w+)\}", lambda m: env[m.group(1)], value)
    return value


def _deploy(service: Path, env: dict[str, str]) -> str:
    run = subprocess.run(
        [str(SERVERLESS_BIN), "deploy"], cwd=service, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout + run.stderr


def _check_namespace(fake: ScalewayFake, document: dict[str, Any], env: dict[str, str]) -> None:
    provider = document["provider"]
    namespace = fake.namespace_named(document["service"])
    assert namespace["project_id"] == PROJECT
    assert namespace["environment_variables"] == _resolved(provider["env"], env)
    assert fake.secrets_of(namespace["id"]) == _resolved(provider["secret"], env)
    deployed = fake.functions_of(namespace["id"])
    assert set(deployed) == set(document["functions"])
    for name, spec in document["functions"].items():
        function = deployed[name]
        assert function["status"] == "ready", name
        assert function["handler"] == spec["handler"] and function["runtime"] == provider["runtime"], name
        assert function["memory_limit"] == spec["memoryLimit"], name
        assert function["timeout"] == spec["timeout"], name
        assert (function["min_scale"], function["max_scale"]) == (spec["minScale"], spec["maxScale"]), name
        assert function["privacy"] == spec["privacy"], name
        assert function["http_option"] == spec.get("httpOption", "enabled"), name
        assert function["environment_variables"] == _resolved(spec.get("env") or {}, env), name
        assert fake.secrets_of(function["id"]) == _resolved(spec.get("secret") or {}, env), name

    ids = {f["id"]: name for name, f in deployed.items()}
    expected_crons = sorted(
        (name, event["schedule"]["rate"], repr(event["schedule"].get("input") or {}))
        for name, spec in document["functions"].items()
        for event in spec.get("events") or []
        if "schedule" in event
    )
    crons = sorted((ids[c["function_id"]], c["schedule"], repr(c["args"])) for c in fake.crons.values())
    assert crons == expected_crons
    expected_sqs = sorted(
        (name, event["sqs"]["name"], event["sqs"]["queue"])
        for name, spec in document["functions"].items()
        for event in spec.get("events") or []
        if "sqs" in event
    )
    triggers = sorted((ids[t["function_id"]], t["name"], t["scw_sqs_config"]["queue"]) for t in fake.triggers.values())
    assert triggers == expected_sqs
    for trigger in fake.triggers.values():
        assert trigger["scw_sqs_config"]["mnq_project_id"] == PROJECT
        assert trigger["scw_sqs_config"]["mnq_region"] == provider["scwRegion"]


def test_serverless_deploy_creates_what_serverless_yml_says_and_a_redeploy_keeps_each_trigger_once(
    tmp_path, monkeypatch, capsys
):
    assert PATCH.exists()
    service = _service(tmp_path)
    document = read_yaml(service / "serverless.yml")
    assert sum(1 for s in document["functions"].values() for e in s.get("events") or [] if "schedule" in e) >= 5
    with ScalewayFake(token=TOKEN, transient_seconds=1.0) as fake:
        env = _environment(service, fake, tmp_path / "home")
        _deploy(service, env)
        _check_namespace(fake, document, env)
        assert fake.refused == [], "triggers were created while the namespace was updating"
        assert fake.pending_seen >= 1, "the deploy did not wait for the namespace to be ready again"

        # One zip, uploaded to every function, holding the code and not the local-only modules.
        uploads = {
            name: fake.uploads.get(f["id"], [])
            for name, f in fake.functions_of(fake.namespace_named("privacy-functions")["id"]).items()
        }
        assert all(len(u) == 1 for u in uploads.values()), {k: len(v) for k, v in uploads.items()}
        assert len({u[0]["sha256"] for u in uploads.values()}) == 1
        names = zipfile.ZipFile(io.BytesIO(next(iter(uploads.values()))[0]["content"])).namelist()
        assert "functions/whoami/handler.py" in names and "shared/platform/http.py" in names
        assert "package/STUB" in names and not [n for n in names if n.startswith(("shared/local/", "tests/"))]

        # Redeploy with one schedule moved: the old CRON goes, the new one comes, nothing is doubled.
        text = (service / "serverless.yml").read_text()
        assert 'rate: "20 2 * * *"' in text
        (service / "serverless.yml").write_text(text.replace('rate: "20 2 * * *"', 'rate: "25 2 * * *"'))
        document = read_yaml(service / "serverless.yml")
        _deploy(service, env)
        _check_namespace(fake, document, env)
        assert fake.refused == []
        deleted = [c for c in fake.calls if c.method == "DELETE" and c.path.startswith(("crons/", "triggers/"))]
        assert len(deleted) == len(fake.crons) + len(fake.triggers)  # every old trigger deleted, once

        # What the deploy left, `privacy-functions deploy verify` reads back through the SDK: no difference.
        for name, value in {**env, "SCW_ACCESS_KEY": "SCWAAAAAAAAAAAAAAAAA", "SCW_API_URL": fake.url}.items():
            monkeypatch.setenv(name, value)
        assert cli.main(["deploy", "verify", "--serverless", str(service / "serverless.yml")]) == 0, capsys.readouterr()
        fake.triggers.clear()
        assert cli.main(["deploy", "verify", "--serverless", str(service / "serverless.yml")]) == 1
        sqs_triggers = sum(1 for s in document["functions"].values() for e in s.get("events") or [] if "sqs" in e)
        assert capsys.readouterr().err.count("sqs trigger missing") == sqs_triggers >= 5
