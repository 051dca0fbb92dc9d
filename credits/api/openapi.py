"""The OpenAPI 3.1 document, built from the app's routes and the pydantic schemas.

A route declares what the document needs with :func:`operation` (a summary,
its response and query models, the problems it may answer); method, path and
path parameters come from the Flask URL rule itself, so the document cannot
disagree with the routing. ``components.schemas`` is one
``models_json_schema`` pass over every model named, plus ``Problem``. The
document is served, without authentication, at GET /api/v1/openapi.json.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule

from credits.api.converters import (
    MAX_ID,
    TILE_PATH_MAX_LENGTH,
    TILE_PATH_MIN_LENGTH,
    TILE_PATH_PATTERN,
)
from credits.api.parsing import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_KEY_PATTERN,
    JSON_MEDIA_TYPE,
)
from credits.api.problems import PROBLEM_MEDIA_TYPE, Problem

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearer"
_ATTRIBUTE = "_credits_operation"
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
_RULE_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
    # Not the pattern itself: every tile path holds a "/", which no generated path
    # parameter may, so clients read the format from the description.
    "tile": {
        "type": "string",
        "minLength": TILE_PATH_MIN_LENGTH,
        "maxLength": TILE_PATH_MAX_LENGTH,
        "description": f"a C2SP tlog-tiles path below tile/, matching {TILE_PATH_PATTERN}",
    },
}

View = TypeVar("View", bound=Callable[..., Any])
ModelKey = tuple[type[BaseModel], JsonSchemaMode]

blueprint = Blueprint("openapi", __name__, url_prefix="/api/v1")


@dataclass(frozen=True)
class Answer:
    """A success answer besides the operation's main one, such as 206 Partial Content
    or a 302 redirect; ``body``: it carries the main answer's content."""

    status: int
    description: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bool = True


@dataclass(frozen=True)
class Operation:
    """What a route tells the document beyond what its URL rule says."""

    summary: str
    response: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    problems: tuple[int, ...] = ()
    authenticated: bool = True
    body: type[BaseModel] | None = None
    body_required: bool = True
    idempotency_key: bool = False
    # The success answer's media type; one that is not JSON is a string (a file).
    media_type: str = "application/json"
    # Headers of the success answer: (name, description).
    headers: tuple[tuple[str, str], ...] = ()
    # The status a replayed Idempotency-Key answers with, when not ``status``.
    replay_status: int | None = None
    # A request body that is a file, sent as it is in this media type (not JSON).
    raw_body: str | None = None
    # Other success answers (a partial file, a redirect).
    answers: tuple[Answer, ...] = ()

    def problem_statuses(self) -> list[int]:
        """Declared problems, plus 401 for authenticated routes, 422 (every request is
        refused that way when it carries a NUL character, see ``api/guards.py``), 400
        (malformed or too deep JSON), 413 (too large) and 415 (not JSON) for a body,
        optional or not (see ``api/parsing.py``), 413 for a file body, 400 for an
        Idempotency-Key, and 500."""
        implied = {500, 422}
        implied |= {401} if self.authenticated else set()
        implied |= {400, 413, 415} if self.body is not None else set()
        implied |= {413} if self.raw_body is not None else set()
        implied |= {400} if self.idempotency_key else set()
        return sorted(set(self.problems) | implied)


