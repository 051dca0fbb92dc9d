"""Labelling orders in the browser, for the projects' researchers (and ops, who see all).

``/labelling`` lists the orders of my projects; ``/labelling/orders/new`` makes a
draft from a form with uploaded items (CSV or JSON Lines, or image files) or a
dataset version's file; an order's page shows its figures, progress, agreement
and gold accuracy, and has a button for each action its state allows. An order
or project out of the caller's reach is a 404. A refusal is shown on the page
and nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from admin_ui.labelling_form import (
    DEFAULTS,
    FORM_FIELDS,
    OrderForm,
    estimate_label,
    parse_order_form,
    refusal_field,
    source_versions,
    target_choices,
)
from admin_ui.labelling_view import ACTIONS, order_page_context
from admin_ui.web import (
    actor,
    login_required,
    render,
    require_role,
    transaction,
)
from credits import formatting as fmt
from credits.api.auth import session_factory
from credits.api.datasets import blob_store
from credits.errors import CreditsError, InvalidInput, NotFound
from credits.grants.queries import MAX_PAGE
from credits.identity.access import list_projects_for_actor
from credits.identity.actor import Actor
from credits.identity.models import Role
from credits.labelling import items as item_sources
from credits.labelling import orders, progress, vendors
from credits.labelling.access import load_order
from credits.labelling.models import SourceKind
from credits.labelling.queries import list_orders
from credits.labelling.schemas import ItemIn, OrderIn, OrderSource
from credits.ledger.errors import InsufficientCredits
from credits.storage import StorageUnavailable

logger = logging.getLogger(__name__)
blueprint = Blueprint("ui_labelling", __name__)
T = TypeVar("T")
_FIX = "Nothing was created: correct the marked fields."


def _or_404(load: Callable[[], T]) -> T:
    try:
        return load()
    except NotFound:
        abort(404)


def _me() -> Actor:
    return require_role(Role.RESEARCHER, Role.OPS)


@blueprint.get("/labelling")
@login_required
def list_labelling_orders() -> ResponseReturnValue:
    me = _me()
    with transaction() as db:
        found = list_orders(db, me, limit=MAX_PAGE)
        projects = list_projects_for_actor(db, me, limit=MAX_PAGE).items
    titles = {project.id: project.title for project in projects}
    return render(
        "labelling/list.html",
        orders=found,
        titles=titles,
        can_create=me.has_role(Role.RESEARCHER) and bool(projects),
    )


# A new order.


def _form_page(
    form: OrderForm, *, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    me = _me()
    with transaction() as db:
        projects = list_projects_for_actor(db, me, limit=MAX_PAGE).items
        offered = vendors.list_vendors(db)
        versions = source_versions(db, me)
        targets = target_choices(versions, db)
    page = render(
        "labelling/new.html",
        values=form.values,
        errors=form.errors,
        error=error,
        projects=projects,
        vendors=offered,
        estimates={vendor.id: estimate_label(vendor) for vendor in offered},
        versions=versions,
        targets=targets,
    )
    return page, status


@blueprint.get("/labelling/orders/new")
@login_required
def new_order() -> ResponseReturnValue:
    require_role(Role.RESEARCHER)
    values = {name: request.args.get(name, DEFAULTS.get(name, "")) for name in FORM_FIELDS}
    return _form_page(OrderForm(values=values))


@blueprint.post("/labelling/orders/new")
@login_required
def create_order() -> ResponseReturnValue:
    me = require_role(Role.RESEARCHER)
    with transaction() as db:
        offered = vendors.list_vendors(db)
    form = parse_order_form(request.form, offered)
    if form.order is None:
        return _form_page(form, error=_FIX, status=422)
    try:
        # Images are stored before the order's transaction; a refusal of them or of the
        # order removes what was stored, in sessions of its own.
        images = _image_items() if form.values["source"] == "images" else None
        try:
            with transaction() as db:
                items, source = images or _items(db, me, form.order, form.values)
                created = orders.create_order(
                    db, order=form.order, items=items, source=source, actor=me, store=blob_store()
                )
        except Exception:
            if images is not None:  # refused: nothing keeps the images it stored
                _forget_images(images[0])
            raise
    except CreditsError as refusal:
        if isinstance(refusal, StorageUnavailable):  # an image's bytes were removed meanwhile
            images_sent = form.values["source"] == "images"
            refusal.extra.setdefault("field", "image_files" if images_sent else "version_id")
        form.errors[refusal_field(refusal)] = str(refusal)
        return _form_page(form, error=_FIX, status=422)
    except ValidationError as invalid:  # items the service re-validates
        form.errors["items_file"] = str(invalid.errors()[0].get("msg", "an item is not valid"))
        return _form_page(form, error=_FIX, status=422)
    flash(f"Order {created.id} created with {created.items} items. Quote it to see its cost.")
    return redirect(url_for(".order_page", order_id=created.id))


def _items(
    db: Session, me: Actor, order: OrderIn, values: dict[str, str]
) -> tuple[list[ItemIn], OrderSource]:
    """The order's items from a file the form uploaded or a dataset version it chose
    (images: :func:`_image_items`). Raises CreditsError naming the field."""
    source = values["source"]
    if source == "dataset":
        version = _version_id(values["version_id"])
        with _on_field(lambda error: "version_id" if error.status in {403, 404} else "file_name"):
            return item_sources.items_from_dataset_version(
                db,
                me,
                version_id=version,
                file_name=values["file_name"].strip() or None,
                schema=order.label_schema,
                store=blob_store(),
            )
    upload = request.files.get("items_file")
    if not isinstance(upload, FileStorage) or not upload.filename:
        raise _missing("items_file", "choose a CSV or JSON Lines file of items")
    name = upload.filename
    with _on_field(lambda _: "items_file"):
        found = item_sources.items_from_upload(
            upload.read(), file_name=name, schema=order.label_schema
        )
    return found, OrderSource(kind=SourceKind.UPLOAD, name=name)


def _image_items() -> tuple[list[ItemIn], OrderSource]:
    """The order's items from the uploaded image files, stored. Raises CreditsError
    naming the field."""
    files = [file for file in request.files.getlist("image_files") if file.filename]
    if not files:
        raise _missing("image_files", "choose one or more image files")
    images = [(file.filename or "", file.read()) for file in files]
    with _on_field(lambda _: "image_files"):
        found = item_sources.items_from_images(blob_store(), images, factory=session_factory())
    return found, OrderSource(kind=SourceKind.UPLOAD, name=f"{len(files)} images")


def _forget_images(items: list[ItemIn]) -> None:
    """Removes a refused order's stored images; a failure to is logged, never shown
    in place of the refusal the user must see."""
    try:
        item_sources.forget_image_items(blob_store(), items, factory=session_factory())
    except Exception:
        logger.warning("could not remove the images of a refused order", exc_info=True)


@contextmanager
def _on_field(name_of: Callable[[CreditsError], str]) -> Iterator[None]:
    """A refusal of what was uploaded or chosen lands on the field it came from."""
    try:
        yield
    except CreditsError as error:
        error.extra.setdefault("field", name_of(error))
        raise


def _version_id(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise _missing("version_id", "choose a dataset version") from None


def _missing(name: str, message: str) -> CreditsError:
    return InvalidInput(message, field=name)


# One order.


@blueprint.get("/labelling/orders/<int:order_id>")
@login_required
def order_page(order_id: int) -> ResponseReturnValue:
    me = _me()
    with transaction() as db:
        context = _or_404(lambda: order_page_context(db, me, order_id))
    return render("labelling/order.html", **context, error=None)


def _order_action(order_id: int, action: Callable[[Session, Actor], str]) -> ResponseReturnValue:
    """Runs one action in one transaction; its refusal is shown on the order page."""
    me = require_role(Role.RESEARCHER, Role.OPS)
    try:
        with transaction() as db:
            message = action(db, me)
    except NotFound:
        abort(404)
    except InsufficientCredits as short:
        return _refused(order_id, _short_message(short), 402)
    except CreditsError as refusal:
        return _refused(order_id, str(refusal), refusal.status)
    flash(message)
    return redirect(url_for(".order_page", order_id=order_id))


def _short_message(short: InsufficientCredits) -> str:
    required = short.extra.get("required")
    available = short.extra.get("available")
    if isinstance(required, int) and isinstance(available, int):
        return (
            f"Not enough labelling credits: the order needs {fmt.money(required, 'label')}"
            f" and the project has {fmt.money(available, 'label')} available. Nothing was held."
        )
    return f"{short} Nothing was held."


def _refused(order_id: int, message: str, status: int) -> ResponseReturnValue:
    me = actor()
    with transaction() as db:
        context = _or_404(lambda: order_page_context(db, me, order_id))
    return render("labelling/order.html", **context, error=message), status


def _simple_action(order_id: int, action: str) -> ResponseReturnValue:
    run, done = ACTIONS[action]

    def act(db: Session, me: Actor) -> str:
        run(db, order_id=order_id, actor=me)
        return done

    return _order_action(order_id, act)


@blueprint.post("/labelling/orders/<int:order_id>/quote")
@login_required
def quote(order_id: int) -> ResponseReturnValue:
    return _simple_action(order_id, "quote")


@blueprint.post("/labelling/orders/<int:order_id>/place")
@login_required
def place(order_id: int) -> ResponseReturnValue:
    return _simple_action(order_id, "place")


@blueprint.post("/labelling/orders/<int:order_id>/accept")
@login_required
def accept(order_id: int) -> ResponseReturnValue:
    return _simple_action(order_id, "accept")


@blueprint.post("/labelling/orders/<int:order_id>/cancel")
@login_required
def cancel(order_id: int) -> ResponseReturnValue:
    reason = request.form.get("reason", "").strip() or None

    def act(db: Session, me: Actor) -> str:
        orders.cancel_order(db, order_id=order_id, actor=me, reason=reason)
        return "Order cancelled: what it held and had not charged was released."

    return _order_action(order_id, act)


@blueprint.post("/labelling/orders/<int:order_id>/dispute")
@login_required
def dispute(order_id: int) -> ResponseReturnValue:
    reason = request.form.get("reason", "")

    def act(db: Session, me: Actor) -> str:
        orders.dispute_order(db, order_id=order_id, actor=me, reason=reason)
        return "Order disputed: deliveries are no longer charged until ops resolve it."

    return _order_action(order_id, act)


@blueprint.post("/labelling/orders/<int:order_id>/annotators")
@login_required
def assign(order_id: int) -> ResponseReturnValue:
    emails = request.form.get("annotators", "").replace(",", "\n").splitlines()

    def act(db: Session, me: Actor) -> str:
        load_order(db, me, order_id)
        user_ids = progress.annotator_ids(db, emails)
        orders.assign_annotators(db, order_id=order_id, user_ids=user_ids, actor=me)
        return f"{len(user_ids)} annotator(s) assigned."

    return _order_action(order_id, act)
