"""A local fake of Scaleway's Serverless Functions API (functions/v1beta1), recording every call.

Enough of the API for `serverless deploy` with the serverless-scaleway-functions plugin and for the
official `scaleway` Python SDK to read a namespace back: namespaces, functions (create, update,
upload URL, deploy, delete), runtimes, domains, CRON triggers and message (SQS) triggers. It keeps
what it was sent, answers in the API's shapes (paginated lists with total_count, secrets returned
as argon2 hashes as the real API does) and models the one behaviour that broke deploys: after an
update, a namespace stays in a transient state for `transient_seconds`, during which trigger
creation is refused with the API's "namespace is in a transient state".

    with ScalewayFake(token=SECRET) as fake:
        env["SCW_FUNCTION_URL"] = fake.functions_url       # the plugin
        API(client with api_url=fake.url)                  # the SDK
        fake.calls, fake.namespaces, fake.functions, fake.crons, fake.triggers, fake.uploads
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from argon2 import PasswordHasher

from tests.fakes.http_fake import serving

PREFIX = "/functions/v1beta1/regions/"
RUNTIMES = [
    {
        "name": "python311",
        "language": "Python",
        "version": "3.11",
        "default_handler": "handler.handle",
        "code_sample": "",
        "status": "available",
        "status_message": "",
        "extension": ".py",
        "implementation": "python",
        "logo_url": "",
    },
    {
        "name": "python312",
        "language": "Python",
        "version": "3.12",
        "default_handler": "handler.handle",
        "code_sample": "",
        "status": "available",
        "status_message": "",
        "extension": ".py",
        "implementation": "python",
        "logo_url": "",
    },
]
_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # cheap: a test fake


class _Server(ThreadingHTTPServer):
    # The plugin uploads every function's zip at once (Promise.all): the default backlog of 5 resets connections.
    request_queue_size = 128
    daemon_threads = True


@dataclass
class Call:
    method: str
    path: str  # without the /functions/v1beta1/regions/<region>/ prefix
    query: dict[str, str]
    body: Any


@dataclass
class ScalewayFake:
    token: str
    transient_seconds: float = 0.0
    calls: list[Call] = field(default_factory=list)
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    crons: dict[str, dict[str, Any]] = field(default_factory=dict)
    triggers: dict[str, dict[str, Any]] = field(default_factory=dict)
    uploads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # function id -> each upload
    refused: list[str] = field(default_factory=list)  # trigger creations refused: namespace in a transient state
    pending_seen: int = 0  # times a caller was told a namespace is still "pending"
    secret_values: dict[tuple[str, str], str] = field(default_factory=dict)  # (owner id, key) -> plain value

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._transient_until: dict[str, float] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _serve(self) -> None:
                fake._serve(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.functions_url = f"{self.url}/functions/v1beta1/regions/fr-par"
        self._serving = serving(self._server)

    def __enter__(self) -> Self:
        self._serving.__enter__()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._serving.__exit__(None, None, None)

    # --- What a test reads ----------------------------------------------------------------------------

    def namespace_named(self, name: str) -> dict[str, Any]:
        (namespace,) = [n for n in self.namespaces.values() if n["name"] == name]
        return namespace

    def functions_of(self, namespace_id: str) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.functions.values() if f["namespace_id"] == namespace_id}

    def secrets_of(self, owner_id: str) -> dict[str, str]:
        return {key: value for (owner, key), value in self.secret_values.items() if owner == owner_id}

    # --- Serving ---------------------------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        if parts.path.startswith("/upload/"):
            self._upload(request, parts.path.rsplit("/", 1)[-1], raw)
            return
        if request.headers.get("X-Auth-Token") != self.token:
            self._answer(request, 401, {"message": "authentication is denied", "type": "denied_authentication"})
            return
        if not parts.path.startswith(PREFIX):
            self._answer(request, 404, {"message": "resource is not found", "type": "not_found"})
            return
        region, _, path = parts.path[len(PREFIX) :].partition("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            self._answer(request, 400, {"message": "invalid JSON", "type": "invalid_arguments", "details": []})
            return
        with self._lock:
            self.calls.append(Call(request.command, path.strip("/"), query, body))
            status, answer = self._route(request.command, path.strip("/").split("/"), query, body or {}, region)
        self._answer(request, status, answer)

    def _answer(self, request: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def _upload(self, request: BaseHTTPRequestHandler, function_id: str, raw: bytes) -> None:
        with self._lock:
            self.uploads.setdefault(function_id, []).append(
                {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "content": raw}
            )
        request.send_response(200)
        request.send_header("Content-Length", "0")
        request.end_headers()

    @staticmethod
    def _now() -> str:
        return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")

    def _secrets(self, owner_id: str, given: list[dict[str, Any]] | None, existing: list[dict[str, Any]]) -> list:
        """Stores the plain values sent, answers argon2 hashes (a null value deletes the secret)."""
        current = {s["key"]: s for s in existing}
        for secret in given or []:
            if secret.get("value") is None:
                current.pop(secret["key"], None)
                self.secret_values.pop((owner_id, secret["key"]), None)
            else:
                current[secret["key"]] = {"key": secret["key"], "hashed_value": _HASHER.hash(str(secret["value"]))}
                self.secret_values[(owner_id, secret["key"])] = str(secret["value"])
        return list(current.values())

    def _namespace_status(self, namespace: dict[str, Any]) -> str:
        return "pending" if time.monotonic() < self._transient_until.get(namespace["id"], 0) else "ready"

    def _view_namespace(self, namespace: dict[str, Any]) -> dict[str, Any]:
        status = self._namespace_status(namespace)
        self.pending_seen += status == "pending"
        return {**namespace, "status": status}

    @staticmethod
    def _page(items: list[dict[str, Any]], key: str, query: dict[str, str]) -> dict[str, Any]:
        page, size = int(query.get("page", 1)), int(query.get("page_size", 50))
        return {key: items[(page - 1) * size : page * size], "total_count": len(items)}

    def _route(self, method: str, path: list[str], query: dict[str, str], body: dict[str, Any], region: str):
        head, rest = path[0], path[1:]
        if head == "runtimes" and method == "GET":
            return 200, {"runtimes": RUNTIMES, "total_count": len(RUNTIMES)}
        if head == "namespaces":
            return self._namespaces(method, rest, query, body, region)
        if head == "functions":
            return self._functions(method, rest, query, body, region)
        if head in ("crons", "triggers"):
            return self._triggers(head, method, rest, query, body)
        if head == "domains" and method == "GET":
            return 200, {"domains": [], "total_count": 0}
        return 404, {"message": f"no route {method} {'/'.join(path)}", "type": "not_found"}

    def _namespaces(self, method, rest, query, body, region):
        if not rest and method == "GET":
            found = [
                self._view_namespace(n)
                for n in self.namespaces.values()
                if ("name" not in query or n["name"] == query["name"])
                and ("project_id" not in query or n["project_id"] == query["project_id"])
            ]
            return 200, self._page(found, "namespaces", query)
        if not rest and method == "POST":
            namespace_id = str(uuid.uuid4())
            namespace = {
                "id": namespace_id,
                "name": body["name"],
                "project_id": body.get("project_id"),
                "organization_id": body.get("project_id"),
                "region": region,
                "description": body.get("description"),
                "environment_variables": dict(body.get("environment_variables") or {}),
                "secret_environment_variables": [],
                "registry_namespace_id": "",
                "registry_endpoint": "",
                "error_message": None,
                "tags": [],
                "created_at": self._now(),
                "updated_at": self._now(),
                "vpc_integration_activated": False,
            }
            namespace["secret_environment_variables"] = self._secrets(
                namespace_id, body.get("secret_environment_variables"), []
            )
            self.namespaces[namespace_id] = namespace
            return 200, self._view_namespace(namespace)
        namespace = self.namespaces.get(rest[0]) if rest else None
        if namespace is None:
            return 404, {"message": "namespace is not found", "type": "not_found", "resource": "namespace"}
        if rest[1:] == ["functions"] and method == "GET":
            found = [f for f in self.functions.values() if f["namespace_id"] == namespace["id"]]
            return 200, self._page(found, "functions", query)
        if method == "GET":
            return 200, self._view_namespace(namespace)
        if method == "PATCH":
            if "environment_variables" in body:
                namespace["environment_variables"] = dict(body["environment_variables"] or {})
            if "secret_environment_variables" in body:
                namespace["secret_environment_variables"] = self._secrets(
                    namespace["id"], body["secret_environment_variables"], namespace["secret_environment_variables"]
                )
            namespace["updated_at"] = self._now()
            self._transient_until[namespace["id"]] = time.monotonic() + self.transient_seconds
            return 200, self._view_namespace(namespace)
        if method == "DELETE":
            del self.namespaces[namespace["id"]]
            return 200, {**namespace, "status": "deleting"}
        return 405, {"message": "method not allowed", "type": "invalid_request"}

    FUNCTION_FIELDS = (
        "description",
        "memory_limit",
        "min_scale",
        "max_scale",
        "timeout",
        "handler",
        "privacy",
        "http_option",
        "sandbox",
        "runtime",
        "environment_variables",
        "private_network_id",
    )

    def _functions(self, method, rest, query, body, region):
        if not rest and method == "GET":
            found = [
                f
                for f in self.functions.values()
                if "namespace_id" not in query or f["namespace_id"] == query["namespace_id"]
            ]
            return 200, self._page(found, "functions", query)
        if not rest and method == "POST":
            if body.get("namespace_id") not in self.namespaces:
                return 404, {"message": "namespace is not found", "type": "not_found"}
            function_id = str(uuid.uuid4())
            function = {
                "id": function_id,
                "name": body["name"],
                "namespace_id": body["namespace_id"],
                "status": "created",
                "region": region,
                "error_message": None,
                "build_message": "",
                "runtime_message": "",
                "domain_name": f"{body['name']}-{function_id[:8]}.functions.fnc.fr-par.scw.cloud",
                "cpu_limit": 140,
                "created_at": self._now(),
                "updated_at": self._now(),
                "tags": [],
                "secret_environment_variables": [],
                "sandbox": "unknown_sandbox",
                "http_option": "enabled",
                "environment_variables": {},
                "privacy": "public",
                "min_scale": 0,
                "max_scale": 20,
                "memory_limit": 256,
                "timeout": "300s",
                "private_network_id": None,
                "description": None,
            }
            self._update_function(function, body)
            self.functions[function_id] = function
            return 200, function
        function = self.functions.get(rest[0]) if rest else None
        if function is None:
            return 404, {"message": "function is not found", "type": "not_found", "resource": "function"}
        tail = rest[1:]
        if tail == ["upload-url"] and method == "GET":
            return 200, {"url": f"{self.url}/upload/{function['id']}", "headers": {}}
        if tail == ["deploy"] and method == "POST":
            function["status"] = "ready"
            return 200, function
        if not tail and method == "GET":
            return 200, function
        if not tail and method == "PATCH":
            self._update_function(function, body)
            function["status"] = "ready" if function["status"] == "ready" else function["status"]
            return 200, function
        if not tail and method == "DELETE":
            del self.functions[function["id"]]
            for store in (self.crons, self.triggers):
                for trigger_id in [t for t, v in store.items() if v.get("function_id") == function["id"]]:
                    del store[trigger_id]
            return 200, {**function, "status": "deleting"}
        return 405, {"message": "method not allowed", "type": "invalid_request"}

    def _update_function(self, function: dict[str, Any], body: dict[str, Any]) -> None:
        for name in self.FUNCTION_FIELDS:
            if name in body and body[name] is not None:
                function[name] = body[name]
        if "timeout" in body and isinstance(function["timeout"], (int, float)):
            function["timeout"] = f"{int(function['timeout'])}s"
        if "secret_environment_variables" in body:
            function["secret_environment_variables"] = self._secrets(
                function["id"], body["secret_environment_variables"], function["secret_environment_variables"]
            )
        function["updated_at"] = self._now()

    def _triggers(self, kind, method, rest, query, body):
        store = self.crons if kind == "crons" else self.triggers
        if not rest and method == "GET":
            found = [
                t
                for t in store.values()
                if ("function_id" not in query or t.get("function_id") == query["function_id"])
                and ("namespace_id" not in query or t.get("namespace_id") == query["namespace_id"])
            ]
            return 200, self._page(found, kind, query)
        if not rest and method == "POST":
            function = self.functions.get(body.get("function_id"))
            if function is None:
                return 404, {"message": "function is not found", "type": "not_found"}
            namespace = self.namespaces[function["namespace_id"]]
            if self._namespace_status(namespace) != "ready":
                self.refused.append(f"{kind} of {function['name']}")
                return 412, {"message": "namespace is in a transient state", "type": "precondition_failed"}
            trigger_id = str(uuid.uuid4())
            trigger = {
                "id": trigger_id,
                "function_id": function["id"],
                "namespace_id": namespace["id"],
                "status": "ready",
                "error_message": None,
            }
            if kind == "crons":
                trigger.update(
                    schedule=body["schedule"], args=body.get("args") or {}, name=body.get("name") or trigger_id
                )
            else:
                trigger.update(
                    name=body["name"],
                    description=body.get("description"),
                    input_type="sqs",
                    scw_sqs_config=body.get("scw_sqs_config"),
                )
            store[trigger_id] = trigger
            return 200, trigger
        trigger = store.get(rest[0]) if rest else None
        if trigger is None:
            return 404, {"message": f"{kind[:-1]} is not found", "type": "not_found"}
        if method == "GET":
            return 200, trigger
        if method == "DELETE":
            del store[trigger["id"]]
            return 200, {**trigger, "status": "deleting"}
        if method == "PATCH":
            trigger.update({k: v for k, v in body.items() if k in ("schedule", "args", "name")})
            return 200, trigger
        return 405, {"message": "method not allowed", "type": "invalid_request"}


def seed(fake: ScalewayFake, document: dict[str, Any], env: dict[str, str], project_id: str) -> str:
    """The namespace serverless.yml describes, as a successful `serverless deploy` leaves it (no HTTP)."""

    def resolved(mapping: dict[str, Any] | None) -> dict[str, str]:
        return {k: re.sub(r"\$\{env:(\w+)\}", lambda m: env[m.group(1)], str(v)) for k, v in (mapping or {}).items()}

    provider = document["provider"]
    with fake._lock:
        status, namespace = fake._namespaces(
            "POST",
            [],
            {},
            {
                "name": document["service"],
                "project_id": project_id,
                "environment_variables": resolved(provider.get("env")),
                "secret_environment_variables": [
                    {"key": k, "value": v} for k, v in resolved(provider.get("secret")).items()
                ],
            },
            "fr-par",
        )
        assert status == 200
        for name, spec in document["functions"].items():
            status, function = fake._functions(
                "POST",
                [],
                {},
                {
                    "name": name,
                    "namespace_id": namespace["id"],
                    "runtime": provider["runtime"],
                    "handler": spec["handler"],
                    "memory_limit": spec["memoryLimit"],
                    "timeout": spec["timeout"],
                    "min_scale": spec["minScale"],
                    "max_scale": spec["maxScale"],
                    "privacy": spec["privacy"],
                    "http_option": spec.get("httpOption"),
                    "description": spec.get("description"),
                    "environment_variables": resolved(spec.get("env")),
                    "secret_environment_variables": [
                        {"key": k, "value": v} for k, v in resolved(spec.get("secret")).items()
                    ],
                },
                "fr-par",
            )
            assert status == 200
            fake._functions("POST", [function["id"], "deploy"], {}, {}, "fr-par")
            for event in spec.get("events") or []:
                if "schedule" in event:
                    fake._triggers(
                        "crons",
                        "POST",
                        [],
                        {},
                        {
                            "function_id": function["id"],
                            "schedule": event["schedule"]["rate"],
                            "args": event["schedule"].get("input") or {},
                        },
                    )
                if "sqs" in event:
                    fake._triggers(
                        "triggers",
                        "POST",
                        [],
                        {},
                        {
                            "function_id": function["id"],
                            "name": event["sqs"]["name"],
                            "scw_sqs_config": {
                                "queue": event["sqs"]["queue"],
                                "mnq_project_id": project_id,
                                "mnq_region": provider["scwRegion"],
                            },
                        },
                    )
    return namespace["id"]
