"""Where an order's items come from: an uploaded CSV or JSON Lines file of texts,
uploaded image files, or the files of a dataset version.

Every refusal is an InvalidInput that names the line (or file) and what is
wrong with it, raised before anything is kept: an order is created from a
whole, valid list or not at all. Gold answers are checked against the
order's label schema here, so the line that carries a bad one is named.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO

from pydantic import ValidationError
from sqlalchemy.orm import Session

from credits.datasets import uploads
from credits.datasets.blobs import read_head
from credits.datasets.file_names import file_named, stored_name
from credits.datasets.models import DatasetFile, DatasetVersion, VersionState
from credits.errors import InvalidInput
from credits.identity.access_datasets import load_version, require_manager
from credits.identity.actor import Actor
from credits.labelling.label_schema import (
    AnnotationValue,
    LabelSchema,
    SchemaKind,
    Span,
    check_annotation,
)
from credits.labelling.models import EXTERNAL_ID_MAX_LENGTH, SourceKind
from credits.labelling.schemas import MAX_ITEMS, ItemIn, OrderSource
from credits.storage import BlobStore

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_IMAGE_BYTES = 20 * 1024 * 1024
GOLD_LABEL_SEPARATOR = "|"
_MAGIC_BYTES = 12
_TEXT_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_BOM = "\ufeff"


# Uploaded texts.


def items_from_upload(data: bytes, *, file_name: str, schema: LabelSchema) -> list[ItemIn]:
    """The items of a CSV (columns ``id``, ``text`` and optionally ``gold``) or JSON
    Lines file (``{"id", "text", "gold"}`` per line), in file order.

    A CSV ``gold`` cell holds labels separated by ``|`` (classification) or the
    spans as JSON (``text_spans``); a JSON Lines ``gold`` is ``{"labels": [...]}``,
    ``{"spans": [...]}`` or a list of labels. Raises InvalidInput naming the line.
    """
    if schema.is_image:
        raise InvalidInput(f"a {schema.kind.value} order takes image files, not {file_name!r}")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(f"{file_name!r} is over the limit of {MAX_UPLOAD_BYTES:,} bytes")
    kind = _text_kind(file_name)
    text = _decoded(data, file_name)
    rows = _csv_rows(text) if kind == "csv" else _jsonl_rows(text)
    items = _items(rows, schema)
    if not items:
        raise InvalidInput(f"{file_name!r} has no items")
    return items


def _text_kind(file_name: str) -> str:
    suffix = "." + file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if suffix not in _TEXT_SUFFIXES:
        raise InvalidInput(
            f"{file_name!r}: items come from a .csv or .jsonl (JSON Lines) file, not "
            + (suffix or "a file without a suffix")
        )
    return _TEXT_SUFFIXES[suffix]


def _decoded(data: bytes, file_name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InvalidInput(f"{file_name!r} line {line}: not UTF-8 text") from None
    return text.removeprefix(_BOM)


class _Row:
    """One item as read from a file, before it is checked: where it was, and its cells."""

    __slots__ = ("gold", "item_id", "line", "text")

    def __init__(self, line: int, item_id: object, text: object, gold: object) -> None:
        self.line, self.item_id, self.text, self.gold = line, item_id, text, gold


def _csv_rows(text: str) -> Iterator[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = _csv_columns(header)
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise InvalidInput(
                    f"line {reader.line_num}: {len(cells)} cells where the header has {len(header)}"
                )
            named = {name: cells[index] for name, index in columns.items()}
            yield _Row(reader.line_num, named["id"], named["text"], named.get("gold") or None)
    except csv.Error as error:
        raise InvalidInput(f"line {reader.line_num}: not valid CSV ({error})") from None


def _csv_columns(header: Sequence[str]) -> dict[str, int]:
    names = [name.strip().lower() for name in header]
    for name in ("id", "text", "gold"):
        if names.count(name) > 1:
            raise InvalidInput(f"line 1: the header names the column {name!r} twice")
    missing = [name for name in ("id", "text") if name not in names]
    if missing:
        raise InvalidInput(
            f"line 1: the header has no {' or '.join(map(repr, missing))} column"
            " (an item file needs 'id' and 'text', and may have 'gold')"
        )
    return {name: names.index(name) for name in ("id", "text", "gold") if name in names}


def _jsonl_rows(text: str) -> Iterator[_Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as error:
            raise InvalidInput(f"line {number}: not valid JSON ({error.args[0]})") from None
        if not isinstance(record, dict):
            raise InvalidInput(f"line {number}: each line is a JSON object with 'id' and 'text'")
        for key in ("id", "text"):
            if key not in record:
                raise InvalidInput(f"line {number}: the object has no {key!r}")
        yield _Row(number, record["id"], record["text"], record.get("gold"))


def _items(rows: Iterable[_Row], schema: LabelSchema) -> list[ItemIn]:
    items: list[ItemIn] = []
    first_line: dict[str, int] = {}
    for row in rows:
        if len(items) == MAX_ITEMS:
            raise InvalidInput(f"line {row.line}: an order has at most {MAX_ITEMS:,} items")
        item = _item(row, schema)
        if item.external_id in first_line:
            raise InvalidInput(
                f"line {row.line}: item id {item.external_id!r} is already on line "
                f"{first_line[item.external_id]}"
            )
        first_line[item.external_id] = row.line
        items.append(item)
    return items


def _item(row: _Row, schema: LabelSchema) -> ItemIn:
    where = f"line {row.line}"
    item_id = _item_id(row.item_id, where)
    if not isinstance(row.text, str) or not row.text.strip():
        raise InvalidInput(f"{where}: item {item_id!r} has no text")
    gold = None if row.gold is None else _gold(row.gold, schema, where)
    try:
        item = ItemIn(external_id=item_id, text=row.text, gold=gold)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in problem["loc"]) or "item"
        raise InvalidInput(f"{where}: {field}: {problem['msg']}") from None
    if gold is not None:
        try:
            item.gold = check_annotation(schema, gold, text_length=len(row.text))
        except InvalidInput as error:
            raise InvalidInput(f"{where}: gold answer: {error.detail}") from None
    return item


def _item_id(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"{where}: the id is a text or a whole number")
    item_id = str(value).strip()
    if not item_id:
        raise InvalidInput(f"{where}: the item has no id")
    if len(item_id) > EXTERNAL_ID_MAX_LENGTH:
        raise InvalidInput(f"{where}: an item id has at most {EXTERNAL_ID_MAX_LENGTH} characters")
    return item_id


def _gold(value: object, schema: LabelSchema, where: str) -> AnnotationValue | None:
    """A gold cell or field as an answer; an empty one is no gold answer."""
    if isinstance(value, str):
        value = _gold_cell(value, schema, where)
        if value is None:
            return None
    if isinstance(value, list):
        value = {"spans": value} if schema.kind is SchemaKind.TEXT_SPANS else {"labels": value}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: gold is {{'labels': [...]}}, {{'spans': [...]}} or a list")
    try:
        return AnnotationValue.model_validate(value)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in problem["loc"]) or "gold"
        raise InvalidInput(f"{where}: gold answer: {field}: {problem['msg']}") from None


def _gold_cell(cell: str, schema: LabelSchema, where: str) -> Any:
    if not cell.strip():
        return None
    if schema.kind is not SchemaKind.TEXT_SPANS:
        labels = [label.strip() for label in cell.split(GOLD_LABEL_SEPARATOR)]
        return [label for label in labels if label]
    try:
        return json.loads(cell)
    except ValueError:
        example = json.dumps([Span(start=0, end=4, label=schema.labels[0]).model_dump()])
        raise InvalidInput(f"{where}: gold spans are JSON, such as {example}") from None


# Uploaded images.


_IMAGE_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


IMAGE_MEDIA_TYPES = frozenset({*(media_type for _, media_type in _IMAGE_TYPES), "image/webp"})


def served_image_type(media_type: str) -> str:
    """The type an item's image is served with: its own if it is one of the image types
    items are made with, else a download. An order made before inline items were texts
    only may name any type, and the image routes serve on the portal's own origin."""
    return media_type if media_type in IMAGE_MEDIA_TYPES else "application/octet-stream"


