"""What an order asks annotators to produce, and what one annotation of an item looks like.

A label schema has a kind and a closed list of labels:

- ``single_label``: exactly one label per item (text classification);
- ``multi_label``: any number of distinct labels per item, none included;
- ``text_spans``: spans ``{start, end, label}`` over the item's text, ``end``
  exclusive, in characters, not overlapping with the same label;
- ``image_classification``: exactly one label per image item.

Every adapter (in-house portal, Label Studio, a vendor's invoice) turns what it
receives into an :class:`AnnotationValue` through :func:`check_annotation`, so
agreement, gold accuracy and the delivered JSON Lines see one shape.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from credits.errors import InvalidInput

MAX_LABELS = 50
LABEL_MAX_LENGTH = 100
MAX_SPANS = 500

LabelName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=LABEL_MAX_LENGTH)
]


class SchemaKind(StrEnum):
    SINGLE_LABEL = "single_label"
    MULTI_LABEL = "multi_label"
    TEXT_SPANS = "text_spans"
    IMAGE_CLASSIFICATION = "image_classification"


# The task kinds a vendor may support are the schema kinds.
TaskKind = SchemaKind


class LabelSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: SchemaKind
    labels: list[LabelName] = Field(min_length=1, max_length=MAX_LABELS)

    @model_validator(mode="after")
    def _distinct_labels(self) -> LabelSchema:
        if len({label.casefold() for label in self.labels}) != len(self.labels):
            raise ValueError("labels must be distinct (ignoring case)")
        if self.kind in (SchemaKind.SINGLE_LABEL, SchemaKind.IMAGE_CLASSIFICATION) and (
            len(self.labels) < 2
        ):
            raise ValueError("a classification needs at least two labels")
        return self

    @property
    def is_image(self) -> bool:
        return self.kind is SchemaKind.IMAGE_CLASSIFICATION


class Span(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0, strict=True)
    end: int = Field(ge=1, strict=True)
    label: str


class AnnotationValue(BaseModel):
    """One annotator's answer for one item: labels, or spans for ``text_spans``."""

    model_config = ConfigDict(extra="forbid")

    labels: list[str] = Field(default_factory=list)
    spans: list[Span] = Field(default_factory=list)

    def label_count(self) -> int:
        """How many labels this answer applies: what a per-label price counts."""
        return len(self.spans) if self.spans else len(self.labels)


def check_annotation(
    schema: LabelSchema, value: AnnotationValue, *, text_length: int | None = None
) -> AnnotationValue:
    """The answer, with labels in the schema's order, or InvalidInput naming what is wrong.

    ``text_length`` bounds span offsets for ``text_spans`` when the item's text is known.
    """
    known = set(schema.labels)
    unknown = sorted({*value.labels, *(span.label for span in value.spans)} - known)
    if unknown:
        raise InvalidInput(f"unknown label(s) {', '.join(map(repr, unknown))}")
    if schema.kind is SchemaKind.TEXT_SPANS:
        return _checked_spans(value, text_length)
    if value.spans:
        raise InvalidInput(f"a {schema.kind.value} answer has labels, not spans")
    if len(set(value.labels)) != len(value.labels):
        raise InvalidInput("a label may be given only once per item")
    if schema.kind is not SchemaKind.MULTI_LABEL and len(value.labels) != 1:
        raise InvalidInput(f"a {schema.kind.value} answer has exactly one label")
    ordered = [label for label in schema.labels if label in value.labels]
    return AnnotationValue(labels=ordered)


def _checked_spans(value: AnnotationValue, text_length: int | None) -> AnnotationValue:
    if value.labels:
        raise InvalidInput("a text_spans answer has spans, not labels")
    if len(value.spans) > MAX_SPANS:
        raise InvalidInput(f"at most {MAX_SPANS} spans per item")
    spans = sorted(value.spans, key=lambda span: (span.start, span.end, span.label))
    for span in spans:
        if span.end <= span.start:
            raise InvalidInput(f"a span must end after it starts ({span.start}..{span.end})")
        if text_length is not None and span.end > text_length:
            raise InvalidInput(f"span {span.start}..{span.end} runs past the text's end")
    for label in {span.label for span in spans}:
        same = [span for span in spans if span.label == label]
        for earlier, later in itertools.pairwise(same):
            if later.start < earlier.end:
                raise InvalidInput(f"two {label!r} spans overlap at {later.start}")
    return AnnotationValue(spans=spans)
