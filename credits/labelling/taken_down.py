"""Orders whose items came from a dataset version that was taken down.

A take-down answers 410 on the version's own URLs; what an order took from that
version must stop too, wherever it is served: the images' signed links Label
Studio loads them by (valid for the order's life), the in-house annotators'
pages, and their queue, which serves such an order no more (so no further work
is done or charged on it); nor does the Label Studio sweep place it. Ops then
cancel the order (its hold's rest is released) or resolve it with the requester.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from credits.datasets.models import DatasetVersion, VersionState
from credits.labelling.errors import ImageTakenDown
from credits.labelling.models import Item, Order


def require_image_not_taken_down(session: Session, item: Item) -> None:
    """Raises ImageTakenDown when the item's order took its images from a dataset
    version that has since been taken down."""
    taken_down = session.scalar(
        select(DatasetVersion.id)
        .join(Order, Order.source_version_id == DatasetVersion.id)
        .where(Order.id == item.order_id, DatasetVersion.state == VersionState.TAKEN_DOWN.value)
    )
    if taken_down is not None:
        raise ImageTakenDown(
            f"the images of this order came from dataset version {taken_down}, which was taken down"
        )


def source_not_taken_down() -> ColumnElement[bool]:
    """An order whose items did not come from a taken-down dataset version (a condition
    on Order)."""
    return ~exists().where(
        DatasetVersion.id == Order.source_version_id,
        DatasetVersion.state == VersionState.TAKEN_DOWN.value,
    )
