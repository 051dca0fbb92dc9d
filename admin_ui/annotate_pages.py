"""An annotator's pages: their queues, and one item at a time with a button per label.

``/annotate`` lists the in-house orders the annotator is assigned to and what
is left for them in each. ``/annotate/<order_id>`` serves their open item or the
next one (credits/labelling/queue.py) with the order's instructions; the answer
is posted back and the page moves on. Keys 1-9 pick (or, multi-label, toggle) a
label, Enter submits, S skips; for text spans, select text and press the
label's key (static/annotate.js). The page measures the seconds the item was on
screen; the server caps them by the time since the item was served. An
annotator sees nothing else of an order: no credits, no other annotators, no
sign of which items are gold. Anyone else gets a 404.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError

from admin_ui.web import login_required, render, require_role, transaction
from credits.api.auth import writes
from credits.api.datasets import blob_store
from credits.errors import CreditsError, NotFound
from credits.identity.models import Role
from credits.labelling import queue
from credits.labelling.errors import AssignmentClosed, ImageTakenDown
from credits.labelling.items import served_image_type
from credits.labelling.label_schema import AnnotationValue, SchemaKind

blueprint = Blueprint("ui_annotate", __name__)
KEYS = "123456789"


@blueprint.get("/annotate")
@login_required
def queues() -> ResponseReturnValue:
    me = require_role(Role.ANNOTATOR)
    with transaction() as db:
        rows = queue.my_queues(db, me)
    return render("annotate/queues.html", rows=rows)


@blueprint.get("/annotate/<int:order_id>")
@login_required
@writes  # serving an item assigns it to the annotator and notes when
def next_item(order_id: int) -> ResponseReturnValue:
    return _item_page(order_id)


def _item_page(
    order_id: int, *, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    me = require_role(Role.ANNOTATOR)
    try:
        with transaction() as db:
            served = queue.next_item(db, me, order_id=order_id)
            summary = next(row for row in queue.my_queues(db, me) if row.order_id == order_id)
    except NotFound:
        abort(404)
    kind = None if served is None else served.label_schema.kind
    page = render(
        "annotate/item.html",
        served=served,
        summary=summary,
        keys=KEYS,
        error=error,
        multi=kind is SchemaKind.MULTI_LABEL,
        spans=kind is SchemaKind.TEXT_SPANS,
    )
    return page, status


@blueprint.post("/annotate/<int:order_id>/assignments/<int:assignment_id>")
@login_required
def submit(order_id: int, assignment_id: int) -> ResponseReturnValue:
    me = require_role(Role.ANNOTATOR)
    try:
        value = _answer(request.form)
    except (ValueError, ValidationError):
        return _item_page(order_id, error=_UNREADABLE, status=422)
    try:
        with transaction() as db:
            queue.submit(
                db, me, assignment_id=assignment_id, value=value, seconds=_seconds(request.form)
            )
    except NotFound:
        abort(404)
    except AssignmentClosed as closed:
        flash(str(closed))
    except CreditsError as refusal:
        return _item_page(order_id, error=f"{refusal} Nothing was recorded.", status=422)
    return redirect(url_for(".next_item", order_id=order_id))


_UNREADABLE = "Pick a label (or mark a span) before submitting. Nothing was recorded."


def _answer(form: Any) -> AnnotationValue:
    """Labels from the pressed button or ticked boxes, or the spans the page collected."""
    spans = form.get("spans", "").strip()
    return AnnotationValue(
        labels=[label for label in form.getlist("label") if label],
        spans=json.loads(spans) if spans else [],
    )


def _seconds(form: Any) -> float | None:
    """What the page measured; None (the server's own count) when it measured nothing."""
    try:
        seconds = float(form.get("seconds", ""))
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@blueprint.post("/annotate/<int:order_id>/assignments/<int:assignment_id>/skip")
@login_required
def skip(order_id: int, assignment_id: int) -> ResponseReturnValue:
    me = require_role(Role.ANNOTATOR)
    try:
        with transaction() as db:
            queue.skip(db, me, assignment_id=assignment_id)
    except NotFound:
        abort(404)
    except AssignmentClosed as closed:
        flash(str(closed))
    return redirect(url_for(".next_item", order_id=order_id))


@blueprint.get("/annotate/assignments/<int:assignment_id>/image")
@login_required
def image(assignment_id: int) -> ResponseReturnValue:
    """The image served in one of the annotator's assignments, from the blob store."""
    me = require_role(Role.ANNOTATOR)
    try:
        with transaction() as db:
            sha256, media_type = queue.assignment_image(db, me, assignment_id=assignment_id)
    except NotFound:
        abort(404)
    except ImageTakenDown:
        abort(410)
    store = blob_store()
    response = Response(
        store.open_range(sha256),
        content_type=served_image_type(media_type),
        direct_passthrough=True,
    )
    response.headers["Content-Length"] = str(store.size(sha256))
    response.headers["Cache-Control"] = "private, max-age=60"  # a take-down: within a minute
    return response
