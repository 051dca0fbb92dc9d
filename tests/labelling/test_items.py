"""Where an order's items come from: uploaded CSV and JSON Lines, images, dataset versions."""

from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterator

import pytest
from datasets_world import ENERGY, DatasetsWorld
from datasets_world import build_world as build_datasets_world
from sqlalchemy.orm import Session, sessionmaker

from credits.datasets import publishing, service
from credits.datasets.errors import VersionNotFound
from credits.errors import InvalidInput
from credits.identity.actor import Actor
from credits.labelling import items as items_service
from credits.labelling.items import (
    MAX_IMAGE_BYTES,
    items_from_images,
    items_from_upload,
    served_image_type,
)
from credits.labelling.label_schema import AnnotationValue, LabelSchema, SchemaKind, Span
from credits.labelling.models import SourceKind
from credits.labelling.schemas import ItemIn, OrderSource
from credits.storage import blob_store_for_url

SENTIMENT = LabelSchema(kind=SchemaKind.SINGLE_LABEL, labels=["positive", "negative"])
TOPICS = LabelSchema(kind=SchemaKind.MULTI_LABEL, labels=["sport", "politics", "science"])
ENTITIES = LabelSchema(kind=SchemaKind.TEXT_SPANS, labels=["PER", "ORG"])
ANIMALS = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(20)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20)
GIF = b"GIF89a" + bytes(20)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(20)


def _refusal(data: bytes, name: str = "items.csv", schema: LabelSchema = SENTIMENT) -> str:
    with pytest.raises(InvalidInput) as refused:
        items_from_upload(data, file_name=name, schema=schema)
    return refused.value.detail


# CSV.


def test_csv_rows_become_items_in_file_order_with_gold_labels() -> None:
    data = b'id,text,gold\nr1,Great film,positive\nr2,"Dull, long",\n'
    items = items_from_upload(data, file_name="reviews.csv", schema=SENTIMENT)
    assert [(i.external_id, i.text) for i in items] == [("r1", "Great film"), ("r2", "Dull, long")]
    assert items[0].gold == AnnotationValue(labels=["positive"])
    assert items[1].gold is None


def test_csv_with_a_byte_order_mark_and_extra_columns_is_read() -> None:
    data = "\ufeffsource,ID,Text\nweb,7,Nice\n".encode()
    items = items_from_upload(data, file_name="r.CSV", schema=SENTIMENT)
    assert [(i.external_id, i.text, i.gold) for i in items] == [("7", "Nice", None)]


def test_csv_gold_of_a_multi_label_schema_is_labels_split_by_bars_in_schema_order() -> None:
    data = b"id,text,gold\na,Match report on the budget,politics | sport\n"
    [item] = items_from_upload(data, file_name="news.csv", schema=TOPICS)
    assert item.gold == AnnotationValue(labels=["sport", "politics"])


def test_csv_gold_spans_are_json() -> None:
    spans = json.dumps([{"start": 0, "end": 3, "label": "PER"}])
    data = f'id,text,gold\ns1,Ada met ACM,"{spans.replace(chr(34), 2 * chr(34))}"\n'.encode()
    [item] = items_from_upload(data, file_name="ner.csv", schema=ENTITIES)
    assert item.gold == AnnotationValue(spans=[Span(start=0, end=3, label="PER")])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"name,text\nr1,Hi\n", "line 1: the header has no 'id' column"),
        (b"id,id,text\nr1,r2,Hi\n", "line 1: the header names the column 'id' twice"),
        (b"id,text\nr1,Hi\nr2\n", "line 3: 1 cells where the header has 2"),
        (b"id,text\nr1,Hi\nr1,Again\n", "line 3: item id 'r1' is already on line 2"),
        (b"id,text\nr1,\n", "line 2: item 'r1' has no text"),
        (b"id,text\n,Hi\n", "line 2: the item has no id"),
        (b"id,text,gold\nr1,Hi,joyful\n", "line 2: gold answer: unknown label(s) 'joyful'"),
        (
            b"id,text,gold\nr1,Hi,positive|negative\n",
            "line 2: gold answer: a single_label answer has exactly one label",
        ),
        (b'id,text\nr1,Hi\nr2,"open\n', "line 3: not valid CSV"),
        (b"id,text\nr1,caf\xe9\n", "'items.csv' line 2: not UTF-8 text"),
        (b"id,text\n", "'items.csv' has no items"),
        (b"id,text\nr1,a\x00b\n", "line 2"),
    ],
)
def test_a_bad_csv_is_refused_naming_the_line(data: bytes, message: str) -> None:
    assert message in _refusal(data)