def image_media_type(head: bytes) -> str | None:
    """PNG, JPEG, GIF or WebP, as the first bytes say (never the file's name); None else."""
    for magic, media_type in _IMAGE_TYPES:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def items_from_images(
    store: BlobStore,
    files: Iterable[tuple[str, BinaryIO | bytes]],
    *,
    factory: Callable[[], Session] | None = None,
) -> list[ItemIn]:
    """Stores each image (PNG, JPEG, GIF or WebP, by its bytes) and returns an item per
    file, its name as the item's id.

    A refusal removes the blobs this call added unless something names them by then
    (a dataset file or an order's item may have taken the same bytes meanwhile):
    :func:`credits.datasets.uploads.forget_blob`, in sessions from ``factory``, so
    call it outside a writing transaction. Without a factory nothing can be checked
    and the blobs are left in the store.
    """
    added: list[str] = []
    try:
        return _store_images(store, files, added)
    except BaseException:
        if factory is not None:
            for sha256 in added:
                uploads.forget_blob(factory, store, sha256)
        raise


def forget_image_items(
    store: BlobStore, items: Iterable[ItemIn], *, factory: Callable[[], Session]
) -> None:
    """Removes the blobs of ``items`` (from :func:`items_from_images`) once their order
    was refused, keeping any that something names by then (a dataset file, another
    order's item): :func:`credits.datasets.uploads.forget_blob`, so call it outside a
    writing transaction."""
    for sha256 in sorted({item.blob_sha256 for item in items if item.blob_sha256}):
        uploads.forget_blob(factory, store, sha256)


