"""Images of an order whose dataset version was taken down.

A take-down answers 410 on the version's own URLs; the images an image order took
from that version must stop too, wherever they are served: the signed links Label
Studio loads them by (valid for the order's life) and the in-house annotators'
pages.
"""

from __future__ import annotations

from sqlalchemy import select
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
