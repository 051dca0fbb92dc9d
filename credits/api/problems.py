"""RFC 9457 problem details (``application/problem+json``) for every error the app answers.

A problem's ``type`` is an absolute URI, ``https://credits.dev/problems/<slug>``,
where the slug is the :class:`~credits.errors.CreditsError` subclass's ``slug``;
clients compare it as a string and never need to fetch it. HTTP errors that
carry no domain meaning (an unknown route, a wrong method) use ``about:blank``
with the HTTP reason phrase as ``title``, as RFC 9457 section 4.2.1 asks.
``instance`` is the request path. Field errors from pydantic come as an
``errors`` list of ``{loc, msg, type}``, never echoing the input, which may be
a secret.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Request, Response, current_app, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.exceptions import HTTPException, UnsupportedMediaType

from credits.errors import CreditsError, InvalidInput

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://credits.dev/problems/"
BLANK_TYPE = "about:blank"
STANDARD_MEMBERS = frozenset({"type", "title", "status", "detail", "instance"})

logger = logging.getLogger(__name__)


class FieldError(BaseModel):
    """One rejected input field: where it is, what is wrong, pydantic's error type."""

    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document; a problem type may add its own members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description=f"{PROBLEM_TYPE_BASE}<slug>, or about:blank")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = Field(default=None, description="the request path")
    errors: list[FieldError] | None = Field(
        default=None, description="field errors, on 422 invalid-input problems"
    )


class MalformedJson(CreditsError):
    status = 400
    slug = "malformed-json"
    title = "Malformed JSON body"


class ApiRequest(Request):
    """A request whose unreadable JSON body is a domain error, so it renders as a problem."""

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise UnsupportedMediaType("The request body must be sent as application/json.")
        raise MalformedJson("The request body is not valid JSON.") from e


def problem_type(slug: str) -> str:
    return f"{PROBLEM_TYPE_BASE}{slug}"


def problem_response(
    *,
    status: int,
    title: str,
    type_: str,
    detail: str | None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Renders one problem document; ``extra`` never overrides a standard member."""
    body: dict[str, Any] = {
        "type": type_,
        "title": title,
        "status": status,
        **({"detail": detail} if detail else {}),
        "instance": request.path,
    }
    body.update((k, v) for k, v in (extra or {}).items() if k not in STANDARD_MEMBERS)
    return Response(
        current_app.json.dumps(body),
        status=status,
        headers=headers,
        mimetype=PROBLEM_MEDIA_TYPE,
    )


def credits_error_response(error: CreditsError) -> Response:
    return problem_response(
        status=error.status,
        title=error.title,
        type_=problem_type(error.slug),
        detail=error.detail,
        extra=error.extra,
    )


def validation_error_response(error: ValidationError) -> Response:
    errors = [
        FieldError(loc=list(item["loc"]), msg=item["msg"], type=item["type"]).model_dump()
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    return problem_response(
        status=InvalidInput.status,
        title=InvalidInput.title,
        type_=problem_type(InvalidInput.slug),
        detail=f"{len(errors)} field(s) failed validation.",
        extra={"errors": errors},
    )


def http_error_response(error: HTTPException) -> Response:
    status = error.code or 500
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    return problem_response(
        status=status,
        title=error.name,
        type_=BLANK_TYPE,
        detail=error.description,
        headers=headers,
    )


def unexpected_error_response(error: Exception) -> Response:
    # The traceback goes to the log only; the client learns nothing of the internals.
    logger.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return problem_response(
        status=500,
        title=HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
        type_=BLANK_TYPE,
        detail="An unexpected error occurred; it has been logged.",
    )


def init_app(app: Flask) -> None:
    """Every error the app can raise renders as a problem document."""
    app.request_class = ApiRequest
    app.register_error_handler(CreditsError, credits_error_response)
    app.register_error_handler(ValidationError, validation_error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, unexpected_error_response)