def _store_images(
    store: BlobStore, files: Iterable[tuple[str, BinaryIO | bytes]], added: list[str]
) -> list[ItemIn]:
    items: list[ItemIn] = []
    seen: set[str] = set()
    for name, content in files:
        item_id = _item_id(name, f"file {name!r}")
        if item_id in seen:
            raise InvalidInput(f"file {item_id!r}: two files have this name")
        if len(items) == MAX_ITEMS:
            raise InvalidInput(f"file {item_id!r}: an order has at most {MAX_ITEMS:,} items")
        seen.add(item_id)
        data = _read(content, item_id)
        media_type = image_media_type(data[:_MAGIC_BYTES])
        if media_type is None:
            raise InvalidInput(f"file {item_id!r}: not a PNG, JPEG, GIF or WebP image")
        sha256 = _put(store, data, added)
        items.append(ItemIn(external_id=item_id, blob_sha256=sha256, media_type=media_type))
    if not items:
        raise InvalidInput("no image files were sent")
    return items


def _read(content: BinaryIO | bytes, item_id: str) -> bytes:
    """The file's bytes, refused past the limit (an image is read whole once to hash it)."""
    data = (
        bytes(content)
        if isinstance(content, bytes | bytearray)
        else content.read(MAX_IMAGE_BYTES + 1)
    )
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"file {item_id!r}: an image is at most {MAX_IMAGE_BYTES:,} bytes")
    return data


def _put(store: BlobStore, data: bytes, added: list[str]) -> str:
    # Content-addressed: the same bytes may already be held by a dataset file, so a
    # refusal here removes only blobs this call brought into the store (an order
    # refused later removes them unless named: forget_image_items).
    existed = store.exists(hashlib.sha256(data).hexdigest())
    blob = store.put_stream([data], max_bytes=MAX_IMAGE_BYTES)
    if not existed:
        added.append(blob.sha256)
    return blob.sha256


# Dataset versions.


def items_from_dataset_version(
    session: Session,
    actor: Actor,
    *,
    version_id: int,
    file_name: str | None,
    schema: LabelSchema,
    store: BlobStore,
) -> tuple[list[ItemIn], OrderSource]:
    """The items of a published (or deprecated) version, or of a draft the actor manages.

    Text schemas read the CSV or JSON Lines file ``file_name``; image schemas take
    every image of the version (or of the folder ``file_name``), sharing their
    blobs. Raises VersionNotFound (missing, or a draft the actor may not read),
    DatasetForbidden, and InvalidInput (taken down, no such file, bad contents).
    """
    version = load_version(session, actor, version_id)
    if version.state == VersionState.TAKEN_DOWN.value:
        raise InvalidInput(f"dataset version {version_id} was taken down; its files are gone")
    if version.state == VersionState.DRAFT.value:
        require_manager(session, actor, version)
    source = OrderSource(kind=SourceKind.DATASET_VERSION, version_id=version.id, name=file_name)
    if schema.is_image:
        return _version_images(version, file_name, store), source
    if file_name is None:
        raise InvalidInput("name the version's CSV or JSON Lines file that holds the items")
    file = _version_file(version, file_name)
    if file.size > MAX_UPLOAD_BYTES:
        raise InvalidInput(f"{file.name!r} is over the limit of {MAX_UPLOAD_BYTES:,} bytes")
    data = b"".join(store.open_range(file.sha256))
    try:
        return items_from_upload(data, file_name=file.name, schema=schema), source
    except InvalidInput as error:
        raise InvalidInput(f"{file.name!r}: {error.detail}") from None


def _version_file(version: DatasetVersion, file_name: str) -> DatasetFile:
    """The version's file of that name in any Unicode form (names are stored in NFC)."""
    file = file_named(version.files, file_name)
    if file is None:
        raise InvalidInput(f"version {version.number} of this dataset has no file {file_name!r}")
    return file


def _version_images(version: DatasetVersion, folder: str | None, store: BlobStore) -> list[ItemIn]:
    # The folder is compared in NFC, the form the files' names are stored in.
    name = None if folder is None else stored_name(folder)
    prefix = None if name is None else name.rstrip("/") + "/"
    chosen = [
        file
        for file in version.files
        if file.media_type.startswith("image/")
        and (prefix is None or file.name == name or file.name.startswith(prefix))
    ]
    items = []
    for file in chosen:
        media_type = image_media_type(read_head(store, file.sha256, _MAGIC_BYTES))
        if media_type is None:
            raise InvalidInput(f"file {file.name!r}: not a PNG, JPEG, GIF or WebP image")
        item_id = _item_id(file.name, f"file {file.name!r}")
        items.append(ItemIn(external_id=item_id, blob_sha256=file.sha256, media_type=media_type))
    if not items:
        where = f" under {folder!r}" if folder else ""
        raise InvalidInput(f"version {version.number} of this dataset has no images{where}")
    if len(items) > MAX_ITEMS:
        raise InvalidInput(
            f"the version has {len(items):,} images; an order has at most {MAX_ITEMS:,}"
        )
    return items
