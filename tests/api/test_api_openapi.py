"""The OpenAPI document: valid 3.1, complete, and public."""

from __future__ import annotations

from typing import Any

import pytest
from api_helpers import joined_app
from flask import Flask
from openapi_spec_validator import OpenAPIV31SpecValidator
from sqlalchemy.orm import Session, sessionmaker

from credits.api import openapi
from credits.api.converters import MAX_ID
from credits.api.openapi import build_document, openapi_path
from credits.api.openapi import operation as declare_operation

API_PREFIX = "/api/v1"
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def app(joined_session_factory: sessionmaker[Session]) -> Flask:
    return joined_app(joined_session_factory)


@pytest.fixture
def document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_openapi_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    OpenAPIV31SpecValidator(document).validate()

    assert document["openapi"] == "3.1.0"


def test_the_document_is_built_once_and_served_from_then_on(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []

    def counting_build(built_for: Flask) -> dict[str, Any]:
        builds.append(built_for.name)
        return build_document(built_for)

    monkeypatch.setattr(openapi, "build_document", counting_build)
    client = app.test_client()
    first = client.get("/api/v1/openapi.json")
    second = client.get("/api/v1/openapi.json")

    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    assert builds == [app.name]


def test_every_api_route_is_in_the_document(app: Flask, document: dict[str, Any]) -> None:
    routes = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith(API_PREFIX)]
    assert routes

    for rule in routes:
        operations = document["paths"].get(openapi_path(rule.rule), {})
        for method in (rule.methods or set()) - IMPLICIT_METHODS:
            assert method.lower() in operations, f"{method} {rule.rule} is not documented"


def test_openapi_needs_no_token(document: dict[str, Any]) -> None:
    assert document["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_authenticated_operations_declare_bearer_and_a_401_problem(
    document: dict[str, Any],
) -> None:
    operation = document["paths"]["/api/v1/accounts/{account_id}"]["get"]

    assert operation["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    problem = operation["responses"]["401"]["content"]["application/problem+json"]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_responses_refer_to_pydantic_component_schemas(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/accounts/{account_id}/balance"]["get"]

    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/BalanceOut"}
    assert "available" in document["components"]["schemas"]["BalanceOut"]["properties"]


def test_a_file_download_documents_its_media_type_and_headers(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/jobs/{job_id}/logs/download"]["get"]

    answer = operation["responses"]["200"]
    assert answer["content"] == {"text/plain": {"schema": {"type": "string"}}}
    assert answer["headers"]["Content-Disposition"]["required"] is True
    assert {"403", "404", "503"} <= set(operation["responses"])


def test_query_models_become_query_parameters(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/accounts/{account_id}/transfers"]["get"]

    parameters = {(p["in"], p["name"]): p for p in operation["parameters"]}
    assert set(parameters) == {("path", "account_id"), ("query", "before"), ("query", "limit")}
    assert parameters[("query", "limit")]["schema"]["maximum"] == 500
    assert parameters[("path", "account_id")]["required"] is True
    assert "422" in operation["responses"]


@pytest.mark.parametrize(
    ("path", "model"),
    [("/api/v1/pool/flavours", "FlavourIn"), ("/api/v1/pool/flavours/{name}/rates", "RateIn")],
)
def test_routes_that_take_a_body_document_it(
    document: dict[str, Any], path: str, model: str
) -> None:
    body = document["paths"][path]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert body["required"] is True
    assert schema == {"$ref": f"#/components/schemas/{model}"}
    assert "properties" in document["components"]["schemas"][model]


def test_every_status_is_listed_and_there_is_no_catch_all(document: dict[str, Any]) -> None:
    for path, operations in document["paths"].items():
        for method, declared in operations.items():
            responses = declared["responses"]
            assert "default" not in responses, f"{method} {path}"
            assert "500" in responses, f"{method} {path}"


def test_a_required_json_body_documents_malformed_and_unsupported_bodies(
    document: dict[str, Any],
) -> None:
    responses = document["paths"]["/api/v1/pool/flavours"]["post"]["responses"]

    assert {"400", "415", "422"} <= set(responses)


def test_path_ids_are_bounded_like_the_converter(document: dict[str, Any]) -> None:
    operation = document["paths"]["/api/v1/accounts/{account_id}"]["get"]

    schema = operation["parameters"][0]["schema"]
    assert schema == {"type": "integer", "minimum": 0, "maximum": MAX_ID}


def test_a_route_that_needs_an_idempotency_key_documents_the_header() -> None:
    app = Flask(__name__)

    @app.post("/things")
    @declare_operation("Make a thing", idempotency_key=True)
    def make_thing() -> dict[str, str]:
        return {}

    made = build_document(app)["paths"]["/things"]["post"]

    header = next(p for p in made["parameters"] if p["in"] == "header")
    assert (header["name"], header["required"]) == ("Idempotency-Key", True)
    assert "400" in made["responses"]
