"""The portal's error pages: 403, 404, 409 and 500 (and any other error) as HTML.

A portal route that fails (an unknown project or job, a page of another role,
a change the current state refuses, a bug) answers a page in the portal's
layout, with the navigation and the signed-in user's menu, one sentence on
what happened and a link back. The API (``/api/...``), the machine routes
(``/healthz``, dataset files) and the portal's own JSON endpoints (asked with
``Accept: application/json``) keep their problem details. A 500 page never
shows a traceback: it is logged, as the API's is.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, current_app, g, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from admin_ui.web import current_actor, nav_links, render, wants_json
from credits.api.problems import (
    credits_error_response,
    http_error_response,
    unexpected_error_response,
    validation_error_response,
)
from credits.errors import CreditsError

logger = logging.getLogger(__name__)
API_PREFIX = "/api/"
_SHAPES_KEY = "credits.machine_route_shapes"
# A route argument: <name>, <converter:name> or <converter(args):name>.
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?\w+>")
HOME = ("Back to the home page", "ui_home.dashboard")

# What a URL argument names, for "No job 42."
NOUNS = {
    "job_id": "job",
    "project_id": "project",
    "proposal_id": "proposal",
    "program_id": "program",
    "tranche_id": "tranche",
    "order_id": "labelling order",
    "assignment_id": "assignment",
    "vendor_id": "vendor",
    "token_id": "API token",
    "concept_id": "dataset",
    "public_id": "dataset version",
}
# Where "back" leads from each area, when the signed-in user may open it.
BACK = {
    ("ui_jobs", "job_id"): ("Back to your jobs", "ui_jobs.list_jobs"),
    ("ui_jobs", "project_id"): ("Back to your projects", "ui_home.dashboard"),
    ("ui_researcher", "project_id"): ("Back to your projects", "ui_home.dashboard"),
    ("ui_researcher", "proposal_id"): ("Back to your projects", "ui_home.dashboard"),
    ("ui_researcher", "program_id"): ("Back to the open programs", "ui_researcher.open_programs"),
    ("ui_review", "proposal_id"): ("Back to your proposals to review", "ui_review.assigned"),
    ("ui_funder", "program_id"): ("Back to your programs", "ui_funder.programs"),
    ("ui_funder", "proposal_id"): ("Back to your programs", "ui_funder.programs"),
    ("ui_funder_tranches", "tranche_id"): ("Back to your programs", "ui_funder.programs"),
    ("ui_ops", "project_id"): ("Back to the projects", "ui_ops.projects"),
    ("ui_labelling", "order_id"): ("Back to labelling", "ui_labelling.list_labelling_orders"),
    ("ui_labelling_ops", "order_id"): ("Back to the disputes", "ui_labelling_ops.disputes"),
    ("ui_labelling_ops", "vendor_id"): ("Back to the vendors", "ui_labelling_ops.vendors_page"),
    ("ui_annotate", "order_id"): ("Back to your annotation queues", "ui_annotate.queues"),
    ("ui_annotate", "assignment_id"): ("Back to your annotation queues", "ui_annotate.queues"),
    ("ui_auth", "token_id"): ("Back to your API tokens", "ui_auth.tokens"),
    ("ui_datasets", "concept_id"): ("Back to the datasets", "ui_datasets.catalogue"),
    ("ui_datasets", "public_id"): ("Back to the datasets", "ui_datasets.catalogue"),
}
# The page of the thing itself, for a change the current state refused (a 409).
ITSELF = {
    "job_id": "ui_jobs.job_detail",
    "program_id": "ui_funder.program",
    "order_id": "ui_labelling.order_page",
}
TITLES = {
    400: "That request could not be used",
    403: "Not allowed",
    404: "Not found",
    409: "That could not be done",
    500: "Something went wrong",
}


def is_portal_request() -> bool:
    """A person's page view on a portal route (or an unknown address outside the API)."""
    if wants_json():
        return False
    endpoint = request.endpoint or _endpoint_for_another_method()
    if endpoint is not None:
        return endpoint.startswith("ui_")
    if request.path.startswith(API_PREFIX) or request.path == API_PREFIX.rstrip("/"):
        return False
    return not any(shape.fullmatch(request.path) for shape in _machine_route_shapes())


def _machine_route_shapes() -> list[re.Pattern[str]]:
    """Every non-portal route with its arguments loosened to any text.

    ``/datasets/versions/not-a-uuid/SHA256SUMS`` matches no route (the converter
    refuses it) but is still a request for a dataset file, not a page: it keeps
    its problem details.
    """
    shapes: list[re.Pattern[str]] | None = current_app.extensions.get(_SHAPES_KEY)
    if shapes is None:
        shapes = [
            _shape(rule.rule)
            for rule in current_app.url_map.iter_rules()
            if not rule.endpoint.startswith(("ui_", "static"))
        ]
        current_app.extensions[_SHAPES_KEY] = shapes
    return shapes


