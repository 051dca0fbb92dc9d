"""An accepted order becomes a dataset version: its annotations as JSON Lines, with the
order (its credits, vendor and funding program) as the version's provenance.

The file has one line per item in the order's item order::

    {"item_id": "review-1", "labels": ["positive"],
     "annotations": [{"annotator": "annotator-3f…", "labels": ["positive"], "seconds": 4.2}],
     "agreement": 1.0, "gold": false}

``labels`` (``spans`` for a text-spans schema) is the answer most annotators
gave, null on a tie or with no annotation; ``agreement`` is the share of the
item's annotators who gave that most common answer, null with fewer than two.
Annotators appear only under the order's pseudonyms.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from credits.datasets import provenance, service
from credits.datasets.doi import DoiHook, doi_registrar_from_settings
from credits.datasets.models import Dataset, DatasetVersion, VersionState
from credits.grants.models import Allocation
from credits.identity.actor import Actor
from credits.labelling.label_schema import LabelSchema, SchemaKind
from credits.labelling.models import Annotation, Item, Order
from credits.ledger.models import HoldPart
from credits.settings import load_settings
from credits.storage import BlobStore, blob_store_from_settings
from credits.storage.blob_locks import hold_blob

MEDIA_TYPE = "application/jsonlines"


def delivery_file_name(order_id: int) -> str:
    return f"labels-order-{order_id}.jsonl"


def deliver_as_dataset(
    session: Session,
    *,
    order: Order,
    actor: Actor,
    now: datetime,
    store: BlobStore | None = None,
    max_version_bytes: int | None = None,
    dois: DoiHook | None = None,
) -> int:
    """Stores the order's annotations file and adds it, with the order as provenance, to
    a draft: a new version of the order's target dataset (its existing draft, when it
    has one), or a new dataset of the project titled after the order. Returns the
    draft's version id. ``store`` defaults to the configured blob store and
    ``max_version_bytes`` to CREDITS_DATASET_MAX_VERSION_BYTES: a draft the file would
    take over it is refused with VersionTooLarge (413).

    ``dois`` defaults to the configured DOI registrar (none when DOIs are off): a
    draft this makes has its DOI written, pending, in this transaction as the API and
    the CLI do, and the DOI sweep reserves it at DataCite."""
    if store is None or max_version_bytes is None or dois is None:
        settings = load_settings()
        store = store or blob_store_from_settings(settings)
        if max_version_bytes is None:
            max_version_bytes = settings.dataset_max_version_bytes
        dois = dois or doi_registrar_from_settings(settings)
    document = annotations_document(session, order)
    blob = store.put_stream([document], max_bytes=len(document))
    version_id = _draft_for(session, order, actor, now, dois)
    # Until this transaction ends, a removal elsewhere cannot delete the bytes the file names.
    hold_blob(session, store, blob.sha256)
    service.add_file(
        session,
        version_id=version_id,
        name=delivery_file_name(order.id),
        blob=blob,
        actor=actor,
        media_type=MEDIA_TYPE,
        max_version_bytes=max_version_bytes,
    )
    provenance.record_labelling_order(
        session,
        version_id=version_id,
        actor=actor,
        order_id=order.id,
        charged_micro=charged_micro(order),
        program_id=_program_of(session, order),
    )
    return version_id


def charged_micro(order: Order) -> int:
    """What the order cost its project in labelling credits, net of refunds."""
    return order.captured_micro + order.overage_micro - order.refunded_micro


def _draft_for(
    session: Session, order: Order, actor: Actor, now: datetime, dois: DoiHook | None
) -> int:
    if order.target_dataset_id is None:
        created = service.create_dataset(
            session, project_id=order.project_id, title=order.title, actor=actor, now=now, dois=dois
        )
        return created.id
    # One draft per dataset: an open one takes the delivery rather than refusing it.
    # The dataset's lock (new_version takes it too) makes a second acceptance racing
    # with this one wait, then find the draft this one made.
    session.get(Dataset, order.target_dataset_id, with_for_update=True, populate_existing=True)
    draft = session.scalar(
        select(DatasetVersion.id).where(
            DatasetVersion.dataset_id == order.target_dataset_id,
            DatasetVersion.state == VersionState.DRAFT.value,
        )
    )
    if draft is not None:
        return draft
    return service.new_version(
        session, dataset_id=order.target_dataset_id, actor=actor, now=now, dois=dois
    ).id


def _program_of(session: Session, order: Order) -> int | None:
    """The program of the allocation the order's hold drew from first, if an award's
    allocation funded it."""
    if order.hold_key is None:
        return None
    return session.scalar(
        select(Allocation.program_id)
        .join(HoldPart, HoldPart.account_id == Allocation.account_id)
        .where(HoldPart.hold_key == order.hold_key)
        .order_by(HoldPart.part)
        .limit(1)
    )


def annotations_document(session: Session, order: Order) -> bytes:
    """The JSON Lines file: one line per item, in the order's item order."""
    schema = LabelSchema.model_validate(order.label_schema)
    items = session.scalars(
        select(Item).where(Item.order_id == order.id).order_by(Item.position)
    ).all()
    by_item: dict[int, list[Annotation]] = defaultdict(list)
    for annotation in session.scalars(
        select(Annotation).where(Annotation.order_id == order.id).order_by(Annotation.id)
    ):
        by_item[annotation.item_id].append(annotation)
    lines = [
        json.dumps(_line(schema, item, by_item[item.id]), ensure_ascii=False) + "\n"
        for item in items
    ]
    return "".join(lines).encode("utf-8")


def _line(schema: LabelSchema, item: Item, annotations: Sequence[Annotation]) -> dict[str, Any]:
    key = "spans" if schema.kind is SchemaKind.TEXT_SPANS else "labels"
    answers = [annotation.value.get(key, []) for annotation in annotations]
    answer, agreement = majority(answers)
    return {
        "item_id": item.external_id,
        key: answer,
        "annotations": [
            {"annotator": a.annotator_pseudonym, key: a.value.get(key, []), "seconds": a.seconds}
            for a in annotations
        ],
        "agreement": agreement,
        "gold": item.is_gold,
    }


def majority(answers: Sequence[Any]) -> tuple[Any, float | None]:
    """The answer given most often (None on a tie or when there is none) and the share
    of annotators who gave it (None with fewer than two annotators)."""
    if not answers:
        return None, None
    # Answers are stored checked (labels in the schema's order, spans sorted), so equal
    # answers serialise alike.
    counts = Counter(json.dumps(answer, sort_keys=True) for answer in answers)
    (top, top_count), *rest = counts.most_common()
    agreement = None if len(answers) < 2 else round(top_count / len(answers), 6)
    if rest and rest[0][1] == top_count:
        return None, agreement
    return json.loads(top), agreement
