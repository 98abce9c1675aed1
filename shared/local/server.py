"""The local suite: every function of serverless.yml, its CRON triggers and its queues, on one machine.

serverless.yml is the single description of what exists: the same file deploys
to Scaleway and drives `privacy-functions serve` and `invoke`. HTTP functions are
served through Scaleway's own emulator (scaleway-functions-python), each at
`/<function-name>/` as if it had its own domain; CRON triggers fire on their
schedule (UTC); queue messages are delivered to the functions subscribed to them,
with the platform's retry and dead-letter semantics.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from croniter import croniter
from flask import Flask, abort, jsonify, request, send_file
from flask import Response as FlaskResponse
from scaleway_functions_python.local.serving import LocalFunctionServer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter
from werkzeug.serving import WSGIRequestHandler, make_server

from shared.local.documents import read_yaml
from shared.local.privacy_center import blueprint as privacy_center
from shared.platform.http import HttpFunction
from shared.platform.openapi import combined_document
from shared.ports.backends import get_queue, get_storage
from shared.ports.storage import ObjectNotFound
from shared.ports.storage.base import check_bucket, check_key

Handler = Callable[[dict, dict], Any]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Schedule:
    rate: str
    input: dict


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    handler: str  # functions/<name>/handler.handle
    memory_limit: int = 256
    schedules: tuple[Schedule, ...] = ()
    queues: tuple[str, ...] = ()

    @property
    def is_http(self) -> bool:
        return not self.schedules and not self.queues


@dataclass
class Manifest:
    functions: dict[str, FunctionSpec] = field(default_factory=dict)

    def subscribers(self, queue: str) -> list[FunctionSpec]:
        return [f for f in self.functions.values() if queue in f.queues]

    @property
    def queue_names(self) -> list[str]:
        return sorted({q for f in self.functions.values() for q in f.queues})


def load_manifest(root: Path = PROJECT_ROOT) -> Manifest:
    """The functions serverless.yml declares under `root`; the file is parsed again only when it changes."""
    path = root / "serverless.yml"
    status = path.stat()
    parsed = _parse_manifest(path.resolve(), status.st_mtime_ns, status.st_size)
    return Manifest(functions=dict(parsed.functions))  # its own dict; the specs are frozen


@functools.lru_cache(maxsize=8)
def _parse_manifest(path: Path, mtime_ns: int, size: int) -> Manifest:
    document = read_yaml(path)
    manifest = Manifest()
    for name, spec in (document.get("functions") or {}).items():
        schedules, queues = [], []
        for event in spec.get("events") or []:
            if "schedule" in event:
                schedules.append(Schedule(rate=event["schedule"]["rate"], input=event["schedule"].get("input") or {}))
            elif "sqs" in event:
                queues.append(event["sqs"]["queue"])
        manifest.functions[name] = FunctionSpec(
            name=name,
            handler=spec["handler"],
            memory_limit=int(spec.get("memoryLimit", 256)),
            schedules=tuple(schedules),
            queues=tuple(queues),
        )
    return manifest


_loaded: dict[str, Handler] = {}
_load_lock = threading.Lock()


def load_handler(spec: FunctionSpec, root: Path = PROJECT_ROOT) -> Handler:
    """Import `functions/<name>/handler.py` by path (folder names have hyphens, as on Scaleway)."""
    path_part, _, attribute = spec.handler.rpartition(".")
    file = root / f"{path_part}.py"
    with _load_lock:
        if spec.handler not in _loaded:
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            module_name = "pf_" + path_part.replace("/", "_").replace("-", "_")
            module_spec = importlib.util.spec_from_file_location(module_name, file)
            if module_spec is None or module_spec.loader is None:
                raise FileNotFoundError(f"handler file not found: {file}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
            _loaded[spec.handler] = getattr(module, attribute)
        return _loaded[spec.handler]


def scaleway_context(spec: FunctionSpec) -> dict:
    """The context Scaleway passes: a plain dict."""
    return {"memoryLimitInMb": spec.memory_limit, "functionName": spec.name, "functionVersion": ""}


def http_event(
    method: str, path: str, *, body: str = "", headers: dict | None = None, query: dict | None = None
) -> dict:
    """A Scaleway HTTP event (API Gateway REST v1 shape, multiValueHeaders null)."""
    return {
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": None,
        "queryStringParameters": query or {},
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariable": {},
        "requestContext": {"httpMethod": method, "stage": "", "requestId": ""},
        "body": body,
        "isBase64Encoded": body == "",  # Scaleway's heuristic flags an empty body
    }


def cron_event(schedule: Schedule) -> dict:
    """CRON triggers POST their `input` JSON to `/`."""
    return http_event("POST", "/", body=json.dumps(schedule.input))


def invoke(spec: FunctionSpec, event: dict, root: Path = PROJECT_ROOT) -> dict:
    response = load_handler(spec, root)(event, scaleway_context(spec))
    if isinstance(response, str):  # Scaleway accepts a bare string body
        return {"statusCode": 200, "headers": {}, "body": response}
    return response


def consumer_for(queue: str, manifest: Manifest, root: Path = PROJECT_ROOT) -> Callable[[dict], dict]:
    """The function(s) subscribed to `queue`, as one consumer of queue events."""
    subscribers = manifest.subscribers(queue)
    if not subscribers:
        raise LookupError(f"no function of serverless.yml subscribes to queue {queue!r}")

    def consume(event: dict) -> dict:
        worst: dict = {"statusCode": 200}
        for spec in subscribers:
            response = invoke(spec, event, root)
            if int(response.get("statusCode", 200)) >= 300:
                worst = response
        return worst

    return consume


def drain_queues(manifest: Manifest, root: Path = PROJECT_ROOT, *, rounds: int = 20) -> int:
    """Deliver pending messages until every queue is empty (messages may enqueue more)."""

    delivered = 0
    for _ in range(rounds):
        batch = 0
        for name in manifest.queue_names:
            batch += get_queue(name).deliver_pending(consumer_for(name, manifest, root))
        delivered += batch
        if batch == 0:
            break
    return delivered


# --- Background loops of `serve` ----------------------------------------------------


class CronScheduler(threading.Thread):
    """Fires each schedule of serverless.yml at its next UTC occurrence (croniter)."""

    def __init__(self, manifest: Manifest, root: Path, log: Callable[[str], None], stop: threading.Event):
        super().__init__(daemon=True, name="cron")
        self.manifest, self.root, self.log, self.stop = manifest, root, log, stop

    def run(self) -> None:

        now = dt.datetime.now(dt.UTC)
        plan = [
            (spec, schedule, croniter(schedule.rate, now))
            for spec in self.manifest.functions.values()
            for schedule in spec.schedules
        ]
        due = {id(item): item[2].get_next(dt.datetime) for item in plan}
        while not self.stop.wait(1.0):
            now = dt.datetime.now(dt.UTC)
            for item in plan:
                spec, schedule, itr = item
                if due[id(item)] <= now:
                    due[id(item)] = itr.get_next(dt.datetime)
                    try:
                        response = invoke(spec, cron_event(schedule), self.root)
                        self.log(f"cron {spec.name}: {response.get('statusCode')}")
                    except Exception as exc:  # keep the scheduler alive; the function logged details
                        self.log(f"cron {spec.name}: failed ({type(exc).__name__})")


class QueuePump(threading.Thread):
    """Delivers queue messages to subscribed functions, as Scaleway's SQS triggers do."""

    def __init__(self, manifest: Manifest, root: Path, log: Callable[[str], None], stop: threading.Event):
        super().__init__(daemon=True, name="queues")
        self.manifest, self.root, self.log, self.stop = manifest, root, log, stop

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                delivered = drain_queues(self.manifest, self.root, rounds=1)
                if delivered:
                    self.log(f"queues: delivered {delivered} message(s)")
            except Exception as exc:
                self.log(f"queues: delivery failed ({type(exc).__name__})")
                time.sleep(2)


