"""Agreement (Krippendorff's alpha) and gold accuracy of an order's annotations."""

from __future__ import annotations

import math

import pytest
from labelling_world import LabellingWorld, build_world
from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.labelling import deliveries
from credits.labelling.errors import OrderNotFound
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind, Span
from credits.labelling.models import Item
from credits.labelling.quality import Answer, nominal_alpha, order_quality, quality_of
from credits.labelling.schemas import OrderOut

# The worked example, labels a, b, c (positive, negative, neutral), annotators A, B, C:
#   u1: A a, B a    u2: A a, B b    u3: A b, B b    u4: A c, B c
#   u5: A a, B a, C b               u6: A a (one value: not pairable, left out)
WORKED = [
    {"A": "a", "B": "a"},
    {"A": "a", "B": "b"},
    {"A": "b", "B": "b"},
    {"A": "c", "B": "c"},
    {"A": "a", "B": "a", "C": "b"},
    {"A": "a"},
]
NAMES = {"a": "positive", "b": "negative", "c": "neutral"}


def test_nominal_alpha_of_the_worked_example() -> None:
    """Each ordered pair of values within a unit of m values adds 1/(m-1) to the
    coincidence matrix o:

        u1: o_aa += 2        u2: o_ab += 1, o_ba += 1      u3: o_bb += 2
        u4: o_cc += 2        u5 (a, a, b; weight 1/2): o_aa += 1, o_ab += 1, o_ba += 1

    so o_aa = 3, o_ab = o_ba = 2, o_bb = 2, o_cc = 2; n_a = 5, n_b = 4, n_c = 2, n = 11.
    Observed disagreement D_o = (o_ab + o_ba) / n = 4/11. Expected disagreement
    D_e = (n^2 - sum n_v^2) / (n (n - 1)) = (121 - 25 - 16 - 4) / 110 = 76/110.
    alpha = 1 - D_o / D_e = 1 - (4/11) / (76/110) = 1 - 40/76 = 9/19 = 0.474.
    """
    units = [list(unit.values()) for unit in WORKED]
    alpha = nominal_alpha(units)
    assert alpha is not None
    assert round(alpha, 3) == 0.474
    assert math.isclose(alpha, 9 / 19)