def operation(
    summary: str,
    *,
    response: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    status: int = 200,
    problems: tuple[int, ...] = (),
    authenticated: bool = True,
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    idempotency_key: bool = False,
    media_type: str = "application/json",
    headers: tuple[tuple[str, str], ...] = (),
    replay_status: int | None = None,
    raw_body: str | None = None,
    answers: tuple[Answer, ...] = (),
) -> Callable[[View], View]:
    """Declares a route for the document; place it under the ``@blueprint.get`` line.

    ``body`` is the pydantic model the route parses its JSON request body with;
    ``body_required=False`` when the route also accepts no body at all.
    ``idempotency_key=True`` documents the required ``Idempotency-Key`` header
    of a request that moves credits (and the 400 its absence answers);
    ``replay_status`` the status a replay answers, when it is not ``status``.
    ``media_type`` other than JSON (with no ``response`` model) documents a success
    answer that is a file, such as ``text/plain``; ``headers`` names the headers
    the success answer always carries, as (name, description) pairs. ``raw_body``
    documents a request body that is a file in that media type (an upload), and
    ``answers`` other success answers (206 Partial Content, a 302 redirect).
    """

    def declare(view: View) -> View:
        declared = Operation(
            summary,
            response=response,
            query=query,
            status=status,
            problems=problems,
            authenticated=authenticated,
            body=body,
            body_required=body_required,
            idempotency_key=idempotency_key,
            media_type=media_type,
            headers=headers,
            replay_status=replay_status,
            raw_body=raw_body,
            answers=answers,
        )
        setattr(view, _ATTRIBUTE, declared)
        return view

    return declare


def operation_of(view: Callable[..., Any]) -> Operation | None:
    found = getattr(view, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None


@dataclass(frozen=True)
class _Route:
    rule: Rule
    method: str
    view: Callable[..., Any]
    operation: Operation


def openapi_path(rule: str) -> str:
    """``/accounts/<int:account_id>`` → ``/accounts/{account_id}``."""
    return _RULE_ARGUMENT.sub(lambda match: "{" + match["name"] + "}", rule)


def _documented_routes(app: Flask) -> Iterator[_Route]:
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        view = app.view_functions[rule.endpoint]
        declared = operation_of(view)
        if declared is None:
            continue
        for method in sorted((rule.methods or set()) - _IMPLICIT_METHODS):
            yield _Route(rule, method, view, declared)


def _component_schemas(routes: list[_Route]) -> tuple[dict[ModelKey, Any], dict[str, Any]]:
    keys: dict[ModelKey, None] = {(Problem, "serialization"): None}
    for route in routes:
        if route.operation.response is not None:
            keys[(route.operation.response, "serialization")] = None
        if route.operation.query is not None:
            keys[(route.operation.query, "validation")] = None
        if route.operation.body is not None:
            keys[(route.operation.body, "validation")] = None
    key_map, document = models_json_schema(list(keys), ref_template=REF_TEMPLATE)
    return {key: key_map[key] for key in keys}, document.get("$defs", {})


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    return [
        {
            "name": match["name"],
            "in": "path",
            "required": True,
            "schema": _CONVERTER_SCHEMAS.get(match["converter"] or "", {"type": "string"}),
        }
        for match in _RULE_ARGUMENT.finditer(rule.rule)
    ]


def _header_parameters(declared: Operation) -> list[dict[str, Any]]:
    if not declared.idempotency_key:
        return []
    return [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": True,
            "description": "the same key with the same request replays the first result",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
                "pattern": IDEMPOTENCY_KEY_PATTERN,
            },
        }
    ]


