"""What crosses the wire to and from Label Studio, as pure functions.

- :func:`label_config` turns a :class:`LabelSchema` into Label Studio's labelling
  interface (its XML "label config"). Every config has one object tag named
  ``item`` (the text, or the image) and one control tag named ``label``
  (``Choices``, single or multiple, or ``Labels`` for spans); the text or image
  URL comes from the task's ``data.text`` or ``data.image``.
- :func:`task_data` is the ``data`` of one imported task: the item's text or
  image URL, and ``credits_item``, our reference to the item.
- :func:`parse_annotation` turns one Label Studio annotation (from the
  annotations API, a project export or a webhook) into an
  :class:`ExternalAnnotation`, its value checked with :func:`check_annotation`.
  The annotator is ``label-studio:<user id>``, Label Studio's ``completed_by``;
  an email Label Studio may send beside it is never read.
- :func:`parse_webhook` reads a webhook payload (``ANNOTATION_CREATED``,
  ``ANNOTATION_UPDATED``); :func:`verify_webhook` checks the shared secret the
  webhook sends in the :data:`WEBHOOK_SECRET_HEADER` header.
"""

from __future__ import annotations

import hmac
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from credits.errors import InvalidInput
from credits.labelling.label_schema import (
    AnnotationValue,
    LabelSchema,
    SchemaKind,
    Span,
    check_annotation,
)

OBJECT_NAME = "item"
CONTROL_NAME = "label"
TEXT_FIELD = "text"
IMAGE_FIELD = "image"
ITEM_REF_FIELD = "credits_item"
ANNOTATOR_PREFIX = "label-studio:"
WEBHOOK_SECRET_HEADER = "X-Credits-Webhook-Secret"  # noqa: S105 - a header name
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")


def label_config(schema: LabelSchema) -> str:
    """Label Studio's XML labelling interface for ``schema`` (labels XML-escaped)."""
    view = ET.Element("View")
    if schema.kind is SchemaKind.TEXT_SPANS:
        control = ET.SubElement(view, "Labels", name=CONTROL_NAME, toName=OBJECT_NAME)
        for label in schema.labels:
            ET.SubElement(control, "Label", value=label)
        ET.SubElement(view, "Text", name=OBJECT_NAME, value=f"${TEXT_FIELD}")
        return ET.tostring(view, encoding="unicode")
    if schema.is_image:
        ET.SubElement(view, "Image", name=OBJECT_NAME, value=f"${IMAGE_FIELD}")
    else:
        ET.SubElement(view, "Text", name=OBJECT_NAME, value=f"${TEXT_FIELD}")
    control = ET.SubElement(
        view,
        "Choices",
        name=CONTROL_NAME,
        toName=OBJECT_NAME,
        choice="multiple" if schema.kind is SchemaKind.MULTI_LABEL else "single",
        # A multi-label answer may apply no label at all.
        required="false" if schema.kind is SchemaKind.MULTI_LABEL else "true",
    )
    for label in schema.labels:
        ET.SubElement(control, "Choice", value=label)
    return ET.tostring(view, encoding="unicode")


def task_data(schema: LabelSchema, *, item_ref: str, content: str) -> dict[str, str]:
    """A task's ``data``: ``content`` is the item's text, or its image's URL."""
    return {IMAGE_FIELD if schema.is_image else TEXT_FIELD: content, ITEM_REF_FIELD: item_ref}


class ExternalAnnotation(BaseModel):
    """One completed annotation in Label Studio, in our terms."""

    model_config = ConfigDict(frozen=True)

    task_id: int
    item_ref: str
    annotation_id: int
    annotator_ref: str
    value: AnnotationValue
    lead_time_seconds: float | None
    created_at: datetime | None


class WebhookEvent(BaseModel):
    """A webhook call: its action, project, and the annotation it carries (if any)."""

    model_config = ConfigDict(frozen=True)

    action: str
    project_id: int | None
    annotation: ExternalAnnotation | None


def parse_annotation(
    schema: LabelSchema, annotation: Mapping[str, Any], task: Mapping[str, Any]
) -> ExternalAnnotation:
    """An annotation as Label Studio sends it, with the task it belongs to.

    Raises InvalidInput naming the annotation when it is not one of ours (no
    ``credits_item``), was skipped, or does not fit the schema.
    """
    annotation_id = _int(annotation.get("id"), "annotation id")
    try:
        return _parsed(schema, annotation, task, annotation_id)
    except InvalidInput as error:
        raise InvalidInput(
            f"Label Studio annotation {annotation_id}: {error.detail}",
            annotation_id=annotation_id,
        ) from None