def build_app(manifest: Manifest, root: Path = PROJECT_ROOT) -> Flask:
    """A Flask app: Scaleway's emulator with every HTTP function at /<name>/, plus /healthz."""

    server = LocalFunctionServer()
    # A function's base URL ends with a slash (`/<name>/`); Stripe and others do not follow redirects.
    server.app.url_map.strict_slashes = False
    http_functions = [spec for spec in manifest.functions.values() if spec.is_http]
    for spec in http_functions:
        server.add_handler(_mounted(spec, root), relative_url=f"/{spec.name}")

    @server.app.get("/healthz")
    def healthz() -> FlaskResponse:
        return jsonify(
            {
                "status": "ok",
                "functions": [{"name": s.name, "url": f"{request.host_url}{s.name}/"} for s in http_functions],
                "workers": sorted(s.name for s in manifest.functions.values() if s.queues),
                "schedules": sorted(s.name for s in manifest.functions.values() if s.schedules),
            }
        )

    @server.app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[FlaskResponse, int]:
        # What the server itself refuses (a path no function route can match, a bad object link) is
        # answered like the functions answer: the error body, never werkzeug's HTML page.
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        response = jsonify({"error": {"code": code, "message": exc.name or "error"}})
        response.headers["Cache-Control"] = "no-store"
        return response, status

    @server.app.get("/openapi.json")
    def openapi_document() -> FlaskResponse:
        # The combined contract of every HTTP function, each under /<name>/ as mounted here.
        apps = [app for app in (http_function(spec, root) for spec in http_functions) if app is not None]
        return jsonify(combined_document(apps))

    @server.app.get("/docs")
    def docs() -> FlaskResponse:
        return send_file(DOCS_PAGE, mimetype="text/html")

    @server.app.get("/docs/assets/<name>")
    def docs_asset(name: str) -> FlaskResponse:
        # Swagger UI as the flask-swagger-ui package ships it (no CDN); our own initializer, no inline script.
        if name == "swagger-initializer.js":
            return send_file(DOCS_INITIALIZER, mimetype="text/javascript")
        if name not in SWAGGER_UI_ASSETS:
            abort(404)
        return send_file(swagger_ui_dist() / name)

    @server.app.get("/_objects/<bucket>/<path:key>")
    def local_object(bucket: str, key: str) -> FlaskResponse:
        # Stands in for S3's presigned URLs when objects live in a local folder.

        storage = get_storage()
        verify = getattr(storage, "verify_local_signature", None)
        try:
            check_bucket(bucket), check_key(key)
        except ValueError:  # an invalid bucket or key (`..`, a backslash, ...): no such link was ever made
            abort(400)
        if verify is None or not verify(
            bucket, key, request.args.get("expires", ""), request.args.get("signature", "")
        ):
            abort(403)
        try:
            stream = storage.open(bucket, key)
        except (ObjectNotFound, ValueError):
            abort(404)
        response = send_file(stream, mimetype="application/octet-stream", download_name=key.rsplit("/", 1)[-1])
        response.headers["Cache-Control"] = "no-store"
        return response

    # The reference privacy center (local runs only): pages calling the functions above.
    server.app.register_blueprint(privacy_center())
    return server.app


