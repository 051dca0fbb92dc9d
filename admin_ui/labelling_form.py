"""The new-labelling-order form: from what was typed and uploaded to an OrderIn, with
errors by field.

Labels are one per line; the estimate is read as labels per item or seconds per
item, whichever the chosen vendor's price needs; items come from an uploaded
CSV or JSON Lines file, from image files, or from a file of a dataset version.
A pydantic ValidationError and a service's CreditsError both come back as an
error on the field they concern, and nothing is created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits import formatting as fmt
from credits.datasets import queries as dataset_queries
from credits.datasets.models import Dataset, VersionState
from credits.datasets.schemas import VersionSummary
from credits.errors import CreditsError
from credits.identity.actor import Actor
from credits.labelling.errors import VendorMismatch, VendorNotFound
from credits.labelling.label_schema import SchemaKind
from credits.labelling.models import PriceUnit
from credits.labelling.pricing import needs_estimate
from credits.labelling.schemas import OrderIn, VendorOut

FORM_FIELDS = (
    "project_id",
    "vendor_id",
    "title",
    "instructions",
    "schema_kind",
    "labels",
    "redundancy",
    "estimate",
    "source",
    "version_id",
    "file_name",
    "target_dataset_id",
)
# Fields a refusal may name that are not typed values: the uploads.
UPLOAD_FIELDS = ("items_file", "image_files")
DEFAULTS = {"redundancy": "1", "schema_kind": SchemaKind.SINGLE_LABEL.value, "source": "upload"}
SOURCES = ("upload", "images", "dataset")
# Where an OrderIn field's error lands on the form.
MODEL_TO_FORM = {
    "label_schema": "labels",
    "expected_labels_per_item": "estimate",
    "expected_seconds_per_item": "estimate",
}


@dataclass
class OrderForm:
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    order: OrderIn | None = None


@dataclass(frozen=True)
class TargetChoice:
    dataset_id: int
    title: str
    project_id: int


def parse_order_form(form: Mapping[str, str], vendors: Sequence[VendorOut]) -> OrderForm:
    """The typed values, parsed into an OrderIn when they make one (items come later)."""
    values = {name: str(form.get(name, "") or DEFAULTS.get(name, "")) for name in FORM_FIELDS}
    parsed = OrderForm(values=values)
    errors = parsed.errors
    document: dict[str, Any] = {
        "title": values["title"],
        "instructions": values["instructions"],
    }
    for name in ("project_id", "vendor_id", "redundancy"):
        number = _whole(values[name], errors, name)
        if number is not None:
            document[name] = number
    if values["target_dataset_id"].strip():
        target = _whole(values["target_dataset_id"], errors, "target_dataset_id")
        document["target_dataset_id"] = target
    labels = [line.strip() for line in values["labels"].splitlines() if line.strip()]
    if not labels:
        errors["labels"] = "give the labels, one per line"
    document["label_schema"] = {"kind": values["schema_kind"], "labels": labels}
    if values["source"] not in SOURCES:
        errors["source"] = "choose where the items come from"
    vendor = next((v for v in vendors if str(v.id) == values["vendor_id"].strip()), None)
    if vendor is None and "vendor_id" not in errors:
        errors["vendor_id"] = "choose one of the vendors listed"
    estimate_field = _estimate_field(vendor, values["schema_kind"])
    if estimate_field is not None:
        estimate = _estimate(values["estimate"], errors)
        if estimate is not None:
            document[estimate_field] = estimate
    if errors:
        return parsed
    try:
        parsed.order = OrderIn.model_validate(document)
    except ValidationError as invalid:
        errors.update(validation_errors(invalid))
    return parsed


def _whole(text: str, errors: dict[str, str], name: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        errors[name] = "choose one" if name != "redundancy" else "give a whole number"
        return None
    if value < 1:
        errors[name] = "give a whole number of at least 1"
        return None
    return value


def _estimate_field(vendor: VendorOut | None, kind: str) -> str | None:
    """The OrderIn field the estimate fills for this vendor's price, or None."""
    if vendor is None or vendor.price is None:
        return None
    try:
        schema_kind = SchemaKind(kind)
    except ValueError:
        return None
    if not needs_estimate(vendor.price.unit, schema_kind):
        return None
    if vendor.price.unit is PriceUnit.ANNOTATOR_HOUR:
        return "expected_seconds_per_item"
    return "expected_labels_per_item"


def estimate_label(vendor: VendorOut) -> str | None:
    """What the estimate means for a vendor whose price needs one (any task kind)."""
    if vendor.price is None:
        return None
    if vendor.price.unit is PriceUnit.ANNOTATOR_HOUR:
        return "seconds per item"
    if vendor.price.unit is PriceUnit.LABEL:
        return "labels per item (multi-label and span tasks)"
    return None


def _estimate(text: str, errors: dict[str, str]) -> Decimal | None:
    if not text.strip():
        errors["estimate"] = "this vendor's price needs an estimate per item"
        return None
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        errors["estimate"] = "give a number, for example 2.5"
        return None
    if not value.is_finite() or value <= 0:
        errors["estimate"] = "give a number above 0"
        return None
    return value


def validation_errors(invalid: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in invalid.errors():
        location = problem.get("loc") or ("form",)
        name = str(location[0])
        if name == "label_schema" and len(location) > 1 and location[1] == "kind":
            name = "schema_kind"
        name = MODEL_TO_FORM.get(name, name)
        if name not in FORM_FIELDS:
            name = "form"
        message = fmt.validation_message(problem)
        errors.setdefault(name, message)
    return errors


def refusal_field(error: CreditsError) -> str:
    """The form field a service's refusal of a new order concerns."""
    named = error.extra.get("field")
    if isinstance(named, str) and named in FORM_FIELDS + UPLOAD_FIELDS:
        return named
    if isinstance(error, VendorNotFound):
        return "vendor_id"
    if isinstance(error, VendorMismatch):
        return "redundancy" if "annotators per item" in error.detail else "vendor_id"
    if error.status == 404:
        return "project_id"
    if "is not a dataset of project" in error.detail:
        return "target_dataset_id"
    return "items_file"


def source_versions(session: Session, actor: Actor) -> list[VersionSummary]:
    """The dataset versions (drafts included) of the actor's projects, newest first."""
    return dataset_queries.list_versions(
        session, actor, states=tuple(VersionState), limit=dataset_queries.MAX_PAGE
    ).items


def target_choices(versions: Sequence[VersionSummary], session: Session) -> list[TargetChoice]:
    """Each dataset the listed versions belong to, under its newest version's title."""
    newest: dict[str, VersionSummary] = {}
    for version in versions:
        if version.concept_id not in newest or version.number > newest[version.concept_id].number:
            newest[version.concept_id] = version
    if not newest:
        return []
    rows = session.execute(
        select(Dataset.id, Dataset.concept_id).where(Dataset.concept_id.in_(list(newest)))
    ).all()
    return sorted(
        (
            TargetChoice(dataset_id, newest[concept].title, newest[concept].project_id)
            for dataset_id, concept in rows
        ),
        key=lambda choice: choice.title.casefold(),
    )
