"""The web tier's side of observability: a request id on every request, its
latency in the histogram, ledger operations counted, and ``GET /metrics``.

``init_app(app)`` wires it in; the app's settings and session factory come from
``app.extensions`` as every blueprint's do.

Access to ``/metrics``: with ``CREDITS_METRICS_TOKEN`` set, a scraper sends
``Authorization: Bearer <token>``; without it, only a request from the loopback
address is answered (the embedded profile, or a sidecar in the same pod).
Anything else gets a 404 problem, as if there were no such page.
"""

from __future__ import annotations

import hmac
import logging
import time
from ipaddress import ip_address

from flask import Blueprint, Flask, Response, g, request
from flask.typing import ResponseReturnValue

from credits.api.auth import credits_extension, session_factory
from credits.errors import NotFound
from credits.observability.collector import DatabaseCollector
from credits.observability.metrics import (
    LEDGER_OPERATIONS,
    PROMETHEUS_TEXT,
    REQUEST_SECONDS,
    REQUESTS_IN_PROGRESS,
    UNMATCHED_ROUTE,
    metrics_text,
)
from credits.observability.request_ids import (
    HEADER,
    accepted_request_id,
    bind_request_id,
    reset_request_id,
)

logger = logging.getLogger("credits.request")

blueprint = Blueprint("observability", __name__)

# The endpoints that move credits (the JSON API's and the portal's forms), and the
# ledger operation each asks for; their refusals answer 4xx in both.
LEDGER_ENDPOINTS = {
    "jobs.submit_job": "hold",
    "ui_jobs.submit_job": "hold",
    "labelling_orders.place_order": "hold",
    "ui_labelling.place": "hold",
    "jobs.cancel_job": "void",
    "ui_jobs.cancel_job": "void",
    "labelling_orders.cancel_order": "void",
    "ui_labelling.cancel": "void",
    "labelling_orders.accept_order": "capture",
    "ui_labelling.accept": "capture",
    "labelling_orders.resolve_order": "capture",
    "ui_labelling_ops.resolve": "capture",
    "grants.fund_program": "fund",
    "ui_funder.fund": "fund",
    "proposals.award_proposal": "grant",
    "ui_funder.award": "grant",
    "ui_funder_tranches.release": "grant",
    "ui_ops.adjust": "adjust",
}


# Any token is a method to HTTP: others are counted together, so a client cannot
# grow the label set without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def ledger_result(status: int) -> str:
    """ok for a success, error for the server's fault, refused for the caller's."""
    if status < 400:
        return "ok"
    return "error" if status >= 500 else "refused"


def _start_request() -> None:
    g.credits_request_id = accepted_request_id(request.headers.get(HEADER))
    g.credits_request_id_token = bind_request_id(g.credits_request_id)
    g.credits_request_started = time.perf_counter()
    REQUESTS_IN_PROGRESS.inc()


def _finish_request(response: Response) -> Response:
    request_id = g.get("credits_request_id")
    if request_id is None:
        return response  # before_request never ran (an earlier hook answered)
    response.headers[HEADER] = request_id
    seconds = time.perf_counter() - g.credits_request_started
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    status = response.status_code
    method = request.method if request.method in KNOWN_METHODS else "other"
    REQUEST_SECONDS.labels(route, method, str(status)).observe(seconds)
    kind = LEDGER_ENDPOINTS.get(request.endpoint or "")
    if kind is not None:
        LEDGER_OPERATIONS.labels(kind, ledger_result(status)).inc()
    logger.info("%s %s %s %.1f ms", method, route, status, seconds * 1000.0)
    return response


def _end_request(_error: BaseException | None) -> None:
    token = g.pop("credits_request_id_token", None)
    if token is None:
        return
    REQUESTS_IN_PROGRESS.dec()
    reset_request_id(token)


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ip_address(address).is_loopback
    except ValueError:
        return False


def _may_scrape(token: str) -> bool:
    if not token:
        return _is_loopback(request.remote_addr)
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


@blueprint.get("/metrics")
def metrics() -> ResponseReturnValue:
    if not _may_scrape(credits_extension().settings.metrics_token.get_secret_value()):
        raise NotFound("There is no such page.")
    body = metrics_text(DatabaseCollector(session_factory()))
    return Response(body, mimetype=None, content_type=PROMETHEUS_TEXT)


def init_app(app: Flask) -> None:
    """Request ids, request metrics and ``/metrics``; call it before other hooks so
    the id is bound for everything that logs afterwards."""
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request(_finish_request)
    app.teardown_request(_end_request)
    app.register_blueprint(blueprint)