def test_csv_gold_spans_past_the_text_or_not_json_are_refused() -> None:
    past = b'id,text,gold\ns1,Ada,"[{""start"": 0, ""end"": 9, ""label"": ""PER""}]"\n'
    assert "line 2: gold answer: span 0..9 runs past the text's end" in _refusal(
        past, schema=ENTITIES
    )
    assert "line 2: gold spans are JSON" in _refusal(b"id,text,gold\ns1,Ada,PER\n", schema=ENTITIES)


def test_a_file_of_another_kind_or_an_image_schema_or_too_large_is_refused() -> None:
    assert "a .csv or .jsonl" in _refusal(b"id,text\nr,t\n", name="items.xlsx")
    assert "takes image files" in _refusal(b"id,text\nr,t\n", schema=ANIMALS)
    big = b"id,text\n" + b"r,t\n" * (items_service.MAX_UPLOAD_BYTES // 4)
    assert "over the limit" in _refusal(big)


def test_more_rows_than_an_order_takes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(items_service, "MAX_ITEMS", 2)
    assert "line 4: an order has at most 2 items" in _refusal(b"id,text\na,x\nb,y\nc,z\n")


# JSON Lines.


def test_json_lines_take_every_gold_shape() -> None:
    lines = [
        {"id": 1, "text": "Win", "gold": {"labels": ["positive"]}},
        {"id": "b", "text": "Loss", "gold": ["negative"]},
        {"id": "c", "text": "Draw", "meta": {"ignored": True}},
    ]
    data = "\n".join(json.dumps(line) for line in lines).encode() + b"\n\n"
    items = items_from_upload(data, file_name="r.jsonl", schema=SENTIMENT)
    assert [(i.external_id, i.gold) for i in items] == [
        ("1", AnnotationValue(labels=["positive"])),
        ("b", AnnotationValue(labels=["negative"])),
        ("c", None),
    ]


def test_json_lines_spans_gold() -> None:
    line = {
        "id": "s",
        "text": "Ada at ACM",
        "gold": {"spans": [{"start": 7, "end": 10, "label": "ORG"}]},
    }
    [item] = items_from_upload(json.dumps(line).encode(), file_name="n.ndjson", schema=ENTITIES)
    assert item.gold == AnnotationValue(spans=[Span(start=7, end=10, label="ORG")])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"id": "a", "text": "x"}\n{"id": "b", "text": ', "line 2: not valid JSON"),
        (b'["a", "x"]\n', "line 1: each line is a JSON object"),
        (b'{"id": "a"}\n', "line 1: the object has no 'text'"),
        (b'{"id": true, "text": "x"}\n', "line 1: the id is a text or a whole number"),
        (b'{"id": "a", "text": 5}\n', "line 1: item 'a' has no text"),
        (b'{"id": "a", "text": "x", "gold": 3}\n', "line 1: gold is"),
        (
            b'{"id": "a", "text": "x", "gold": {"label": "positive"}}\n',
            "line 1: gold answer: label",
        ),
        (b'\n\n{"id": "a", "text": "x", "gold": ["meh"]}\n', "line 3: gold answer: unknown label"),
    ],
)
def test_a_bad_json_lines_file_is_refused_naming_the_line(data: bytes, message: str) -> None:
    assert message in _refusal(data, name="items.jsonl")


# Images.


def test_images_are_stored_and_typed_by_their_bytes_not_their_names() -> None:
    store = blob_store_for_url("memory://labelling-items-images")
    files = [
        ("a.png", PNG),
        ("b.jpg", io.BytesIO(JPEG)),
        ("c.png", GIF),
        ("d", io.BytesIO(WEBP)),
    ]
    items = items_from_images(store, files)
    assert [(i.external_id, i.media_type) for i in items] == [
        ("a.png", "image/png"),
        ("b.jpg", "image/jpeg"),
        ("c.png", "image/gif"),
        ("d", "image/webp"),
    ]
    assert all(i.blob_sha256 is not None and i.text is None for i in items)
    assert b"".join(store.open_range(items[1].blob_sha256 or "")) == JPEG


