"""The API contract is generated from the routes: every declared route, its guards, its models.

The documents are valid OpenAPI 3.1; each HTTP function serves its own at GET /openapi.json (public,
nothing personal) and the local server the combined one, with Swagger UI at /docs from local files.
"""

from __future__ import annotations

import json

import pytest
from openapi_spec_validator import validate
from pydantic import Field

from shared.local.server import build_app, http_function, load_manifest
from shared.platform.guards import body, declared_routes, public, query, signed_link
from shared.platform.openapi import OPENAPI_PATH, combined_document, function_document
from shared.platform.runtime import HttpFunction, StrictModel

MANIFEST = load_manifest()
APPS = [app for app in (http_function(spec) for spec in MANIFEST.functions.values() if spec.is_http) if app]


def _openapi_path(path: str) -> str:
    return path.replace("<", "{").replace(">", "}")


def test_every_http_function_is_documented():
    assert {app.name for app in APPS} >= {"export-on-request", "erase-account", "withdraw-consent", "whoami"}


@pytest.mark.parametrize("app", APPS, ids=lambda app: app.name)
def test_each_function_document_is_valid_openapi_3_1_and_lists_every_route(app):
    document = function_document(app)
    validate(document)
    assert document["openapi"] == "3.1.0"
    for route in declared_routes(app):
        operation = document["paths"][_openapi_path(route.path)][route.method.lower()]
        schemes = {name for requirement in operation["security"] for name in requirement}
        assert schemes == {guard.credential.scheme for guard in route.guards if guard.credential}
        bodies = [guard for guard in route.guards if guard.kind == "body"]
        if bodies:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/" + bodies[0].model.__name__)
            assert operation["requestBody"]["required"] is not bodies[0].optional
        assert "default" in operation["responses"] and "500" in operation["responses"]


def test_the_combined_document_mounts_every_function_under_its_name():
    document = combined_document(APPS)
    validate(document)
    for app in APPS:
        for route in declared_routes(app):
            assert route.method.lower() in document["paths"][f"/{app.name}{_openapi_path(route.path)}"]
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_security_schemes_come_from_the_guards():
    schemes = combined_document(APPS)["components"]["securitySchemes"]
    assert schemes["ClientToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["ClientToken"]["description"],
    }
    assert schemes["DpoCredential"]["scheme"] == "bearer"
    assert (schemes["StepUpCode"]["in"], schemes["StepUpCode"]["name"]) == ("header", "X-Verification-Code")
    assert (schemes["DownloadLink"]["in"], schemes["DownloadLink"]["name"]) == ("query", "token")
    assert (schemes["UnsubscribeLink"]["in"], schemes["UnsubscribeLink"]["name"]) == ("query", "t")
    assert (schemes["StripeSignature"]["in"], schemes["StripeSignature"]["name"]) == ("header", "Stripe-Signature")


def test_a_step_up_skipped_while_the_action_is_under_way_is_an_optional_credential():
    paths = combined_document(APPS)["paths"]
    # step_up("export", unless=export.has_open_export): the open export is answered on the token alone.
    assert paths["/export-on-request/"]["post"]["security"] == [
        {"ClientToken": [], "StepUpCode": []},
        {"ClientToken": []},
    ]
    assert paths["/withdraw-consent/dpo/restrictions"]["post"]["security"] == [{"DpoCredential": []}]


def test_refusals_carry_the_error_body_with_the_guards_codes():
    document = combined_document(APPS)
    start = document["paths"]["/export-on-request/"]["post"]
    assert set(start["responses"]) >= {"202", "400", "401", "403", "429", "413", "500", "503", "default"}
    code = start["responses"]["401"]["content"]["application/json"]["schema"]["properties"]["error"]["properties"][
        "code"
    ]
    assert {"missing_token", "invalid_token", "verification_required", "invalid_code"} <= set(code["examples"])
    error = start["responses"]["default"]["content"]["application/json"]["schema"]["properties"]["error"]
    assert error["required"] == ["code", "message"]


def test_a_new_route_is_documented_from_its_declaration_alone():
    class Note(StrictModel):
        text: str = Field(max_length=10)

    class Page(StrictModel):
        cursor: str = Field(max_length=20)

    app = HttpFunction("sample-contract")

    @app.post("/notes/<note_id>", middlewares=[public("a test"), body(Note)], responses={201: {"description": "Made"}})
    def make_note(note_id: str) -> dict:
        """Makes a note."""
        return {}

    @app.get("/notes", middlewares=[signed_link("NoteLink", "sig", "a signed link"), query(Page)])
    def list_notes() -> dict:
        return {}

    document = function_document(app)
    validate(document)
    made = document["paths"]["/notes/{note_id}"]["post"]
    assert made["summary"] == "Makes a note."
    assert made["parameters"][0]["name"] == "note_id" and made["security"] == []
    assert document["components"]["schemas"]["Note"]["additionalProperties"] is False
    assert "201" in made["responses"] and "200" not in made["responses"]
    listed = document["paths"]["/notes"]["get"]
    assert listed["security"] == [{"NoteLink": []}]
    assert listed["parameters"] == [
        {
            "name": "cursor",
            "in": "query",
            "required": True,
            "schema": {"maxLength": 20, "title": "Cursor", "type": "string"},
        }
    ]
    assert OPENAPI_PATH in document["paths"]  # every function serves its own contract


def test_each_function_serves_its_document_publicly():
    app = next(app for app in APPS if app.name == "whoami")
    event = {"httpMethod": "GET", "path": OPENAPI_PATH, "headers": {}, "body": "", "isBase64Encoded": False}
    answer = app.handle(event, {})
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == function_document(app)


def test_the_local_server_serves_the_combined_document_and_swagger_ui_from_local_files():
    client = build_app(MANIFEST).test_client()
    document = client.get("/openapi.json").get_json()
    assert document == json.loads(json.dumps(combined_document(APPS)))
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    for asset in (
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "swagger-initializer.js",
    ):
        assert f"/docs/assets/{asset}" in html
        assert client.get(f"/docs/assets/{asset}").status_code == 200
    assert client.get("/docs/assets/..%2Fetc").status_code == 404
    missing = client.get("/no-such-function/x\n")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