def _query_parameters(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    parameters = []
    for name, field_schema in schema.get("properties", {}).items():
        field = {key: value for key, value in field_schema.items() if key != "title"}
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in field:
            parameter["description"] = field.pop("description")
        parameters.append({**parameter, "schema": field})
    return parameters


def _headers(headers: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {
        name: {"description": description, "required": True, "schema": {"type": "string"}}
        for name, description in headers
    }


def _ref_name(reference: dict[str, Any]) -> str:
    return str(reference["$ref"]).rsplit("/", 1)[1]


class _DocumentBuilder:
    """One document from one app: the routes, their schemas, their responses."""

    def __init__(self, app: Flask) -> None:
        self.routes = list(_documented_routes(app))
        self.refs, self.schemas = _component_schemas(self.routes)

    def build(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            path = paths.setdefault(openapi_path(route.rule.rule), {})
            path[route.method.lower()] = self._operation(route)
        return {
            "openapi": OPENAPI_VERSION,
            "info": {"title": "credits API", "version": _package_version()},
            "paths": paths,
            "components": {
                "schemas": self.schemas,
                "securitySchemes": {
                    SECURITY_SCHEME: {"type": "http", "scheme": "bearer"},
                },
            },
        }

    def _operation(self, route: _Route) -> dict[str, Any]:
        declared = route.operation
        document: dict[str, Any] = {
            "operationId": route.rule.endpoint,
            "summary": declared.summary,
            "tags": [route.rule.endpoint.split(".", 1)[0]],
            "parameters": (
                _path_parameters(route.rule) + self._query(declared) + _header_parameters(declared)
            ),
            "responses": self._responses(declared),
            "security": [{SECURITY_SCHEME: []}] if declared.authenticated else [],
        }
        if declared.body is not None:
            document["requestBody"] = {
                "required": declared.body_required,
                "content": {JSON_MEDIA_TYPE: {"schema": self.refs[(declared.body, "validation")]}},
            }
        elif declared.raw_body is not None:
            document["requestBody"] = {
                "required": True,
                "content": {declared.raw_body: {"schema": {"type": "string", "format": "binary"}}},
            }
        description = inspect.getdoc(route.view)
        if description:
            document["description"] = description
        return document

    def _query(self, declared: Operation) -> list[dict[str, Any]]:
        if declared.query is None:
            return []
        reference = self.refs[(declared.query, "validation")]
        return _query_parameters(self.schemas[_ref_name(reference)])

    def _responses(self, declared: Operation) -> dict[str, Any]:
        success: dict[str, Any] = {"type": "object"}
        if declared.response is not None:
            success = self.refs[(declared.response, "serialization")]
        elif declared.media_type.endswith("+json"):
            success = {"type": "object"}
        elif declared.media_type != "application/json":
            success = {"type": "string"}
        answer: dict[str, Any] = {"description": HTTPStatus(declared.status).phrase}
        if declared.status != HTTPStatus.NO_CONTENT:
            answer["content"] = {declared.media_type: {"schema": success}}
        if declared.headers:
            answer["headers"] = _headers(declared.headers)
        responses: dict[str, Any] = {str(declared.status): answer}
        for other in declared.answers:
            extra: dict[str, Any] = {"description": other.description}
            if other.body and "content" in answer:
                extra["content"] = answer["content"]
            if other.headers:
                extra["headers"] = _headers(other.headers)
            responses[str(other.status)] = extra
        if declared.replay_status is not None:
            replay = HTTPStatus(declared.replay_status).phrase
            responses[str(declared.replay_status)] = answer | {
                "description": f"{replay}: a replay of the {IDEMPOTENCY_HEADER}, the first result"
            }
        # Every status is listed, with no "default" catch-all, so that a client (and the
        # schemathesis test) can tell a documented answer from a surprise.
        for status in declared.problem_statuses():
            responses[str(status)] = self._problem(HTTPStatus(status).phrase, status)
        return responses

    def _problem(self, description: str, status: int) -> dict[str, Any]:
        response: dict[str, Any] = {
            "description": description,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": self.refs[(Problem, "serialization")]}},
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": 'Bearer challenge, with error="invalid_token" for a bad token',
                    "schema": {"type": "string"},
                }
            }
        return response


def _package_version() -> str:
    try:
        return version("credits")
    except PackageNotFoundError:
        return "0.0.0"


def build_document(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.1 document for every route of ``app`` that declares an operation."""
    return _DocumentBuilder(app).build()


_DOCUMENT_KEY = "credits.openapi_document"


def app_document(app: Flask) -> dict[str, Any]:
    """``app``'s document, built on first use and kept: its routes do not change once
    it serves, and building it costs a quarter of a second of CPU, which an
    unauthenticated endpoint must not spend on every request."""
    document: dict[str, Any] | None = app.extensions.get(_DOCUMENT_KEY)
    if document is None:
        document = app.extensions[_DOCUMENT_KEY] = build_document(app)
    return document


@blueprint.get("/openapi.json")
@operation("This OpenAPI document", authenticated=False)
def openapi_document() -> ResponseReturnValue:
    """The API's OpenAPI 3.1 description; no token needed."""
    return app_document(current_app)
