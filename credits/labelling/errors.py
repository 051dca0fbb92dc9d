"""Refusals of the labelling domain; the API turns them into problem details."""

from __future__ import annotations

from credits.errors import Conflict, CreditsError, Forbidden, InvalidInput, NotFound


class VendorNotFound(NotFound):
    slug = "vendor-not-found"


class OrderNotFound(NotFound):
    slug = "labelling-order-not-found"


class ItemNotFound(NotFound):
    slug = "labelling-item-not-found"


class ImageTakenDown(CreditsError):
    """The order's images came from a dataset version that was taken down: they are
    served to no one, annotators and Label Studio included."""

    status = 410
    slug = "labelling-image-taken-down"
    title = "This image was taken down"


class NoPriceSheet(Conflict):
    slug = "no-price-sheet"
    title = "The vendor has no price in effect"


class VendorMismatch(InvalidInput):
    """The vendor does not take this kind of task, or offers no such quality control."""

    slug = "vendor-mismatch"


class OrderStateConflict(Conflict):
    """A transition the order's state does not allow; ``state`` names the state."""

    slug = "labelling-order-state"
    title = "Not allowed in the order's state"


class AlreadyAnnotated(Conflict):
    slug = "already-annotated"
    title = "This annotator already labelled the item"


class DeliveryReplayConflict(Conflict):
    """A delivery key already recorded with other units (or for another usage record):
    not a replay, and never charged as one."""

    slug = "labelling-delivery-replay-conflict"
    title = "The delivery key was used for another delivery"


class LabellingForbidden(Forbidden):
    slug = "labelling-forbidden"


class AssignmentNotFound(NotFound):
    """No such assignment, or one served to someone else."""

    slug = "labelling-assignment-not-found"


class AssignmentClosed(Conflict):
    """The assignment was already released (skipped or its lease ran out) or submitted."""

    slug = "labelling-assignment-closed"
    title = "This item is no longer assigned to you"
