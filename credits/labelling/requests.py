"""What the API and CLI send to act on orders, and creating an order from such a request.

An order's items come inline, from an uploaded CSV or JSON Lines text, or
from a file (or the images) of a dataset version: exactly one of the three.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.orm import Session

from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.labelling import orders
from credits.labelling.items import items_from_dataset_version, items_from_upload
from credits.labelling.models import Resolution, SourceKind
from credits.labelling.schemas import (
    MAX_ITEMS,
    ItemIn,
    OrderIn,
    OrderOut,
    OrderSource,
    TextItemIn,
)
from credits.storage import BlobStore

NOTE_MAX_LENGTH = 2000
MAX_MICRO = 10**15
# Text, not bytes: the upload's own limit (items.MAX_UPLOAD_BYTES) applies once encoded.
UPLOAD_MAX_CHARACTERS = 64 * 1024 * 1024

Note = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NOTE_MAX_LENGTH)
]


class SourceIn(BaseModel):
    """Items from a dataset version the caller may read: a CSV or JSON Lines file of it,
    or, for an image schema, its images (those under the folder ``file``, if named)."""

    model_config = ConfigDict(extra="forbid")

    dataset_version_id: int = Field(strict=True, ge=1, le=2**62)
    file: str | None = Field(default=None, min_length=1, max_length=1024)


class UploadIn(BaseModel):
    """Items from a CSV (id, text, gold) or JSON Lines text sent with the request."""

    model_config = ConfigDict(extra="forbid")

    file_name: str = Field(
        min_length=1, max_length=255, description="its suffix: .csv, .jsonl or .ndjson"
    )
    content: str = Field(max_length=UPLOAD_MAX_CHARACTERS)


class OrderCreate(BaseModel):
    """A new order and its items: ``items`` (texts), ``upload`` or ``source``, exactly one.
    An image order takes a dataset version's images (``source``)."""

    model_config = ConfigDict(extra="forbid")

    order: OrderIn
    items: list[TextItemIn] | None = Field(default=None, max_length=MAX_ITEMS)
    upload: UploadIn | None = None
    source: SourceIn | None = None

    @model_validator(mode="after")
    def _one_kind_of_items(self) -> OrderCreate:
        given = [name for name in ("items", "upload", "source") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("send exactly one of items, upload or source")
        return self


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=NOTE_MAX_LENGTH)


class DisputeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Note


class ResolveIn(BaseModel):
    """Ops end a dispute; ``refund_micro`` only with the ``refunded`` resolution."""

    model_config = ConfigDict(extra="forbid")

    resolution: Resolution
    note: Note
    refund_micro: int = Field(default=0, strict=True, ge=0, le=MAX_MICRO)

    @model_validator(mode="after")
    def _refund_only_when_refunded(self) -> ResolveIn:
        refunding = self.resolution is Resolution.REFUNDED
        if refunding != (self.refund_micro > 0):
            raise ValueError("refund_micro is above zero exactly when the resolution is refunded")
        return self


class AnnotatorsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_ids: list[Annotated[int, Field(strict=True, ge=1, le=2**62)]] = Field(
        min_length=1, max_length=100
    )


def create_order(
    session: Session,
    actor: Actor,
    request: OrderCreate,
    *,
    store: BlobStore | None,
    request_key: str | None = None,
) -> OrderOut:
    """A draft order of the request's items. Raises what :func:`orders.create_order`
    and the readers of :mod:`credits.labelling.items` raise."""
    items, source = _items(session, actor, request, store)
    return orders.create_order(
        session,
        order=request.order,
        items=items,
        source=source,
        actor=actor,
        request_key=request_key,
        store=store,
    )


def _items(
    session: Session, actor: Actor, request: OrderCreate, store: BlobStore | None
) -> tuple[list[ItemIn], OrderSource]:
    schema = request.order.label_schema
    if request.items is not None:
        return [item.as_item() for item in request.items], OrderSource(kind=SourceKind.UPLOAD)
    if request.upload is not None:
        name = request.upload.file_name
        items = items_from_upload(request.upload.content.encode(), file_name=name, schema=schema)
        return items, OrderSource(kind=SourceKind.UPLOAD, name=name)
    if request.source is None or store is None:
        raise InvalidInput("items from a dataset version need the blob store")
    return items_from_dataset_version(
        session,
        actor,
        version_id=request.source.dataset_version_id,
        file_name=request.source.file,
        schema=schema,
        store=store,
    )
