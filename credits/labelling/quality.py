"""How far an order's annotators agree, and how often each gets the gold items right.

Agreement is Krippendorff's alpha at the nominal level (the ``krippendorff``
package), over the items that have at least two annotations; gold items count
like any other item (annotators do not know which they are). What the units
and values are depends on the schema:

- single-label and image classification: the order's alpha has one unit per
  item, and each annotator's label is the value;
- per label, for every kind: one unit per item, and the value is whether the
  annotator applied the label (binary presence). For text spans presence means
  "marked at least one span with this label in the item": span boundaries are
  not compared (a simplification; boundary agreement needs a unitizing alpha);
- multi-label and text spans: the order's alpha pools those binary decisions,
  one unit per (item, label).

Alpha is undefined, and reported as None, when no item has two annotations or
every compared value is the same (no disagreement can be expected by chance).

Gold accuracy is, per annotator (under the order's pseudonym), the share of
their answers to gold items that equal the gold answer exactly: the same set
of labels, or for text spans the same set of spans.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import krippendorff
import numpy as np
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.identity.actor import Actor
from credits.labelling.access import load_order
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind
from credits.labelling.models import Annotation, Item, Order

CLASSIFICATION = frozenset({SchemaKind.SINGLE_LABEL, SchemaKind.IMAGE_CLASSIFICATION})


class LabelAgreement(BaseModel):
    label: str
    alpha: float | None


class GoldAccuracy(BaseModel):
    annotator: str
    gold_answers: int
    correct: int
    accuracy: float | None


class OrderQuality(BaseModel):
    order_id: int
    kind: SchemaKind
    annotations: int
    items_compared: int
    alpha: float | None
    labels: list[LabelAgreement]
    gold: list[GoldAccuracy]


@dataclass(frozen=True)
class Answer:
    item_id: int
    annotator: str
    value: AnnotationValue


def nominal_alpha(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's nominal alpha over units, each the values its coders gave; units
    with fewer than two values are left out. None when alpha is undefined."""
    pairable = [list(values) for values in units if len(values) >= 2]
    categories = sorted({value for values in pairable for value in values}, key=repr)
    if not pairable or len(categories) < 2:
        return None
    column = {category: index for index, category in enumerate(categories)}
    counts = np.zeros((len(pairable), len(categories)))
    for row, values in enumerate(pairable):
        for value in values:
            counts[row, column[value]] += 1
    alpha = float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))
    return alpha if math.isfinite(alpha) else None


def applied_labels(value: AnnotationValue) -> frozenset[str]:
    """The labels an answer applies: its labels, or the labels of its spans."""
    return frozenset(value.labels) | frozenset(span.label for span in value.spans)


def quality_of(
    schema: LabelSchema, answers: Sequence[Answer], gold: dict[int, AnnotationValue]
) -> tuple[float | None, int, list[LabelAgreement], list[GoldAccuracy]]:
    """(the order's alpha, items compared, alpha per label, gold accuracy per annotator)."""
    by_item: dict[int, list[frozenset[str]]] = defaultdict(list)
    for answer in answers:
        by_item[answer.item_id].append(applied_labels(answer.value))
    items = [applied for applied in by_item.values() if len(applied) >= 2]
    per_label = {
        label: [[label in applied for applied in item] for item in items] for label in schema.labels
    }
    if schema.kind in CLASSIFICATION:
        alpha = nominal_alpha([[min(applied) for applied in item] for item in items])
    else:
        alpha = nominal_alpha(unit for label_units in per_label.values() for unit in label_units)
    labels = [
        LabelAgreement(label=label, alpha=nominal_alpha(units))
        for label, units in per_label.items()
    ]
    return alpha, len(items), labels, gold_accuracy(answers, gold)


def gold_accuracy(
    answers: Sequence[Answer], gold: dict[int, AnnotationValue]
) -> list[GoldAccuracy]:
    """Per annotator, in name order: their answers to gold items and how many were right."""
    tally: dict[str, list[int]] = {}
    for answer in answers:
        counts = tally.setdefault(answer.annotator, [0, 0])
        known = gold.get(answer.item_id)
        if known is not None:
            counts[0] += 1
            counts[1] += _same_answer(answer.value, known)
    return [
        GoldAccuracy(
            annotator=annotator,
            gold_answers=total,
            correct=right,
            accuracy=round(right / total, 6) if total else None,
        )
        for annotator, (total, right) in sorted(tally.items())
    ]


def _same_answer(given: AnnotationValue, known: AnnotationValue) -> bool:
    spans = {(s.start, s.end, s.label) for s in given.spans}
    known_spans = {(s.start, s.end, s.label) for s in known.spans}
    return set(given.labels) == set(known.labels) and spans == known_spans


def order_quality(session: Session, actor: Actor, *, order_id: int) -> OrderQuality:
    """Agreement and gold accuracy of an order so far, for those who may read the order
    (its project's researchers, ops). Raises OrderNotFound."""
    order = load_order(session, actor, order_id)
    return quality_of_order(session, order)


def quality_of_order(session: Session, order: Order) -> OrderQuality:
    schema = LabelSchema.model_validate(order.label_schema)
    rows = session.execute(
        select(Annotation.item_id, Annotation.annotator_pseudonym, Annotation.value)
        .where(Annotation.order_id == order.id)
        .order_by(Annotation.id)
    ).all()
    answers = [
        Answer(item_id, pseudonym, AnnotationValue.model_validate(value))
        for item_id, pseudonym, value in rows
    ]
    gold_rows = session.execute(
        select(Item.id, Item.gold_value).where(Item.order_id == order.id, Item.is_gold.is_(True))
    ).all()
    gold = {
        item_id: AnnotationValue.model_validate(value)
        for item_id, value in gold_rows
        if value is not None
    }
    alpha, compared, labels, accuracy = quality_of(schema, answers, gold)
    return OrderQuality(
        order_id=order.id,
        kind=schema.kind,
        annotations=len(answers),
        items_compared=compared,
        alpha=None if alpha is None else round(alpha, 6),
        labels=[
            label.model_copy(
                update={"alpha": None if label.alpha is None else round(label.alpha, 6)}
            )
            for label in labels
        ],
        gold=accuracy,
    )
