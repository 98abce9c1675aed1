"""The API contract: an OpenAPI 3.1 document generated from the routes and what their guards declare.

Nothing here is written by hand per route. For every route of an HTTP function (`declared_routes`):

- the path, with its `<param>` segments as path parameters;
- the security requirement: the credential of each of its guards, all required together (client token
  and step-up code; DPO credential; signed link; Stripe signature), each a security scheme; a credential
  its guard does not always ask for (a step-up skipped while the action is under way) is optional;
- the request body from its `body(Model)` guard, the query parameters from its `query(Model)` guard,
  as the pydantic models' JSON Schemas (strict: unknown fields refused);
- the answers: what the route's decorator declares in `responses=` (Powertools' own parameter), else
  200 with a JSON object; then the refusals its guards declare, grouped by status with their error
  codes, the errors every route may answer (413, 500, 503), and `default` for the rest (unless the
  route declares its own `"default"`), all with the error body `{"error": {"code", "message"}}`;
- summary and description from the route function's docstring and the guards' labels.

A new route is documented as soon as it is declared. The document holds no personal data: only
routes, models and codes. Each function serves its own at `GET /openapi.json`; the local server
serves the combined document of every function (`combined_document`).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from shared.platform.guards import DeclaredRoute, Guard, declared_routes, public
from shared.platform.http import HttpFunction

# A route's `responses=`: Powertools' own parameter (status -> OpenAPI response, a pydantic class under
# "model" standing for its schema), and "default" for a route whose refusals are not the error body.
# An answer's "links" name their target by its route function (`link("view", request_id="/request_id")`).
Answers = dict[Any, Any]


# Pages (server-rendered HTML): what a route of the console or an unsubscribe link answers.
HTML = {"text/html": {"schema": {"type": "string"}}}
PAGE = {"description": "A page (French, then English)", "content": HTML}
# A refused request is answered with a page; what never reached the route (a malformed query) with the error body.
ERROR_PAGE_OR_BODY: dict[str, Any] = {
    "description": "Refused: a page (POST: when the caller accepts text/html), else the error body",
    "content": {**HTML, "application/json": {"schema": {"type": "object", "required": ["error"]}}},
}
SEE_OTHER = {"description": "Done: to the page that shows it (Location)", "content": HTML}
# Every route of a page function: a page, a redirect after a form, or a refusal as a page.
PAGE_ANSWERS: Answers = {200: PAGE, 303: SEE_OTHER, "default": ERROR_PAGE_OR_BODY}


def answer(description: str, model: type[BaseModel] | None = None, **links: dict[str, Any]) -> Any:
    """A declared answer: a JSON body described by `model` (any object without one), and its `links`.

    Typed Any: Powertools types `responses=` with its own OpenAPIResponse, which knows no "model" key.
    """
    content: dict[str, Any] = {"model": model} if model is not None else {"schema": {"type": "object"}}
    declared: dict[str, Any] = {"description": description, "content": {"application/json": content}}
    if links:
        declared["links"] = links
    return declared


def link(operation: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link from an answer to the route function `operation` of the same function, each
    parameter taken from the answer's body at a JSON pointer ("/request_id")."""
    return {
        "operation": operation,
        "parameters": {name: f"$response.body#{pointer}" for name, pointer in parameters.items()},
    }


OPENAPI_VERSION = "3.1.0"
OPENAPI_PATH = "/openapi.json"
API_TITLE = "privacy-functions"
API_VERSION = "0.1.0"
CONTRACT_REASON = "the API contract: routes, models and error codes, nothing personal"

# Powertools' `<name>` segment; a documented id is what our ids are made of (UUIDs, tokens).
_PATH_PARAMETER = re.compile(r"<(\w+)>")
PATH_PARAMETER_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "minLength": 1, "maxLength": 64}

# Refusals any route may answer, whatever its guards (a 503's code names what is unavailable).
COMMON_ANSWERS: tuple[tuple[int, str | None], ...] = (
    (413, "payload_too_large"),
    (500, "internal_error"),
    (503, None),
)
_STATUS_TEXT = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    429: "Too many requests",
    500: "Internal error (the body carries an error id to quote)",
    503: "An external service is unavailable; try again later",
}