def test_nominal_alpha_of_krippendorffs_own_example() -> None:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', section C:
    three observers, fifteen units, some values missing; nominal alpha = 0.691."""
    rows = [
        [None, None, None, None, None, 3, 4, 1, 2, 1, 1, 3, 3, None, 3],
        [1, None, 2, 1, 3, 3, 4, 3, None, None, None, None, None, None, None],
        [None, None, 2, 1, 3, 4, 4, None, 2, 1, 1, 3, 3, None, 4],
    ]
    units = [[row[i] for row in rows if row[i] is not None] for i in range(15)]
    alpha = nominal_alpha(units)
    assert alpha is not None and round(alpha, 3) == 0.691


@pytest.mark.parametrize(
    "units",
    [
        [],  # nothing at all
        [["a"], ["b"]],  # no item with two values
        [["a", "a"], ["a", "a", "a"]],  # one category everywhere
    ],
)
def test_alpha_is_none_when_undefined(units: list[list[str]]) -> None:
    assert nominal_alpha(units) is None


@pytest.fixture
def world(session: Session) -> LabellingWorld:
    return build_world(session)


def _deliver(
    session: Session, world: LabellingWorld, order: OrderOut, answers: list[dict[str, object]]
) -> None:
    items = session.scalars(
        select(Item).where(Item.order_id == order.id).order_by(Item.position)
    ).all()
    for item, unit in zip(items, answers, strict=False):
        for annotator, value in unit.items():
            deliveries.record_delivery(
                session,
                order_id=order.id,
                item_id=item.id,
                annotator_ref=f"test:{annotator}",
                value=value
                if isinstance(value, AnnotationValue)
                else AnnotationValue(labels=[NAMES[str(value)]]),
                seconds=1.0,
                delivery_key=f"{item.id}:{annotator}",
                actor=world.ops,
            )


def _pseudonym(order: OrderOut, annotator: str) -> str:
    return deliveries.pseudonym(order.id, f"test:{annotator}")


def test_an_orders_agreement_per_order_and_label_and_gold_accuracy(
    session: Session, world: LabellingWorld
) -> None:
    """Items u1 and u2 are gold ("positive"). Per label, presence of "positive" (a):
    u1 (1,1) u2 (1,0) u3 (0,0) u4 (0,0) u5 (1,1,0): o_11 = 3, o_10 = o_01 = 2, o_00 = 4;
    n_1 = 5, n_0 = 6, n = 11; D_o = 4/11, D_e = 2 * 5 * 6 / 110 = 60/110; alpha = 1 - 40/60
    = 1/3. "neutral" (c) is applied by both annotators of u4 and by nobody else: 1.0."""
    order = world.placed(session, items=6, gold=2, redundancy=3)
    _deliver(session, world, order, WORKED)
    quality = order_quality(session, world.pi, order_id=order.id)
    assert (quality.annotations, quality.items_compared) == (12, 5)
    assert quality.alpha == pytest.approx(9 / 19, abs=1e-6)
    by_label = {label.label: label.alpha for label in quality.labels}
    assert by_label["positive"] == pytest.approx(1 / 3, abs=1e-6)
    assert by_label["neutral"] == 1.0
    gold = {row.annotator: (row.gold_answers, row.correct, row.accuracy) for row in quality.gold}
    assert gold == {
        _pseudonym(order, "A"): (2, 2, 1.0),
        _pseudonym(order, "B"): (2, 1, 0.5),
        _pseudonym(order, "C"): (0, 0, None),
    }


def test_an_order_without_pairs_has_no_alpha(session: Session, world: LabellingWorld) -> None:
    order = world.placed(session, items=3, redundancy=2)
    assert order_quality(session, world.pi, order_id=order.id).alpha is None
    _deliver(session, world, order, [{"A": "a", "B": "a"}, {"A": "a", "B": "a"}, {"A": "b"}])
    quality = order_quality(session, world.pi, order_id=order.id)
    assert quality.alpha is None  # one category on every compared item
    assert all(label.alpha is None for label in quality.labels)


def test_only_readers_of_the_order_see_its_quality(session: Session, world: LabellingWorld) -> None:
    order = world.placed(session, items=2, redundancy=2)
    with pytest.raises(OrderNotFound):
        order_quality(session, world.outsider, order_id=order.id)
    with pytest.raises(OrderNotFound):
        order_quality(session, world.annotators[0], order_id=order.id)


def test_multi_label_agreement_pools_binary_decisions_per_label() -> None:
    schema = LabelSchema(kind=SchemaKind.MULTI_LABEL, labels=["x", "y"])

    def answer(item: int, who: str, *labels: str) -> Answer:
        return Answer(item, who, AnnotationValue(labels=list(labels)))

    answers = [
        answer(1, "A", "x", "y"),
        answer(1, "B", "x"),
        answer(2, "A"),
        answer(2, "B"),
        answer(3, "A", "y"),
        answer(3, "B", "y"),
    ]
    gold = {1: AnnotationValue(labels=["y", "x"])}
    alpha, compared, labels, accuracy = quality_of(schema, answers, gold)
    # Units (item, label): x: (1,1) (0,0) (0,0); y: (1,0) (0,0) (1,1) — six units, o_11 = 4,
    # o_10 = o_01 = 1, o_00 = 6; n_1 = 5, n_0 = 7, n = 12; alpha = 1 - (2/12) / (70/132)
    # = 1 - 264/840 = 0.686.
    assert compared == 3
    assert alpha is not None and round(alpha, 3) == 0.686
    assert {label.label: label.alpha for label in labels}["x"] == 1.0
    assert [(row.annotator, row.correct) for row in accuracy] == [("A", 1), ("B", 0)]


def test_text_spans_agree_on_label_presence_and_gold_needs_the_same_spans() -> None:
    schema = LabelSchema(kind=SchemaKind.TEXT_SPANS, labels=["PER", "ORG"])

    def spans(item: int, who: str, *marked: tuple[int, int, str]) -> Answer:
        value = AnnotationValue(spans=[Span(start=s, end=e, label=label) for s, e, label in marked])
        return Answer(item, who, value)

    answers = [
        spans(1, "A", (0, 4, "PER")),
        spans(1, "B", (0, 5, "PER")),  # other boundaries: still "PER present"
        spans(2, "A", (3, 9, "ORG")),
        spans(2, "B", (3, 9, "ORG")),
    ]
    gold = {1: AnnotationValue(spans=[Span(start=0, end=4, label="PER")])}
    alpha, _, labels, accuracy = quality_of(schema, answers, gold)
    assert alpha == 1.0
    assert [label.alpha for label in labels] == [1.0, 1.0]
    assert [(row.annotator, row.accuracy) for row in accuracy] == [("A", 1.0), ("B", 0.0)]
