"""What a labelling order does after it is created: /api/v1/labelling/orders/<id>/<action>.

quote prices a draft at the vendor's price in force; place holds the quote on
the project's labelling credits (402 with ``required`` and ``available`` when
they are short, and nothing is held); accept, dispute and cancel are the
requester's; resolve (a dispute) and delivered (an invoice order) are ops'.
Every transition the order's state refuses is a 409 naming the ``state``.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from credits.api.auth import session_factory
from credits.api.labelling import caller
from credits.api.openapi import operation
from credits.api.parsing import NoInput, json_body, optional_json_body
from credits.db import session_scope
from credits.identity.models import Scope
from credits.labelling import completion, orders
from credits.labelling.requests import AnnotatorsIn, CancelIn, DisputeIn, ResolveIn
from credits.labelling.schemas import OrderOut

blueprint = Blueprint("labelling_orders", __name__, url_prefix="/api/v1/labelling/orders")

REFUSALS = (403, 404, 409)


def _answer(work: Callable[[Session], OrderOut]) -> ResponseReturnValue:
    with session_scope(session_factory()) as session:
        order = work(session)
    return order.model_dump(mode="json")


@blueprint.post("/<int:order_id>/quote")
@operation(
    "Quote a labelling order",
    response=OrderOut,
    body=NoInput,
    body_required=False,
    problems=(*REFUSALS, 422),
)
def quote_order(order_id: int) -> ResponseReturnValue:
    """Prices a draft (or re-prices a quoted order) at the vendor's price in force now:
    units x price + fee, in micro-credits. 409 when the vendor has no price in force."""
    actor = caller(Scope.WRITE)
    optional_json_body(NoInput)
    return _answer(lambda session: orders.quote_order(session, order_id=order_id, actor=actor))


@blueprint.post("/<int:order_id>/place")
@operation(
    "Place a labelling order",
    response=OrderOut,
    body=NoInput,
    body_required=False,
    problems=(402, *REFUSALS),
)
def place_order(order_id: int) -> ResponseReturnValue:
    """Holds the quote on the project's labelling credits; 402 with ``required`` and
    ``available`` (micro-credits) when they are short, and nothing is held."""
    actor = caller(Scope.WRITE)
    optional_json_body(NoInput)
    return _answer(lambda session: orders.place_order(session, order_id=order_id, actor=actor))


@blueprint.post("/<int:order_id>/cancel")
@operation(
    "Cancel a labelling order",
    response=OrderOut,
    body=CancelIn,
    body_required=False,
    problems=REFUSALS,
)
def cancel_order(order_id: int) -> ResponseReturnValue:
    """Cancels an order not yet delivered; what its hold has not captured is released."""
    actor = caller(Scope.WRITE)
    body = optional_json_body(CancelIn)
    return _answer(
        lambda session: orders.cancel_order(
            session, order_id=order_id, actor=actor, reason=body.reason
        )
    )


@blueprint.post("/<int:order_id>/accept")
@operation(
    "Accept a labelling order's work",
    response=OrderOut,
    body=NoInput,
    body_required=False,
    problems=REFUSALS,
)
def accept_order(order_id: int) -> ResponseReturnValue:
    """Accepts what was delivered: the rest of the hold is released and the order settles."""
    actor = caller(Scope.WRITE)
    optional_json_body(NoInput)
    return _answer(lambda session: orders.accept_order(session, order_id=order_id, actor=actor))


@blueprint.post("/<int:order_id>/dispute")
@operation(
    "Dispute a labelling order's work",
    response=OrderOut,
    body=DisputeIn,
    problems=REFUSALS,
)
def dispute_order(order_id: int) -> ResponseReturnValue:
    """Freezes capture until ops resolve the dispute; deliveries are still recorded."""
    actor = caller(Scope.WRITE)
    body = json_body(DisputeIn)
    return _answer(
        lambda session: orders.dispute_order(
            session, order_id=order_id, actor=actor, reason=body.reason
        )
    )


@blueprint.post("/<int:order_id>/resolve")
@operation(
    "Resolve a disputed labelling order",
    response=OrderOut,
    body=ResolveIn,
    problems=REFUSALS,
)
def resolve_order(order_id: int) -> ResponseReturnValue:
    """Ops only: accept (charge what was delivered), refund ``refund_micro`` of what was
    charged through an audited adjustment, or cancel (what was frozen is never charged)."""
    actor = caller(Scope.WRITE)
    body = json_body(ResolveIn)
    return _answer(
        lambda session: orders.resolve_dispute(
            session,
            order_id=order_id,
            resolution=body.resolution,
            actor=actor,
            note=body.note,
            refund_micro=body.refund_micro,
        )
    )


@blueprint.post("/<int:order_id>/delivered")
@operation(
    "Mark an invoice order delivered",
    response=OrderOut,
    body=NoInput,
    body_required=False,
    problems=(*REFUSALS, 422),
)
def mark_delivered(order_id: int) -> ResponseReturnValue:
    """Ops only: an invoice vendor's work is complete (422 for other vendors' orders)."""
    actor = caller(Scope.WRITE)
    optional_json_body(NoInput)
    return _answer(
        lambda session: completion.mark_order_delivered(session, order_id=order_id, actor=actor)
    )


@blueprint.post("/<int:order_id>/annotators")
@operation(
    "Assign in-house annotators to an order",
    response=OrderOut,
    body=AnnotatorsIn,
    problems=REFUSALS,
)
def assign_annotators(order_id: int) -> ResponseReturnValue:
    """Gives users holding the annotator role the order's queue (in-house orders only)."""
    actor = caller(Scope.WRITE)
    body = json_body(AnnotatorsIn)
    return _answer(
        lambda session: orders.assign_annotators(
            session, order_id=order_id, user_ids=body.user_ids, actor=actor
        )
    )