def error_schema(codes: Iterable[str] = ()) -> dict[str, Any]:
    """The error body every refusal carries; `codes`, the codes its guards declare for one status.

    They are examples, not an enum: a route's own rules may refuse with codes of their own (a 400
    `invalid_reason` after the body's shape passed), named in their messages.
    """
    code: dict[str, Any] = {"type": "string"}
    listed = sorted(set(codes))
    if listed:
        code["examples"] = listed
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": code,
                    "message": {"type": "string"},
                    "error_id": {"type": "string", "description": "500 only: the id to quote to support"},
                },
            }
        },
    }


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


class _Components:
    """The models' schemas and the security schemes met while documenting routes."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.schemas: dict[str, Any] = {}
        self.security_schemes: dict[str, Any] = {}

    def model(self, model: type[BaseModel]) -> dict[str, Any]:
        """A `$ref` to `model`'s JSON Schema (validation mode), its nested models alongside."""
        schema = model.model_json_schema(ref_template=f"#/components/schemas/{self.prefix}{{model}}")
        for name, nested in schema.pop("$defs", {}).items():
            self.schemas[self.prefix + name] = nested
        name = self.prefix + model.__name__
        self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def inline_model(self, model: type[BaseModel]) -> dict[str, Any]:
        """`model`'s JSON Schema itself (for query parameters, read field by field)."""
        schema = model.model_json_schema(ref_template=f"#/components/schemas/{self.prefix}{{model}}")
        for name, nested in schema.pop("$defs", {}).items():
            self.schemas[self.prefix + name] = nested
        return schema


def _summary(route: DeclaredRoute, func: Any) -> tuple[str, str]:
    doc = inspect.getdoc(func) or ""
    first, _, rest = doc.partition("\n\n")
    who = "; ".join(guard.label for guard in route.guards if guard.kind not in ("body", "query"))
    summary = " ".join(first.split()) or func.__name__.replace("_", " ").capitalize()
    description = "\n\n".join(part for part in (rest.strip(), f"Guards: {who}." if who else "") if part)
    return summary, description


def _responses(
    declared: dict[int | str, Any] | None, guards: tuple[Guard, ...], components: _Components, operation_prefix: str
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    answers: dict[int | str, Any] = dict(declared or {200: {"description": "OK"}})
    default = answers.pop("default", None)  # a route whose refusals are pages, say, declares them
    for status, answer in answers.items():
        assert isinstance(status, int), f"a declared answer's status is a number, not {status!r}"
        entry = {"description": answer.get("description") or "OK"}
        content = answer.get("content")
        if content is None and status != 204 and not 300 <= status < 400:
            content = {"application/json": {"schema": {"type": "object"}}}
        if content:
            entry["content"] = {
                media: {"schema": components.model(spec["model"]) if "model" in spec else spec.get("schema", {})}
                for media, spec in content.items()
            }
        if answer.get("headers"):
            entry["headers"] = answer["headers"]
        if answer.get("links"):
            entry["links"] = {
                name: {"operationId": operation_prefix + target["operation"], "parameters": target["parameters"]}
                for name, target in answer["links"].items()
            }
        responses[str(status)] = entry
    if not declared:
        # A route that declares no answers may succeed with any 2xx (201 created, 202 accepted): a JSON object.
        responses["2XX"] = responses.pop("200")
    refusals: dict[int, set[str]] = {}
    open_codes: set[int] = set()  # statuses whose codes are not listed
    for guard in guards:
        for status, code in guard.answers:
            refusals.setdefault(status, set()).add(code)
    for status, common in COMMON_ANSWERS:
        refusals.setdefault(status, set())
        if common is None:
            open_codes.add(status)
        else:
            refusals[status].add(common)
    for status in sorted(refusals):
        if str(status) in responses:
            continue
        codes = [] if status in open_codes else sorted(refusals[status])
        responses[str(status)] = {
            "description": f"{_STATUS_TEXT.get(status, 'Refused')}" + (": " + ", ".join(codes) if codes else ""),
            "content": _json_content(error_schema(codes)),
        }
    responses["default"] = default or {
        "description": "Any other refusal (the route's own rules: unknown request, conflict, ...)",
        "content": _json_content(error_schema()),
    }
    return responses


def _operation(
    app: HttpFunction, route: DeclaredRoute, components: _Components, operation_prefix: str
) -> dict[str, Any]:
    powertools_route = _powertools_route(app, route)
    func = powertools_route.func
    summary, description = _summary(route, func)
    operation: dict[str, Any] = {
        "operationId": operation_prefix + func.__name__,
        "summary": getattr(powertools_route, "summary", None) or summary,
        "tags": [app.name],
    }
    if description:
        operation["description"] = description
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": dict(PATH_PARAMETER_SCHEMA)}
        for name in _PATH_PARAMETER.findall(route.path)
    ]
    requirement: dict[str, list[str]] = {}
    optional_schemes: set[str] = set()
    for guard in route.guards:
        if guard.credential is not None:
            components.security_schemes[guard.credential.scheme] = guard.credential.security_scheme()
            requirement[guard.credential.scheme] = []
            if guard.optional:
                optional_schemes.add(guard.credential.scheme)
        if guard.kind == "body" and guard.model is not None:
            operation["requestBody"] = {
                "required": not guard.optional,
                "content": _json_content(components.model(guard.model)),
            }
        if guard.kind == "query" and guard.model is not None:
            schema = components.inline_model(guard.model)
            required = set(schema.get("required", ()))
            for name, field_schema in schema.get("properties", {}).items():
                parameters.append({"name": name, "in": "query", "required": name in required, "schema": field_schema})
    if parameters:
        operation["parameters"] = parameters
    # Every credential together; then, when one is not always asked for (a step-up skipped while the action
    # is already under way), the others alone.
    security = [requirement] if requirement else []
    if optional_schemes and set(requirement) - optional_schemes:
        security.append({name: [] for name in requirement if name not in optional_schemes})
    operation["security"] = security
    operation["responses"] = _responses(
        getattr(powertools_route, "responses", None), route.guards, components, operation_prefix
    )
    return operation


