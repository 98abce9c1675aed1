"""Route guards: who may call a route, declared where the route is declared.

A guard is a Powertools route middleware with a name, so the route table says who each
route is for and a test can list every route that has none:

    @app.post("/", middlewares=[client_token(), gpc_signal, body(NoFields), step_up("export")])
    @app.get("/<request_id>/download", middlewares=[public("signed link: the token is the credential")])

A guard that identifies the caller stores what it found in the resolver's context
(`app.context["client"]`, `app.context["dpo"]`), which Powertools clears after each request;
routes read it back with `principal(app, "client")`. The identity layer provides the client and
DPO guards; this module the mechanism, `public`, `signed_link`, `signed_request`, `body` and `query`.

A guard also says what it means for the API contract (shared.platform.openapi): the credential it
reads (a security scheme), the model it validates (request body or query), the errors it answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from pydantic import BaseModel

from shared.platform.http import HttpRequest, _json_object, current_request, validated

# Guards that say who the caller is (or that nobody needs to be): every route needs one.
AUTHENTICATING = ("client_token", "dpo_credential", "console_session", "trigger", "public")

Check = Callable[[HttpRequest, dict[str, Any]], Any]
# A route's `middlewares=` list, as Powertools types it (a list of guards shared by several routes).
Middlewares = list[Callable[..., Any]]


@dataclass(frozen=True)
class Credential:
    """What a guard reads to let a caller in: an OpenAPI security scheme named `scheme`.

    `bearer`: an `Authorization: Bearer` token; else an API key, the header or query parameter `name`.
    """

    scheme: str
    description: str
    bearer: bool = False
    name: str = ""
    location: Literal["header", "query"] = "header"

    def security_scheme(self) -> dict[str, Any]:
        if self.bearer:
            return {"type": "http", "scheme": "bearer", "description": self.description}
        return {"type": "apiKey", "in": self.location, "name": self.name, "description": self.description}


@dataclass(frozen=True)
class Guard:
    """One declared check of a route; `stores` names the context key its result goes under.

    For the contract: `credential` (what it reads), `model` (the body or query it validates) and
    `answers`, the (status, error code) pairs it may refuse a request with; `optional`, for a body, that
    none may be sent.
    """

    kind: str
    label: str
    check: Check | None = None
    stores: str | None = None
    credential: Credential | None = None
    model: type[BaseModel] | None = None
    answers: tuple[tuple[int, str], ...] = ()
    optional: bool = False  # a body: an empty one stands for `{}`; a credential: not always asked for

    def __call__(self, app: Any, next_middleware: NextMiddleware) -> Response:
        if self.check is not None:
            value = self.check(current_request(), app.context)
            if self.stores is not None:
                app.append_context(**{self.stores: value})
        return next_middleware(app)

    @property
    def __name__(self) -> str:  # Powertools names each middleware in its debug trace
        return f"guard:{self.kind}"

    @property
    def authenticates(self) -> bool:
        return self.kind in AUTHENTICATING


def public(reason: str) -> Guard:
    """A route open to anyone on purpose; `reason` says what protects it instead (a signature, nothing personal)."""
    if not reason.strip():
        raise ValueError("a public route says why it is public")
    return Guard("public", reason)


def signed_link(scheme: str, parameter: str, reason: str) -> Guard:
    """A public route whose signed, expiring token in the query parameter `parameter` is the credential."""
    return Guard(
        "public",
        public(reason).label,
        credential=Credential(scheme, reason, name=parameter, location="query"),
    )


def signed_request(scheme: str, header: str, reason: str) -> Guard:
    """A public route whose every request is checked against the signature in `header` (a webhook)."""
    return Guard("public", public(reason).label, credential=Credential(scheme, reason, name=header))


def trigger(kind: str) -> Guard:
    """The route of a private function that Scaleway's own CRON or queue trigger calls (serverless.yml: private)."""
    return Guard("trigger", f"{kind} trigger of a private function")


def body(model: type[BaseModel], *, optional: bool = False) -> Guard:
    """The JSON body validated as `model` before later guards run (so a bad body never sends a step-up code).

    `optional`: an empty body is taken as `{}`. The route reads it with `principal(app, "body")`.
    """

    def check(request: HttpRequest, _context: dict[str, Any]) -> BaseModel:
        return validated(model, _json_object(request.body, empty_is_object=optional))

    return Guard(
        "body",
        model.__name__,
        check,
        stores="body",
        model=model,
        answers=((400, "invalid_request"),),
        optional=optional,
    )


def query(model: type[BaseModel]) -> Guard:
    """The query string validated as `model` (its fields are strings), read with `principal(app, "query")`."""

    def check(request: HttpRequest, _context: dict[str, Any]) -> BaseModel:
        return validated(model, dict(request.query))

    return Guard("query", model.__name__, check, stores="query", model=model, answers=((400, "invalid_request"),))


def principal(app: Any, key: str) -> Any:
    """What a guard of this route stored under `key` (a route reading a key no guard sets is a bug)."""
    try:
        return app.context[key]
    except KeyError:
        raise RuntimeError(f"no guard of this route provides {key!r}") from None


@dataclass(frozen=True)
class DeclaredRoute:
    function: str
    method: str
    path: str
    guards: tuple[Guard, ...]

    @property
    def authenticated_by(self) -> Guard | None:
        return next((guard for guard in self.guards if guard.authenticates), None)


def declared_routes(app: Any) -> Iterator[DeclaredRoute]:
    """Every route of an HTTP function with its guards, in declaration order."""
    for route in app._static_routes + app._dynamic_routes:  # Powertools keeps no public list of its routes
        guards = tuple(m for m in (route.middlewares or ()) if isinstance(m, Guard))
        yield DeclaredRoute(app.name, route.method, route.path, guards)