def _parsed(
    schema: LabelSchema, annotation: Mapping[str, Any], task: Mapping[str, Any], annotation_id: int
) -> ExternalAnnotation:
    if annotation.get("was_cancelled"):
        raise InvalidInput("the annotator skipped the task")
    task_id = _int(task.get("id", annotation.get("task")), "task id")
    data = task.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get(ITEM_REF_FIELD), str):
        raise InvalidInput(f"task {task_id} has no {ITEM_REF_FIELD}: not imported by credits")
    text = data.get(TEXT_FIELD)
    value = check_annotation(
        schema,
        _value(schema, annotation.get("result")),
        text_length=len(text) if isinstance(text, str) else None,
    )
    return ExternalAnnotation(
        task_id=task_id,
        item_ref=data[ITEM_REF_FIELD],
        annotation_id=annotation_id,
        annotator_ref=annotator_ref(annotation.get("completed_by")),
        value=value,
        lead_time_seconds=_lead_time(annotation.get("lead_time")),
        created_at=_timestamp(annotation.get("created_at")),
    )


def annotator_ref(completed_by: Any) -> str:
    """``label-studio:<user id>`` from ``completed_by``: an id, or a user object
    (an export's); nothing else of the user is read."""
    user = completed_by.get("id") if isinstance(completed_by, Mapping) else completed_by
    return f"{ANNOTATOR_PREFIX}{_int(user, 'completed_by')}"


def _value(schema: LabelSchema, result: Any) -> AnnotationValue:
    if not isinstance(result, list):
        raise InvalidInput("the annotation has no result list")
    labels: list[str] = []
    spans: list[Span] = []
    for region in result:
        if not isinstance(region, Mapping) or region.get("from_name") != CONTROL_NAME:
            continue  # another control (a reviewer's comment box): not the answer
        value = region.get("value")
        if not isinstance(value, Mapping):
            raise InvalidInput("a result region has no value")
        if schema.kind is SchemaKind.TEXT_SPANS:
            spans.extend(_spans(value))
        else:
            labels.extend(_strings(value.get("choices"), "choices"))
    return AnnotationValue(labels=labels, spans=spans)


def _spans(value: Mapping[str, Any]) -> list[Span]:
    start, end = value.get("start"), value.get("end")
    if not isinstance(start, int) or not isinstance(end, int) or start < 0 or end < 1:
        raise InvalidInput("a span region has no character offsets")
    return [
        Span(start=start, end=end, label=label) for label in _strings(value.get("labels"), "labels")
    ]


def _strings(values: Any, what: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidInput(f"a result region's {what} are not a list of strings")
    return list(values)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"the {what} is missing or not an integer")
    return value


def _lead_time(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_webhook(schema: LabelSchema, payload: Any) -> WebhookEvent:
    """A webhook's JSON body. ``ANNOTATION_CREATED``/``_UPDATED`` carry the
    annotation (raises InvalidInput when it is not usable); other actions none."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("action"), str):
        raise InvalidInput("a Label Studio webhook body has an action")
    action = payload["action"]
    project = payload.get("project")
    project_id = project.get("id") if isinstance(project, Mapping) else None
    event_project = project_id if isinstance(project_id, int) else None
    if action not in WEBHOOK_ACTIONS:
        return WebhookEvent(action=action, project_id=event_project, annotation=None)
    annotation, task = payload.get("annotation"), payload.get("task")
    if not isinstance(annotation, Mapping) or not isinstance(task, Mapping):
        raise InvalidInput(f"a {action} webhook carries its annotation and task")
    return WebhookEvent(
        action=action,
        project_id=event_project,
        annotation=parse_annotation(schema, annotation, task),
    )


def verify_webhook(headers: Mapping[str, str], secret: SecretStr | str) -> bool:
    """True when the request carries the shared secret (compared in constant time).

    Without a configured secret nothing is accepted. ``headers`` may be a
    request's headers or a plain dict (looked up ignoring case).
    """
    expected = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not expected:
        return False
    wanted = WEBHOOK_SECRET_HEADER.casefold()
    given = next((v for k, v in headers.items() if k.casefold() == wanted), None)
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