def test_a_file_that_is_not_an_image_refuses_the_batch_and_leaves_no_new_blob(
    joined_session_factory: sessionmaker[Session],
) -> None:
    store = blob_store_for_url("memory://labelling-items-refused")
    with pytest.raises(
        InvalidInput, match=re.escape("file 'notes.png': not a PNG, JPEG, GIF or WebP")
    ):
        items_from_images(
            store,
            [("ok.png", PNG), ("notes.png", b"%PDF-1.7 not an image")],
            factory=joined_session_factory,
        )
    assert not store.exists(hashlib.sha256(PNG).hexdigest())


def test_a_refused_batch_keeps_a_new_blob_that_a_dataset_file_took_meanwhile(
    session: Session, joined_session_factory: sessionmaker[Session], datasets: DatasetsWorld
) -> None:
    draft = datasets.draft(session)

    def files() -> Iterator[tuple[str, bytes]]:
        yield "cat.png", PNG  # stored by the batch, new to the store …
        # … and an upload of the same bytes to a draft names them before the batch ends.
        blob = datasets.store.put_stream([PNG], max_bytes=len(PNG))
        service.add_file(session, version_id=draft.id, name="cat.png", blob=blob, actor=datasets.pi)
        session.flush()
        yield "notes.png", b"%PDF-1.7 not an image"

    with pytest.raises(InvalidInput, match="not a PNG"):
        items_from_images(datasets.store, files(), factory=joined_session_factory)

    assert datasets.store.exists(hashlib.sha256(PNG).hexdigest())


def test_images_that_are_too_large_twice_named_or_none_are_refused() -> None:
    store = blob_store_for_url("memory://labelling-items-limits")
    with pytest.raises(InvalidInput, match="at most"):
        items_from_images(store, [("big.png", PNG + bytes(MAX_IMAGE_BYTES))])
    with pytest.raises(InvalidInput, match="two files have this name"):
        items_from_images(store, [("a.png", PNG), ("a.png", GIF)])
    with pytest.raises(InvalidInput, match="no image files"):
        items_from_images(store, [])


# Dataset versions.


@pytest.fixture
def datasets(session: Session) -> DatasetsWorld:
    return build_datasets_world(session)


def _published(session: Session, world: DatasetsWorld, **files: bytes) -> int:
    draft = world.draft(session)
    world.complete(session, draft.id, **files)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    return draft.id


REVIEWS = b"id,text,gold\nr1,Lovely,positive\nr2,Awful,\n"


def _from_version(
    session: Session,
    world: DatasetsWorld,
    version_id: int,
    file_name: str | None,
    *,
    actor: Actor | None = None,
    schema: LabelSchema = SENTIMENT,
) -> tuple[list[ItemIn], OrderSource]:
    return items_service.items_from_dataset_version(
        session,
        actor or world.pi,
        version_id=version_id,
        file_name=file_name,
        schema=schema,
        store=world.store,
    )


def test_items_come_from_a_published_versions_file_for_anyone(
    session: Session, datasets: DatasetsWorld
) -> None:
    version_id = _published(session, datasets, **{"reviews.csv": REVIEWS})
    items, source = _from_version(
        session, datasets, version_id, "reviews.csv", actor=datasets.outsider
    )
    assert [i.external_id for i in items] == ["r1", "r2"]
    assert items[0].gold == AnnotationValue(labels=["positive"])
    assert source.kind is SourceKind.DATASET_VERSION
    assert (source.version_id, source.name) == (version_id, "reviews.csv")


def test_items_come_from_a_draft_for_its_project_members_only(
    session: Session, datasets: DatasetsWorld
) -> None:
    draft = datasets.draft(session)
    service.add_file(
        session,
        version_id=draft.id,
        name="reviews.jsonl",
        blob=datasets.put(b'{"id": "x", "text": "Fine"}\n'),
        actor=datasets.pi,
    )
    items, _ = _from_version(session, datasets, draft.id, "reviews.jsonl", actor=datasets.member)
    assert [(i.external_id, i.text) for i in items] == [("x", "Fine")]
    with pytest.raises(VersionNotFound):
        _from_version(session, datasets, draft.id, "reviews.jsonl", actor=datasets.outsider)