def _powertools_route(app: HttpFunction, route: DeclaredRoute) -> Any:
    for candidate in app._static_routes + app._dynamic_routes:  # as declared_routes reads them
        if candidate.method == route.method and candidate.path == route.path:
            return candidate
    raise LookupError(f"{route.method} {route.path} is not a route of {app.name}")


def _openapi_path(path: str) -> str:
    return _PATH_PARAMETER.sub(r"{\1}", path)


def _add_paths(
    paths: dict[str, Any], app: HttpFunction, components: _Components, *, mount: str = "", operation_prefix: str = ""
) -> None:
    for route in declared_routes(app):
        if not getattr(_powertools_route(app, route), "include_in_schema", True):
            continue
        path = mount + _openapi_path(route.path)  # "/" under "/whoami" is "/whoami/", as served
        operation = _operation(app, route, components, operation_prefix)
        paths.setdefault(path, {})[route.method.lower()] = operation


def _document(paths: dict[str, Any], components: _Components, *, title: str, description: str) -> dict[str, Any]:
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": API_VERSION, "description": description},
        "paths": paths,
        "components": {"schemas": components.schemas, "securitySchemes": components.security_schemes},
    }
    return document


def function_document(app: HttpFunction) -> dict[str, Any]:
    """The contract of one HTTP function, its paths relative to the function's own URL."""
    components = _Components()
    paths: dict[str, Any] = {}
    _add_paths(paths, app, components)
    return _document(
        paths,
        components,
        title=f"{API_TITLE}: {app.name}",
        description=f"The routes of the `{app.name}` function, at the function's own URL.",
    )


def combined_document(apps: Iterable[HttpFunction]) -> dict[str, Any]:
    """Every function's routes under `/<function-name>/`, as the local server mounts them."""
    components = _Components()
    paths: dict[str, Any] = {}
    for app in apps:
        components.prefix = f"{app.name}."
        _add_paths(paths, app, components, mount=f"/{app.name}", operation_prefix=f"{app.name}.")
    return _document(
        paths,
        components,
        title=API_TITLE,
        description="Every HTTP function of the suite, each under `/<function-name>/` (its own domain once deployed).",
    )


def serve_contract(app: HttpFunction) -> None:
    """Adds `GET /openapi.json` to `app`: its own contract, built once from its routes when first asked."""
    from_cache: dict[str, Any] = {}

    def openapi_document() -> dict[str, Any]:
        """This function's OpenAPI document."""
        if "document" not in from_cache:
            from_cache["document"] = function_document(app)
        return from_cache["document"]

    app.get(OPENAPI_PATH, middlewares=[public(CONTRACT_REASON)])(openapi_document)
