"""`privacy-functions deploy verify`: the live Scaleway namespace against serverless.yml.

Reads the namespace through Scaleway's API with the official `scaleway` SDK and reports every
difference: a function missing or left over (singleSource), another memory limit, timeout, scale,
privacy, HTTP option, handler or runtime, a function not ready, an environment variable or secret
missing, left over or (when this shell has its value) different; a CRON missing, doubled or with
another schedule or input; an SQS trigger missing, doubled, on another queue, or in error. Exit 1 on
any difference, 2 when the API cannot be read.

Credentials and target, as the deploy uses them: SCW_ACCESS_KEY and SCW_SECRET_KEY (the X-Auth-Token),
SCW_DEFAULT_PROJECT_ID, the region of serverless.yml (or SCW_DEFAULT_REGION), and SCW_API_URL
(default https://api.scaleway.com; tests point it at tests/fakes/scaleway_fake.py). `${env:NAME}`
values of serverless.yml are resolved from this shell's environment; a value this shell does not
have is checked for presence only. Secrets are compared through the argon2 hashes the API returns.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from scaleway import Client
from scaleway.function.v1beta1 import FunctionV1Beta1API
from scaleway_core.api import ScalewayException

from shared.local.documents import read_yaml
from shared.local.server import PROJECT_ROOT

_ENV_REF = re.compile(r"\$\{env:(\w+)\}")
UNKNOWN = object()  # a ${env:NAME} this shell cannot resolve


def _resolve(value: Any, env: dict[str, str]) -> Any:
    if not isinstance(value, str):
        return value if value is None else str(value)
    names = _ENV_REF.findall(value)
    if any(name not in env for name in names):
        return UNKNOWN
    return _ENV_REF.sub(lambda m: env[m.group(1)], value)


def _text(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*([0-9.]+)\s*s?\s*", str(value))
    return float(match.group(1)) if match else None


def expected_namespace(document: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """What serverless.yml says the namespace holds, `${env:...}` resolved (UNKNOWN when this shell lacks it)."""
    provider = document.get("provider") or {}
    functions = {}
    for name, spec in (document.get("functions") or {}).items():
        crons, queues = [], []
        for event in spec.get("events") or []:
            if "schedule" in event:
                crons.append(
                    (str(event["schedule"]["rate"]), json.dumps(event["schedule"].get("input") or {}, sort_keys=True))
                )
            elif "sqs" in event:
                sqs = event["sqs"]
                queues.append(
                    (sqs["name"], sqs["queue"], sqs.get("projectId"), sqs.get("region") or provider.get("scwRegion"))
                )
        functions[name] = {
            "handler": spec["handler"],
            "runtime": spec.get("runtime") or provider.get("runtime"),
            "memory_limit": int(spec["memoryLimit"]) if "memoryLimit" in spec else None,
            "timeout": _seconds(spec.get("timeout")),
            "min_scale": spec.get("minScale"),
            "max_scale": spec.get("maxScale"),
            "privacy": spec.get("privacy", "public"),
            "http_option": spec.get("httpOption", "enabled"),
            "env": {k: _resolve(v, env) for k, v in (spec.get("env") or {}).items()},
            "secrets": {k: _resolve(v, env) for k, v in (spec.get("secret") or {}).items()},
            "crons": crons,
            "queues": queues,
        }
    return {
        "name": document["service"],
        "region": provider.get("scwRegion"),
        "env": {k: _resolve(v, env) for k, v in (provider.get("env") or {}).items()},
        "secrets": {k: _resolve(v, env) for k, v in (provider.get("secret") or {}).items()},
        "functions": functions,
    }


class _Differences(list):
    def add(self, kind: str, name: str, expected: Any = None, found: Any = None) -> None:
        item = {"kind": kind, "name": name}
        if expected is not None:
            item["expected"] = expected
        if found is not None:
            item["found"] = found
        self.append(item)


_HASHER = PasswordHasher()


def _secret_matches(hashed: str, value: str) -> bool:
    try:
        return _HASHER.verify(hashed, value)
    except (VerificationError, InvalidHashError):
        return False


def _compare_variables(where: str, expected: dict[str, Any], found: dict[str, str], out: _Differences) -> None:
    for key, value in expected.items():
        if key not in found:
            out.add("environment variable missing", f"{where}: {key}")
        elif value is not UNKNOWN and found[key] != value:
            out.add("environment variable differs", f"{where}: {key}")  # values may be configuration: not printed
    for key in sorted(set(found) - set(expected)):
        out.add("environment variable not in serverless.yml", f"{where}: {key}")


def _compare_secrets(where: str, expected: dict[str, Any], found: dict[str, str], out: _Differences) -> None:
    for key, value in expected.items():
        if key not in found:
            out.add("secret missing", f"{where}: {key}")
        elif value is not UNKNOWN and value is not None and not _secret_matches(found[key], value):
            out.add("secret differs", f"{where}: {key}")
    for key in sorted(set(found) - set(expected)):
        out.add("secret not in serverless.yml", f"{where}: {key}")


def _compare_multiset(kind: str, where: str, expected: list, found: list, out: _Differences) -> None:
    wanted, live = Counter(expected), Counter(found)
    for item in sorted((wanted - live).elements(), key=repr):
        out.add(f"{kind} missing", where, expected=list(item))
    for item in sorted((live - wanted).elements(), key=repr):
        out.add(f"{kind} not in serverless.yml" if item not in wanted else f"{kind} doubled", where, found=list(item))


def compare(expected: dict[str, Any], api: FunctionV1Beta1API, project_id: str | None) -> tuple[list, dict]:
    """(differences, what was checked) between the expected namespace and the live one."""
    out = _Differences()
    region = expected["region"]
    namespaces = [
        n
        for n in api.list_namespaces_all(region=region, project_id=project_id, name=expected["name"])
        if n.name == expected["name"]
    ]
    if not namespaces:
        out.add("namespace missing", expected["name"])
        return out, {"functions": 0}
    if len(namespaces) > 1:
        out.add("namespace doubled", expected["name"], found=len(namespaces))
    namespace = namespaces[0]
    _compare_variables("namespace", expected["env"], dict(namespace.environment_variables or {}), out)
    _compare_secrets(
        "namespace",
        expected["secrets"],
        {s.key: s.hashed_value for s in namespace.secret_environment_variables or []},
        out,
    )

    live = {f.name: f for f in api.list_functions_all(namespace_id=namespace.id, region=region)}
    for name in sorted(set(expected["functions"]) - set(live)):
        out.add("function missing", name)
    for name in sorted(set(live) - set(expected["functions"])):
        out.add("function not in serverless.yml", name)
    checked = {"functions": 0, "crons": 0, "sqs_triggers": 0}
    for name, want in expected["functions"].items():
        function = live.get(name)
        if function is None:
            continue
        checked["functions"] += 1
        if _text(function.status) != "ready":
            out.add("function not ready", name, found=_text(function.status))
        found = {
            "handler": function.handler,
            "runtime": _text(function.runtime),
            "memory_limit": function.memory_limit,
            "timeout": _seconds(function.timeout),
            "min_scale": function.min_scale,
            "max_scale": function.max_scale,
            "privacy": _text(function.privacy),
            "http_option": _text(function.http_option),
        }
        for field_name, value in found.items():
            if want[field_name] is not None and value != want[field_name]:
                out.add(f"{field_name} differs", name, expected=want[field_name], found=value)
        _compare_variables(name, want["env"], dict(function.environment_variables or {}), out)
        _compare_secrets(
            name, want["secrets"], {s.key: s.hashed_value for s in function.secret_environment_variables or []}, out
        )

        crons = api.list_crons_all(function_id=function.id, region=region)
        checked["crons"] += len(crons)
        _compare_multiset(
            "cron", name, want["crons"], [(c.schedule, json.dumps(c.args or {}, sort_keys=True)) for c in crons], out
        )
        triggers = api.list_triggers_all(function_id=function.id, region=region)
        live_queues = []
        for trigger in triggers:
            config = trigger.scw_sqs_config
            if config is None:
                out.add("trigger of another kind", name, found=trigger.name)
                continue
            checked["sqs_triggers"] += 1
            if _text(trigger.status) == "error":
                out.add("trigger in error", f"{name}: {trigger.name}", found=trigger.error_message)
            live_queues.append((trigger.name, config.queue, config.mnq_project_id, config.mnq_region))
        expected_queues = [(n, q, p or project_id, r) for n, q, p, r in want["queues"]]
        _compare_multiset("sqs trigger", name, expected_queues, live_queues, out)
    return list(out), checked


def api_from_environment(env: dict[str, str], region: str | None) -> tuple[FunctionV1Beta1API, str | None]:
    secret, access = env.get("SCW_SECRET_KEY"), env.get("SCW_ACCESS_KEY")
    if not secret or not access:
        raise SystemExit(
            "deploy verify: set SCW_ACCESS_KEY, SCW_SECRET_KEY and SCW_DEFAULT_PROJECT_ID (the deploy key)"
        )
    client = Client(
        access_key=access,
        secret_key=secret,
        default_project_id=env.get("SCW_DEFAULT_PROJECT_ID") or None,
        default_region=region or env.get("SCW_DEFAULT_REGION") or "fr-par",
        api_url=env.get("SCW_API_URL") or "https://api.scaleway.com",
    )
    return FunctionV1Beta1API(client), env.get("SCW_DEFAULT_PROJECT_ID") or None


def cmd_deploy_verify(args: argparse.Namespace) -> int:
    document = read_yaml(Path(args.serverless))
    env = dict(os.environ)
    expected = expected_namespace(document, env)
    try:
        api, project_id = api_from_environment(env, expected["region"])
    except ValueError as exc:  # the SDK's checks of the key and project formats
        print(f"deploy verify: {exc}", file=sys.stderr)
        return 2
    try:
        differences, checked = compare(expected, api, project_id)
    except (ScalewayException, OSError) as exc:
        print(f"deploy verify: the API could not be read ({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr)
        return 2
    for item in differences:
        detail = "".join(f" {k}={item[k]!r}" for k in ("expected", "found") if k in item)
        print(f"DIFF {item['kind']}: {item['name']}{detail}", file=sys.stderr)
    print(json.dumps({"namespace": expected["name"], "checked": checked, "differences": differences}, indent=2))
    return 1 if differences else 0


def register(sub: Any) -> None:
    deploy = sub.add_parser("deploy", help="the deployed namespace on Scaleway")
    actions = deploy.add_subparsers(dest="deploy_command", required=True)
    p = actions.add_parser("verify", help="compare the live namespace with serverless.yml; exit 1 on any difference")
    p.add_argument(
        "--serverless", default=str(PROJECT_ROOT / "serverless.yml"), help="the serverless.yml to compare with"
    )
    p.set_defaults(func=cmd_deploy_verify)