def test_a_missing_file_a_bad_file_or_a_taken_down_version_is_refused(
    session: Session, datasets: DatasetsWorld
) -> None:
    version_id = _published(session, datasets, **{"reviews.csv": b"id,text\nr1,\n"})

    def refusal(file_name: str | None) -> str:
        with pytest.raises(InvalidInput) as refused:
            _from_version(session, datasets, version_id, file_name)
        return refused.value.detail

    assert "has no file 'other.csv'" in refusal("other.csv")
    assert "name the version's CSV or JSON Lines file" in refusal(None)
    assert refusal("reviews.csv") == "'reviews.csv': line 2: item 'r1' has no text"
    publishing.take_down_version(
        session, version_id=version_id, actor=datasets.ops, reason="Consent withdrawn."
    )
    assert "was taken down" in refusal("reviews.csv")


def test_an_image_schema_takes_every_image_of_the_version_sharing_its_blobs(
    session: Session, datasets: DatasetsWorld
) -> None:
    version_id = _published(
        session,
        datasets,
        **{"pets__cat.png": PNG, "pets__dog.jpg": JPEG, "readme.md": b"# Pets", "other.gif": GIF},
    )
    items, source = _from_version(session, datasets, version_id, None, schema=ANIMALS)
    assert [(i.external_id, i.media_type) for i in items] == [
        ("other.gif", "image/gif"),
        ("pets/cat.png", "image/png"),
        ("pets/dog.jpg", "image/jpeg"),
    ]
    assert items[1].blob_sha256 == datasets.put(PNG).sha256
    assert source.name is None
    in_folder, _ = _from_version(session, datasets, version_id, "pets", schema=ANIMALS)
    assert [i.external_id for i in in_folder] == ["pets/cat.png", "pets/dog.jpg"]


# "é" as macOS sends it: "e" and a combining acute accent (NFD); names are stored in NFC.
def _decomposed(name: str) -> str:
    return unicodedata.normalize("NFD", name)


def test_a_file_named_in_another_unicode_form_gives_its_items(
    session: Session, datasets: DatasetsWorld
) -> None:
    version_id = _published(session, datasets, **{"critiqu\u00e9s.csv": REVIEWS})

    items, _ = _from_version(session, datasets, version_id, _decomposed("critiqu\u00e9s.csv"))

    assert [i.external_id for i in items] == ["r1", "r2"]


def test_a_folder_named_in_another_unicode_form_gives_its_images(
    session: Session, datasets: DatasetsWorld
) -> None:
    files = {"b\u00eates__cat.png": PNG, "b\u00eates__dog.jpg": JPEG, "other.gif": GIF}
    version_id = _published(session, datasets, **files)

    in_folder, _ = _from_version(
        session, datasets, version_id, _decomposed("b\u00eates"), schema=ANIMALS
    )

    assert [i.external_id for i in in_folder] == ["b\u00eates/cat.png", "b\u00eates/dog.jpg"]


def test_an_image_named_as_one_whose_bytes_are_not_is_refused(
    session: Session, datasets: DatasetsWorld
) -> None:
    version_id = _published(session, datasets, **{"fake.png": b"not really a png"})
    with pytest.raises(InvalidInput, match=re.escape("file 'fake.png': not a PNG")):
        _from_version(session, datasets, version_id, None, schema=ANIMALS)


@pytest.mark.parametrize("media_type", ["image/png", "image/jpeg", "image/gif", "image/webp"])
def test_an_image_type_that_items_are_made_with_is_served_as_itself(media_type: str) -> None:
    assert served_image_type(media_type) == media_type


@pytest.mark.parametrize("media_type", ["text/html", "image/svg+xml", "text/javascript", ""])
def test_any_other_stored_type_is_served_as_a_download(media_type: str) -> None:
    assert served_image_type(media_type) == "application/octet-stream"