def _shape(rule: str) -> re.Pattern[str]:
    pattern, at = [], 0
    for argument in _ARGUMENT.finditer(rule):
        pattern.append(re.escape(rule[at : argument.start()]))
        pattern.append(".+" if argument.group(1) == "path" else "[^/]+")
        at = argument.end()
    pattern.append(re.escape(rule[at:]))
    return re.compile("".join(pattern))


def _endpoint_for_another_method() -> str | None:
    """The route a 405 was for (``DELETE /healthz`` is not a portal route)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            endpoint, _ = adapter.match(method=method)
        except HTTPException:
            continue
        return str(endpoint)
    return None


def _subject() -> tuple[str, str] | None:
    """(argument name, value) of the first URL argument that names a thing."""
    arguments = request.view_args or {}
    for name in NOUNS:
        if name in arguments:
            return name, str(arguments[name])
    return None


def _reachable() -> set[str]:
    try:
        endpoints = {endpoint for _, endpoint in nav_links()}
    except Exception:  # the page of an error must not fail itself
        return set()
    if current_actor() is not None:
        endpoints.add(HOME[1])
    return endpoints


def _back(subject: tuple[str, str] | None, status: int) -> tuple[str, str] | None:
    """(label, URL) of the link back: the thing itself after a refused change, else its
    list when the user may open it, else the home page."""
    reachable = _reachable()
    blueprint = (request.endpoint or "").split(".", 1)[0]
    if subject is not None:
        name, value = subject
        itself = ITSELF.get(name)
        if status == 409 and itself is not None and request.method != "GET":
            arguments: dict[str, Any] = {name: value}
            return f"Back to {NOUNS[name]} {value}", url_for(itself, **arguments)
        label, endpoint = BACK.get((blueprint, name), HOME)
        if endpoint in reachable:
            return label, url_for(endpoint)
    if HOME[1] in reachable:
        return HOME[0], url_for(HOME[1])
    return None


def _message(status: int, subject: tuple[str, str] | None, detail: str | None) -> str:
    if status == 404:
        if subject is not None:
            name, value = subject
            return f"No {NOUNS[name]} {value}: it does not exist, or your account cannot see it."
        return (
            f"There is no page at {request.path} that your account can open: check the"
            " address, or follow a link from the menu."
        )
    if status == 403:
        return f"{_sentence(detail or 'your account may not do that')} Nothing was changed."
    if status == 409:
        return f"{_sentence(detail or 'it conflicts with the current state')} Nothing was changed."
    if status >= 500:
        return (
            "The server failed to answer this page. The error has been logged for the"
            " operators; try again in a moment."
        )
    return _sentence(detail or _phrase(status))


def _sentence(text: str) -> str:
    """A service's refusal ("job 7 is already cancelled") as a sentence."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else f"{text}."


def error_page(
    status: int, detail: str | None = None, headers: dict[str, str] | None = None
) -> ResponseReturnValue:
    """The page in the portal's layout; a bare one if the layout itself fails."""
    try:
        current_actor()
    except Exception:  # the database may be what failed: a page without the user's menu
        g.ui_actor = None
    subject = _subject()
    title = TITLES.get(status) or _phrase(status)
    message = _message(status, subject, detail)
    try:
        back = _back(subject, status)
        return render("error.html", title=title, message=message, back=back), status, headers or {}
    except Exception:
        logger.exception("the error page for %s failed", request.path)
        g.ui_actor = None
        return Response(
            f"<!doctype html><title>{title}</title><h1>{title}</h1>",
            status=status,
            headers=headers,
            mimetype="text/html",
        )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _http(error: HTTPException) -> ResponseReturnValue:
    if not is_portal_request():
        return http_error_response(error)
    status = error.code or 500
    detail = None if status in {404, 500} else error.description
    # The page's own type and length; the error's others (Allow, Retry-After) are kept.
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    return error_page(status, detail, headers)


def _credits(error: CreditsError) -> ResponseReturnValue:
    if not is_portal_request():
        return credits_error_response(error)
    return error_page(error.status, error.detail)


def _validation(error: ValidationError) -> ResponseReturnValue:
    if not is_portal_request():
        return validation_error_response(error)
    return error_page(422, "What was sent is not valid. Nothing was changed.")


def _unexpected(error: Exception) -> ResponseReturnValue:
    if not is_portal_request():
        return unexpected_error_response(error)
    logger.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return error_page(500)


def init_app(app: Flask) -> None:
    """After credits.api.problems: the same errors, HTML on portal routes."""
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(CreditsError, _credits)
    app.register_error_handler(ValidationError, _validation)
    app.register_error_handler(Exception, _unexpected)