DOCS_PAGE = Path(__file__).with_name("docs") / "index.html"
DOCS_INITIALIZER = Path(__file__).with_name("docs") / "swagger-initializer.js"
SWAGGER_UI_ASSETS = frozenset(
    {"swagger-ui.css", "index.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png"}
)


def swagger_ui_dist() -> Path:
    """Swagger UI's files, from the flask-swagger-ui package (a local-only dependency)."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("flask-swagger-ui is not installed (pip install -e '.[local]')")
    return Path(spec.origin).parent / "dist"


def http_function(spec: FunctionSpec, root: Path = PROJECT_ROOT) -> HttpFunction | None:
    """The HttpFunction behind an HTTP function's handler (`handle = app.handle`), if it is one."""
    owner = getattr(load_handler(spec, root), "__self__", None)
    return owner if isinstance(owner, HttpFunction) else None


def _mounted(spec: FunctionSpec, root: Path) -> Handler:
    """The function as Scaleway runs it behind its own domain: paths start at `/`."""
    prefix = f"/{spec.name}"

    def handler(event: dict, _context: dict) -> Any:
        path = event.get("path") or "/"
        if path.startswith(prefix):
            event = {**event, "path": path[len(prefix) :] or "/"}
        return load_handler(spec, root)(event, scaleway_context(spec))

    handler.__name__ = spec.name.replace("-", "_")
    return handler


def access_log_handler(app: Flask, write: Callable[[str], None]) -> type[WSGIRequestHandler]:
    """werkzeug's request handler logging `METHOD <route template> status`: never a raw path nor a query string.

    Download links carry their token in the query and ids in the path.
    """
    urls = app.url_map.bind("localhost")

    class RouteLoggingHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            write(f"{self.command} {route_of(urls, self.command, self.path)} {getattr(code, 'value', code)}")

        def log(self, type: str, message: str, *args: Any) -> None:
            # werkzeug's other lines quote the raw request line ("Bad request syntax ('GET /?token=...')").
            write(f"http {type}: a request could not be served")

    return RouteLoggingHandler


def route_of(urls: MapAdapter, method: str, raw_path: str) -> str:
    """The template of the route serving `raw_path` ("/_objects/<bucket>/<path:key>"), "-" if none."""
    try:
        rule, _args = urls.match(unquote(raw_path.split("?", 1)[0]), method=method, return_rule=True)
    except Exception:  # no route, a redirect, a malformed path: name nothing from it
        return "-"
    return rule.rule


def serve(port: int, root: Path = PROJECT_ROOT, *, host: str = "127.0.0.1") -> None:

    manifest = load_manifest(root)
    stop = threading.Event()

    def log(line: str) -> None:
        print(f"[privacy-functions] {line}", file=sys.stderr, flush=True)

    app = build_app(manifest, root)
    CronScheduler(manifest, root, log, stop).start()
    QueuePump(manifest, root, log, stop).start()
    httpd = make_server(host, port, app, threaded=True, request_handler=access_log_handler(app, log))
    log(f"serving {len(manifest.functions)} function(s) on http://{host}:{port}/ (health: /healthz)")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        httpd.server_close()
