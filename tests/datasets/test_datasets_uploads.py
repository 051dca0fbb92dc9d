"""A draft's files and the shared blob store: what removing or refusing a file deletes
(never bytes a labelling order still shows), names looked up in any Unicode form, and
the version size limit on every way in (API, CLI, a labelling delivery)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
from datasets_world import CSV, ENERGY, SYSTEM, DatasetsWorld, build_world
from labelling_world import LabellingWorld
from labelling_world import build_world as build_labelling_world
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from credits.api.datasets import STORE_KEY
from credits.app import create_app
from credits.datasets import downloads, publishing, queries, service, uploads
from credits.datasets.errors import DatasetFileNotFound, DuplicateFileName, VersionTooLarge
from credits.datasets.models import DatasetFile
from credits.db import session_scope
from credits.identity.actor import Actor
from credits.identity.tokens import create_token
from credits.labelling import orders
from credits.labelling.items import items_from_dataset_version, items_from_images
from credits.labelling.label_schema import LabelSchema, SchemaKind
from credits.labelling.models import Item, SourceKind
from credits.labelling.schemas import ItemIn, OrderIn, OrderOut, OrderSource
from credits.settings import load_settings
from credits.storage import PART_SIZE, BlobStore, StorageUnavailable, blob_store_for_url
from credits.storage.blob_locks import hold_blob, lock_blob
from credits.storage.factory import blob_store_from_settings
from credits.storage.tidy import remove_stale_uploads

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(20)
PETS = LabelSchema(kind=SchemaKind.IMAGE_CLASSIFICATION, labels=["cat", "dog"])
# "é" as macOS sends it: "e" and a combining acute accent (NFD); stored as U+00E9 (NFC).
DECOMPOSED = "caf" + "e\u0301" + ".csv"
COMPOSED = "caf\u00e9.csv"


@pytest.fixture
def store(session: Session) -> BlobStore:
    return blob_store_for_url(f"memory://datasets-uploads-{id(session)}")


def _image_order(
    session: Session, world: LabellingWorld, items: Sequence[ItemIn], source: OrderSource
) -> OrderOut:
    order = OrderIn(
        project_id=world.project_id,
        vendor_id=world.vendor.id,
        title="Pets",
        instructions="Cat or dog?",
        label_schema=PETS,
    )
    return orders.create_order(session, order=order, items=items, source=source, actor=world.pi)


def _attach(
    factory: sessionmaker[Session],
    store: BlobStore,
    actor: Actor,
    version_id: int,
    name: str,
    data: bytes,
    max_version_bytes: int = 1 << 30,
) -> None:
    uploads.attach_blob(
        factory,
        store,
        actor=actor,
        version_id=version_id,
        name=name,
        blob=store.put_stream([data], max_bytes=1 << 30),
        max_version_bytes=max_version_bytes,
    )


# What removing or refusing a file deletes.


def test_removing_a_file_keeps_the_bytes_of_an_image_order_made_from_it(
    session: Session, joined_session_factory: sessionmaker[Session], store: BlobStore
) -> None:
    world = build_labelling_world(session)
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Pets", actor=world.pi
    )
    _attach(joined_session_factory, store, world.pi, draft.id, "pets/cat.png", PNG)
    items, source = items_from_dataset_version(
        session, world.pi, version_id=draft.id, file_name=None, schema=PETS, store=store
    )
    _image_order(session, world, items, source)
    session.flush()

    uploads.detach_file(
        joined_session_factory, store, actor=world.pi, version_id=draft.id, name="pets/cat.png"
    )

    assert queries.get_version(session, world.pi, draft.id).files == []
    assert store.exists(items[0].blob_sha256 or "")


@pytest.mark.parametrize("refusal", ["name taken", "version too large"])
def test_a_refused_upload_keeps_the_bytes_of_an_image_uploaded_for_an_order(
    session: Session,
    joined_session_factory: sessionmaker[Session],
    store: BlobStore,
    refusal: str,
) -> None:
    world = build_labelling_world(session)
    items = items_from_images(store, [("cat.png", PNG)])
    _image_order(session, world, items, OrderSource(kind=SourceKind.UPLOAD, name="pets.zip"))
    draft = service.create_dataset(
        session, project_id=world.project_id, title="Pets", actor=world.pi
    )
    _attach(joined_session_factory, store, world.pi, draft.id, "cat.png", CSV)
    session.flush()

    name, limit, error = (
        ("cat.png", 1 << 30, DuplicateFileName)
        if refusal == "name taken"
        else ("other.png", len(CSV) + len(PNG) - 1, VersionTooLarge)
    )
    with pytest.raises(error):
        _attach(joined_session_factory, store, world.pi, draft.id, name, PNG, limit)

    assert store.exists(items[0].blob_sha256 or "")


def test_a_file_nothing_else_names_takes_its_bytes_when_removed_or_refused(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    draft = world.draft(session)
    _attach(joined_session_factory, world.store, world.pi, draft.id, "events.csv", CSV)
    session.flush()
    with pytest.raises(DuplicateFileName):
        _attach(joined_session_factory, world.store, world.pi, draft.id, "EVENTS.csv", PNG)
    uploads.detach_file(
        joined_session_factory, world.store, actor=world.pi, version_id=draft.id, name="events.csv"
    )

    assert not world.store.exists(_digest(CSV))
    assert not world.store.exists(_digest(PNG))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_upload_whose_bytes_a_removal_deleted_meanwhile_is_refused_and_adds_no_file(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    draft = world.draft(session)
    blob = world.put(CSV)  # the same bytes were stored already: the upload reused them …
    world.store.delete(blob.sha256)  # … and a removal elsewhere deleted them before the attach

    with pytest.raises(StorageUnavailable, match="send the file again"):
        uploads.attach_blob(
            joined_session_factory,
            world.store,
            actor=world.pi,
            version_id=draft.id,
            name="events.csv",
            blob=blob,
            max_version_bytes=1 << 30,
        )

    assert session.scalar(select(func.count(DatasetFile.id))) == 0


@pytest.mark.postgres
def test_a_blobs_removal_and_an_attachment_of_it_wait_for_each_other_on_postgresql(
    postgres_url: str,
) -> None:
    engine = create_engine(postgres_url, connect_args={"options": "-c lock_timeout=200"})
    factory = sessionmaker(engine)
    store = blob_store_for_url(f"memory://datasets-uploads-lock-{id(engine)}")
    sha256 = store.put_stream([PNG], max_bytes=len(PNG)).sha256
    try:
        with Session(engine) as holder:
            lock_blob(holder, sha256)  # an attachment of the blob, not yet committed
            with pytest.raises(OperationalError, match="lock timeout"):
                uploads.forget_blob(factory, store, sha256)
            with pytest.raises(OperationalError, match="lock timeout"), session_scope(factory) as s:
                hold_blob(s, store, sha256)
            assert store.exists(sha256)
        uploads.forget_blob(factory, store, sha256)  # the holder's transaction has ended
        assert not store.exists(sha256)
    finally:
        engine.dispose()


# Names in another Unicode form than the stored one.


def test_a_file_uploaded_under_a_decomposed_name_is_found_by_that_name(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    draft = world.draft(session)
    _attach(joined_session_factory, world.store, world.pi, draft.id, DECOMPOSED, CSV)
    session.flush()

    found = downloads.downloadable_file(
        session, version_id=draft.id, name=DECOMPOSED, actor=world.pi
    )
    counted = downloads.record_download(
        session, version_id=draft.id, name=DECOMPOSED, client_key="client"
    )
    uploads.detach_file(
        joined_session_factory, world.store, actor=world.pi, version_id=draft.id, name=DECOMPOSED
    )

    assert (found.name, found.sha256, counted) == (COMPOSED, _digest(CSV), True)
    assert queries.get_version(session, world.pi, draft.id).files == []
    assert not world.store.exists(_digest(CSV))


def test_a_service_removal_by_a_decomposed_name_removes_the_file(
    session: Session, world_files: tuple[DatasetsWorld, int]
) -> None:
    world, version_id = world_files
    service.remove_file(session, version_id=version_id, name=DECOMPOSED, actor=world.pi)

    assert queries.get_version(session, world.pi, version_id).files == []
    with pytest.raises(DatasetFileNotFound):
        service.remove_file(session, version_id=version_id, name=DECOMPOSED, actor=world.pi)


@pytest.fixture
def world_files(session: Session) -> tuple[DatasetsWorld, int]:
    """A draft with one file, stored under the NFC form of DECOMPOSED."""
    world = build_world(session)
    draft = world.draft(session)
    service.add_file(
        session, version_id=draft.id, name=DECOMPOSED, blob=world.put(CSV), actor=world.pi
    )
    return world, draft.id


def test_over_http_a_decomposed_name_uploads_downloads_and_deletes(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    draft = world.draft(session)
    secret = create_token(session, email="pi@uni.example", actor=SYSTEM).secret
    session.flush()
    app = create_app(load_settings(), session_factory=joined_session_factory)
    app.extensions[STORE_KEY] = world.store
    client = app.test_client()
    url = f"/api/v1/datasets/versions/{draft.id}/files/{quote(DECOMPOSED)}"
    auth = {"Authorization": f"Bearer {secret}"}

    put = client.put(url, data=CSV, headers=auth)
    get = client.get(url, headers=auth)
    delete = client.delete(url, headers=auth)

    assert put.status_code == 201, put.get_data(as_text=True)
    assert put.get_json()["name"] == COMPOSED
    assert get.status_code == 200, get.get_data(as_text=True)
    assert get.get_data() == CSV
    assert delete.status_code == 204, delete.get_data(as_text=True)
    assert client.get(url, headers=auth).status_code == 404


# The version size limit outside the API.


def test_a_delivery_that_would_take_its_draft_over_the_version_size_limit_is_refused(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_labelling_world(session)
    order = world.placed(session, items=2)
    world.deliver_all(session, order.id)
    monkeypatch.setenv("CREDITS_DATASET_MAX_VERSION_BYTES", "10")

    with pytest.raises(VersionTooLarge):
        orders.accept_order(session, order_id=order.id, actor=world.pi)


def test_asking_whether_a_blob_is_named_reads_indexes_not_whole_tables(session: Session) -> None:
    """Each deletion asks; a scan of every labelling item would grow with every order."""
    for column in (DatasetFile.sha256, Item.blob_sha256):
        query = select(column).where(column == "0" * 64).limit(1)
        compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
        plan = " ".join(
            str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        )
        assert plan.startswith("SEARCH") and "INDEX" in plan, f"{column}: {plan}"


def test_an_upload_left_open_is_abandoned_after_its_draft_is_published_and_swept_when_stale(
    session: Session, joined_session_factory: sessionmaker[Session]
) -> None:
    world = build_world(session)
    draft = world.draft(session)
    world.complete(session, draft.id)
    secret = create_token(session, email="pi@uni.example", actor=SYSTEM).secret
    session.flush()
    app = create_app(load_settings(), session_factory=joined_session_factory)
    app.extensions[STORE_KEY] = world.store
    client = app.test_client()
    auth = {"Authorization": f"Bearer {secret}"}
    uploads = f"/api/v1/datasets/versions/{draft.id}/uploads"
    started = client.post(uploads, json={"name": "big.bin", "size": 10}, headers=auth)
    upload_id = started.get_json()["upload_id"]
    client.put(f"{uploads}/{upload_id}/parts/1", data=b"0123", headers=auth)
    publishing.publish_version(session, version_id=draft.id, actor=world.pi, energy=ENERGY)
    session.flush()

    abandoned = client.delete(f"{uploads}/{upload_id}", headers=auth)

    assert abandoned.status_code == 204, abandoned.get_data(as_text=True)
    assert [key for key in world.store.list_keys() if key.startswith("uploads/")] == []


def test_the_tidy_up_removes_uploads_left_unfinished(tmp_path: Path) -> None:
    settings = load_settings(storage_url=f"file://{tmp_path / 'blobs'}")
    store = blob_store_from_settings(settings)
    upload = store.start_upload(max_bytes=10)
    store.put_part(upload, 1, b"0123")

    assert remove_stale_uploads(settings, older_than_s=3600) == 0
    assert remove_stale_uploads(settings, older_than_s=-1) == 1
    assert store.list_keys() == []


def test_the_tidy_up_keeps_an_upload_still_sending_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(storage_url=f"file://{tmp_path / 'blobs'}")
    store = blob_store_from_settings(settings)
    started = time.time()
    upload = store.start_upload(max_bytes=PART_SIZE + 10)
    monkeypatch.setattr(time, "time", lambda: started + 30 * 3600)  # a day and more later
    store.put_part(upload, 1, bytes(PART_SIZE))

    assert remove_stale_uploads(settings, older_than_s=24 * 3600) == 0
    assert store.missing_parts(upload, 2) == [2]
